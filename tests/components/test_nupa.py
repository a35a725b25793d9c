"""NUPA's checks (nupa.md §6): 1 metric and sig_fig goldens, 2 generator invariants on all 41 combinations,
3 the learning check (trained vs one step, no length generalisation with RoPE), 4 ALiBi's sign (here through the
component's model; the shared decoder's own tests are tests/components/core/test_transformer.py); then the number
formats, the paper path and the pretrained-LM answerer."""

from __future__ import annotations

import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from math import gcd

import pytest
import torch
import yaml

from cluster.runner import execute, plan_run
from components.core import numbers
from components.nupa import component as nupa_component
from components.nupa import metrics
from components.nupa.tokenizer import NumberFormat, NumberTokenizer
from pipelines.datasets import prepare
from tests.tiny_llm import LETTERS, write_tiny_llm

SMOKE_SPEC = {
    "source": "nupa",
    "task": "add",
    "representation": "integer",
    "train_min": 1,
    "train_max": 3,
    "test_min": 1,
    "test_max": 5,
    "train_per_length": 6667,
    "valid_per_length": 50,
    "test_per_length": 100,
}  # fmt: skip  (the spec of params.yaml's tokens/nupa_add_int_smoke)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("nupa-data")
    prepare("tokens/nupa_add_int_smoke", dict(SMOKE_SPEC), root)
    return root


# --- Check 1: metric and sig_fig goldens (exact)
def test_metric_goldens():
    assert metrics.score("12355", "12345", "integer") == pytest.approx(
        {"exact_match": 0, "digit_match": 0.8, "dlength": 0, "dlength_parts": 0}
    )
    fl = metrics.score("01.2", "1.25", "float")
    assert (fl["exact_match"], fl["digit_match"], fl["dlength"]) == (0, pytest.approx(2 / 3), 0)
    assert metrics.parts("01.2", "float") == ["01", "2"]
    empty = metrics.score("", "7/13", "fraction")
    assert (empty["exact_match"], empty["digit_match"], empty["dlength"]) == (0, 0, 3)
    assert metrics.score("1.2e4", "1.2e4", "scientific")["exact_match"] == 1
    # a carry error in the lowest digit costs one digit, not all of them (right alignment of integer parts)
    assert metrics.score("1235", "12345", "integer")["digit_match"] == pytest.approx(0.2 * 1)
    assert metrics.extract("12 + 3 = 15 because", "integer") == "15"
    assert metrics.extract("The answer is 1.5E-3", "scientific") == "1.5e3"


@pytest.mark.parametrize(
    ("x", "figures", "official", "exact"),
    [(12360, 3, "1.24e4", "1.24e4"), (12350, 3, "1.23e4", "1.24e4"), (12451, 3, "1.24e4", "1.25e4"),
     (12000, 3, "1.20e4", "1.20e4"), (99960, 3, "1.00e5", "1.00e5")],
)  # fmt: skip
def test_sig_fig_goldens(x, figures, official, exact):
    assert numbers.significant(Fraction(x), figures, "official") == official
    assert numbers.significant(Fraction(x), figures, "exact") == exact


def test_buckets_and_digit_statistics():
    assert numbers.buckets(20) == {"S": (1, 4), "M": (5, 8), "L": (9, 14), "XL": (15, 20)}
    assert numbers.buckets(100)["L"] == (21, 60)
    means = {1: {"exact_match": 1.0, "digit_match": 1, "dlength": 0}, 2: {"exact_match": 0.95, "digit_match": 1,
             "dlength": 0}, 3: {"exact_match": 0.5, "digit_match": 0.6, "dlength": 0.5},
             9: {"exact_match": 0.05, "digit_match": 0.2, "dlength": 3}}  # fmt: skip
    out = metrics.summarise("add", means, 20)
    assert out["add_well_learned_digits"] == 2 and out["add_perf_preserving_digits"] == 3
    assert out["add_exact_match_S"] == pytest.approx((1 + 0.95 + 0.5) / 3) and out["add_exact_match_out"] == 0.05
    assert out["add_dlength_perf_preserving_digits"] == 3 and out["add_digit_match_perf_preserving_digits"] == 3


# --- Check 2: generator invariants on every one of the 41 combinations, against an independent oracle
def exact(text: str, representation: str) -> Fraction:
    if representation == "fraction":
        n, d = text.split("/")
        return Fraction(int(n), int(d))
    if representation == "scientific":
        m, e = text.lower().split("e")
        return Fraction(Decimal(m)) * Fraction(10) ** int(e)
    return Fraction(Decimal(text))


