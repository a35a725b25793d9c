"""Direct forecasters: the whole horizon at once from the input window, channel-independent (one map shared by
every channel, as DLinear with individual=False). TransDF changes only the loss, never the model."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


def decompose(x: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DLinear's series_decomp on [B, L, D]: trend = the centred moving average over `kernel` steps with the first
    and last value repeated (kernel - 1) // 2 times at each end, seasonal = x - trend. Returns (seasonal, trend)."""
    pad = (kernel - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)
    trend = rearrange(F.avg_pool1d(rearrange(padded, "b l d -> b d l"), kernel, stride=1), "b d l -> b l d")
    return x - trend, trend


class Forecaster(nn.Module):
    """[B, L, D] -> [B, P, D]. linear: one Linear(L -> P) with bias; mlp: L -> hidden -> P with a ReLU.

    decomposition (DLinear): the input splits into a moving-average trend and the seasonal rest, each with its own
    map, summed. init (linear only): "dlinear" sets every weight to 1/L (DLinear's init: each map starts as the
    mean of its input, so the first forecast is the window's mean plus the biases); "zero" starts weights and
    biases at 0 (the forecast starts at the train mean, 0 after scaling)."""

    def __init__(
        self,
        backbone: str,
        seq_len: int,
        pred_len: int,
        hidden: int = 64,
        decomposition: bool = False,
        init: str = "zero",
        kernel: int = 25,
    ):
        super().__init__()
        self.kernel = kernel if decomposition else None
        self.net = self.branch(backbone, seq_len, pred_len, hidden, init)
        self.trend = self.branch(backbone, seq_len, pred_len, hidden, init) if decomposition else None

    @staticmethod
    def branch(backbone: str, seq_len: int, pred_len: int, hidden: int, init: str) -> nn.Module:
        if backbone == "linear":
            net = nn.Linear(seq_len, pred_len)
            if init == "dlinear":  # DLinear: weight (1/L) ones [P, L]; the bias keeps torch's default init
                nn.init.constant_(net.weight, 1.0 / seq_len)
            elif init == "zero":
                # zero init: nothing in the label directions a truncated TransDF loss never constrains (torch's
                # random init leaves junk there that no gradient removes: test MSE 1.45 with momentum SGD at
                # K = P/2 on co2, against 0.0068 from zero; transdf.md §6 check 5)
                nn.init.zeros_(net.weight)
                nn.init.zeros_(net.bias)
            else:
                raise ValueError(f"unknown init '{init}': dlinear or zero")
            return net
        if backbone == "mlp":
            return nn.Sequential(nn.Linear(seq_len, hidden), nn.ReLU(), nn.Linear(hidden, pred_len))
        raise ValueError(f"unknown backbone '{backbone}': linear or mlp")

    @staticmethod
    def over_time(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return rearrange(net(rearrange(x, "b l d -> b d l")), "b d p -> b p d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trend is None:
            return self.over_time(self.net, x)
        seasonal, trend = decompose(x, self.kernel)
        return self.over_time(self.net, seasonal) + self.over_time(self.trend, trend)


def seasonal_naive(x: torch.Tensor, pred_len: int, period: int) -> torch.Tensor:
    """Repeat the last `period` steps of the input: y[j] = x[L - period + (j mod period)]."""
    if period > x.shape[1]:
        raise ValueError(f"seasonal period {period} is longer than the input window {x.shape[1]}")
    index = x.shape[1] - period + torch.arange(pred_len) % period
    return x[:, index]


def last_value(x: torch.Tensor, pred_len: int) -> torch.Tensor:
    return x[:, -1:].expand(-1, pred_len, -1)
