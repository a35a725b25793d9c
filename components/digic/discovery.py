"""DIGIC's causal-discovery step (digic.md §3.2): which features are direct causes of the expert's action.

Backend "pc": PC-stable with a conditional-independence test (Fisher-z by default) on the standardised table
[X | A] (causal-learn's implementation), then the selection rule S = parents ∪ undirected neighbours of A (the
conservative rule: an edge whose orientation is not identified may be a parent); children of A are never used.
Backend "mb": the Markov blanket of A by nodewise LassoCV (neighbourhood selection), which equals Pa(A) only when
A is a sink; it is the baseline BC-MB and the spec's negative control."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ACTION = "A"


@dataclass(frozen=True)
class Selection:
    """What one discovery run found around the action; indices are columns of the feature table."""

    features: tuple[str, ...]
    parents: tuple[int, ...]
    undirected: tuple[int, ...]
    children: tuple[int, ...]
    selected: tuple[int, ...]
    graph: np.ndarray | None = None  # causal-learn's CPDAG encoding over features + (A,), None for "mb"
    tests: dict = field(default_factory=dict)

    def names(self, which: Sequence[int]) -> list[str]:
        return [self.features[j] for j in which]


def standardise(table: np.ndarray) -> np.ndarray:
    """Columns to mean 0, std 1, for the CI test's numerics only (never residualised: that would destroy the
    independence structure, spec §8)."""
    std = table.std(axis=0)
    return (table - table.mean(axis=0)) / np.where(std > 0, std, 1.0)


def edges_at_action(graph: np.ndarray, action: int) -> tuple[list[int], list[int], list[int]]:
    """(parents, undirected, children) of `action` in causal-learn's CPDAG encoding: j -> i is graph[j, i] = -1
    and graph[i, j] = 1; j -- i is -1 / -1; no edge is 0 / 0."""
    parents, undirected, children = [], [], []
    for j in range(graph.shape[0]):
        if j == action:
            continue
        tail_at_j, mark_at_action = graph[j, action], graph[action, j]
        if tail_at_j == -1 and mark_at_action == 1:
            parents.append(j)
        elif tail_at_j == -1 and mark_at_action == -1:
            undirected.append(j)
        elif tail_at_j == 1 and mark_at_action == -1:
            children.append(j)
    return parents, undirected, children


def select(parents: Sequence[int], undirected: Sequence[int], keep_undirected: bool) -> tuple[int, ...]:
    """The features BC trains on: the parents, plus the undirected neighbours when they are kept (the
    conservative rule; dropping them can lose true parents, spec §8)."""
    chosen = set(parents) | (set(undirected) if keep_undirected else set())
    return tuple(sorted(chosen))


def run_pc(
    features: np.ndarray,
    action: np.ndarray,
    names: Sequence[str],
    *,
    alpha: float,
    ci_test: str,
    depth: int,
    keep_undirected: bool,
    before_action: Sequence[str] = (),
) -> Selection:
    """PC-stable on [features | action]. `before_action` names features measured before the action (the
    environment's state): tier knowledge that forbids A -> feature, the spec's optional background knowledge."""
    from causallearn.graph.GraphNode import GraphNode
    from causallearn.search.ConstraintBased.PC import pc
    from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge

    table = standardise(np.column_stack([features, action]))
    knowledge = None
    if before_action:
        knowledge = BackgroundKnowledge()
        for name in before_action:
            knowledge.add_forbidden_by_node(GraphNode(ACTION), GraphNode(name))
    start = time.perf_counter()
    graph = pc(
        table,
        alpha,
        ci_test,
        stable=True,
        show_progress=False,
        node_names=[*names, ACTION],
        max_k=depth if depth >= 0 else None,  # -1: no cap on the conditioning-set size
        background_knowledge=knowledge,
    ).G.graph
    seconds = time.perf_counter() - start
    parents, undirected, children = edges_at_action(graph, len(names))
    return Selection(
        features=tuple(names),
        parents=tuple(parents),
        undirected=tuple(undirected),
        children=tuple(children),
        selected=select(parents, undirected, keep_undirected),
        graph=np.asarray(graph),
        tests={"seconds": seconds},
    )


def run_markov_blanket(features: np.ndarray, action: np.ndarray, names: Sequence[str], *, folds: int = 5) -> Selection:
    """Nodewise Lasso of A on X with lambda by `folds`-fold CV: the support of the precision matrix's A-row,
    i.e. the Markov blanket of A (spec §3.2 backend M)."""
    from sklearn.linear_model import LassoCV

    table = standardise(np.column_stack([features, action]))
    start = time.perf_counter()
    lasso = LassoCV(cv=folds).fit(table[:, :-1], table[:, -1])
    seconds = time.perf_counter() - start
    support = tuple(int(j) for j in np.flatnonzero(np.abs(lasso.coef_) > 1e-8))
    return Selection(
        features=tuple(names), parents=(), undirected=support, children=(), selected=support, tests={"seconds": seconds}
    )


def quality(selected: Sequence[int], truth: Sequence[int]) -> dict[str, float]:
    """Precision, recall and exact recovery of a selected set against the true parents."""
    chosen, true = set(selected), set(truth)
    hits = len(chosen & true)
    return {
        "precision": hits / len(chosen) if chosen else 0.0,
        "recall": hits / len(true) if true else 1.0,
        "exact": float(chosen == true),
    }


def structural_hamming(cpdag: np.ndarray, dag: np.ndarray) -> int:
    """SHD between an estimated CPDAG (causal-learn encoding) and the true DAG (dag[i, j] = 1 for i -> j): one
    per pair whose edge is missing, extra, or marked differently (an undirected edge counts as a mistake)."""
    size = dag.shape[0]
    distance = 0
    for i in range(size):
        for j in range(i + 1, size):
            truth = (int(dag[i, j]), int(dag[j, i]))
            if cpdag[i, j] == 0 and cpdag[j, i] == 0:
                found = (0, 0)
            elif cpdag[i, j] == -1 and cpdag[j, i] == 1:
                found = (1, 0)
            elif cpdag[i, j] == 1 and cpdag[j, i] == -1:
                found = (0, 1)
            else:
                found = (1, 1)
            distance += found != truth
    return distance
