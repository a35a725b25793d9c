"""The answerer interface (logic_consistency.md §3.5): an answerer maps every question of a world to p = P(yes).
TaxoWorld questions come three ways per atom (plain, negated, paraphrase), so `taxo` returns [N, 3]; RuleWorld
queries return [Q]. The rule reasoner reads only the stated facts and the constraint set; the language model
answerer is components/core/answerer.py's CausalLMAnswerer (shared with NUPA), scored by option log-probs."""

from __future__ import annotations

import math

import numpy as np

from components.logic_consistency.worlds import FORMS, RuleWorld, TaxoWorld, chain, question_text


def asked(gold: np.ndarray) -> np.ndarray:
    """The correct yes/no of each form: the negated question's answer is the opposite of the atom's."""
    return np.stack([gold, ~gold, gold], axis=1)


class RuleReasoner:
    """Forward chaining from the knowledge base's stated facts through the implications and transitive triples."""

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        belief = world.facts.copy()
        a, b, negated = world.implications.T
        positive = negated == 0
        i, j, k = world.triples.T
        while True:
            before = int(belief.sum())
            belief[b[positive & belief[a]]] = True
            belief[k[belief[i] & belief[j]]] = True
            if int(belief.sum()) == before:  # closed world: what is not derived is false
                return asked(belief).astype(float)

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        derived = [chain(theory) for theory in world.theories]
        return np.array([float((p, e) in derived[t]) for t, p, e in world.queries[:, :3]])


class FactLookup:
    """The shortcut of checks 1 and 5: yes iff the statement is a stated fact."""

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        return asked(world.facts).astype(float)

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        return np.array([float((p, e) in world.theories[t].facts) for t, p, e in world.queries[:, :3]])


class AlwaysTrue:
    """Check 3's degenerate answerer: yes to everything, its negation included."""

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        return np.ones((len(world.atoms), len(FORMS)))

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        return np.ones(len(world.queries))


class NoisyOracle:
    """Check 2: the gold answer to every question, each flipped independently with probability eps."""

    def __init__(self, eps: float):
        self.eps = eps

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        truth = asked(world.gold)
        return (truth ^ (rng.random(truth.shape) < self.eps)).astype(float)

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        truth = world.queries[:, 3] == 1
        return (truth ^ (rng.random(truth.shape) < self.eps)).astype(float)


class NoisyConfidence:
    """Check 4: a calibrated-ish confidence, logit = 2 s(g) + sigma xi with s(T) = +1, s(F) = -1, xi ~ N(0, 1)."""

    def __init__(self, sigma: float):
        self.sigma = sigma

    def _p(self, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        logit = 2.0 * np.where(truth, 1.0, -1.0) + self.sigma * rng.standard_normal(truth.shape)
        return 1.0 / (1.0 + np.exp(-logit))

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        return self._p(asked(world.gold), rng)

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        return self._p(world.queries[:, 3] == 1, rng)


class LanguageModel:
    """A local causal LM (core/answerer.py). logprob: p(yes) = softmax over the two options' log-probabilities
    (§3.3, normalised over the option set); greedy: the first word of the greedy continuation, yes -> 1, else 0."""

    OPTIONS = (" yes", " no")

    def __init__(self, model: str, *, device: str, dtype: str, extraction: str, batch_size: int):
        from components.core.answerer import CausalLMAnswerer

        self.lm = CausalLMAnswerer(model, device=device, dtype=dtype)
        self.extraction, self.batch_size = extraction, batch_size

    def score(self, prompts: list[str]) -> np.ndarray:
        prompts = [f"{text}\nAnswer (yes or no):" for text in prompts]
        if self.extraction == "greedy":
            out = []
            for start in range(0, len(prompts), self.batch_size):
                texts = self.lm.answer(prompts[start : start + self.batch_size], max_new_tokens=3)
                out += [1.0 if (t.strip().lower().split() or [""])[0].startswith("yes") else 0.0 for t in texts]
            return np.array(out)
        p = []
        for text in prompts:
            yes, no = (self.lm.continuation_logprob(text, option) for option in self.OPTIONS)
            p.append(1.0 / (1.0 + math.exp(no - yes)))
        return np.array(p)

    def taxo(self, world: TaxoWorld, rng: np.random.Generator) -> np.ndarray:
        prompts = [question_text(atom, form) for atom in world.atoms for form in range(len(FORMS))]
        return self.score(prompts).reshape(len(world.atoms), len(FORMS))

    def rule(self, world: RuleWorld, rng: np.random.Generator) -> np.ndarray:
        return self.score([world.prompt(q) for q in range(len(world.queries))])


def build_answerer(cfg, device: str = "cpu"):
    if cfg.answerer == "llm":
        llm = cfg.llm
        return LanguageModel(
            llm.model, device=device, dtype=llm.dtype, extraction=llm.extraction, batch_size=llm.batch_size
        )
    return {
        "reasoner": RuleReasoner,
        "fact_lookup": FactLookup,
        "always_true": AlwaysTrue,
        "noisy_oracle": lambda: NoisyOracle(cfg.noise),
        "noisy_confidence": lambda: NoisyConfidence(cfg.sigma),
    }[cfg.answerer]()
