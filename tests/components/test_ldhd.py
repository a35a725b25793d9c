"""LDHD's checks (ldhd.md §6): 1 the RF model learns the min-degree interpolator, not the target; 2 an aligned
RFMP projection generalises off the subspace, the identity does not; 3 the Toeplitz-tied PLAA (RPE) counts adjacent
pairs at any length, the free one (APE) does not; 4 position-only RPE-Square copies unaligned sequences at every
length, RPE cannot. Check 5 (a decoder on URF addition) is measured in the README. Then the task formats, the
anchors of the shared decoder's RPE-Square on these formats, the length split, the metrics and the paper path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from cluster.runner import execute, plan_run
from components.core.errors import ConfigError
from components.core.transformer import DecoderConfig, PositionBias
from components.ldhd import boolean, copy_attention, tasks
from components.ldhd import component as ldhd_component


# --- Check 1: RF (V = I) converges to the MDI f(x_1..x_N0, 1..1), not to the target
def test_check1_random_features_learn_the_min_degree_interpolator():
    out = boolean.mdi_check(n=10, n0=6, features=20000, seed=0)
    assert out["rf_in_span_mse_vs_target"] <= 0.1, out  # chi_{0,1}: inside [N0], learned
    for name in ("frozen_deg3", "frozen_deg2"):  # chi_{0,1,9}, chi_{0,9}: touch a frozen coordinate
        assert out[f"rf_{name}_mse_vs_mdi"] <= 0.15, out
        assert out[f"rf_{name}_mse_vs_target"] >= 1.0, out


def test_mdi_and_walsh_basics():
    train, test = boolean.split_cube(10, 6)
    assert train.shape == (64, 10) and test.shape == (960, 10) and np.all(train[:, 6:] == 1)
    points = boolean.cube(10)
    target = boolean.parity((0, 9))
    coefficients = boolean.walsh_coefficients(boolean.mdi(target, 6)(points), points)
    assert coefficients[(0,)] == pytest.approx(1.0)  # MDI(chi_{0,9}) = chi_0: all mass moved off the frozen x_9
    assert sum(c**2 for c in coefficients.values()) == pytest.approx(1.0)
    assert np.array_equal(boolean.mdi(target, 6)(train), target(train))  # an interpolant of the training data


# --- Check 2: the projection V decides the bias (RFMP)
def test_check2_aligned_projection_generalises_identity_does_not():
    out = boolean.rfmp_check(n=10, n0=6, features=20000, seed=0)
    variance = out["rfmp_target_var"]
    assert variance == pytest.approx(0.9129, abs=1e-3)
    assert out["rfmp_aligned_mse"] <= 0.1 * variance, out
    assert out["rfmp_identity_mse"] >= 0.5 * variance, out


# --- Check 3: PLAA, RPE (Toeplitz) vs APE (free upper triangle)
def test_check3_plaa_rpe_counts_pairs_at_any_length_ape_does_not():
    out = boolean.plaa_check(n=12, n0=6, steps=2000, batch=64, lr=0.05, seed=0)
    assert out["plaa_rpe_test_mse"] <= 1e-3, out
    assert out["plaa_ape_test_mse"] >= 1.0, out
    free = boolean.plaa_fit(12, 6, tied=False, steps=50, batch=64, lr=0.05, seed=0)
    assert np.all(free[:, 6:] == 0)  # the mechanism: entries beyond N0 never receive gradient


# --- Check 4: position-only copy attention, RPE-Square (hard anchors) vs RPE
def test_check4_rpe_square_copies_at_every_length_rpe_cannot():
    out = copy_attention.copy_check(seed=0)
    assert out["copy_rpe_square_em_min_out"] >= 0.99 and out["copy_rpe_square_em_in"] >= 0.99, out
    assert out["copy_rpe_em_out"] <= 0.2, out
    assert set(np.unique(copy_attention.offsets(9, square=True)[np.arange(9), np.arange(9)])) == {-1}
    assert set(np.unique(copy_attention.offsets(9, square=False)[np.arange(9), np.arange(9)])) == {9}


# --- Task formats (ldhd.md §3.5, §8: no zero padding, reversed, final carry kept)
def test_task_formats():
    rng = np.random.default_rng(0)
    prompt, answer = tasks.example("unaligned_copy", rng, 7, exact=True)
    assert prompt[0] == tasks.BOS and prompt[-1] == tasks.EQUALS and answer == [*prompt[1:-1], tasks.EOS]
    assert tasks.instance_length("unaligned_copy", prompt) == 7
    seen_unequal = False
    for _ in range(200):
        prompt, answer = tasks.example("urf_addition", rng, 6, exact=True)
        cut = prompt.index(tasks.PLUS)
        a_digits, b_digits = prompt[1:cut], prompt[cut + 1 : -1]
        assert max(len(a_digits), len(b_digits)) == 6 == tasks.instance_length("urf_addition", prompt)
        assert a_digits[-1] != 0 or len(a_digits) == 1  # not zero padded: the most significant digit is last
        a, b = (int("".join(map(str, digits[::-1]))) for digits in (a_digits, b_digits))
        assert answer == [*tasks.reversed_digits(a + b), tasks.EOS]
        seen_unequal |= len(a_digits) != len(b_digits)
    assert seen_unequal  # unaligned operands occur
    assert tasks.example("urf_addition", np.random.default_rng(3), 1, exact=True) is not None
    carry = tasks.reversed_digits(95 + 7)
    assert carry == [2, 0, 1]  # the final carry is part of the answer


def test_loss_mask_covers_the_answer_and_eos_only():
    inputs, targets, mask = tasks.training_batch("urf_addition", np.random.default_rng(0), 16, 4)
    for row in range(16):
        sequence = [int(t) for t in np.concatenate([inputs[row, :1], targets[row]])]
        equals = sequence.index(tasks.EQUALS)
        eos = sequence.index(tasks.EOS)
        expected = np.zeros(mask.shape[1], dtype=bool)
        expected[equals:eos] = True  # targets equals+1 .. eos: every answer digit and EOS
        assert np.array_equal(mask[row], expected)


def test_test_set_has_every_length_exactly():
    records = tasks.test_set("urf_addition", 0, 8, 5)
    assert [length for length, _, _ in records] == [n for n in range(1, 9) for _ in range(5)]
    assert all(tasks.instance_length("urf_addition", prompt) == n for n, prompt, _ in records)


# --- The shared decoder's RPE-Square on these formats: one table entry finds the source at every length
@pytest.mark.parametrize("task", tasks.TASKS)
def test_rpe_square_hard_anchors_make_the_source_offset_constant(task):
    clip = 40
    bias_module = PositionBias(
        DecoderConfig(vocab_size=tasks.VOCAB, heads=1, d_model=8, position="rpe_square_hard", rpe_clip=clip,
                      anchor_tokens=tasks.ANCHORS)
    )  # fmt: skip
    answer_segment = 1 if task == "unaligned_copy" else 2
    with torch.no_grad():
        bias_module.table[0, answer_segment, 0, clip - 1] = 10.0  # (answer, first operand, offset -1)
    rng = np.random.default_rng(0)
    for length in range(1, 16):
        prompt, answer = tasks.example(task, rng, length, exact=True)
        first = prompt.index(tasks.PLUS) - 1 if task == "urf_addition" else length
        tokens = torch.tensor([prompt + answer])
        bias = bias_module(tokens, torch.arange(tokens.shape[1])[None], torch.zeros(1, tokens.shape[1], 8))[0, 0]
        equals = len(prompt) - 1
        for k in range(1, first + 1):  # the query predicting answer digit k sits at equals + k - 1
            assert int(bias[equals + k - 1, : equals + k].argmax()) == k  # operand digit k (BOS at 0)


# --- Metrics: the in-domain / out-of-domain boundary, exact match of the whole answer
def test_summary_splits_at_the_training_length():
    accuracy = {1: 1.0, 2: 1.0, 3: 0.95, 4: 0.5, 5: 0.0}
    out = ldhd_component.summarise(accuracy, train_max=3)
    assert out["acc_in_domain"] == pytest.approx((1 + 1 + 0.95) / 3)
    assert out["acc_ood"] == pytest.approx(0.25) and out["max_len_acc_ge_0.9"] == 3 and out["acc_len_4"] == 0.5


def run_ldhd(params, tmp_path, preset="test", **overrides):
    request = plan_run("ldhd", params, preset=preset, overrides=overrides, data_dir=tmp_path / "data")
    return execute(request, run_root=tmp_path / "runs", data_dir=tmp_path / "data", show_progress=False)


def test_exact_match_needs_every_digit_and_eos(params, tmp_path, monkeypatch):
    def oracle(model, prompts, max_new_tokens, eos, pad):  # answers right, but drops the final digit of length 3
        out = []
        for prompt in prompts:
            digits = prompt[1:-1]
            out.append(digits[:-1] if len(digits) == 3 else digits)
        return out

    monkeypatch.setattr(ldhd_component, "greedy", oracle)
    metrics = run_ldhd(params, tmp_path, steps=1).metrics
    assert {f"acc_len_{n}" for n in range(1, 6)} <= set(metrics), metrics  # every test length 1-5 is scored
    assert metrics["acc_len_1"] == metrics["acc_len_2"] == metrics["acc_len_4"] == 1.0
    assert metrics["acc_len_3"] == 0.0 and metrics["acc_ood"] == 1.0 and metrics["max_len_acc_ge_0.9"] == 5


def test_training_sees_short_fresh_batches_only(params, tmp_path, monkeypatch):
    seen = []
    original = tasks.training_batch

    def spy(task, rng, batch, train_max):
        inputs, targets, mask = original(task, rng, batch, train_max)
        seen.append(inputs)
        return inputs, targets, mask

    monkeypatch.setattr(tasks, "training_batch", spy)
    result = run_ldhd(params, tmp_path)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(5))
    lengths = [tasks.instance_length("unaligned_copy", list(row[: list(row).index(tasks.EQUALS) + 1])) for b in seen
               for row in b.tolist()]  # fmt: skip
    assert max(lengths) <= 3  # test lengths 4-5 never reach training
    assert len({b.tobytes() for b in seen}) == len(seen)  # a fresh draw every step


def test_learns_copy_in_domain(params, tmp_path):
    # the smoke recipe (unaligned copy, train <= 5, 250 steps): the decoder fits the training lengths; one step does not
    trained = run_ldhd(params, tmp_path / "trained", preset="smoke", **{"boolean.enabled": False}).metrics
    baseline = run_ldhd(params, tmp_path / "one", preset="smoke", steps=1, **{"boolean.enabled": False}).metrics
    assert trained["acc_in_domain"] >= 0.9 and baseline["acc_in_domain"] <= 0.1, (trained, baseline)
    assert trained["acc_len_8"] < trained["acc_in_domain"]


def test_bad_config_is_a_config_error(params, tmp_path):
    with pytest.raises(ConfigError, match="task"):
        run_ldhd(params, tmp_path, task="copy")
    with pytest.raises(ConfigError, match="test_max_length"):
        run_ldhd(params, tmp_path, test_max_length=2)


# --- The paper path: the paper preset (URF addition, train <= 10, test to 30, RPE-Square) shrunk in counts only
def test_paper_path_scores_every_length_to_three_times_the_training_length(params, tmp_path, monkeypatch):
    from tests.paper_path import record_inputs, run_paper_path

    shapes = record_inputs(monkeypatch, ldhd_component, "build_model")
    counts = {
        "steps": 3, "batch_size": 8, "eval_per_length": 1, "model.d_model": 32, "model.layers": 1, "model.heads": 2,
        "boolean.features": 640, "boolean.plaa_steps": 50, "boolean.copy_sequences": 160,
    }  # fmt: skip
    result = run_paper_path("ldhd", params, counts, tmp_path / "data", tmp_path / "runs")
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (config["task"], config["train_max_length"], config["test_max_length"]) == ("urf_addition", 10, 30)
    assert config["model"]["position"] == "rpe_square_hard" and config["boolean"]["n"] == 10
    assert all(f"acc_len_{n}" in result.metrics for n in range(1, 31)) and "boolean/plaa_rpe_test_mse" in result.metrics
    assert max(s[1] for s in shapes) >= 1 + 30 + 1 + 1 + 1  # a length-30 URF prompt was scored
    assert shapes[0][0] == 8 and (result.run_dir / "model.safetensors").is_file()
