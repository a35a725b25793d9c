"""The learned estimator of hypergraph.md §3.2 (Config C of §6): a small masked-modeling (MM) encoder trained on
the corpus with a random number of masked positions (1..k, so the all-masked marginal is learned too), and
the chain-rule read-out of the hyperedge weights from its conditionals."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from components.hypergraph.estimators import Recovered, set_keys


class MaskedModel(torch.nn.Module):
    """A masked model over k positions: token (+[MASK]) embeddings of every position, concatenated, through a
    ReLU MLP that predicts every position's token (the spec's "embedding scorer"; a Transformer encoder is the
    full-scale choice, README)."""

    def __init__(self, tokens: int, length: int, width: int, hidden: int):
        super().__init__()
        self.mask_id, self.length, self.tokens = tokens, length, tokens  # the extra embedding row is [MASK]
        self.embed = torch.nn.Embedding(tokens + 1, width)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(length * width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, length * tokens)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, k) token ids -> (B, k, n) logits of each position's token."""
        return self.mlp(self.embed(tokens).flatten(1)).view(len(tokens), self.length, self.tokens)


def random_masks(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """J: a uniformly random number of masked positions in 1..k, at uniformly random places (§8: all-masked
    included, or the chain rule's first factor is undefined)."""
    count = torch.randint(1, length + 1, (batch, 1), generator=generator)
    ranks = torch.rand(batch, length, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < count


def masked_loss(model: MaskedModel, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """-E_J sum_{i in J} log p(x_i | x_{not J}), averaged over the batch (§3.2's L(theta))."""
    masked = random_masks(len(rows), rows.shape[1], generator).to(rows.device)
    logits = model(torch.where(masked, model.mask_id, rows))
    per_position = F.cross_entropy(logits.transpose(1, 2), rows, reduction="none")
    return (per_position * masked).sum(dim=1).mean()


def train(
    corpus: np.ndarray,
    tokens: int,
    width: int,
    hidden: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    device: str = "cpu",
) -> MaskedModel:
    """Adam on minibatches drawn with replacement from the corpus (every row has the same length k)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(corpus).to(device)
    model = build_model(tokens, corpus.shape[1], width, hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    for _ in range(steps):
        rows = data[torch.randint(0, len(data), (batch,), generator=generator).to(device)]
        loss = masked_loss(model, rows, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()  # cosine to 0: the minibatch noise would otherwise floor the weight error
    return model


def build_model(tokens: int, length: int, width: int, hidden: int) -> MaskedModel:
    return MaskedModel(tokens, length, width, hidden)


@torch.no_grad()
def read_out(model: MaskedModel, tokens: int, length: int, device: str = "cpu") -> Recovered:
    """w_hat(s) = sum over the k! orders of s of prod_t p(x_t = s_pi(t) | x_<t, positions >= t masked).

    Every ordered k-tuple's probability is built prefix by prefix (n^t prefixes at step t); tuples with a
    repeated token are not sets and are dropped (their mass is the model's error). Summing over orders makes
    w_hat the probability that a sample is the set s, as for the counts."""
    model.eval()
    log_joint = torch.zeros(1, device=device)
    prefixes = torch.zeros(1, 0, dtype=torch.long, device=device)
    for t in range(length):
        masked = torch.full((len(prefixes), length - t), model.mask_id, dtype=torch.long, device=device)
        log_p = F.log_softmax(model(torch.cat([prefixes, masked], dim=1))[:, t], dim=-1)
        log_joint = (log_joint[:, None] + log_p).reshape(-1)
        prefixes = torch.cat(
            [
                prefixes.repeat_interleave(tokens, dim=0),
                torch.arange(tokens, device=device).repeat(len(prefixes))[:, None],
            ],
            dim=1,
        )
    model.train()
    rows = prefixes.cpu().numpy()
    joint = log_joint.exp().cpu().numpy()
    ordered = np.sort(rows, axis=1)
    distinct = np.all(ordered[:, 1:] != ordered[:, :-1], axis=1)
    keys = set_keys(rows[distinct], tokens)
    unique, inverse = np.unique(keys, return_inverse=True)
    return Recovered(unique, np.bincount(inverse, weights=joint[distinct], minlength=len(unique)))


def restricted(recovered: Recovered, candidates: np.ndarray) -> Recovered:
    """The read-out restricted to candidate sets (those seen in the corpus) and renormalised (§8)."""
    keep = np.isin(recovered.keys, candidates)
    weights = recovered.weights[keep]
    return Recovered(recovered.keys[keep], weights / max(weights.sum(), 1e-300))
