"""HLOP (arXiv 2402.11984): continual learning of SNNs with Hebbian-learned orthogonal projection. One run trains
the task sequence once per method (HLOP, then its paired controls: plain sequential fine-tuning and the SVD
subspace) from the same seed, initial weights and batches, and reports each method's task-accuracy matrix, ACC
and BWT (hlop.md §3.8)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from components.core.contract import RunContext
from components.core.errors import ConfigError, DataError, Preempted
from components.core.files import atomic_write_json
from components.core.shards import ImageShards, check_dataset, prepare_command
from components.core.training import raise_if_diverged
from components.hlop import model as model_module
from components.hlop.config import Config
from components.hlop.subspace import Subspace, residual_basis


@dataclass
class Task:
    train: ImageShards
    evaluation: ImageShards
    classes: np.ndarray  # the labels this task uses; logits outside them are masked (a multi-head by rows)


def load_tasks(cfg: Config, ctx: RunContext) -> tuple[list[Task], int, int]:
    """The first cfg.tasks tasks of a continual dataset's manifest; (tasks, input width, classes)."""
    manifest = check_dataset(ctx.data_dir, cfg.dataset)
    listed = manifest.get("tasks")
    if not listed:
        raise DataError(
            f"dataset '{cfg.dataset}' has no task list in its manifest: prepare a continual dataset "
            f"(source permuted-tasks or split-classes) with `{prepare_command(cfg.dataset)}`"
        )
    if len(listed) < cfg.tasks:
        raise ConfigError(f"tasks={cfg.tasks} but dataset '{cfg.dataset}' holds {len(listed)} tasks")
    tasks = []
    for entry in listed[: cfg.tasks]:
        splits = entry["splits"]
        if cfg.eval_split not in splits:
            raise ConfigError(f"eval_split={cfg.eval_split}: task {entry['task']} of '{cfg.dataset}' has no such split")
        tasks.append(
            Task(
                ImageShards(ctx.data_dir, cfg.dataset, splits["train"]),
                ImageShards(ctx.data_dir, cfg.dataset, splits[cfg.eval_split]),
                np.asarray(entry["classes"], dtype=np.int64),
            )
        )
    inputs = int(np.prod(manifest["shape"]))
    return tasks, inputs, len(manifest["classes"])


def check_sizes(cfg: Config, dims: Sequence[int]) -> None:
    """The subspaces of every task must fit each layer's input width (else x~ = 0 and nothing learns, §8)."""
    for layer, dim in enumerate(dims):
        total = sum(cfg.subspace_sizes(task)[layer] for task in range(cfg.tasks))
        if total >= dim:
            raise ConfigError(
                f"k0/k_inc (x k_scale {cfg.k_scale}): layer {layer}'s subspaces reach {total} of its {dim} inputs "
                f"over {cfg.tasks} tasks; nothing would be left to learn"
            )


