"""DIGIC (arXiv 2402.18910): find the expert action's direct causes by causal discovery on demonstrations of
one domain, then behaviour-clone on those features only; compared with BC on every feature (BC-all), on the
Markov blanket (BC-MB) and on the true parents (BC-oracle), in the training domain and in a shifted one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.core.contract import RunContext
from components.digic import control, discovery, policy, scm
from components.digic.config import Config


def discover(cfg: Config, features: np.ndarray, action: np.ndarray, names: Sequence[str], before: Sequence[str]):
    """DIGIC's selection with the configured backend, and the BC-MB baseline's (nodewise LassoCV)."""
    blanket = discovery.run_markov_blanket(features, action, names)
    if cfg.backend == "mb":
        return blanket, blanket
    chosen = discovery.run_pc(
        features,
        action,
        names,
        alpha=cfg.alpha,
        ci_test=cfg.ci_test,
        depth=cfg.depth,
        keep_undirected=cfg.keep_undirected,
        before_action=before if cfg.tiers else (),
    )
    return chosen, blanket


def selection_metrics(selection: discovery.Selection, truth: Sequence[int]) -> dict[str, float]:
    found = discovery.quality(selection.selected, truth)
    return {
        "cd/n_selected": float(len(selection.selected)),
        "cd/n_undirected": float(len(selection.undirected)),
        "cd/n_children": float(len(selection.children)),
        "cd/precision": found["precision"],
        "cd/recall": found["recall"],
        "cd/exact": found["exact"],
    }


def write_selection(run_dir: Path, selection: discovery.Selection, cfg: Config, n_rows: int, seed: int) -> None:
    """selected_features.json (the spec's §5 layout) and the CPDAG as npz; the BC stage reads "selected"."""
    record = {
        "features": list(selection.features),
        "parents": selection.names(selection.parents),
        "undirected": selection.names(selection.undirected),
        "children": selection.names(selection.children),
        "selected": selection.names(selection.selected),
        "backend": cfg.backend,
        "ci_test": cfg.ci_test,
        "alpha": cfg.alpha,
        "keep_undirected": cfg.keep_undirected,
        "n_rows": n_rows,
        "seed": seed,
        "seconds": round(selection.tests.get("seconds", 0.0), 4),
    }
    (run_dir / "selected_features.json").write_text(json.dumps(record, indent=1) + "\n")
    if selection.graph is not None:
        np.savez(run_dir / "cpdag.npz", graph=selection.graph, nodes=np.array([*selection.features, "A"]))


def fit_policy(
    cfg: Config, features: np.ndarray, action: np.ndarray, columns: Sequence[int], discrete: bool, seed: int
):
    return policy.fit(
        features,
        action,
        columns,
        kind=cfg.policy,
        hidden=cfg.hidden,
        steps=cfg.steps,
        lr=cfg.lr,
        discrete=discrete,
        seed=seed,
    )


def run_scm(cfg: Config, ctx: RunContext) -> dict[str, float]:
    tables = scm.domains(cfg.scm.n_train, cfg.scm.n_test, cfg.scm.beta_train, cfg.scm.beta_shift, ctx.seed)
    features, action = tables["train"]
    truth = [scm.FEATURES.index(name) for name in scm.PARENTS]
    chosen, blanket = discover(cfg, features, action, scm.FEATURES, ())
    metrics = selection_metrics(chosen, truth)
    if chosen.graph is not None:
        metrics["cd/shd"] = float(discovery.structural_hamming(chosen.graph, scm.adjacency()))
    feature_sets = {"bc": chosen.selected, "all": range(len(scm.FEATURES)), "mb": blanket.selected, "oracle": truth}
    trained_on: dict[tuple[int, ...], policy.Policy] = {}  # same columns and seed: the same policy, fitted once
    for label, columns in feature_sets.items():
        key = tuple(sorted(columns))
        trained = trained_on.get(key) or fit_policy(cfg, features, action, key, False, ctx.seed)
        trained_on[key] = trained
        metrics[f"{label}/mse_train_domain"] = policy.mse(trained, *tables["test_train_domain"])
        metrics[f"{label}/mse_shift_domain"] = policy.mse(trained, *tables["test_shift_domain"])
    metrics["bc/ratio_shift_vs_all"] = metrics["bc/mse_shift_domain"] / metrics["all/mse_shift_domain"]
    metrics["mb/ratio_shift_vs_all"] = metrics["mb/mse_shift_domain"] / metrics["all/mse_shift_domain"]
    if ctx.is_main:
        write_selection(ctx.run_dir, chosen, cfg, len(action), ctx.seed)
        truth_record = {
            "features": list(scm.FEATURES),
            "parents": list(scm.PARENTS),
            "adjacency": scm.adjacency().tolist(),
            "beta": {"train": cfg.scm.beta_train, "shift": cfg.scm.beta_shift},
        }
        (ctx.run_dir / "scm_truth.json").write_text(json.dumps(truth_record) + "\n")
    ctx.log(metrics, step=0)
    return metrics


def run_cartpole(cfg: Config, ctx: RunContext) -> dict[str, float]:
    task = cfg.cartpole
    env = control.make_env()
    gain = control.lqr_gain(env)
    domains = {
        "train_domain": control.Domain(gain, task.beta_train, task.expert_noise, task.cue_noise),
        "shift_domain": control.Domain(gain, task.beta_shift, task.expert_noise, task.cue_noise),
    }
    features, action, expert_returns = control.demonstrations(
        env, domains["train_domain"], task.demo_episodes, ctx.seed, 0
    )
    held_out = {
        name: control.demonstrations(env, domain, task.test_episodes, ctx.seed, 1 + k)[:2]
        for k, (name, domain) in enumerate(domains.items())
    }
    truth = list(range(len(control.STATE)))  # the expert's command -K s uses every state dim
    rows = slice(None, None, task.stride)
    chosen, blanket = discover(cfg, features[rows], action[rows].astype(np.float64), control.FEATURES, control.STATE)
    metrics = selection_metrics(chosen, truth)
    metrics["expert/return_demos"] = float(np.mean(expert_returns))
    for k, (name, domain) in enumerate(domains.items()):  # the noisy demonstrator itself (act=None)
        metrics[f"expert/return_{name}"] = control.mean_return(env, domain, None, task.eval_episodes, ctx.seed, 10 + k)
    feature_sets = {"bc": chosen.selected, "all": range(len(control.FEATURES)), "mb": blanket.selected, "oracle": truth}
    trained_on: dict[tuple[int, ...], policy.Policy] = {}  # same columns and seed: the same policy, fitted once
    for label, columns in feature_sets.items():
        key = tuple(sorted(columns))
        trained = trained_on.get(key) or fit_policy(cfg, features, action, key, True, ctx.seed)
        trained_on[key] = trained
        for k, (name, domain) in enumerate(domains.items()):
            metrics[f"{label}/acc_{name}"] = policy.accuracy(trained, *held_out[name])
            metrics[f"{label}/return_{name}"] = control.mean_return(
                env, domain, lambda row, p=trained: int(p.predict(row[None])[0]), task.eval_episodes, ctx.seed, 20 + k
            )
    env.close()
    if ctx.is_main:
        write_selection(ctx.run_dir, chosen, cfg, len(action[rows]), ctx.seed)
    ctx.log(metrics, step=0)
    return metrics


class DIGIC:
    name = "digic"
    Config = Config
    presets = {
        "test": {"task": "scm", "hidden": 16, "steps": 30, "scm": {"n_train": 1000, "n_test": 500}},  # plumbing
        "smoke": {"task": "scm", "hidden": 64, "steps": 400},  # digic.md §6: n 4000, MLP 2 x 64, 400 Adam steps
        "paper": {},  # the Config defaults: CartPole-v1, 50 expert episodes, 2 x 256 policies
    }
    datasets = ()  # the tables are generated from the seed (the SCM) or by the expert in the environment

    def datasets_for(self, cfg: Config) -> Sequence[str]:
        return ()

    def run(self, cfg: Config, ctx: RunContext) -> dict[str, float]:
        if cfg.task == "scm":
            return run_scm(cfg, ctx)
        return run_cartpole(cfg, ctx)

    def random_step(self, cfg: Config) -> float:
        torch.manual_seed(0)
        inputs = len(scm.FEATURES) if cfg.task == "scm" else len(control.FEATURES)
        outputs = 1 if cfg.task == "scm" else 2
        model = policy.build_policy(inputs, cfg.hidden, outputs)
        out = model(torch.randn(8, inputs))
        if cfg.task == "scm":
            loss = F.mse_loss(out[:, 0], torch.randn(8))
        else:
            loss = F.cross_entropy(out, torch.randint(0, 2, (8,)))
        loss.backward()
        torch.optim.Adam(model.parameters(), lr=cfg.lr).step()
        return loss.item()


component = DIGIC()
