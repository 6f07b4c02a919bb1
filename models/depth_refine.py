"""Photo-consistent upsampling of the plane sweep's depth.

The sweep finds depth at half the target's resolution (or less: ``sweep_max_step``) and upsamples
its expected inverse depth bilinearly. Across a silhouette that blends the depth of the object with
the depth behind it, and the photos, sampled at a depth that belongs to neither, draw stretched
stripes and melted edges. :func:`refine_depth` lets each full-resolution pixel choose among the
upsampled value and the values of the 3x3 low-resolution pixels around it: the one at which the
input photos agree best (least colour variance over the views that see the point, averaged over a
``window`` x ``window`` neighbourhood), as joint-bilateral or guided upsampling would with a guide
image, except that the guide here is the photos' agreement itself, since the target is unseen. A
median of the chosen values over a window reaching one low-resolution pixel each way then removes
isolated choices, which would otherwise draw speckles. No weights: the choice is made without
gradients and the chosen values keep theirs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvs.cameras import Cameras
from nvs.models.view_blend import rays_in_views, warp_views

UNSEEN_COST = 1e3  # the spread of a point fewer than two views see: any candidate two views see wins


def neighbour_candidates(inverse: Tensor, size: tuple[int, int]) -> Tensor:
    """inverse [N, 1, h, w] -> [N, 9, H, W]: at each pixel of an H x W image, the values of the 3x3
    pixels of ``inverse`` around the one it falls in (the edge values repeated beyond the border)."""
    padded = F.pad(inverse, (1, 1, 1, 1), mode="replicate")
    neighbours = F.unfold(padded, 3).unflatten(-1, inverse.shape[-2:])
    return F.interpolate(neighbours, size=size, mode="nearest")


def photo_spread(samples: Tensor, valid: Tensor) -> Tensor:
    """samples [..., k, 3, H, W] of the photos at each pixel's point, valid [..., k, 1, H, W] ->
    [..., 1, H, W]: the variance of the samples over the views that see the point, summed over the
    colour channels; UNSEEN_COST where fewer than two see it. Without gradients (it works in
    place: the refinement runs it ten times a view on full-resolution samples)."""
    weight = valid.to(samples.dtype)
    count = weight.sum(dim=-4)
    divisor = count.clamp_min(1.0)
    mean = (samples * weight).sum(dim=-4).div_(divisor)
    squares = (samples - mean.unsqueeze(-4)).square_().mul_(weight)
    variance = squares.sum(dim=-4).sum(dim=-3, keepdim=True).div_(divisor)
    return variance.masked_fill_(count < 2, UNSEEN_COST)


def median_filter(x: Tensor, taps: int) -> Tensor:
    """x [N, 1, H, W] -> the separable median of ``taps`` pixels (edges repeated), same shape: the
    median along each row, then along each column of those. Like the square median it keeps
    straight edges and removes any patch at most taps // 2 pixels wide or tall, at 2 x taps values
    a pixel instead of taps^2. ``taps`` is odd: the median is the middle value, which ``kthvalue``
    finds in half the time ``median`` takes on a CPU (the same values; unlike ``median`` it would
    not spread a NaN, and the candidate depths it filters have none)."""
    if taps % 2 == 0:
        raise ValueError(f"the median filter needs an odd number of taps, got {taps}")
    pad, middle = taps // 2, taps // 2 + 1
    rows = F.pad(x, (pad, pad, 0, 0), mode="replicate").unfold(-1, taps, 1).kthvalue(middle, dim=-1).values
    return F.pad(rows, (0, 0, pad, pad), mode="replicate").unfold(-2, taps, 1).kthvalue(middle, dim=-1).values


def median_taps(octave: int) -> int:
    """The taps of the median over the choices of a sweep at ``octave``
    (:func:`nvs.models.plane_sweep.sweep_octave`), whose cost volume's pixels span 2^(octave + 1)
    target pixels: it reaches one of them each way, the size of the patch a wrong choice covers."""
    return 2 ** (octave + 2) + 1


def refine_depth(depth: Tensor, inverse: Tensor, photos: Tensor, cams: Cameras, target_cams: Cameras,
                 window: int, present: Tensor | None = None, octave: int = 0, median: bool = True) -> Tensor:
    """The sweep's upsampled depth [B, T, 1, H, W] (along each unit ray of target_cams [B, T]),
    refined against its low-resolution expected inverse depth ``inverse`` [B, T, 1, h, w] and the
    photos [B, T, k, 3, Hs, Ws] of cams [B, T, k] it blends (``present`` [B, T, k]: which take part)
    -> [B, T, 1, H, W]. Each pixel takes, of 1 / depth and its 3x3 low-resolution candidates
    (:func:`neighbour_candidates`), the one with the least :func:`photo_spread` averaged over
    ``window`` x ``window`` pixels (ties: the upsampled value), then, with ``median``, the
    :func:`median_filter` of those choices over :func:`median_taps` of the sweep's ``octave``, whose
    cost volume has 1/2^(octave + 1) of the target's resolution."""
    b, t = depth.shape[:2]
    size = depth.shape[-2:]
    candidates = torch.cat([1.0 / depth.flatten(0, 1), neighbour_candidates(inverse.flatten(0, 1), size)], dim=1)
    with torch.no_grad():
        rays = rays_in_views(cams, target_cams, candidates.dtype)  # once, for ten warps
        least, choice = None, None
        for j in range(candidates.shape[1]):
            at = (1.0 / candidates[:, j : j + 1].clamp_min(1e-12)).unflatten(0, (b, t))
            samples, valid = warp_views(photos, cams, target_cams, at, rays)
            if present is not None:
                valid = valid & present[..., None, None, None]
            spread = photo_spread(samples, valid).flatten(0, 1)
            cost = F.avg_pool2d(spread, window, stride=1, padding=window // 2, count_include_pad=False)
            if least is None:
                least, choice = cost, torch.zeros_like(cost, dtype=torch.long)
            else:  # a running argmin (the first of equals wins): argmin over a stacked dim 1 is ~10x slower
                better = cost < least
                least, choice = torch.where(better, cost, least), choice.masked_fill(better, j)
    chosen = candidates.gather(1, choice)
    if median:
        chosen = median_filter(chosen, median_taps(octave))
    return (1.0 / chosen.clamp_min(1e-12)).unflatten(0, (b, t))
