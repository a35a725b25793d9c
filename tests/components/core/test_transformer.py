"""The shared decoder (components/core/transformer.py): the fused attention path against the naive reference for
every position encoding, ALiBi's sign, the relative encodings' shift invariance, RPE-Square's anchors, and greedy
decoding under left padding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from components.core.transformer import (
    POSITION_ENCODINGS,
    Decoder,
    DecoderConfig,
    PositionBias,
    alibi_slopes,
    greedy,
    last_anchor,
)

ANCHORS = (1, 2, 3)


def randomised(cfg: DecoderConfig, seed: int = 0) -> Decoder:
    """A decoder whose position tables are random too (they start at zero), so the bias paths are exercised."""
    torch.manual_seed(seed)
    model = Decoder(cfg)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("bias."):
                parameter.normal_(0, 0.5)
    return model


def with_attention(model: Decoder, mode: str) -> Decoder:
    cfg = dataclasses.replace(model.cfg, attention=mode)
    model.cfg = cfg
    for block in model.blocks:
        block.attention.cfg = cfg
    return model


def batch(seed: int = 1, length: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, 30, (3, length), generator=generator)
    tokens[:, 0] = 1
    tokens[:, 5] = 2
    tokens[:, 9] = 3
    keep = torch.ones_like(tokens, dtype=torch.bool)
    keep[2, :4] = False  # a left-padded row
    return tokens, keep


@pytest.mark.parametrize("position", POSITION_ENCODINGS)
def test_fused_attention_matches_the_naive_reference(position):
    cfg = DecoderConfig(
        vocab_size=30, d_model=32, heads=4, layers=2, position=position, rpe_clip=6, anchor_tokens=ANCHORS
    )
    model = randomised(cfg)
    tokens, keep = batch()
    for mask in (None, keep):
        fused = with_attention(model, "fused")(tokens, keep=mask)
        naive = with_attention(model, "naive")(tokens, keep=mask)
        assert torch.allclose(fused, naive, atol=1e-5), (position, (fused - naive).abs().max())
    # negative control: the comparison can tell a different encoding apart
    other = randomised(dataclasses.replace(cfg, position="nope" if position != "nope" else "rope"))
    assert not torch.allclose(other(tokens), with_attention(model, "naive")(tokens), atol=1e-3)


def test_alibi_favours_nearer_keys_with_the_standard_slopes():
    """nupa.md §6 check 4: with zeroed content logits the last query's attention mass grows towards itself."""
    heads = 4
    cfg = DecoderConfig(vocab_size=10, d_model=16, heads=heads, layers=1, position="alibi")
    model = Decoder(cfg)
    tokens = torch.randint(0, 10, (1, 12))
    positions = torch.arange(12)[None]
    bias = model.bias(tokens, positions, model.embed(tokens))  # [1, H, T, T]
    assert torch.allclose(alibi_slopes(heads), torch.tensor([2.0 ** (-8 * h / heads) for h in range(1, heads + 1)]))
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    weights = torch.softmax(bias[0].masked_fill(~causal, float("-inf")), dim=-1)[:, -1]  # [H, T] from the last query
    assert torch.all(weights[:, 1:] > weights[:, :-1])  # strictly more mass on nearer keys, every head
    assert torch.allclose(bias[0, 0, 11, 8], -alibi_slopes(heads)[0] * 3)
    # through the model: zero queries and keys, values = identity of the one-hot position, one head's output
    with torch.no_grad():
        attention = model.blocks[0].attention
        attention.qkv.weight.zero_()
    captured = {}
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False):
        captured["mask"] = attn_mask
        return original(q, k, v, attn_mask=attn_mask, is_causal=is_causal)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        model(tokens)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    last = torch.softmax(captured["mask"][0, :, -1], dim=-1)
    assert torch.all(last[:, 1:] > last[:, :-1])


