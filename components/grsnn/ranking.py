"""Training and evaluation bookkeeping of KG completion (grsnn.md §3.1, §3.6, §3.8): tail queries, the easy edges
a training batch must not see, strict negatives, the self-adversarial loss, and filtered ranking."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_tail_queries(triples: torch.Tensor, num_relations: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h, r, t) -> the tail query (h, r, ?) answered by t, then the head query (?, r, t) rewritten as the tail
    query (t, r + |R|, ?) answered by h: sources, queries, answers, each [2n]."""
    h, r, t = triples.long().unbind(1)
    return torch.cat([h, t]), torch.cat([r, r + num_relations]), torch.cat([t, h])


class KnownAnswers:
    """For every (source, query relation) of a set of triples and their inverses, the entities known to answer
    it: the filter of filtered ranking and of strict negatives."""

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        sources, queries, answers = as_tail_queries(triples, num_relations)
        self.num_entities, self.num_queries = num_entities, 2 * num_relations
        keys = sources * self.num_queries + queries
        order = torch.argsort(keys * num_entities + answers)
        self.keys, self.answers = keys[order], answers[order]

    def mask(self, sources: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """[B, N] bool: True where the entity is a known answer of (sources[b], queries[b], ?)."""
        keys = sources.long() * self.num_queries + queries.long()
        start = torch.searchsorted(self.keys, keys, side="left")
        end = torch.searchsorted(self.keys, keys, side="right")
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(len(keys)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        mask = torch.zeros(len(keys), self.num_entities, dtype=torch.bool)
        mask[rows, self.answers[torch.repeat_interleave(start, counts) + offsets]] = True
        return mask


def remove_easy_edges(facts: torch.Tensor, batch: torch.Tensor, num_entities: int, one_hop: bool) -> torch.Tensor:
    """The training facts without the edges that answer the batch's queries directly (before inverses are
    added): with `one_hop` every edge between h and t, either direction, any relation (FB15k-237's setting);
    otherwise the exact triple (h, r, t)."""
    h, r, t = batch.long().unbind(1)
    fh, fr, ft = facts.long().unbind(1)
    if one_hop:
        pairs = torch.cat([h * num_entities + t, t * num_entities + h])
        easy = torch.isin(fh * num_entities + ft, pairs)
    else:
        width = int(max(fr.max().item(), r.max().item())) + 1
        easy = torch.isin((fh * width + fr) * num_entities + ft, (h * width + r) * num_entities + t)
    return facts[~easy]


def training_candidates(
    batch: torch.Tensor,
    known: KnownAnswers,
    num_relations: int,
    num_negative: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tail queries of a training batch with their candidates [B, 1 + K]: the true answer first, then K strict
    negatives (never a known answer). The first B // 2 triples corrupt the tail, the rest the head (as the
    inverse query (t, r + |R|, ?))."""
    h, r, t = batch.long().unbind(1)
    tail = torch.arange(len(batch)) < len(batch) // 2
    sources = torch.where(tail, h, t)
    queries = torch.where(tail, r, r + num_relations)
    answers = torch.where(tail, t, h)
    allowed = ~known.mask(sources, queries)
    allowed[torch.arange(len(batch)), answers] = False
    empty = ~allowed.any(dim=1)
    allowed[empty] = True  # a query every entity answers has no strict negative: fall back to any entity
    negatives = torch.multinomial(allowed.float(), num_negative, replacement=True, generator=generator)
    return sources, queries, torch.cat([answers.unsqueeze(1), negatives], dim=1)


def self_adversarial_loss(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """L = 1/2 [BCE(p, 1) + sum_j w_j BCE(n_j, 0)], w = softmax(n / T_adv) without gradient (uniform 1/K at 0);
    logits [B, 1 + K] with the positive first, averaged over the batch."""
    positive, negative = logits[:, 0], logits[:, 1:]
    with torch.no_grad():
        if temperature > 0:
            weights = torch.softmax(negative / temperature, dim=1)
        else:
            weights = torch.full_like(negative, 1 / negative.shape[1])
    positive_loss = F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive), reduction="none")
    negative_loss = F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative), reduction="none")
    return (0.5 * (positive_loss + (weights * negative_loss).sum(dim=1))).mean()


def filtered_ranks(scores: torch.Tensor, answers: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """rank = 1 + #{candidates c not known-true, c != answer, score_c >= score_answer}: ties count against the
    model (pessimistic). scores [B, N], answers [B], known [B, N] (the filter). Returns [B] int64."""
    true_score = scores.gather(1, answers.unsqueeze(1))
    rivals = (scores >= true_score) & ~known
    rivals[torch.arange(len(answers)), answers] = False
    return 1 + rivals.sum(dim=1)


def rank_metrics(ranks: np.ndarray | torch.Tensor, prefix: str) -> dict[str, float]:
    """MR, MRR and Hits@1/3/10 of a set of ranks."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    metrics = {f"{prefix}/mr": ranks.mean().item(), f"{prefix}/mrr": (1 / ranks).mean().item()}
    for k in (1, 3, 10):
        metrics[f"{prefix}/hits@{k}"] = (ranks <= k).double().mean().item()
    return metrics
