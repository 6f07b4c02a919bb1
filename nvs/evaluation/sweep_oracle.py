"""How much of a plane-sweep renderer's error is its depth: the same photos, each pixel sampled on
the plane the ground truth picks.

A plane sweep (:mod:`nvs.models.plane_sweep`) renders a target by finding each pixel's plane and
blending the input photos sampled there. The oracle here skips the finding: for every plane it
averages the k nearest photos sampled on it, and keeps, per pixel, the plane whose average is
closest to the target over a small window. Where the renderer scores far below the oracle, its
depth is what fails; where it scores close to it, better depth would not help and the blend or the
photos themselves are the limit. The oracle sees the target: it is a diagnostic, never a rendering.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvs.cameras import Cameras
from nvs.models.view_blend import gather_views, nearest_views, rays_in_views, warp_views


def oracle_plane_images(images: Tensor, cams: Cameras, targets: Tensor, target_cams: Cameras, inverse_depths: Tensor,
                        views: int = 4, window: int = 5, interpolation: str = "bilinear") -> Tensor:
    """images [V, 3, H, W] taken by cams [V], targets [T, 3, H, W] seen by target_cams [T], the
    sweep's planes inverse_depths [D] (inverse distances along each pixel's unit ray) -> [T, 3, H, W]:
    per pixel, the mean of the ``views`` input photos nearest the target (those that see the point)
    sampled on the plane whose mean is closest to the target over a ``window`` x ``window``
    neighbourhood (odd), each photo sampled with ``interpolation`` as the renderer samples it. Pixels
    that no photo sees on any plane are black."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the oracle's window must be an odd number of pixels, got {window}")
    height, width = targets.shape[-2:]
    cams, target_cams = cams.unsqueeze(0), target_cams.unsqueeze(0)
    photos, chosen = gather_views(images[None], cams, nearest_views(cams, target_cams, views))
    best_error = torch.full((targets.shape[0], 1, height, width), float("inf"), dtype=targets.dtype, device=targets.device)
    best = torch.zeros_like(targets)
    rays = rays_in_views(chosen, target_cams, targets.dtype)  # once, for every plane
    for inverse in inverse_depths.tolist():
        depth = torch.full((1, targets.shape[0], 1, height, width), 1.0 / inverse, dtype=targets.dtype, device=targets.device)
        samples, valid = warp_views(photos, chosen, target_cams, depth, rays, interpolation)
        seen = valid.to(samples.dtype)
        mean = ((samples * seen).sum(dim=2) / seen.sum(dim=2).clamp_min(1))[0]  # [T, 3, H, W]
        error = F.avg_pool2d((mean - targets).square().mean(dim=1, keepdim=True), window, 1, window // 2,
                             count_include_pad=False)
        error = torch.where(seen.sum(dim=2)[0] > 0, error, torch.full_like(error, float("inf")))
        better = error < best_error
        best = torch.where(better, mean, best)
        best_error = torch.where(better, error, best_error)
    return best