def oracle_sig(a: Fraction, figures: int, rounding: str) -> Fraction:
    d = Decimal(a.numerator) / Decimal(a.denominator) if a.denominator != 1 else Decimal(a.numerator)
    shift = figures - 1 - d.adjusted()
    scaled = d.scaleb(shift)
    if rounding == "exact":
        kept = scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    else:
        kept = Decimal(int(scaled)) + (1 if int((scaled - int(scaled)) * 10) > 5 else 0)
    return Fraction(kept.scaleb(-shift))


def digit_oracle(a: str, b: str, op) -> Fraction:
    ai, _, af = a.partition(".")
    bi, _, bf = b.partition(".")
    w, f = max(len(ai), len(bi)), max(len(af), len(bf))
    i = "".join(str(op(int(x), int(y))) for x, y in zip(ai.zfill(w), bi.zfill(w)))
    fr = "".join(str(op(int(x), int(y))) for x, y in zip(af.ljust(f, "0"), bf.ljust(f, "0")))
    return Fraction(Decimal(f"{i}.{fr}" if fr else i))


def oracle(s: numbers.Sample) -> Fraction:
    rep, a, b = s.representation, s.a, s.b
    x = exact(a, rep)
    y = exact(b, rep) if s.task in numbers.OPERAND_TASKS else None
    ops = {
        "add": lambda: x + y, "sub": lambda: x - y, "multiply": lambda: x * y, "truediv": lambda: x / y,
        "floordiv": lambda: Fraction(int(x) // int(y)), "mod": lambda: Fraction(int(x) % int(y)),
        "max": lambda: max(x, y), "min": lambda: min(x, y),
        "digit_max": lambda: digit_oracle(a, b, max), "digit_min": lambda: digit_oracle(a, b, min),
        "digit_add": lambda: digit_oracle(a, b, lambda p, q: (p + q) % 10),
        "get_digit": lambda: Fraction(int([c for c in a if c.isdigit()][int(b)])),
        "length": lambda: Fraction(sum(c.isdigit() for c in a)),
        "count": lambda: Fraction(sum(c == b for c in a if c.isdigit())),
        "to_float": lambda: x, "to_scientific": lambda: x,
        "sig_fig": lambda: oracle_sig(x, int(b), "official"),
    }  # fmt: skip
    return ops[s.task]()


def check_sample(s: numbers.Sample, lengths: tuple[int, int]) -> None:
    out = numbers.output_representation(s.task, s.representation)
    assert exact(s.answer, out) == oracle(s), s
    assert lengths[0] <= s.length <= lengths[1]
    assert metrics.parts(s.answer, out), s  # parses as its representation
    if out == "fraction":
        n, d = (int(p) for p in s.answer.split("/"))
        assert gcd(n, d) == 1, s
    if out == "scientific" and exact(s.answer, out) != 0:
        assert 1 <= Fraction(Decimal(s.answer.split("e")[0])) < 10, s
    if s.task in ("sub", "floordiv", "mod") and not (s.a == "0" and s.b == "1"):  # 0 // 0: the divisor became 1
        assert exact(s.a, s.representation) >= exact(s.b, s.representation), s
    if s.task in ("add", "multiply", "max", "min", "digit_max", "digit_min", "digit_add") and s.representation in (
        "integer",
        "float",
    ):
        assert (
            max(numbers.number_length(s.a, s.representation), numbers.number_length(s.b, s.representation)) == s.length
        )


def test_generator_invariants_on_all_41_combinations():
    assert len(numbers.COMBINATIONS) == 41
    assert [len(numbers.VALID[r]) for r in numbers.REPRESENTATIONS] == [16, 12, 7, 6]
    train_lengths, test_lengths = (1, 6), (4, 9)
    for task, rep in numbers.COMBINATIONS:
        out, _ = numbers.splits(
            task, rep, train_lengths=train_lengths, test_lengths=test_lengths, train_per_length=250,
            valid_per_length=50, test_per_length=150, seed=7,
        )  # fmt: skip
        for sample in out["train"]:
            check_sample(sample, train_lengths)
        for sample in out["test"]:
            check_sample(sample, test_lengths)
        train_keys = {s.key() for s in out["train"]} | {s.key() for s in out["val"]}
        assert not train_keys & {s.key() for s in out["test"]}, (task, rep)
        if task in ("add", "multiply") and rep in ("integer", "float"):  # test pairs are not trivially short
            assert all(
                min(numbers.number_length(s.a, rep), numbers.number_length(s.b, rep)) >= s.length // 2
                for s in out["test"]
            )
    # negative control: a stub answering random numbers fails the oracle
    stub = numbers.Sample("add", "integer", 3, "123", "45", str(random.Random(0).randint(0, 999)))
    with pytest.raises(AssertionError):
        check_sample(stub, (1, 5))


def test_float_length_counts_fractional_digits_and_fraction_length_reduces():
    assert numbers.number_length("123.45", "float") == 2
    assert numbers.number_length("12/345", "fraction") == 3
    rng = random.Random(0)
    for length in range(1, 8):
        for _ in range(30):
            assert numbers.number_length(numbers.sample_number(rng, "float", length), "float") == length
            assert numbers.number_length(numbers.sample_number(rng, "fraction", length), "fraction") == length
            assert numbers.number_length(numbers.sample_number(rng, "scientific", length), "scientific") == length


# --- Number formats: every combination round-trips through every format; formats change what the model sees
FORMATS = [
    NumberFormat(), NumberFormat(3), NumberFormat(2, "left", "int"), NumberFormat(1, "right", "each", True, True),
    NumberFormat(3, "random", "total", True, True), NumberFormat(2, "right", "dec", False, True),
]  # fmt: skip


def test_every_format_round_trips_the_answer_and_hints_stay_on_operands():
    for fmt in FORMATS:
        tokenizer = NumberTokenizer(fmt)
        for task, rep in numbers.COMBINATIONS:
            for sample in numbers.generate(task, rep, (3, 6), 3, 1, None):
                ids, start = tokenizer.encode(task, rep, sample.a, sample.b, sample.answer, random.Random(0))
                answer_tokens = [tokenizer.vocab[i] for i in ids[start:-1]]
                assert not any(t.startswith("<h") for t in answer_tokens)
                out = numbers.output_representation(task, rep)
                assert tokenizer.decode_answer(ids[start:-1], out) == sample.answer, (fmt, sample)


def test_format_details():
    tokens = NumberTokenizer(NumberFormat(3)).number("10000", "integer")
    assert tokens == ["10", "000"]  # grouped from the units digit
    assert NumberTokenizer(NumberFormat(3)).number("1.2345", "float") == ["1", ".", "234", "5"]
    reversed_int = NumberTokenizer(NumberFormat(1, reverse="int"))
    ids, start = reversed_int.encode("add", "integer", "18", "9651", "9669")
    assert [reversed_int.vocab[i] for i in ids] == [
        "<bos>", "8", "1", "<add>", "1", "5", "6", "9", "=", "9", "6", "6", "9", "<eos>"
    ]  # fmt: skip
    padded = NumberTokenizer(NumberFormat(1, pad=True))
    ids, start = padded.encode("add", "float", "1.5", "22.25", "23.75")
    assert [padded.vocab[i] for i in ids[:start]] == [
        "<bos>",
        "0",
        "1",
        ".",
        "5",
        "0",
        "<add>",
        "2",
        "2",
        ".",
        "2",
        "5",
        "=",
    ]  # fmt: skip  (operands padded, the answer not)
    hinted = NumberTokenizer(NumberFormat(1, index_hint=True))
    ids, _ = hinted.encode("add", "integer", "123", "45", None)
    assert [hinted.vocab[i] for i in ids] == [
        "<bos>",
        "<h0:2>",
        "1",
        "<h0:1>",
        "2",
        "<h0:0>",
        "3",
        "<add>",
        "<h0:1>",
        "4",
        "<h0:0>",
        "5",
        "=",
    ]  # fmt: skip  (units digits share a hint; evaluation offset 0)
    offsets = {tuple(hinted.encode("add", "integer", "123", "45", None, random.Random(s))[0]) for s in range(20)}
    assert len(offsets) > 3  # training draws the hint offset


# --- Check 4: ALiBi's sign through the component's own model builder
def test_component_alibi_attends_nearer_keys(smoke_data):
    from components.nupa.config import Config

    cfg = Config(model={"d_model": 16, "layers": 1, "heads": 4, "position": "alibi"})
    model = nupa_component.build_model(cfg, NumberTokenizer(nupa_component.number_format(cfg)))
    tokens = torch.arange(1, 11)[None]
    bias = model.bias(tokens, torch.arange(10)[None], model.embed(tokens))[0]
    weights = torch.softmax(bias.masked_fill(~torch.ones(10, 10, dtype=torch.bool).tril(), float("-inf")), -1)[:, -1]
    assert torch.all(weights[:, 1:] > weights[:, :-1])


# --- Check 3: learning (trained vs one step, side by side); no length generalisation with RoPE
LEARN = {
    "steps": 900,
    "lr": 0.003,
    "warmup": 50,
    "batch_size": 128,
    "eval_per_length": 30,
}  # measured: EM 1.0 at d2, 0 at d5


def run_nupa(params, data_root, tmp_path, preset="smoke", **overrides):
    request = plan_run("nupa", params, preset=preset, overrides=overrides, data_dir=data_root)
    return execute(request, run_root=tmp_path, data_dir=data_root, show_progress=False)


def test_learns_reversed_addition_in_domain_and_not_beyond(params, smoke_data, tmp_path):
    trained = run_nupa(params, smoke_data, tmp_path / "trained", **LEARN).metrics
    baseline = run_nupa(params, smoke_data, tmp_path / "one", **{**LEARN, "steps": 1}).metrics
    in_dm = [trained[f"add_digit_match_d{n}"] for n in (2, 3)]  # length 1 is all in train: decontaminated away
    in_em = trained["add_exact_match_d2"]
    assert min(in_dm) >= 0.7 and in_em >= 0.6, trained
    assert in_em - baseline["add_exact_match_d2"] >= 0.4
    assert min(in_dm) - max(baseline[f"add_digit_match_d{n}"] for n in (2, 3)) >= 0.4
    assert trained["add_exact_match_d5"] < min(trained[f"add_exact_match_d{n}"] for n in (2, 3))


def test_takes_exactly_its_steps_and_masks_the_prompt(params, smoke_data, tmp_path, monkeypatch):
    seen = []
    original = nupa_component.encode_batch

    def spy(records, tokenizer, rng):
        inputs, targets, mask = original(records, tokenizer, rng)
        seen.append((records, inputs, targets, mask, tokenizer))
        return inputs, targets, mask

    monkeypatch.setattr(nupa_component, "encode_batch", spy)
    result = run_nupa(params, smoke_data, tmp_path, preset="test")
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(20))
    batch_records, inputs, targets, mask, tokenizer = seen[0]
    for row, record in enumerate(batch_records):
        masked = [tokenizer.vocab[int(t)] for t in targets[row][mask[row]]]
        assert masked == list(record["answer"][::-1]) + ["<eos>"]  # the reversed answer and EOS, nothing else
    test_pairs = set()
    from components.core.tokens import read_records

    test_pairs = {(r["a"], r["b"]) for r in read_records(smoke_data, "tokens/nupa_add_int_smoke", "test")[1]}
    trained_pairs = {(r["a"], r["b"]) for records, *_ in seen for r in records}
    assert trained_pairs and not trained_pairs & test_pairs  # test data never reaches training


