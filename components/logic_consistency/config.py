"""logic_consistency's Config. Defaults are the spec's §6 TaxoWorld scored by a local LM with the MaxSAT repair
(the harness's full-scale use, logic_consistency.md §3.5 and §7); presets shrink counts or pick a stand-in answerer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AnswererName = Literal["reasoner", "noisy_oracle", "always_true", "fact_lookup", "noisy_confidence", "llm"]


class TaxoConfig(BaseModel):
    """logic_consistency.md §6: a class tree, entities under its leaves, properties attached to classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_classes: int = Field(3, ge=1)  # §6: 3 top classes
    children: int = Field(3, ge=1)  # §6: 3 children per top class (9 middle classes)
    leaf_children: int = Field(2, ge=1)  # §6: 2 leaves per middle class (18 leaves, 30 classes)
    entities_per_leaf: int = Field(4, ge=1)  # §6: 4 entities per leaf (72 entities)
    properties: int = Field(12, ge=1)  # §6: 12 properties
    properties_per_class: int = Field(2, ge=0)  # §6: each class gets 2 random properties (60 class -> has rules)


class RuleConfig(BaseModel):
    """logic_consistency.md §6 check 5: random Horn theories over unary predicates, queries labelled by chaining."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predicates: int = Field(5, ge=2)  # check 5: 5 predicates
    rules: int = Field(8, ge=1)  # check 5: 8 rules
    entities: int = Field(3, ge=1)  # "facts for a few entities"
    facts: int = Field(3, ge=1)  # stated facts per theory
    max_depth: int = Field(3, ge=0)  # check 5: proof depth <= 3
    queries_per_depth: int = Field(100, ge=1)  # true queries per depth stratum (as many false ones beside them)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = ""  # a local Hugging Face causal-LM folder; nothing is downloaded at run time
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    extraction: Literal["logprob", "greedy"] = "logprob"  # §3.3: option log-probs normalised over {yes, no}
    batch_size: int = Field(32, ge=1)  # prompts per generate() call in greedy mode


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    world: Literal["taxo", "rule"] = "taxo"  # taxo: consistency metrics (§3.2); rule: logical QA per depth
    answerer: AnswererName = "llm"  # the full-scale answerer; the others are the spec's stand-ins and controls
    noise: float = Field(0.1, ge=0, le=1)  # NoisyOracle's flip probability epsilon (check 2)
    sigma: float = Field(2.0, ge=0)  # noisy_confidence: logit = 2 s(g) + sigma xi (check 4)
    repair: bool = True  # §3.4 ConCoRD-style weighted MaxSAT repair of the beliefs
    clip: float = Field(1e-4, gt=0, lt=0.5)  # §8: p clipped to [clip, 1 - clip] before log-odds weights
    replicates: int = Field(20, ge=1)  # independently seeded worlds; check 2 averages over 20
    taxo: TaxoConfig = TaxoConfig()
    rule: RuleConfig = RuleConfig()
    llm: LLMConfig = LLMConfig()
