"""The binary-weight SNNs of SEI-BWSNN (spec 3.1, 3.3, 3.4) and their full-precision ANN teachers.

Both models map an input to per-step logits [T, B, classes]; the readout is their mean over T (each step is
one member of the self-ensemble). Real-valued streams h carry the shortcuts; spikes never add to spikes.
`spiking=False` swaps every LIF for a ReLU and runs one step: the full-precision teacher of the same shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from components.core.augment import imagenet_normalise
from components.sei_bwsnn.binary import BinaryLinear
from components.sei_bwsnn.config import Config
from components.snn import LIF, direct


class ChannelNorm(nn.BatchNorm1d):
    """BatchNorm over the last dim of [..., D]: statistics shared across time steps, batch and tokens (tdBN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def make_neuron(cfg: Config, spiking: bool) -> nn.Module:
    if not spiking:
        return nn.ReLU()
    n = cfg.neuron
    return LIF(
        tau=n.tau,
        v_threshold=n.v_threshold,
        reset="soft",
        decay_input=False,
        detach_state=n.temporal_grad == "detach",
        surrogate=n.surrogate,
        alpha=n.alpha,
    )


def make_linear(cfg: Config, binary: bool, d_in: int, d_out: int) -> nn.Module:
    return BinaryLinear(d_in, d_out, cfg.alpha_grad) if binary else nn.Linear(d_in, d_out, bias=False)


class SpikingMLP(nn.Module):
    """FP stem -> `depth` binarised Linear+BN layers, each fed by an LIF -> LIF -> FP head (spec §6 smoke model).

    per_layer: h = h + BN(W_b SN(h)) around every binary layer; block: one shortcut per pair of layers;
    none: h = BN(W_b SN(h)).
    """

    def __init__(self, cfg: Config, in_features: int, classes: int, width: int, binary: bool, spiking: bool):
        super().__init__()
        self.steps, self.shortcut = (cfg.steps if spiking else 1), cfg.shortcut
        self.stem = nn.Linear(in_features, width)
        self.neurons = nn.ModuleList(make_neuron(cfg, spiking) for _ in range(cfg.depth + 1))
        self.layers = nn.ModuleList(make_linear(cfg, binary, width, width) for _ in range(cfg.depth))
        self.norms = nn.ModuleList(ChannelNorm(width) for _ in range(cfg.depth))
        self.head = nn.Linear(width, classes)
        # synapses each spike of neuron layer i drives (for synops): the next layer's outputs
        self.fanout = {f"neurons.{i}": width for i in range(cfg.depth)} | {f"neurons.{cfg.depth}": classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = direct(self.stem(x.flatten(1)), self.steps)  # direct coding: the FP stem's current at every step
        block_input = h
        for i, (neuron, layer, norm) in enumerate(zip(self.neurons, self.layers, self.norms)):
            out = norm(layer(neuron(h)))
            if self.shortcut == "per_layer":
                h = h + out
            elif self.shortcut == "block":
                last_of_pair = i % 2 == 1 or i == len(self.layers) - 1
                h = block_input + out if last_of_pair else out
                block_input = h if last_of_pair else block_input
            else:
                h = out
        return self.head(self.neurons[-1](h))


class SpikingBlock(nn.Module):
    """Spiking self-attention (full precision, Spikformer-style spike Q/K/V, no softmax) + binarised FFN.

    FFN per_layer (spec 3.4): y = x + BN(W2_b SN(BN(W1_b SN(x)) + R(x))), R repeats x mlp_ratio times.
    FFN block: y = x + BN(W2_b SN(BN(W1_b SN(x)))); none: y = BN(W2_b SN(BN(W1_b SN(x)))).
    A teacher block (spiking=False) uses softmax attention: a standard ViT block with ReLU and BN.
    """

    def __init__(self, cfg: Config, width: int, binary: bool, spiking: bool):
        super().__init__()
        self.heads, self.spiking, self.shortcut, self.ratio = cfg.heads, spiking, cfg.shortcut, cfg.mlp_ratio
        hidden = width * cfg.mlp_ratio
        self.attn_in = make_neuron(cfg, spiking)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.qkv_norm = ChannelNorm(3 * width)
        self.qkv_neuron = make_neuron(cfg, spiking)
        self.attn_out = make_neuron(cfg, spiking)
        self.proj = nn.Linear(width, width, bias=False)
        self.proj_norm = ChannelNorm(width)
        self.ffn_in = make_neuron(cfg, spiking)
        self.fc1, self.norm1 = make_linear(cfg, binary, width, hidden), ChannelNorm(hidden)
        self.ffn_mid = make_neuron(cfg, spiking)
        self.fc2, self.norm2 = make_linear(cfg, binary, hidden, width), ChannelNorm(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [T, B, N, D]
        qkv = self.qkv_neuron(self.qkv_norm(self.qkv(self.attn_in(h))))
        q, k, v = rearrange(qkv, "t b n (three h d) -> three t b h n d", three=3, h=self.heads)
        if self.spiking:  # spike Q, K non-negative: no softmax needed (Spikformer's SSA, scale 0.125)
            mixed = (q @ k.transpose(-2, -1)) @ v * 0.125
        else:
            mixed = F.scaled_dot_product_attention(q, k, v)
        h = h + self.proj_norm(self.proj(self.attn_out(rearrange(mixed, "t b h n d -> t b n (h d)"))))
        inner = self.norm1(self.fc1(self.ffn_in(h)))
        if self.shortcut == "per_layer":
            inner = inner + repeat(h, "... d -> ... (r d)", r=self.ratio)
        out = self.norm2(self.fc2(self.ffn_mid(inner)))
        return out if self.shortcut == "none" else h + out


class SpikingTransformer(nn.Module):
    """FP patch embedding (conv + BN) + position embedding -> blocks -> LIF -> token mean -> FP head."""

    def __init__(
        self, cfg: Config, image_shape: tuple[int, ...], classes: int, width: int, binary: bool, spiking: bool
    ):
        super().__init__()
        height, width_px, channels = (*image_shape, 1)[:3] if len(image_shape) == 2 else image_shape
        if height % cfg.patch or width_px % cfg.patch:
            raise ValueError(f"patch {cfg.patch} does not divide the image size {height}x{width_px}")
        tokens = (height // cfg.patch) * (width_px // cfg.patch)
        self.steps = cfg.steps if spiking else 1
        self.embed = nn.Conv2d(channels, width, cfg.patch, stride=cfg.patch, bias=False)
        self.embed_norm = nn.BatchNorm2d(width)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(SpikingBlock(cfg, width, binary, spiking) for _ in range(cfg.depth))
        self.out_neuron = make_neuron(cfg, spiking)
        self.head = nn.Linear(width, classes)
        hidden = width * cfg.mlp_ratio
        self.fanout = {"out_neuron": classes}
        for i in range(cfg.depth):  # spikes into linear layers; the attention products are not counted
            self.fanout |= {
                f"blocks.{i}.attn_in": 3 * width,
                f"blocks.{i}.attn_out": width,
                f"blocks.{i}.ffn_in": hidden,
                f"blocks.{i}.ffn_mid": width,
            }

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] in [0, 1]
        tokens = rearrange(self.embed_norm(self.embed(x)), "b d h w -> b (h w) d") + self.position
        h = direct(tokens, self.steps)
        for block in self.blocks:
            h = block(h)
        return self.head(self.out_neuron(h).mean(dim=2))


def build_model(cfg: Config, image_shape: tuple[int, ...], classes: int, *, teacher: bool = False) -> nn.Module:
    """The student BW-SNN (or FP-SNN when cfg.binary is off), or with teacher=True its FP ANN teacher."""
    width = cfg.kd.teacher_width if teacher else cfg.width
    binary, spiking = (False, False) if teacher else (cfg.binary, True)
    if cfg.arch == "mlp":
        return SpikingMLP(cfg, int(torch.tensor(image_shape).prod()), classes, width, binary, spiking)
    return SpikingTransformer(cfg, image_shape, classes, width, binary, spiking)


def to_input(images: torch.Tensor, arch: str, normalise: bool = False) -> torch.Tensor:
    """uint8 [B, H, W] or [B, H, W, C] -> floats in [0, 1], or ImageNet's mean/std (normalise, RGB only);
    channels first for the transformer. Training, evaluation and the teacher all read their input through here."""
    x = imagenet_normalise(images) if normalise else images.float().div(255.0)
    if arch == "mlp":
        return x.flatten(1)
    return rearrange(x, "b h w -> b 1 h w") if x.ndim == 3 else rearrange(x, "b h w c -> b c h w")


def teacher_shape(state: dict[str, torch.Tensor]) -> dict[str, int | str]:
    """The architecture of an ANN teacher (this file's MLP or Transformer family) read off its weights: arch,
    width, depth, and for the Transformer patch and mlp_ratio (the heads hold no weights: they are not here)."""
    if "embed.weight" in state:  # Transformer: Conv2d(channels, width, patch, stride=patch)
        width, _, patch, _ = state["embed.weight"].shape
        depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
        return {
            "arch": "transformer",
            "width": width,
            "depth": depth,
            "patch": patch,
            "mlp_ratio": state["blocks.0.fc1.weight"].shape[0] // width if depth else 1,
        }
    if "stem.weight" in state:
        depth = len({key.split(".")[1] for key in state if key.startswith("layers.")})
        return {"arch": "mlp", "width": state["stem.weight"].shape[0], "depth": depth}
    raise ValueError("not a sei_bwsnn ANN teacher: its weights have neither embed.weight nor stem.weight")


class ForeignTeacher(nn.Module):
    """A teacher of the other arch: takes the student's input form and hands the teacher its own."""

    def __init__(self, teacher: nn.Module, image_shape: tuple[int, ...], student_arch: str):
        super().__init__()
        self.teacher, self.image_shape, self.student_arch = teacher, tuple(image_shape), student_arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.student_arch == "mlp":  # [B, H*W(*C)] -> the transformer's [B, C, H, W]
            images = x.reshape(len(x), *self.image_shape)
            return self.teacher(
                rearrange(images, "b h w -> b 1 h w") if images.ndim == 3 else images.permute(0, 3, 1, 2)
            )
        return self.teacher(rearrange(x, "b c h w -> b (h w c)"))  # the MLP's flattening order: H, W, C


def build_external_teacher(
    cfg: Config, state: dict[str, torch.Tensor], image_shape: tuple[int, ...], classes: int, heads: int
) -> nn.Module:
    """An ANN teacher of any shape of this family (another width, depth, patch, FFN ratio or arch than the
    student's), built from its weights alone; `heads` is the Transformer teacher's number of attention heads."""
    shape = teacher_shape(state)
    fields = {key: value for key, value in shape.items() if key != "width"}
    teacher_cfg = cfg.model_copy(
        update=fields | {"heads": heads, "kd": cfg.kd.model_copy(update={"teacher_width": shape["width"]})}
    )
    teacher = build_model(teacher_cfg, image_shape, classes, teacher=True)
    teacher.load_state_dict(state)
    return teacher if shape["arch"] == cfg.arch else ForeignTeacher(teacher, image_shape, cfg.arch)