def test_metrics_are_deterministic_for_a_seed(params, smoke_data, tmp_path):
    first = run_nupa(params, smoke_data, tmp_path / "a", preset="test").metrics
    again = run_nupa(params, smoke_data, tmp_path / "b", preset="test").metrics
    assert first == again


# --- The paper path: the paper preset on data at the official ranges, shrunk only in counts
def test_paper_path_trains_a_llama_style_decoder_on_official_ranges(params, tmp_path, monkeypatch):
    from tests.paper_path import record_inputs, run_paper_path

    spec = {
        "source": "nupa",
        "task": "add",
        "representation": "integer",
        "train_per_length": 40,
        "valid_per_length": 2,
        "test_per_length": 3,
    }  # fmt: skip  official ranges: train 1-8, test 3-20
    prepare("tokens/nupa_add_int", spec, tmp_path / "data")
    shapes = record_inputs(monkeypatch, nupa_component, "build_model")
    scored = []
    original_evaluate = nupa_component.evaluate

    def spy_evaluate(model, tokenizer, records, cfg, output):
        scored.append(list(records))
        return original_evaluate(model, tokenizer, records, cfg, output)

    monkeypatch.setattr(nupa_component, "evaluate", spy_evaluate)
    counts = {"batch_size": 8, "model.d_model": 32, "model.layers": 1, "model.heads": 2}
    result = run_paper_path("nupa", params, counts, tmp_path / "data", tmp_path / "runs")
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (config["lr"], config["warmup"], config["weight_decay"], config["model"]["position"]) == (
        5e-5, 500, 0.01, "rope"
    )  # fmt: skip
    manifest = json.loads((tmp_path / "data/tokens/nupa_add_int/manifest.json").read_text())
    assert manifest["lengths"] == {"train": [1, 8], "val": [3, 20], "test": [3, 20]}
    assert result.metrics["steps"] == manifest["splits"]["train"]["count"] // 8  # one epoch over the pairs
    assert all(f"add_exact_match_d{n}" in result.metrics for n in range(3, 21))
    assert {"add_exact_match_S", "add_exact_match_XL", "add_well_learned_digits"} <= set(result.metrics)
    assert shapes[0][0] == 8 and max(s[1] for s in shapes) >= 1 + 20 + 1 + 20 + 1  # length-20 prompts were scored
    assert (result.run_dir / "model.safetensors").is_file()
    from components.core.tokens import read_records

    assert scored[-1] == read_records(tmp_path / "data", "tokens/nupa_add_int", "test")[1]  # the test split, all of it


