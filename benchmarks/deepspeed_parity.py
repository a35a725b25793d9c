"""DeepSpeed ZeRO against DDP, step by step, with nothing of paperzoo in between.

    python benchmarks/deepspeed_parity.py [--steps 200] [--stages 0 1 2 3] [--optimizer sgd]
                                          [--clip MAX_NORM | --unset-clipping]

Two CPU processes (gloo, one thread each) train the same 64-32-32-10 ReLU MLP on scikit-learn's 8x8
digits from the same initial weights: once under DistributedDataParallel, then once per ZeRO stage
under deepspeed.initialize, all in one process group. Each rank feeds its half of every global batch of 32.
Printed per stage: the first step whose loss differs from DDP's, the largest per-step loss difference, the
largest weight difference after the last step, and the seconds deepspeed.initialize and the steps took (the
first ZeRO-1..3 initialize includes DeepSpeed's one-time import of torch._inductor, ~3 s, for its Muon check).
scikit-learn is read for the digits only.

The DeepSpeed config sets "gradient_clipping": 0.0, as paperzoo's strategy does when a component does not
clip. --unset-clipping leaves the key out, so DeepSpeed's own default applies: 1.0 in 0.19 (clip the
global gradient norm to 1), and the curves leave DDP's from the first step where DDP's norm exceeds 1.
--clip clips both at MAX_NORM (DDP with torch's clip_grad_norm_, DeepSpeed in its engine): the two sum the
squared gradients in different float32 orders, so expect last-bit differences, not bit-identical curves.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

GLOBAL_BATCH, WIDTH, CLASSES = 32, 32, 10


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 digits (bundled with it, no download) on [-1, 1], in one seeded order."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).mul(255 / 16).round().div(127.5).sub(1.0).flatten(1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order], torch.tensor(data.target)[order]


def build(optimizer_name: str) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, CLASSES)
    )
    if optimizer_name == "sgd":  # uba's digits check: momentum 0.9, lr 0.1, coupled L2 5e-4
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    # a decay that does not depend on --steps, so a shorter run is the first steps of a longer one
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + step / 100))
    return model, optimizer, scheduler


def train(engine, optimizer, scheduler, steps: int, data, rank: int, world_size: int, deepspeed: bool, clip=0.0):
    """Per-step global-batch losses and, under DDP, the global gradient norms before any clip (None under
    DeepSpeed, whose engine clips by its config)."""
    images, labels = data
    share = GLOBAL_BATCH // world_size
    losses, norms = [], []
    for step in range(steps):
        start = (step * GLOBAL_BATCH) % (len(labels) - GLOBAL_BATCH) + rank * share
        loss = F.cross_entropy(engine(images[start : start + share]), labels[start : start + share])
        if deepspeed:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            if clip:
                norms.append(torch.nn.utils.clip_grad_norm_(list(engine.parameters()), clip))
            else:
                norms.append(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in engine.parameters()])))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(total / world_size)
    return torch.stack(losses), (torch.stack(norms) if norms else None)


def full_weights(engine, stage: int | None) -> torch.Tensor:
    module = engine.module
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters())):
            return torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def worker(rank: int, world_size: int, port: int, args: argparse.Namespace) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)  # torch's renames of the collectives DeepSpeed calls
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    data = digits()

    model, optimizer, scheduler = build(args.optimizer)
    ddp = nn.parallel.DistributedDataParallel(model)
    started = time.perf_counter()
    reference, norms = train(ddp, optimizer, scheduler, args.steps, data, rank, world_size, False, args.clip)
    reference_weights = full_weights(ddp, None)
    reference_seconds = time.perf_counter() - started

    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # plain gloo: no JIT-built shared-memory op
    deepspeed.utils.logger.setLevel(logging.WARNING)
    deepspeed.init_distributed(dist_backend="gloo")
    rows = []
    for stage in args.stages:
        started = time.perf_counter()
        model, optimizer, scheduler = build(args.optimizer)
        config = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "train_batch_size": world_size,
            "zero_optimization": {"stage": stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
        }
        if not args.unset_clipping:
            config["gradient_clipping"] = args.clip  # 0.0: DeepSpeed's "off"; left out, its default is 1.0
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
        initialised = time.perf_counter()
        losses, _ = train(engine, None, None, args.steps, data, rank, world_size, deepspeed=True)
        differs = (losses != reference).nonzero()
        weights = full_weights(engine, stage)
        rows.append(
            (
                stage,
                int(differs[0]) if len(differs) else None,
                float((losses - reference).abs().max()),
                float((weights - reference_weights).abs().max()),
                initialised - started,
                time.perf_counter() - initialised,
            )
        )
    if rank == 0:
        clipping = f"{args.clip:g} (both)" if args.clip else "0.0 (off)"
        clipping = "unset (DeepSpeed's default; DDP: none)" if args.unset_clipping else clipping
        print(f"{args.optimizer}, {args.steps} steps, world size {world_size}, gradient_clipping {clipping}")
        above = (norms > 1.0).nonzero()
        first_above = int(above[0]) if len(above) else "none"
        print(f"DDP: {reference_seconds:.2f} s; its global gradient norm first exceeds 1.0 at step {first_above}")
        print(
            "| ZeRO stage | first step differing | max per-step loss diff | max weight diff at the end | init s | train s |"
        )
        print("|---|---|---|---|---|---|")
        for stage, first, loss_diff, weight_diff, init_s, train_s in rows:
            first = "none" if first is None else first
            print(f"| {stage} | {first} | {loss_diff:.3g} | {weight_diff:.3g} | {init_s:.2f} | {train_s:.2f} |")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    parser.add_argument("--world-size", type=int, default=2)
    clipping = parser.add_mutually_exclusive_group()
    clipping.add_argument("--clip", type=float, default=0.0, help="max global gradient norm for both (0: none)")
    clipping.add_argument("--unset-clipping", action="store_true", help="leave gradient_clipping to DeepSpeed")
    args = parser.parse_args()
    mp.spawn(worker, args=(args.world_size, free_port(), args), nprocs=args.world_size)


if __name__ == "__main__":
    main()
