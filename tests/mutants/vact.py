"""Mutants of vact (see tests/mutants/harness.py).

Written from /work/shared/papers/vact.md: the metric levels and their truth/observe variants (§3.4), the NA policy
and the option swap (§3.3, §8), the causal-system checks (§3.1, §8 prompt leakage), the intervention contrast; then
the classic bugs of an evaluation loop: a seed ignored, a rule scored on the wrong values, an off-by-one in the
pairing, a resumed loop redoing (or mixing) finished work."""

from tests.mutants.harness import Mutant

METRICS = "components/vact/metrics.py"
COMPONENT = "components/vact/component.py"
SYSTEMS = "components/vact/systems.py"
MODELS = "components/vact/models.py"
RENDER = "components/vact/render.py"
TESTS = "tests/components/test_vact.py"

MUTANTS = [
    # --- contributions: the three levels, truth vs observe, NA policy, leakage check, the option swap
    Mutant(
        name="gc-observe-uses-prompted-roots",
        kind="contribution",
        guards="GC_observe recomputes the expected effects from the roots the video shows, x*(o_U) (§3.4)",
        file=METRICS,
        find="recomputed = system.evaluate(tuple(o[r] for r in roots))",
        replace="recomputed = system.evaluate(j.u)",
        killers=(f"{TESTS}::test_ignorer_needs_both_truth_and_observe_variants",),
    ),
    Mutant(
        name="rc-truth-not-restricted",
        kind="contribution",
        guards="RC_truth counts only videos whose roots were rendered as prompted (§3.4)",
        file=METRICS,
        find="            if rendered_as_prompted:\n",
        replace="            if True:\n",
        killers=(f"{TESTS}::test_metric_variants_on_a_hand_made_video",),
    ),
    Mutant(
        name="gc-scores-roots-too",
        kind="contribution",
        guards="generation consistency scores the effects only: a text-following model must not pass it (§6 check 3)",
        file=METRICS,
        find='        for v in effects:\n            if o[v] is not None:\n                counts["gc_truth"]',
        replace='        for v in system.names:\n            if o[v] is not None:\n                counts["gc_truth"]',
        killers=(f"{TESTS}::test_shortcut_follows_text_but_scores_its_marginals_on_effects",),
    ),
    Mutant(
        name="na-counted-as-wrong",
        kind="contribution",
        guards="NA items leave numerator and denominator; the NA rate is reported apart (§3.4, §8)",
        file=METRICS,
        find='            if o[r] is not None:\n                counts["tc"][0]',
        replace='            if True:\n                counts["tc"][0]',
        killers=(f"{TESTS}::test_na_is_dropped_and_reported",),
    ),
    Mutant(
        name="prompt-leak-not-checked",
        kind="contribution",
        guards="a prompt that mentions an effect is rejected (§3.1 leakage, §8)",
        file=SYSTEMS,
        find="            if description.lower() in text:\n",
        replace="            if False:\n",
        killers=(f"{TESTS}::test_templates_are_valid_and_each_bad_system_is_rejected",),
    ),
    Mutant(
        name="constant-effect-accepted",
        kind="contribution",
        guards="an effect constant over every intervention is untestable and rejected (§3.1)",
        file=SYSTEMS,
        find="        if len({w[v] for w in worlds}) == 1:\n",
        replace="        if len({w[v] for w in worlds}) == 0:\n",
        killers=(f"{TESTS}::test_templates_are_valid_and_each_bad_system_is_rejected",),
    ),
    Mutant(
        name="swap-disagreement-kept",
        kind="contribution",
        guards="with swapped options a judge's disagreeing answers become NA (§3.3, judge bias §8)",
        file=COMPONENT,
        find="first[v] if first[v] == second[v] else None",
        replace="first[v]",
        killers=(f"{TESTS}::test_a_judge_that_always_answers_a_is_all_na_with_swapped_options",),
    ),
    Mutant(
        name="icc-compares-states-not-contrasts",
        kind="contribution",
        guards="ICC tests the causal effect (the change between paired interventions), not each state (§3.4)",
        file=METRICS,
        find="hits += (a - b) == (truth_u[v] - truth_v[v])",
        replace="hits += (a == truth_u[v]) or (b == truth_v[v])",
        killers=(f"{TESTS}::test_icc_checks_the_contrast_not_only_the_state",),
    ),
    # --- classic bugs of the kind
    Mutant(
        name="rule-scored-on-truth",
        kind="bug",
        guards="rule consistency evaluates f_v on the observed parents, not on x*(u) (a metric on the wrong values)",
        file=METRICS,
        find="ok = o[v] == system.mechanism(v, o)",
        replace="ok = o[v] == system.mechanism(v, truth)",
        killers=(f"{TESTS}::test_noisy_scores_match_exact_enumeration",),
    ),
    Mutant(
        name="video-seed-ignored",
        kind="bug",
        guards="each of the K seeds gives its own video (a seed ignored makes K copies of one draw)",
        file=MODELS,
        find="rng = np.random.default_rng([request.system_seed, *request.u, seed])",
        replace="rng = np.random.default_rng([request.system_seed, *request.u])",
        killers=(f"{TESTS}::test_videos_differ_across_seeds",),
    ),
    Mutant(
        name="icc-pair-off-by-one",
        kind="bug",
        guards="ICC pairs u with u' that differs in root r alone (an off-by-one in the slice finds no pair)",
        file=METRICS,
        find="u[:i] + (1,) + u[i + 1 :]",
        replace="u[:i] + (1,) + u[i:]",
        killers=(f"{TESTS}::test_oracle_scores_one_on_every_metric",),
    ),
    Mutant(
        name="resume-regenerates-finished-systems",
        kind="bug",
        guards="a resumed run takes finished systems from judgements.jsonl instead of generating them again",
        file=COMPONENT,
        find="        judgements = done.get(system.name)\n",
        replace="        judgements = None\n",
        killers=(f"{TESTS}::test_preempted_run_resumes_without_regenerating_finished_systems",),
    ),
    Mutant(
        name="motion-read-as-brightness",
        kind="bug",
        guards="the detector reads motion variables from frame differences (check 1: exact on Oracle renders)",
        file=RENDER,
        find='    if kind == "motion":\n        if frames < 2:',
        replace='    if kind == "never":\n        if frames < 2:',
        killers=(f"{TESTS}::test_detector_returns_the_oracle_world_exactly",),
    ),
]
