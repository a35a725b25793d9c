"""Mutants of opzo (online pseudo-zeroth-order training): see tests/mutants/harness.py.

Written from /work/shared/papers/opzo.md: the single-point noisy estimate z o~^T / alpha and its momentum average
M (§3.3), the top-down error M e through the surrogate (§3.4), noise placement and dual noise (§3.2), the online
substrate with presynaptic traces (§3.1) and the pitfalls of §8; then the classic bugs of an online training
component (state between batches, time steps, splits) and of the DVS-Gesture prepare source."""

from tests.mutants.harness import Mutant

COMPONENT = "components/opzo/component.py"
FEEDBACK = "components/opzo/feedback.py"
NETWORK = "components/opzo/network.py"
ONLINE = "components/snn/online.py"
EVENTS = "pipelines/datasets/events.py"
TESTS = "tests/components/test_opzo.py"
ONLINE_TESTS = "tests/components/snn/test_online.py"
EVENT_TESTS = "tests/pipelines/test_prepare_events.py"
RULE = f"{TESTS}::test_update_matches_the_hand_written_rule"

MUTANTS = [
    # --- contributions: the pseudo-zeroth-order feedback and the three-factor online update
    Mutant(
        name="estimate-without-one-over-alpha",
        kind="contribution",
        guards="the estimate z o~^T / alpha: dropping 1/alpha scales M by alpha (opzo.md §8)",
        file=FEEDBACK,
        find="/ (noise.shape[0] * noise_scale)",
        replace="/ noise.shape[0]",
        killers=(f"{TESTS}::test_check_c_estimator_is_unbiased_in_expectation", RULE),
    ),
    Mutant(
        name="momentum-update-sign-flipped",
        kind="contribution",
        guards="M <- lambda M + (1 - lambda) z o~^T / alpha converges to J^T (check A)",
        file=FEEDBACK,
        find="alpha=1 - momentum",
        replace="alpha=momentum - 1",
        killers=(f"{TESTS}::test_check_a_feedback_matrix_recovers_the_readout_jacobian",),
    ),
    Mutant(
        name="no-noise-injected",
        kind="contribution",
        guards="the single noisy forward pass: without s~ = s + alpha z the output carries no Jacobian signal",
        file=NETWORK,
        find='noisy = s + noise_scale * z if z is not None and noise_pos == "post" else s',
        replace="noisy = s",
        killers=(RULE, f"{TESTS}::test_check_b_opzo_learns_like_bp_and_far_above_zosp"),
    ),
    Mutant(
        name="top-down-through-random-feedback",
        kind="contribution",
        guards="OPZO sends e through the learned M_l, not DFA's fixed random B_l",
        file=COMPONENT,
        find="signal = top_down(matrix, error, shape)",
        replace="signal = top_down(net.random_feedback(index), error, shape)",
        killers=(RULE,),
    ),
    Mutant(
        name="surrogate-forgotten-post-neuron",
        kind="contribution",
        guards="post-neuron placement: delta = psi(H) (M e), the local factor of the three-factor rule (§8)",
        file=COMPONENT,
        find="else probe.spikes",
        replace="else probe.current",
        killers=(RULE,),
    ),
    Mutant(
        name="surrogate-applied-twice-pre-neuron",
        kind="contribution",
        guards="pre-neuron placement: M already includes the neuron, so delta = M e without psi (§8)",
        file=COMPONENT,
        find='target = probe.current if cfg.noise_pos == "pre"',
        replace='target = probe.spikes if cfg.noise_pos == "pre"',
        killers=(RULE,),
    ),
    Mutant(
        name="backprop-through-the-network",
        kind="contribution",
        guards="no weight transport, no backward pass: hidden gradients come only from psi (M e) x traces",
        file=COMPONENT,
        find='detach_inputs=cfg.feedback != "bp"',
        replace="detach_inputs=False",
        killers=(f"{TESTS}::test_hidden_weight_gradients_never_come_from_backprop_through_the_network", RULE),
    ),
    Mutant(
        name="dual-noise-not-negated",
        kind="contribution",
        guards="dual (antithetic) noise: -z at the step after z cancels the z o^T / alpha term",
        file=COMPONENT,
        find="return [-z for z in previous]",
        replace="return previous",
        killers=(f"{TESTS}::test_dual_noise_negates_the_previous_draw", RULE),
    ),
    Mutant(
        name="presynaptic-trace-dropped",
        kind="contribution",
        guards="OTTT's trace a[t] = decay a[t-1] + x[t]: the weight gradient's presynaptic factor",
        file=ONLINE,
        find="else decay * previous + x.detach()",
        replace="else x.detach()",
        killers=(f"{ONLINE_TESTS}::test_trace_is_the_leaky_sum_of_inputs", RULE),
    ),
    Mutant(
        name="dkp-feedback-not-learned",
        kind="bug",
        guards="the DKP baseline trains its B_l (dB = s e^T); frozen, it is DFA under another name",
        file=COMPONENT,
        find="objective = objective + (probe.spikes.detach().flatten(1) @ matrix * error).sum() / batch",
        replace="objective = objective + 0 * matrix.sum()",
        killers=(RULE,),
    ),
    # --- bugs of the kind
    Mutant(
        name="output-error-sign-flipped",
        kind="bug",
        guards="e = softmax(o) - y (a sign): the update descends the loss",
        file=FEEDBACK,
        find="(out.softmax(dim=1) - onehot)",
        replace="(onehot - out.softmax(dim=1))",
        killers=(f"{TESTS}::test_output_error_is_the_gradient_of_the_per_step_loss",),
    ),
    Mutant(
        name="bp-baseline-is-local-only",
        kind="bug",
        guards="the BP baseline is exact spatial backprop on the same substrate (the paired comparison's reference)",
        file=COMPONENT,
        find='detach_inputs=cfg.feedback != "bp"',
        replace="detach_inputs=True",
        killers=(RULE,),
    ),
    Mutant(
        name="state-leaks-between-batches",
        kind="bug",
        guards="membranes and traces start from rest in every batch",
        file=COMPONENT,
        find="state = OnlineState()  # fresh membranes",
        replace='state = net.__dict__.setdefault("leaked", OnlineState())  # fresh membranes',
        killers=(f"{TESTS}::test_no_state_leaks_between_batches",),
    ),
    Mutant(
        name="one-time-step-short",
        kind="bug",
        guards="every training batch runs all T time steps (an off-by-one)",
        file=COMPONENT,
        find="    for t in range(cfg.steps):\n        if cfg.feedback in NOISY:",
        replace="    for t in range(cfg.steps - 1):\n        if cfg.feedback in NOISY:",
        killers=(RULE,),
    ),
    Mutant(
        name="noise-at-evaluation",
        kind="bug",
        guards="evaluation is clean and deterministic (train with noise, evaluate without: §8)",
        file=COMPONENT,
        find="out, probes = net.step(frame(x, t, cfg.arch), state)\n            total = total + out",
        replace=(
            "out, probes = net.step(frame(x, t, cfg.arch), state, draw_noise(net, cfg, x.shape[0], t, None, "
            "x.device), cfg.noise_scale)\n            total = total + out"
        ),
        killers=(f"{TESTS}::test_evaluation_is_clean_and_leaves_the_feedback_alone",),
    ),
    Mutant(
        name="test-split-reaches-training",
        kind="bug",
        guards="training batches come from the train split only",
        file=COMPONENT,
        find="stream = train_split.batches(",
        replace="stream = test.batches(",
        killers=(f"{TESTS}::test_trains_on_train_only_and_reports_each_split",),
    ),
    Mutant(
        name="test-metric-on-val-split",
        kind="bug",
        guards="test/acc is measured on the test split",
        file=COMPONENT,
        find='(val, "val"), (test, "test")):',
        replace='(val, "val"), (val, "test")):',
        killers=(f"{TESTS}::test_trains_on_train_only_and_reports_each_split",),
    ),
    Mutant(
        name="aedat-x-read-from-y-bits",
        kind="bug",
        guards="AEDAT 3.1 polarity events: x is bits 17-31, y bits 2-16 (a swapped decode transposes every frame)",
        file=EVENTS,
        find='"x": ((word >> 17) & 0x7FFF)',
        replace='"x": ((word >> 2) & 0x7FFF)',
        killers=(f"{EVENT_TESTS}::test_gestures_become_spikingjelly_frames_on_the_release_split",),
    ),
    Mutant(
        name="aedat-polarity-from-valid-bit",
        kind="bug",
        guards="polarity is bit 1 (bit 0 is the valid flag): the two frame channels",
        file=EVENTS,
        find='"p": ((word >> 1) & 1)',
        replace='"p": (word & 1)',
        killers=(f"{EVENT_TESTS}::test_gestures_become_spikingjelly_frames_on_the_release_split",),
    ),
]
