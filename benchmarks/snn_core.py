"""The SNN core against SpikingJelly's LIFNode (multi-step, torch backend): correctness, step time and the
memory autograd keeps for the backward.

One LIF layer, soft reset, decay_input=False, detach_reset, sigmoid-4 surrogate (hlop/opzo's setting), on
[T, batch, neurons] inputs; forward + backward of sum(spikes * weights) per call. Both run side by side in
this process, alternating, so the ratio holds on a noisy machine. Prints a table.

    python benchmarks/snn_core.py [--device cpu|cuda] [--batch 64] [--neurons 4096] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from components.snn import LIF


def spikingjelly_lif():
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(
        tau=2.0,
        decay_input=False,
        v_threshold=1.0,
        v_reset=None,
        detach_reset=True,
        surrogate_function=surrogate.Sigmoid(alpha=4.0),
        step_mode="m",
    )


def ours():
    return LIF(tau=2.0, decay_input=False, reset="soft", detach_reset=True, surrogate="sigmoid", alpha=4.0)


def run_once(make, x: torch.Tensor, weights: torch.Tensor, device: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    node = make().to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    spikes = node(x)
    (spikes * weights).sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, spikes.detach(), x.grad


def saved_bytes(make, x: torch.Tensor, device: str) -> int:
    """Bytes autograd keeps between forward and backward (what training at large T runs out of)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    x = x.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        make().to(device)(x)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--neurons", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"device {args.device}, batch {args.batch}, neurons {args.neurons}, {args.repeats} repeats (median)")
    print(
        f"{'T':>3} | {'ours ms':>8} | {'SpikingJelly ms':>15} | {'ours/SJ':>7} | {'saved MB ours/SJ':>16} | "
        f"{'spike diff':>10} | {'max grad diff':>13}"
    )
    for steps in (1, 2, 4, 8):
        x = 1.5 * torch.randn(steps, args.batch, args.neurons, device=args.device)
        weights = torch.randn_like(x)
        makers = {"ours": ours, "sj": spikingjelly_lif}
        times: dict[str, list[float]] = {name: [] for name in makers}
        for _ in range(3):  # warm-up (allocator, lazy init)
            for make in makers.values():
                run_once(make, x, weights, args.device)
        for _ in range(args.repeats):  # interleaved, so a slow moment of the machine hits both
            results = {name: run_once(make, x, weights, args.device) for name, make in makers.items()}
            for name, (seconds, _, _) in results.items():
                times[name].append(seconds)
        ours_ms, sj_ms = (1e3 * statistics.median(times[k]) for k in ("ours", "sj"))
        saved = "/".join(f"{saved_bytes(make, x, args.device) / 2**20:.0f}" for make in makers.values())
        spike_diff = int((results["ours"][1] != results["sj"][1]).sum())
        grad_diff = float((results["ours"][2] - results["sj"][2]).abs().max())
        print(
            f"{steps:>3} | {ours_ms:>8.3f} | {sj_ms:>15.3f} | {ours_ms / sj_ms:>7.2f} | {saved:>16} | "
            f"{spike_diff:>10} | {grad_diff:>13.2e}"
        )


if __name__ == "__main__":
    main()
