"""Mutants of nupa (Number Cookbook): see tests/mutants/harness.py.

Written from /work/shared/papers/nupa.md: the metrics' alignment and the sig_fig rounding switch (§3.2, §3.4), the
number formats (§3.6), the standard ALiBi sign (§8), the generator's length definitions and decontamination
(§3.1-3.3); then the classic bugs of a sequence trainer (loss on the prompt, test data in training, an
off-by-one)."""

from tests.mutants.harness import Mutant

NUMBERS = "components/core/numbers.py"
METRICS = "components/nupa/metrics.py"
TOKENIZER = "components/nupa/tokenizer.py"
COMPONENT = "components/nupa/component.py"
TRANSFORMER = "components/core/transformer.py"
TESTS = "tests/components/test_nupa.py"
CORE_TESTS = "tests/components/core/test_transformer.py"

MUTANTS = [
    Mutant(
        name="digit-match-left-aligned",
        kind="contribution",
        guards="integer parts compared right-aligned in digit match (nupa.md §3.4, §8: carries are not total failures)",
        file=METRICS,
        find='        if kind == "int":  # right-aligned: compare from the units digit',
        replace='        if kind == "none":  # right-aligned: compare from the units digit',
        killers=(f"{TESTS}::test_metric_goldens",),
    ),
    Mutant(
        name="sig-fig-official-rounds-half-up",
        kind="contribution",
        guards="the official sig_fig rounding truncates when the next digit is 5 (the released data's quirk, §3.2)",
        file=NUMBERS,
        find="if rest and int(rest[0]) > 5:",
        replace="if rest and int(rest[0]) >= 5:",
        killers=(f"{TESTS}::test_sig_fig_goldens",),
    ),
    Mutant(
        name="alibi-official-sign",
        kind="contribution",
        guards="standard ALiBi subtracts m_h (i - j): nearer keys get more mass (§8 lists the official + sign bug)",
        file=TRANSFORMER,
        find="return -self.slopes.to(x.dtype)[None, :, None, None] * distance[:, None]",
        replace="return self.slopes.to(x.dtype)[None, :, None, None] * distance[:, None]",
        killers=(f"{TESTS}::test_component_alibi_attends_nearer_keys",),
    ),
    Mutant(
        name="reversal-not-undone-before-scoring",
        kind="contribution",
        guards="a reversed answer is turned back before it is scored (§8)",
        file=TOKENIZER,
        find="            digits[::-1] if self.reversed_kind(kind) else digits\n",
        replace="            digits\n",
        killers=(f"{TESTS}::test_every_format_round_trips_the_answer_and_hints_stay_on_operands",),
    ),
    Mutant(
        name="hints-counted-from-the-left",
        kind="contribution",
        guards="index hints name a digit's place, so the operands' units digits share a hint (§3.6)",
        file=TOKENIZER,
        find="                places.reverse()  # the units chunk is place 0\n",
        replace="                pass\n",
        killers=(f"{TESTS}::test_format_details",),
    ),
    Mutant(
        name="float-length-counts-all-digits",
        kind="bug",
        guards="Float length = fractional digits, not total digits (§8: using total digits shifts every curve)",
        file=NUMBERS,
        find='        return f"{uniform_digits(rng, rng.randint(1, length))}.{fractional_digits(rng, length)}"',
        replace='        return f"{uniform_digits(rng, 1)}.{fractional_digits(rng, max(1, length - 1))}"',
        killers=(f"{TESTS}::test_float_length_counts_fractional_digits_and_fraction_length_reduces",),
    ),
    Mutant(
        name="test-not-decontaminated",
        kind="bug",
        guards="test pairs that also occur in train or val are dropped (test data never reaches training, §3.3)",
        file=NUMBERS,
        find="        if sample.key() in seen:\n",
        replace="        if False:\n",
        killers=(f"{TESTS}::test_generator_invariants_on_all_41_combinations",),
    ),
    Mutant(
        name="loss-on-the-prompt",
        kind="bug",
        guards="the loss covers the answer tokens and EOS only (labels up to '=' are -100, §3.6)",
        file=COMPONENT,
        find="        mask[row, start - 1 : len(ids) - 1] = True",
        replace="        mask[row, : len(ids) - 1] = True",
        killers=(f"{TESTS}::test_takes_exactly_its_steps_and_masks_the_prompt",),
    ),
    Mutant(
        name="answer-mask-off-by-one",
        kind="bug",
        guards="the first answer token is a target (an off-by-one drops it and the model never learns the units digit)",
        file=COMPONENT,
        find="        mask[row, start - 1 : len(ids) - 1] = True",
        replace="        mask[row, start : len(ids) - 1] = True",
        killers=(f"{TESTS}::test_takes_exactly_its_steps_and_masks_the_prompt",),
    ),
    Mutant(
        name="sub-not-ordered",
        kind="bug",
        guards="sub orders its operands so a >= b (no negative answers, §3.2)",
        file=NUMBERS,
        find='    if task in ("sub", "floordiv", "mod") and value(a, representation) < value(b, representation):',
        replace='    if task in ("floordiv", "mod") and value(a, representation) < value(b, representation):',
        killers=(f"{TESTS}::test_generator_invariants_on_all_41_combinations",),
    ),
    Mutant(
        name="left-padding-leaks-into-attention",
        kind="bug",
        guards="padding keys are masked in batched generation (state leaking between the rows of a batch)",
        file=TRANSFORMER,
        find="    return (causal & keep[:, None, None, :]) | eye",
        replace="    return causal | eye",
        killers=(f"{CORE_TESTS}::test_greedy_with_left_padding_matches_each_prompt_alone",),
    ),
    Mutant(
        name="eval-on-the-val-split",
        kind="bug",
        guards="the final metrics are the test split's (a metric on the wrong split)",
        file=COMPONENT,
        find="    test = by_length(test_records, cfg.eval_per_length)",
        replace="    test = by_length(val_records, cfg.eval_per_length)",
        killers=(f"{TESTS}::test_paper_path_trains_a_llama_style_decoder_on_official_ranges",),
    ),
]
