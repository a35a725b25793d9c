"""The training loss of spec 3.5: (1 - beta) CE(mean_t o[t], y) + beta tau^2 KL(p_teacher || p_student)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_to_teacher(teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax(z_T / tau) || softmax(z_S / tau)), mean over the batch, times tau^2 (gradient scale of CE)."""
    log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    return tau * tau * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def sei_loss(
    step_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    beta: float,
    tau: float,
    target: str,
) -> torch.Tensor:
    """step_logits [T, B, C]; the readout is their mean. target "per_step" distils every ensemble member."""
    mean_logits = step_logits.mean(dim=0)
    loss = (1.0 - beta) * F.cross_entropy(mean_logits, labels) if beta < 1.0 else mean_logits.new_zeros(())
    if beta > 0.0:
        if teacher_logits is None:
            raise ValueError("kd.beta > 0 needs teacher logits")
        if target == "mean":
            kd = kl_to_teacher(teacher_logits, mean_logits, tau)
        else:
            kd = torch.stack([kl_to_teacher(teacher_logits, o, tau) for o in step_logits]).mean()
        loss = loss + beta * kd
    return loss
