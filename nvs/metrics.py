"""Image quality metrics with the protocols published NVS tables use.

All functions take images [..., 3, H, W] in [0, 1] and return one value per image [...].
"""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB on [0, 1]-clamped images."""
    if pred.shape != target.shape:
        raise ValueError(f"images differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    mse = (pred.float().clamp(0, 1) - target.float().clamp(0, 1)).square().flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
