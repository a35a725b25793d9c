"""The L_inf iterative attack SGM plugs its gradient into (sgm.md §3.2): PGD / I-FGSM, optionally with a random
start (the extension's code) or momentum (MI-FGSM), and the success rate on 8-bit images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    momentum: float = 0.0,
    rand_init: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x_adv <- clip_[x-eps, x+eps] clip_[0,1] (x_adv + alpha sign(g)), `steps` times, g the gradient of the summed
    cross-entropy at x_adv as the model's backward pass gives it (with SGM's hooks when a context installed them).
    With momentum mu > 0: m <- mu m + g / ||g||_1 (per image) and the step follows sign(m)."""
    x = images.detach()
    x_adv = x.clone()
    if rand_init:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 * eps - eps
        x_adv = (x + noise.to(x.device)).clamp(0, 1)
    velocity = torch.zeros_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        if momentum > 0:
            l1 = grad.abs().flatten(1).sum(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
            velocity = momentum * velocity + grad / l1
            grad = velocity
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def quantise(images: torch.Tensor) -> torch.Tensor:
    """The adversarial images as the paper evaluates them: saved as 8-bit PNG and loaded back."""
    return torch.round(images * 255) / 255


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(chunk.to(device)).argmax(dim=1).cpu() for chunk in images.split(batch_size)])


def success_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """Untargeted attack success rate in %: 100 - top-1 accuracy of `model` on `images` (EXT evaluate_all.py)."""
    correct = (predict(model, images, batch_size) == labels).float().mean().item()
    return 100.0 * (1.0 - correct)
