"""The optimizer table, Lion and mSGDW against hand-computed steps, the no-decay rules and resume."""

from __future__ import annotations

import io
import typing

import pytest
import torch
from torch import nn

from components.core.errors import ConfigError
from components.core.optim import (
    MSGDW,
    NO_DECAY_RULES,
    OPTIMIZERS,
    Adan,
    Lion,
    OptimizerName,
    build_optimizer,
    param_groups,
)
from components.core.schedules import ScheduleConfig, make_scheduler


class TinyModel(nn.Module):
    """Has one of each kind of parameter the no-decay rules tell apart."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(tokens))).mean(dim=1)


def tiny_model(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel()


def tiny_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    tokens = torch.randint(0, 11, (8, 5), generator=generator)
    targets = torch.randint(0, 3, (8,), generator=generator)
    return tokens, targets


def train_steps(model, optimizer, scheduler, steps: range) -> None:
    for step in steps:
        tokens, targets = tiny_batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(tokens), targets).backward()
        optimizer.step()
        scheduler.step()


def scalar_step(optimizer: torch.optim.Optimizer, param: torch.Tensor, grad: float | list[float]) -> None:
    param.grad = torch.tensor(grad, dtype=param.dtype).reshape(param.shape)
    optimizer.step()


# --- the table -------------------------------------------------------------------------------------


def test_optimizer_name_literal_matches_the_table():
    assert typing.get_args(OptimizerName) == tuple(OPTIMIZERS)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_spec_is_consistent_and_builds_on_a_small_model(name):
    spec = OPTIMIZERS[name]
    assert spec.name == name
    assert spec.lr > 0 and spec.weight_decay >= 0
    assert spec.no_decay in NO_DECAY_RULES
    assert spec.reason and "\n" not in spec.reason
    model = tiny_model()
    optimizer = build_optimizer(name, model)
    assert all(group["lr"] == spec.lr for group in optimizer.param_groups)
    assert max(group["weight_decay"] for group in optimizer.param_groups) == spec.weight_decay
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(grouped) == len(list(model.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize(
    "name, lr, weight_decay, rule",
    [
        ("sgd", 0.1, 5e-4, "none"),
        ("msgdw", 0.1, 5e-4, "ndim<2+embeddings"),
        ("msgdw_ema", 1.0, 5e-5, "ndim<2+embeddings"),
        ("adamw", 1e-3, 0.01, "ndim<2+embeddings"),
        ("lion", 3e-4, 0.03, "ndim<2+embeddings"),
    ],
)
def test_table_defaults(name, lr, weight_decay, rule):
    spec = OPTIMIZERS[name]
    assert (spec.lr, spec.weight_decay, spec.no_decay) == (lr, weight_decay, rule)
    model = tiny_model()
    optimizer = build_optimizer(name, model)
    undecayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] == 0 for p in group["params"]}
    assert (id(model.embed.weight) in undecayed) == (rule == "ndim<2+embeddings")
    assert (id(model.norm.weight) in undecayed) == (rule != "none")


def test_build_optimizer_overrides_the_defaults():
    optimizer = build_optimizer("adamw", tiny_model(), lr=3e-4, weight_decay=0.05)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4, 3e-4]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]


def test_build_optimizer_picks_the_right_classes():
    model = tiny_model()
    assert type(build_optimizer("sgd", model)) is torch.optim.SGD
    assert type(build_optimizer("msgdw", model)) is MSGDW
    assert type(build_optimizer("adamw", model)) is torch.optim.AdamW
    assert type(build_optimizer("lion", model)) is Lion
    sgd = build_optimizer("sgd", model)
    assert sgd.param_groups[0]["momentum"] == 0.9
    assert build_optimizer("lion", model).param_groups[0]["betas"] == (0.9, 0.99)


def test_build_optimizer_passes_betas_through_the_table():
    model = tiny_model()
    assert build_optimizer("adamw", model).param_groups[0]["betas"] == (0.9, 0.999)  # the table's default
    nanogpt = build_optimizer("adamw", model, betas=(0.9, 0.95))  # e.g. nanoGPT's GPT-2 recipe
    assert all(group["betas"] == (0.9, 0.95) for group in nanogpt.param_groups)
    assert build_optimizer("adan", model, betas=[0.9, 0.9, 0.9]).param_groups[0]["betas"] == (0.9, 0.9, 0.9)
    with pytest.raises(ConfigError, match="'msgdw' has no betas"):
        build_optimizer("msgdw", model, betas=(0.9, 0.95))
    with pytest.raises(ConfigError, match="takes 2 betas"):
        build_optimizer("adamw", model, betas=(0.9, 0.95, 0.99))


def test_adan_state_is_at_least_fp32():
    # as Lion and mSGDW: a bf16 parameter keeps fp32 moments (bf16 ones would round away the (1 - b) g increments);
    # the state equals an fp32 run's exactly, and the parameter is the fp32 step rounded once to bf16
    torch.manual_seed(0)
    start = torch.randn(64).bfloat16()
    grads = [torch.randn(64).bfloat16() * 1e-3 for _ in range(2)]
    low, high = nn.Parameter(start.clone()), nn.Parameter(start.float())
    optimizers = [Adan([p], lr=1e-2, weight_decay=0.1) for p in (low, high)]
    for step, grad in enumerate(grads):
        for param, optimizer in zip((low, high), optimizers):
            param.grad = grad.to(param.dtype)
            optimizer.step()
        if step == 0:
            assert torch.equal(low.detach(), high.detach().bfloat16())
    low_state, high_state = (optimizer.state[p] for optimizer, p in zip(optimizers, (low, high)))
    for key in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "prev_grad"):
        assert low_state[key].dtype == torch.float32, key
        assert torch.equal(low_state[key], high_state[key]), key
    assert low.dtype == torch.bfloat16


def test_unknown_optimizer_suggests_the_closest_name():
    with pytest.raises(ConfigError) as error:
        build_optimizer("lino", tiny_model())
    assert str(error.value) == (
        "unknown optimizer 'lino' (did you mean 'lion'?); choose from sgd, msgdw, msgdw_ema, adamw, adan, lion"
    )


@pytest.mark.parametrize("lr, weight_decay", [(0.0, None), (-1e-3, None), (None, -0.1)])
def test_bad_lr_or_weight_decay_is_a_config_error(lr, weight_decay):
    with pytest.raises(ConfigError, match="optimizer 'adamw'"):
        build_optimizer("adamw", tiny_model(), lr=lr, weight_decay=weight_decay)


# --- no-decay rules --------------------------------------------------------------------------------


def test_embeddings_biases_and_norm_gains_are_not_decayed():
    model = tiny_model()
    decay, no_decay = param_groups(model, "ndim<2+embeddings", 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.head.weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model.embed.weight),
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.head.bias),
    }


def test_ndim_rule_decays_embeddings_and_none_rule_decays_everything():
    model = tiny_model()
    decay, no_decay = param_groups(model, "ndim<2", 0.1)
    assert {id(p) for p in decay["params"]} == {id(model.head.weight), id(model.embed.weight)}
    assert len(no_decay["params"]) == 3
    (everything,) = param_groups(model, "none", 0.1)
    assert len(everything["params"]) == 5 and everything["weight_decay"] == 0.1


def test_tied_embedding_appears_once_and_is_not_decayed():
    model = nn.Sequential(nn.Embedding(7, 4), nn.Linear(4, 7, bias=False))
    model[1].weight = model[0].weight
    groups = param_groups(model, "ndim<2+embeddings", 0.1)
    assert [len(group["params"]) for group in groups] == [1]
    assert groups[0]["weight_decay"] == 0.0


def test_frozen_parameters_are_left_out():
    model = tiny_model()
    model.embed.weight.requires_grad_(False)
    grouped = [p for group in param_groups(model, "ndim<2+embeddings", 0.1) for p in group["params"]]
    assert id(model.embed.weight) not in {id(p) for p in grouped}
    assert len(grouped) == 4


def test_unknown_no_decay_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'ndim<2'"):
        param_groups(tiny_model(), "ndim<3", 0.1)


# --- Lion ------------------------------------------------------------------------------------------


def test_lion_golden_two_steps():
    # lion.md 6.1: c2 = 0.9 * 0.01 - 0.1 * 0.085 = +0.0005 with the OLD momentum, so x2 = -2.
    # Updating m before forming c gives c2 < 0 and x2 = 0 (next test), which the exact assert rejects.
    x = torch.zeros(1, requires_grad=True)
    optimizer = Lion([x], lr=1.0, betas=(0.9, 0.99), weight_decay=0.0)
    scalar_step(optimizer, x, [1.0])
    assert x.item() == -1.0
    scalar_step(optimizer, x, [-0.085])
    assert x.item() == -2.0
    momentum = optimizer.state[x]["exp_avg"].item()
    assert momentum == pytest.approx(0.99 * 0.01 + 0.01 * -0.085, rel=1e-6)


def test_lion_golden_example_rejects_momentum_first_order():
    # The same arithmetic with m updated before c: the test above would see x2 = 0, not -2.
    beta1, beta2, m, x = 0.9, 0.99, 0.0, 0.0
    for grad in (1.0, -0.085):
        m = beta2 * m + (1 - beta2) * grad
        c = beta1 * m + (1 - beta1) * grad
        x -= (c > 0) - (c < 0)
    assert x == 0.0


def test_lion_decay_is_decoupled_and_scaled_by_lr():
    x0, lr, weight_decay = 3.0, 0.5, 0.25
    x = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
    optimizer = Lion([x], lr=lr, weight_decay=weight_decay)
    expected = x0
    for _ in range(5):
        scalar_step(optimizer, x, [0.0])
        expected *= 1 - lr * weight_decay
        assert x.item() == expected
    assert optimizer.state[x]["exp_avg"].item() == 0.0


def test_lion_decay_uses_the_pre_step_parameter():
    # x1 = x0 - lr (sign(c) + wd x0) = 2 - 0.5 (1 + 0.25 * 2) = 1.25 exactly in binary.
    # Decaying the already-stepped x would give (2 - 0.5) * (1 - 0.125) = 1.3125; coupled L2 would put
    # wd x inside the sign and give 2 - 0.5 = 1.5.
    x = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    optimizer = Lion([x], lr=0.5, weight_decay=0.25)
    scalar_step(optimizer, x, [1.0])
    assert x.item() == 1.25


def test_lion_sign_of_zero_leaves_a_coordinate_still():
    x = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    optimizer = Lion([x], lr=0.1, weight_decay=0.0)
    scalar_step(optimizer, x, [1.0, 0.0])
    assert x.tolist() == [0.4, 0.5]


def test_lion_moves_every_coordinate_by_exactly_lr():
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    optimizer = Lion([x], lr=0.125, weight_decay=0.0)
    scalar_step(optimizer, x, [1e-8, -3.0, 250.0, -1e-30])
    assert x.tolist() == [-0.125, 0.125, -0.125, 0.125]


# --- mSGDW -----------------------------------------------------------------------------------------


def test_msgdw_decay_never_enters_the_momentum():
    x0, lr, weight_decay = 1.5, 0.1, 0.5
    x = torch.tensor([x0, -x0], dtype=torch.float64, requires_grad=True)
    optimizer = MSGDW([x], lr=lr, momentum=0.9, weight_decay=weight_decay)
    expected = x0
    for _ in range(6):
        scalar_step(optimizer, x, [0.0, 0.0])
        expected *= 1 - lr * weight_decay
        assert x.tolist() == [expected, -expected]
    # Coupled decay (torch's SGD) fills the buffer with wd x and shrinks x faster than (1 - lr wd)^k.
    assert optimizer.state[x]["momentum_buffer"].tolist() == [0.0, 0.0]


def test_coupled_sgd_would_fail_the_decoupling_check():
    x = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=0.1, momentum=0.9, weight_decay=0.5)
    for _ in range(2):
        scalar_step(optimizer, x, [0.0])
    assert optimizer.state[x]["momentum_buffer"].item() != 0.0
    assert x.item() != 1.5 * (1 - 0.05) ** 2


def test_msgdw_two_hand_computed_steps():
    # mu 0.5, lr 0.5, wd 0.25, x0 = 1, g = 1 then 2 (all exact in binary):
    # b1 = 1,             x1 = 1 - 0.5 * 1 - 0.125 * 1 = 0.375
    # b2 = 0.5 * 1 + 2,   x2 = 0.375 - 0.5 * 2.5 - 0.125 * 0.375 = -0.921875
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = MSGDW([x], lr=0.5, momentum=0.5, weight_decay=0.25)
    scalar_step(optimizer, x, [1.0])
    assert x.item() == 0.375
    scalar_step(optimizer, x, [2.0])
    assert x.item() == -0.921875
    assert optimizer.state[x]["momentum_buffer"].item() == 2.5


def test_msgdw_ema_is_torch_form_at_a_tenth_of_the_lr():
    # b_ema = (1 - mu) b_torch exactly, so lr 1.0 in the EMA form moves like lr 0.1 in PyTorch's form
    torch.manual_seed(0)
    start, grads = torch.randn(5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    ema, torch_form = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    optimizers = [
        MSGDW([ema], lr=1.0, momentum=0.9, weight_decay=1e-3, ema=True),
        MSGDW([torch_form], lr=0.1, momentum=0.9, weight_decay=1e-2),
    ]
    for grad in grads:
        for param, optimizer in zip((ema, torch_form), optimizers):
            param.grad = grad.clone()
            optimizer.step()
    torch.testing.assert_close(ema, torch_form, rtol=1e-12, atol=1e-12)
    assert type(build_optimizer("msgdw_ema", tiny_model())) is MSGDW


def test_msgdw_without_decay_matches_torch_sgd_momentum():
    torch.manual_seed(0)
    start = torch.randn(5, dtype=torch.float64)
    grads = torch.randn(4, 5, dtype=torch.float64)
    ours = start.clone().requires_grad_(True)
    reference = start.clone().requires_grad_(True)
    optimizers = [MSGDW([ours], lr=0.3, momentum=0.9), torch.optim.SGD([reference], lr=0.3, momentum=0.9)]
    for grad in grads:
        for param, optimizer in zip((ours, reference), optimizers):
            param.grad = grad.clone()
            optimizer.step()
    torch.testing.assert_close(ours, reference, rtol=1e-15, atol=1e-15)


# --- groups and resume -----------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer_class", [Lion, MSGDW])
def test_custom_optimizers_honour_per_group_lr_and_weight_decay(optimizer_class):
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class(
        [{"params": [a], "lr": 0.5, "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=0.25
    )
    a.grad, b.grad = torch.zeros_like(a), torch.ones_like(b)
    optimizer.step()
    assert a.item() == 0.75  # only decay: 1 * (1 - 0.5 * 0.5)
    assert b.item() == 0.75  # only the gradient step, at the default lr: 1 - 0.25 * 1


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_resume_is_bit_exact(name):
    schedule = ScheduleConfig(name="uba", warmup=2, phi=0.5, min_ratio=0.1)
    budget = 6

    model = tiny_model()
    optimizer = build_optimizer(name, model)
    scheduler = make_scheduler(optimizer, schedule, budget)
    train_steps(model, optimizer, scheduler, range(6))

    first = tiny_model()
    first_optimizer = build_optimizer(name, first)
    first_scheduler = make_scheduler(first_optimizer, schedule, budget)
    train_steps(first, first_optimizer, first_scheduler, range(3))
    saved = io.BytesIO()
    torch.save(
        {
            "model": first.state_dict(),
            "optimizer": first_optimizer.state_dict(),
            "scheduler": first_scheduler.state_dict(),
        },
        saved,
    )
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=True)

    resumed = tiny_model(seed=1)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer = build_optimizer(name, resumed)
    # The scheduler is made before the optimizer state is loaded: LambdaLR's constructor sets the lr to
    # multiplier(0), and loading the optimizer afterwards restores the lr the run had reached.
    resumed_scheduler = make_scheduler(resumed_optimizer, schedule, budget)
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler.load_state_dict(checkpoint["scheduler"])
    train_steps(resumed, resumed_optimizer, resumed_scheduler, range(3, 6))

    for key, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert resumed_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    resumed_state = resumed_optimizer.state_dict()["state"]
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(resumed_state[index][key]), torch.as_tensor(value)), (index, key)