# --- Pretrained LMs through the transformers library (a tiny random Llama built from a config; no download)
def tiny_llm(folder):
    return write_tiny_llm(folder, "0123456789 .+-*/%=,:;()[]eE" + LETTERS, max_positions=256)


def test_llm_mode_scores_a_local_causal_lm(params, smoke_data, tmp_path, monkeypatch):
    from components.core.answerer import CausalLMAnswerer

    model_dir = tiny_llm(tmp_path / "tiny")
    sets = {"mode": "llm", "llm.model": str(model_dir), "eval_per_length": 4, "llm.batch_size": 8}
    first = run_nupa(params, smoke_data, tmp_path / "a", preset="test", **sets).metrics
    assert all(0 <= first[f"add_digit_match_d{n}"] <= 1 for n in (2, 3, 4, 5))
    assert first == run_nupa(params, smoke_data, tmp_path / "b", preset="test", **sets).metrics  # greedy

    golds = {}
    from components.core.tokens import read_records
    from components.nupa.prompts import prompt

    for record in read_records(smoke_data, "tokens/nupa_add_int_smoke", "test")[1]:
        golds[prompt(record)] = record["answer"]
    monkeypatch.setattr(CausalLMAnswerer, "answer", lambda self, ps, max_new_tokens: [golds[p] + " ok" for p in ps])
    perfect = run_nupa(params, smoke_data, tmp_path / "c", preset="test", **sets).metrics
    assert perfect["exact_match"] == 1 and perfect["add_well_learned_digits"] == 5
    monkeypatch.setattr(CausalLMAnswerer, "answer", lambda self, ps, max_new_tokens: ["x" + golds[p] for p in ps])
    assert run_nupa(params, smoke_data, tmp_path / "d", preset="test", **sets).metrics["exact_match"] == 0