def to_input(images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    return torch.from_numpy(images).to(device).float() / 255.0


def masked(logits: torch.Tensor, classes: np.ndarray) -> torch.Tensor:
    """Only the task's classes compete (the per-task heads of split datasets; every class for permuted ones)."""
    if len(classes) == logits.shape[1]:
        return logits
    keep = torch.full((logits.shape[1],), -math.inf, device=logits.device)
    keep[torch.from_numpy(classes).to(logits.device)] = 0.0
    return logits + keep


@torch.no_grad()
def accuracy(model: model_module.SpikingMLP, task: Task, cfg: Config, device: str = "cpu") -> float:
    images, labels = task.evaluation.arrays()
    correct = 0
    for start in range(0, len(labels), cfg.eval_batch_size):
        logits, _ = model(to_input(images[start : start + cfg.eval_batch_size], device))
        predicted = masked(logits, task.classes).argmax(dim=1).cpu()
        correct += int((predicted == torch.from_numpy(labels[start : start + cfg.eval_batch_size])).sum())
    return correct / max(1, len(labels))


def summary(matrix: np.ndarray) -> dict[str, float]:
    """ACC = mean_j a[K-1, j]; BWT = mean_{j < K-1} (a[K-1, j] - a[j, j]) (0 for a single task)."""
    last = len(matrix) - 1
    acc = float(np.mean(matrix[last, : last + 1]))
    bwt = float(np.mean([matrix[last, j] - matrix[j, j] for j in range(last)])) if last else 0.0
    return {"ACC": acc, "BWT": bwt}


def train_method(method: str, cfg: Config, ctx: RunContext, tasks: list[Task], inputs: int, classes: int) -> dict:
    torch.manual_seed(ctx.seed)  # every method starts from the same weights
    model = model_module.build_model(cfg, inputs, classes).to(ctx.device)
    subspaces = [Subspace(dim, device=ctx.device) for dim in model.input_dims]
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    diagnostics: dict[str, float] = {}
    step = 0
    for index, task in enumerate(tasks):
        sizes = cfg.subspace_sizes(index)
        if method == "hlop":
            generator = torch.Generator().manual_seed(ctx.seed * 1000 + index)
            for subspace, size in zip(subspaces, sizes):
                subspace.add(size, generator)
        # project with the merged old subspaces (none on task 0, none ever for the baseline)
        model.bases = [s.old_basis() if method != "baseline" and s.old else None for s in subspaces]
        optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.dim() > 1],  # after task 0 only weights train (no biases here)
            lr=cfg.lr if index == 0 else cfg.lr_later,
            momentum=cfg.momentum,
        )
        per_epoch = max(1, len(task.train) // cfg.batch_size)
        stream = task.train.batches(cfg.batch_size, seed=ctx.seed * 1000 + index)  # same batches for every method
        for _ in ctx.progress(range(cfg.epochs * per_epoch), desc=f"hlop {method} task {index}"):
            images, labels = next(stream)
            logits, activities = model(to_input(images, ctx.device))
            loss = F.cross_entropy(masked(logits, task.classes), torch.from_numpy(labels).to(ctx.device))
            raise_if_diverged(loss.item(), step=step, limit=cfg.divergence_limit, what=f"{method} loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if method == "hlop":  # Hebbian updates of the new lateral neurons, on every time step's activity
                for subspace, activity, lr in zip(subspaces, activities, cfg.hlop_lr):
                    subspace.update(
                        activity,
                        lr,
                        cfg.hlop_iters,
                        cfg.hlop_momentum,
                        cfg.hlop_clamp,
                        cfg.lateral_steps if cfg.spiking_lateral else None,
                        cfg.lateral_scale,
                    )
            ctx.log({f"{method}/train_loss": loss.item(), "task": index}, step=step)
            step += 1
            if ctx.should_stop():
                raise Preempted(f"stopped in task {index} of {method}; a continual run restarts from its first task")
        if method == "svd":  # GPM-style control: the residual's top singular vectors at HLOP's sizes
            images, _ = task.train.arrays()
            with torch.no_grad():
                _, activities = model(to_input(images[: cfg.svd_samples], ctx.device))
            for subspace, activity, size in zip(subspaces, activities, sizes):
                subspace.weight = torch.cat(
                    [subspace.old_basis(), residual_basis(activity, subspace.old_basis(), size)]
                )
                subspace.momentum = torch.zeros_like(subspace.weight)
        for subspace in subspaces:
            subspace.merge()
        for j, other in enumerate(tasks):
            matrix[index, j] = accuracy(model, other, cfg, ctx.device)
        ctx.log({f"{method}/acc_task_{j}": matrix[index, j] for j in range(index + 1)}, step=step)
        if ctx.is_main:
            weights = {f"weight.{i}": layer.weight.detach().cpu().contiguous() for i, layer in enumerate(model.layers)}
            weights |= {f"H.{i}": s.weight.cpu().contiguous() for i, s in enumerate(subspaces)}
            save_file(weights, str(ctx.run_dir / f"{method}-task{index}.safetensors"))
    if method != "baseline":
        for layer, subspace in enumerate(subspaces):
            diagnostics[f"{method}/orth_err_l{layer}"] = subspace.orthonormality_error()
            diagnostics[f"{method}/rank_l{layer}"] = float(subspace.rank())
    return {"matrix": matrix, "diagnostics": diagnostics}


def run(cfg: Config, ctx: RunContext) -> dict[str, float]:
    tasks, inputs, classes = load_tasks(cfg, ctx)
    check_sizes(cfg, [inputs, *cfg.hidden])
    final: dict[str, float] = {}
    matrices = {}
    for method in cfg.methods:
        result = train_method(method, cfg, ctx, tasks, inputs, classes)
        matrix = result["matrix"]
        matrices[method] = [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()]
        scores = summary(matrix)
        final |= {f"{method}/{name}": value for name, value in scores.items()}
        final |= {f"{method}/acc_task_{j}_final": float(matrix[-1, j]) for j in range(len(tasks))}
        final |= result["diagnostics"]
    first = cfg.methods[0]
    final |= {"ACC": final[f"{first}/ACC"], "BWT": final[f"{first}/BWT"]}
    if "hlop" in cfg.methods and "baseline" in cfg.methods:
        final["BWT_gain"] = final["hlop/BWT"] - final["baseline/BWT"]  # the paired comparison, same seed
        final["ACC_gain"] = final["hlop/ACC"] - final["baseline/ACC"]
    if ctx.is_main:
        atomic_write_json(ctx.run_dir / "acc_matrix.json", matrices)
    ctx.log(final, step=None)
    return final


class HLOP:
    name = "hlop"
    Config = Config
    presets = {
        # seconds: two permuted-digit tasks, one epoch, a narrow net (plumbing and determinism)
        "test": {
            "dataset": "continual/permuted_digits",
            "tasks": 2,
            "hidden": (32, 32),
            "k0": (8, 8, 8),
            "k_inc": (4, 4, 4),
            "hlop_lr": (0.01, 0.01, 0.01),
            "steps": 2,
            "epochs": 1,
            "input_gain": 3.0,
        },
        # hlop.md §6: identity + 2 permutations of the 8x8 digits, MLP 64-100-100-10, T = 4, input x3,
        # SGD momentum 0.9 (lr 0.1 then 0.05), 3 epochs per task, k0 (16, 40, 40), k_inc (12, 20, 20), eta 0.01
        "smoke": {
            "dataset": "continual/permuted_digits",
            "tasks": 3,
            "hidden": (100, 100),
            "k0": (16, 40, 40),
            "k_inc": (12, 20, 20),
            "k_decay": 0,
            "hlop_lr": (0.01, 0.01, 0.01),
            "steps": 4,
            "input_gain": 3.0,
            "epochs": 3,
            "lr": 0.1,
            "lr_later": 0.05,
            "momentum": 0.9,
            "eval_batch_size": 500,
        },
        "paper": {},  # the Config defaults: PMNIST, 10 tasks, 784-800-800-10, BPTT T = 6
    }
    datasets = ("continual/permuted_digits", "continual/pmnist", "continual/cifar100")

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return (cfg.dataset,)

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        return run(cfg, ctx)

    def random_step(self, cfg: Config) -> float:
        """One projected SGD step and one Hebbian update of the paper-scale net on random 28x28 images."""
        torch.manual_seed(0)
        model = model_module.build_model(cfg, 784, 10)
        subspaces = [Subspace(dim) for dim in model.input_dims]
        for subspace, size in zip(subspaces, cfg.subspace_sizes(0)):
            subspace.add(size)
            subspace.merge()
        model.bases = [s.old_basis() for s in subspaces]
        logits, activities = model(torch.rand(4, 28, 28))
        loss = F.cross_entropy(logits, torch.randint(0, 10, (4,)))
        loss.backward()
        torch.optim.SGD(model.parameters(), lr=cfg.lr).step()
        for subspace, size, activity, lr in zip(subspaces, cfg.subspace_sizes(1), activities, cfg.hlop_lr):
            subspace.add(size)
            subspace.update(activity, lr, cfg.hlop_iters, cfg.hlop_momentum, cfg.hlop_clamp)
        return loss.item()


component = HLOP()
