"""Sampling photos between their pixels: bilinear, or the Catmull-Rom cubic.

Bilinear interpolation averages up to four pixels, a low-pass whose strength depends on where a
sample falls (none on a pixel centre, most half-way between two): a photo warped into another view
comes out softer than the photo itself. LPIPS weighs fine texture, and on real photos, where the
nearest input photo is sharp, that softness alone can score worse than the photo. The Catmull-Rom
spline (Keys' cubic convolution with a = -1/2) passes through the pixels, reproduces quadratics and
keeps most of what bilinear smooths away. Its four taps per axis are fetched as three bilinear
samples (the two middle taps, both of positive weight, merged into one fetch between them), nine
per pixel instead of sixteen, with the border padding of bilinear sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

INTERPOLATIONS = ("bilinear", "cubic")


def catmull_rom_weights(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fractions t [...] in [0, 1) -> the weights [...] of the pixels at -1, 0, 1 and 2 from the one
    below: Keys' cubic convolution kernel with a = -1/2. They sum to 1; the middle two are >= 0."""
    t2, t3 = t * t, t * t * t
    return (-0.5 * t3 + t2 - 0.5 * t,
            1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t,
            0.5 * t3 - 0.5 * t2)


def catmull_rom_fetches(u: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Pixel coordinates u [...] (pixel centres at whole numbers) -> three (coordinate, weight)
    pairs [...] whose bilinear fetches, weighted, give the Catmull-Rom interpolation along one axis."""
    below = u.floor()
    w0, w1, w2, w3 = catmull_rom_weights(u - below)
    middle = w1 + w2  # >= 1 for t in [0, 1): never zero
    return [(below - 1.0, w0), (below + w2 / middle, middle), (below + 2.0, w3)]


def sample_cubic(images: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample(images, grid, padding_mode="border", align_corners=False)`` with the
    Catmull-Rom cubic instead of bilinear weights: images [N, C, Hs, Ws], grid [N, H, W, 2] in
    grid_sample's coordinates -> [N, C, H, W]. Differentiable in both. Non-finite grid entries
    sample the image's centre; the result can overshoot the images' range next to an edge."""
    _, _, height, width = images.shape
    grid = grid.nan_to_num(0.0, 0.0, 0.0)
    # pixel coordinates, kept within two pixels of the image, where every tap already reads the border
    ux = (((grid[..., 0] + 1.0) * width - 1.0) * 0.5).clamp(-2.0, width + 1.0)
    uy = (((grid[..., 1] + 1.0) * height - 1.0) * 0.5).clamp(-2.0, height + 1.0)
    columns = [((2.0 * x + 1.0) / width - 1.0, w) for x, w in catmull_rom_fetches(ux)]
    out = None
    for y, wy in catmull_rom_fetches(uy):
        gy = (2.0 * y + 1.0) / height - 1.0
        for gx, wx in columns:
            fetched = F.grid_sample(images, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border", align_corners=False)
            term = fetched * (wy * wx)[:, None]
            out = term if out is None else out + term
    return out


def sample_photos(images: Tensor, grid: Tensor, interpolation: str = "bilinear") -> Tensor:
    """Photos [N, C, Hs, Ws] sampled at grid [N, H, W, 2] (grid_sample's coordinates, border
    padding) -> [N, C, H, W]; ``interpolation``: "bilinear" or "cubic" (:func:`sample_cubic`,
    clamped at 0 and at each photo's brightest value, which a cubic can overshoot at an edge)."""
    if interpolation == "bilinear":
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if interpolation != "cubic":
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    brightest = images.detach().flatten(1).amax(dim=1).clamp_min(0.0)[:, None, None, None]
    return sample_cubic(images, grid).clamp(torch.zeros_like(brightest), brightest)  # a tie passes its whole gradient
