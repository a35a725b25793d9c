"""GRSNN's memory per training batch on FB15k-237-sized random graphs: ours (the delayed-message op that recomputes
the per-edge indices in its backward pass) beside a plain-autograd reference (the same forward written with
differentiable indexing, which keeps every step's |E| x B x D index for the backward) and the spec's estimate
(the |E| x B x D float message tensors of all T steps).

One training step: propagation from B query sources over the whole graph (14,541 nodes, 237 relations,
272,115 facts and their inverses), D = 32, T = 10, K = 256 negatives scored, backward. Each measurement runs in a
fresh subprocess; peak memory is torch.cuda.max_memory_allocated on a GPU, the growth of the process's peak
resident set on CPU. Prints a table; wall times are for orientation only and are never asserted.

    python benchmarks/grsnn_memory.py [--device cpu|cuda] [--batch 1 2 5] [--scale 1.0] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from components.grsnn.config import Config
from components.grsnn.model import Graph, build_model
from components.grsnn.ranking import KnownAnswers, remove_easy_edges, self_adversarial_loss, training_candidates

FB15K237 = {"entities": 14541, "relations": 237, "facts": 272115}


def reference_message(delays, history, graph):
    """The plain-autograd delayed message (no delay gradient): autograd keeps the [B, E, D] index each step."""
    lag = torch.round(delays.detach()).long()[:, graph.rel, :]  # [B, E, D]
    stacked = torch.stack(history)  # [L, B, N, D]
    time_index = len(history) - 1 - lag
    valid = time_index >= 0
    batch = torch.arange(lag.shape[0], device=lag.device).view(-1, 1, 1)
    channel = torch.arange(lag.shape[2], device=lag.device).view(1, 1, -1)
    gathered = stacked[time_index.clamp(min=0), batch, graph.src.view(1, -1, 1), channel] * valid
    return torch.zeros_like(history[0]).index_add(1, graph.dst, gathered)


def measure(implementation: str, batch: int, scale: float, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    entities = max(int(FB15K237["entities"] * scale), 64)
    facts_count = max(int(FB15K237["facts"] * scale), 256)
    relations = FB15K237["relations"]
    facts = torch.stack(
        [
            torch.randint(0, entities, (facts_count,)),
            torch.randint(0, relations, (facts_count,)),
            torch.randint(0, entities, (facts_count,)),
        ],
        dim=1,
    )
    cfg = Config(time_steps=steps, batch_size=batch)
    model = build_model(relations, cfg).to(device)
    if implementation == "reference":
        import components.grsnn.model as model_module

        model_module.DelayPlan = lambda *args: None  # the reference builds no plan
        model_module.delayed_message = lambda delays, history, plan, traces=None: reference_message(
            delays, history, graph
        )
    known = KnownAnswers(facts, entities, relations)
    rows = facts[:batch]
    kept = remove_easy_edges(facts, rows, entities, cfg.remove_one_hop)
    graph = Graph.from_triples(kept, entities, relations)
    graph = Graph(graph.src.to(device), graph.dst.to(device), graph.rel.to(device), entities, graph.num_relations)
    sources, queries, candidates = training_candidates(
        rows, known, relations, cfg.num_negative, torch.Generator().manual_seed(0)
    )
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    logits, _ = model(graph, sources.to(device), queries.to(device), candidates.to(device))
    self_adversarial_loss(logits, cfg.adversarial_temperature).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"edges": int(graph.src.numel()), "peak_bytes": peak, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of FB15k-237's entities and facts")
    parser.add_argument("--steps", type=int, default=10, help="T")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "implementation,batch": one measurement, as JSON
    args = parser.parse_args()
    if args.one:
        implementation, batch = args.one.split(",")
        torch.set_num_threads(max(torch.get_num_threads(), 1))
        print(json.dumps(measure(implementation, int(batch), args.scale, args.steps, args.device)))
        return
    print(f"device {args.device}, scale {args.scale} of FB15k-237, D = 32, T = {args.steps}, K = 256")
    print("| B | edges | ours peak | reference peak | estimate T x |E| x B x D x 4 B | ours s | reference s |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch:
        row = {}
        for implementation in ("ours", "reference"):
            command = [sys.executable, __file__, "--one", f"{implementation},{batch}", "--scale", str(args.scale)]
            command += ["--steps", str(args.steps), "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True)
            row[implementation] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-200:]}
        ours, reference = row["ours"], row["reference"]
        if "error" in ours:
            print(f"| {batch} | ours failed: {ours['error']} |")
            continue
        estimate = args.steps * ours["edges"] * batch * 32 * 4
        reference_peak = "failed" if "error" in reference else f"{reference['peak_bytes'] / 2**30:.2f} GiB"
        reference_time = "-" if "error" in reference else f"{reference['seconds']:.1f}"
        print(
            f"| {batch} | {ours['edges']} | {ours['peak_bytes'] / 2**30:.2f} GiB | {reference_peak} | "
            f"{estimate / 2**30:.2f} GiB | {ours['seconds']:.1f} | {reference_time} |"
        )


if __name__ == "__main__":
    main()