@pytest.mark.parametrize("position", ["rope", "alibi", "rpe"])
def test_relative_encodings_ignore_a_common_shift(position):
    cfg = DecoderConfig(vocab_size=30, d_model=32, heads=4, layers=2, position=position, rpe_clip=20)
    model = randomised(cfg)
    tokens, _ = batch()
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    assert torch.allclose(model(tokens, positions=positions), model(tokens, positions=positions + 37), atol=1e-4)
    if position == "rope":  # negative control: APE sees the shift
        ape = randomised(dataclasses.replace(cfg, position="ape"))
        assert not torch.allclose(ape(tokens, positions=positions), ape(tokens, positions=positions + 37), atol=1e-3)


def test_last_anchor_and_segments():
    anchors = torch.tensor([[True, False, False, True, False, True, False]])
    start, segment = last_anchor(anchors)
    assert start.tolist() == [[0, 0, 0, 3, 3, 5, 5]]
    assert segment.tolist() == [[0, 0, 0, 1, 1, 2, 2]]


def test_rpe_square_hard_sees_offsets_from_the_anchor_whatever_the_operand_length():
    """ldhd.md §3.4: output digit t and operand digit t share r(i) - r(j) = 0 at every operand length, so one
    table entry serves all lengths; plain RPE's offset between them grows with the length."""
    cfg = DecoderConfig(vocab_size=30, d_model=16, heads=2, layers=1, position="rpe_square_hard", rpe_clip=40,
                        anchor_tokens=ANCHORS)  # fmt: skip
    bias_module = PositionBias(cfg)
    with torch.no_grad():
        bias_module.table.normal_()
    for n in (3, 6, 9):
        tokens = torch.tensor([[1] + [7] * n + [3] + [8] * n])  # BOS x_1..x_n = y_1..y_n
        positions = torch.arange(tokens.shape[1])[None]
        bias = bias_module(tokens, positions, torch.zeros(1, tokens.shape[1], 16))
        t = 2
        output, source = 1 + n + t, t  # y_t and x_t
        expected = bias_module.table[:, 1, 0, cfg.rpe_clip]  # segments (after "=", after BOS), offset 0
        assert torch.allclose(bias[0, :, output, source], expected)


def test_rpe_square_soft_reduces_to_hard_with_one_hot_anchors():
    cfg = DecoderConfig(vocab_size=30, d_model=16, heads=2, layers=1, position="rpe_square_soft", rpe_clip=8,
                        anchor_tokens=ANCHORS, max_positions=64)  # fmt: skip
    soft = PositionBias(cfg)
    hard = PositionBias(dataclasses.replace(cfg, position="rpe_square_hard", rpe_segments=1))
    with torch.no_grad():
        soft.table.normal_()
        hard.table.copy_(soft.table[:, None, None, :])
        soft.anchor_offset.mul_(100.0)  # one-hot on the nearest anchor
    tokens, _ = batch(length=11)
    positions = torch.arange(11)[None].expand(3, -1)
    x = torch.randn(3, 11, 16)
    soft_bias, hard_bias = soft(tokens, positions, x), hard(tokens, positions, x)
    causal = torch.ones(11, 11, dtype=torch.bool).tril()
    assert torch.allclose(soft_bias[..., causal], hard_bias[..., causal], atol=1e-4)
    with torch.no_grad():
        soft.anchor_offset.zero_()  # negative control: uniform anchors differ from the hard form
    assert not torch.allclose(soft(tokens, positions, x)[..., causal], hard_bias[..., causal], atol=1e-3)


@pytest.mark.parametrize("position", ["rope", "alibi", "rpe_square_hard"])
def test_greedy_with_left_padding_matches_each_prompt_alone(position):
    cfg = DecoderConfig(vocab_size=30, d_model=32, heads=4, layers=2, position=position, anchor_tokens=ANCHORS)
    model = randomised(cfg, seed=3).eval()
    prompts = [[1, 5, 6, 7, 2, 8, 3], [1, 9, 3], [1, 4, 4, 2, 5, 3]]
    together = greedy(model, prompts, max_new_tokens=6, eos=0, pad=29)
    alone = [greedy(model, [p], max_new_tokens=6, eos=0, pad=29)[0] for p in prompts]
    assert together == alone