def test_llm_mode_without_a_model_is_a_config_error(params, smoke_data, tmp_path):
    from components.core.errors import ConfigError

    with pytest.raises(ConfigError, match="llm.model"):
        plan_run("nupa", params, preset="test", overrides={"mode": "llm"}, data_dir=smoke_data)
    from cluster.runner import RunFailed

    with pytest.raises(RunFailed, match="no model folder"):
        run_nupa(params, smoke_data, tmp_path, preset="test", mode="llm", **{"llm.model": str(tmp_path / "none")})


def test_resume_after_preemption_is_bit_exact_with_hints_and_shifted_positions(
    params, smoke_data, tmp_path, preempt_at
):
    from cluster.runner import load_request
    from components.core.errors import Preempted

    sets = {"index_hint": True, "random_shifted_start": True, "digits_per_token": 2, "direction": "random"}
    request = plan_run("nupa", params, preset="test", overrides=sets, seed=1, data_dir=smoke_data)
    common = dict(data_dir=smoke_data, show_progress=False, checkpoint_every=4)
    whole = execute(request, run_root=tmp_path / "whole", **common)
    with pytest.raises(Preempted):
        execute(request, run_root=tmp_path / "cut", sinks=[preempt_at(9)], **common)
    (cut_dir,) = (tmp_path / "cut" / "nupa").iterdir()
    resumed = execute(load_request(cut_dir), cut_dir, **common)
    assert resumed.metrics == whole.metrics
