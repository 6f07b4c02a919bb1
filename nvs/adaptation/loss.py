"""The photometric loss of an adaptation task: MSE, optionally plus a weighted LPIPS (alex)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

LPIPS_NET = "alex"  # the lighter backbone: it runs on every training step


def photometric_loss(lpips_weight: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """loss(pred [N, 3, H, W], answer [N, 3, H, W] in [0, 1]) -> scalar: mean squared error, plus
    ``lpips_weight`` times the mean LPIPS distance when the weight is positive (weights loaded once)."""
    if lpips_weight < 0:
        raise ValueError(f"the LPIPS weight must be >= 0, got {lpips_weight}")
    if lpips_weight == 0:
        return F.mse_loss
    from nvs.evaluation.lpips import lpips_model

    def mse_plus_lpips(pred: Tensor, answer: Tensor) -> Tensor:
        perceptual = lpips_model(LPIPS_NET).to(pred.device)
        return F.mse_loss(pred, answer) + lpips_weight * perceptual(pred.float(), answer.float()).mean()

    return mse_plus_lpips
