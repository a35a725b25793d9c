"""The networks SGM attacks with and transfers to, written with torch + einops (no torchvision here).

ImageNet families (resnet18/34/50/101/152, densenet121/169/201, vgg16/19) keep torchvision's module names, so a
state dict saved from torchvision or pretrainedmodels (as safetensors) loads with strict key checking; `width` is
the base channel count (64 in the paper's models: ResNet's first stage, DenseNet's stem, VGG's first conv; DenseNet's
growth rate is width / 2, VGG's classifier width * 64), so tiny models for tests keep the architecture. Inputs are
images in [0, 1]; `Normalised` puts the ImageNet mean/std in front as the first layer (sgm.md §3.2).

Digits families (sgm.md §6): "resmlp-<width>x<blocks>" (Linear(64 -> width), blocks z + Linear(ReLU(Linear(LN(z)))),
LN + Linear(width -> 10)) and "mlp-<width>[x<layers>]" (ReLU MLP), on 8 x 8 grey images.

Residual structure is declared, not guessed: every residual block carries `sgm_branch_end` (the name of its
branch's last module, whose output is added to / concatenated with the identity) and `sgm_decay` (whether SGM
decays it); components/sgm/gradient.py reads these two attributes.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Rearrange, Reduce
from safetensors.torch import load_file
from torch import nn

from components.core.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_DEPTHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
DENSENET_BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}
VGG_LAYOUTS = {  # conv widths in units of `width`, "M" a 2x2 max-pool (torchvision's configs D and E)
    "vgg16": (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
    "vgg19": (1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"),
}
IMAGENET_ARCHS = (*RESNET_DEPTHS, *DENSENET_BLOCKS, *VGG_LAYOUTS)
DIGITS_ARCH = re.compile(r"^(resmlp-(\d+)x(\d+)|mlp-(\d+)(?:x(\d+))?)$")


def family(arch: str) -> str:
    """resnet-basic, resnet-bottleneck, densenet, vgg or resmlp / mlp; a ConfigError for an unknown name."""
    if arch in RESNET_DEPTHS:
        return f"resnet-{RESNET_DEPTHS[arch][0]}"
    if arch in DENSENET_BLOCKS:
        return "densenet"
    if arch in VGG_LAYOUTS:
        return "vgg"
    if DIGITS_ARCH.match(arch):
        return arch.split("-")[0]
    raise ConfigError(
        f"unknown architecture '{arch}': one of {', '.join(IMAGENET_ARCHS)}, resmlp-<width>x<blocks>, mlp-<width>[x<layers>]"
    )


def is_imagenet(arch: str) -> bool:
    return family(arch) not in ("resmlp", "mlp")


# --- ResNet (He et al. 2016; torchvision layout: conv1 bn1 relu maxpool layer1..4 fc) ---------------------------
class BasicBlock(nn.Module):
    expansion = 1
    sgm_branch_end = "bn2"

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()  # one module called twice, as torchvision: the official hooks count on it
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        identity = z if self.downsample is None else self.downsample(z)
        branch = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(z)))))
        return self.relu(identity + branch)


class Bottleneck(nn.Module):
    expansion = 4
    sgm_branch_end = "bn3"

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on the 3x3 (torchvision v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()  # called three times per block
        self.downsample = downsample

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        identity = z if self.downsample is None else self.downsample(z)
        out = self.relu(self.bn1(self.conv1(z)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(identity + self.bn3(self.conv3(out)))


class ResNet(nn.Module):
    def __init__(self, arch: str, num_classes: int, width: int):
        super().__init__()
        kind, depths = RESNET_DEPTHS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for stage, depth in enumerate(depths):
            planes, blocks = width * 2**stage, []
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                downsample = None
                if stride != 1 or inplanes != planes * block.expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * block.expansion),
                    )
                unit = block(inplanes, planes, stride, downsample)
                # the official code leaves each stage's first block undecayed (its "0.relu" filter, sgm.md §3.3)
                unit.sgm_decay = index > 0
                blocks.append(unit)
                inplanes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.pool = Reduce("b c h w -> b c", "mean")
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        z = self.layer4(self.layer3(self.layer2(self.layer1(z))))
        return self.fc(self.pool(z))


# --- DenseNet (Huang et al. 2017; torchvision layout: features.{conv0,norm0,relu0,pool0,denseblockK,...}) -------
class DenseLayer(nn.Module):
    sgm_branch_end = "conv2"
    sgm_decay = True

    def __init__(self, in_features: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_features, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(z))))))
        return torch.cat([z, new], dim=1)  # the concatenated identity is DenseNet's skip connection


class DenseNet(nn.Module):
    def __init__(self, arch: str, num_classes: int, width: int):
        super().__init__()
        growth = max(1, width // 2)  # 32 at the paper's width 64
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, width, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(width),
            relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        features = width
        blocks = DENSENET_BLOCKS[arch]
        for b, count in enumerate(blocks):
            block = nn.Sequential()
            for i in range(count):
                block.add_module(f"denselayer{i + 1}", DenseLayer(features + i * growth, growth))
            layers[f"denseblock{b + 1}"] = block
            features += count * growth
            if b + 1 < len(blocks):
                layers[f"transition{b + 1}"] = nn.Sequential(
                    OrderedDict(
                        norm=nn.BatchNorm2d(features),
                        relu=nn.ReLU(),
                        conv=nn.Conv2d(features, features // 2, 1, bias=False),
                        pool=nn.AvgPool2d(2, 2),
                    )
                )
                features //= 2
        layers["norm5"] = nn.BatchNorm2d(features)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.features(x))  # functional, as torchvision: not a hooked module
        return self.classifier(z.mean(dim=(2, 3)))


# --- VGG (Simonyan & Zisserman 2015; torchvision layout: features.N, classifier.{0,3,6}) -------------------------
class VGG(nn.Module):
    def __init__(self, arch: str, num_classes: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for unit in VGG_LAYOUTS[arch]:
            if unit == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width * unit, 3, padding=1), nn.ReLU()]
                channels = width * unit
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = width * 64  # 4096 at width 64
        self.classifier = nn.Sequential(
            nn.Linear(channels * 49, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = rearrange(self.avgpool(self.features(x)), "b c h w -> b (c h w)")  # torchvision's flatten order
        return self.classifier(z)


# --- digits (sgm.md §6) -------------------------------------------------------------------------------------------
class ResidualMLPBlock(nn.Module):
    """z + Linear(ReLU(Linear(LayerNorm(z)))): the residual branch ends in `fc2`."""

    sgm_branch_end = "fc2"
    sgm_decay = True

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.fc2(self.relu(self.fc1(self.norm(z))))


def digits_model(arch: str, num_classes: int, pixels: int = 64) -> nn.Module:
    match = DIGITS_ARCH.match(arch)
    if arch.startswith("resmlp"):
        width, blocks = int(match.group(2)), int(match.group(3))
        return nn.Sequential(
            OrderedDict(
                flatten=Rearrange("b h w -> b (h w)"),
                stem=nn.Linear(pixels, width),
                blocks=nn.Sequential(*(ResidualMLPBlock(width) for _ in range(blocks))),
                norm=nn.LayerNorm(width),
                head=nn.Linear(width, num_classes),
            )
        )
    width, layers = int(match.group(4)), int(match.group(5) or 1)
    units: list[nn.Module] = [Rearrange("b h w -> b (h w)")]
    for i in range(layers):
        units += [nn.Linear(pixels if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*units, nn.Linear(width, num_classes))


class Normalised(nn.Module):
    """(x - mean) / std as the model's first layer, so the attack works on [0, 1] pixels; the statistics are not
    part of the state dict (torchvision's weights do not carry them)."""

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def build_model(arch: str, num_classes: int, width: int = 64) -> nn.Module:
    """The bare network (state-dict keys as torchvision's); wrap ImageNet ones in `Normalised` to attack them."""
    kind = family(arch)
    if kind.startswith("resnet"):
        return ResNet(arch, num_classes, width)
    if kind == "densenet":
        return DenseNet(arch, num_classes, width)
    if kind == "vgg":
        return VGG(arch, num_classes, width)
    return digits_model(arch, num_classes)


def load_weights(model: nn.Module, path: Path, arch: str) -> nn.Module:
    """Strictly load a safetensors state dict; a missing file, key or shape is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"weights for '{arch}' not found at {path}: save its state dict there as safetensors")
    state = load_file(str(path))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{path} does not hold a {arch}: missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise DataError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, a {arch} of this width and class count needs "
                f"{tuple(tensor.shape)} (check width and num_classes)"
            )
    model.load_state_dict(state, strict=True)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
