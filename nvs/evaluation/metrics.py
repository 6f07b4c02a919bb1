"""Image quality metrics with the protocols published NVS tables use.

All functions take images [..., 3, H, W] in [0, 1] and return one value per image [...].
- PSNR on [0, 1]-clamped images.
- SSIM as scikit-image's ``structural_similarity(gaussian_weights=True, data_range=1,
  channel_axis=...)``: 11x11 Gaussian window (sigma 1.5, truncate 3.5), sample-covariance factor
  N/(N-1), mean over the interior where the window fits, averaged over channels. (kornia's SSIM
  pads the borders and omits the covariance factor, so it differs by more than 1e-4.)
- LPIPS v0.1, VGG (default) or AlexNet, see :mod:`nvs.evaluation.lpips`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"images differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim < 3 or pred.shape[-3] != 3:
        raise ValueError(f"images must be [..., 3, H, W], got {tuple(pred.shape)}")


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB on [0, 1]-clamped images."""
    _check_pair(pred, target)
    mse = (pred.float().clamp(0, 1) - target.float().clamp(0, 1)).square().flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def _gaussian_taps(dtype: torch.dtype) -> Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    taps = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural similarity (scikit-image's Gaussian variant), computed in float64."""
    _check_pair(pred, target)
    batch = pred.shape[:-3]
    h, w = pred.shape[-2:]
    taps = _gaussian_taps(torch.float64).to(pred.device)
    win = taps.numel()
    if h < win or w < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} pixels, got {h}x{w}")
    x = pred.detach().double().clamp(0, 1).reshape(-1, 1, h, w)
    y = target.detach().double().clamp(0, 1).reshape(-1, 1, h, w)

    def blur(t: Tensor) -> Tensor:  # separable, 'valid': only where the whole window fits
        t = F.conv2d(t, taps.view(1, 1, 1, -1))
        return F.conv2d(t, taps.view(1, 1, -1, 1))

    ux, uy, uxx, uyy, uxy = (blur(t) for t in (x, y, x * x, y * y, x * y))
    cov_norm = win * win / (win * win - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per_channel = s.flatten(1).mean(1).view(*batch, 3)
    return per_channel.mean(-1).to(pred.dtype if pred.is_floating_point() else torch.float32)


def lpips(pred: Tensor, target: Tensor, net: str = "vgg") -> Tensor:
    """LPIPS v0.1 distance (lower is better)."""
    from nvs.evaluation.lpips import lpips_model

    _check_pair(pred, target)
    batch = pred.shape[:-3]
    model = lpips_model(net).to(pred.device)
    with torch.no_grad():
        d = model(pred.reshape(-1, *pred.shape[-3:]).float(), target.reshape(-1, *target.shape[-3:]).float())
    return d.view(batch)


def all_metrics(pred: Tensor, target: Tensor, lpips_net: str = "vgg") -> dict[str, Tensor]:
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "lpips": lpips(pred, target, lpips_net)}
