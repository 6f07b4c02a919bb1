"""How the exposures of posed photos differ, from the colours of their matched points.

Photos of one capture rarely share an exposure: a phone or camera meters each shot, and its white
balance drifts with what is in the frame. A renderer that copies pixels from whichever photo sees a
point best then draws a patchwork of exposures, with seams where it switches photos. In sRGB as in
linear light, a change of exposure or white balance multiplies each channel by a gain (a power law
keeps products), so each photo gets three gains, found from the photos alone: at every point
matched between two paired views (:func:`nvs.geometry.matching.epipolar_matches`) the ratio
of their colours over 3x3 pixels, its median over the pair's points per channel, and the gains
that best explain every pair's median (least absolute deviations in log space, so that a pair the
others contradict is outvoted; panorama stitching compensates gains in the same way).
Dividing each photo by its gains brings all of them to their common (geometric) mean exposure, the
best guess at a new view's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nvs.geometry.matching import PairMatches

WINDOW = 3  # pixels (square) over which a matched point's colour is averaged
DARKEST, BRIGHTEST = 0.03, 0.97  # a point with a channel outside these in either photo says nothing (noise, clipping)
MIN_POINTS = 8  # fewer usable points: the pair is left out
MAX_GAIN = 2.0  # gains are kept within [1 / MAX_GAIN, MAX_GAIN]
IRLS_STEPS = 20
RESIDUAL_FLOOR = 0.005  # log-ratio residual below which a pair counts fully (and the weights stay finite)
RIDGE = 1e-3  # pulls every log gain towards 0 (relative to the pairs' weight), so that the system has one
# solution when the pairs leave views or groups of views unconnected


def window_means(images: Tensor) -> Tensor:
    """images [V, 3, H, W] -> [V, 3, H, W] float64 on the CPU: each pixel's mean over the WINDOW x
    WINDOW pixels about it (the part inside the image at its borders)."""
    return F.avg_pool2d(images.detach().cpu().double(), WINDOW, 1, WINDOW // 2, count_include_pad=False)


def point_colours(means: Tensor, pixels: np.ndarray) -> np.ndarray:
    """means [3, H, W] (one view of :func:`window_means`), pixels [N, 2] (x, y; centres at
    half-integers) -> [N, 3] float64: the mean colour about the pixel each point falls in."""
    height, width = means.shape[-2:]
    column = np.clip(np.floor(pixels[:, 0]).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor(pixels[:, 1]).astype(np.int64), 0, height - 1)
    return means[:, torch.from_numpy(row), torch.from_numpy(column)].T.numpy()


def robust_log_gains(rows: np.ndarray, ratios: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Log gains [V, 3] from pairs: rows [P, V] (+1 at view i, -1 at view j), ratios [P, 3] (each
    pair's median log colour ratio, log gain_i - log gain_j) over counts [P] points. Least absolute
    deviations (iteratively reweighted least squares), each pair weighted by its points: a pair
    whose ratio the others contradict (a view-dependent highlight, matches on a repeated pattern)
    is outvoted instead of averaged in."""
    views = rows.shape[1]
    scale = np.ones(len(rows))
    for _ in range(IRLS_STEPS):
        weight = np.sqrt(counts * scale)[:, None]
        system = np.concatenate([rows * weight, np.sqrt(RIDGE * (weight**2).sum()) * np.eye(views)])
        target = np.concatenate([ratios * weight, np.zeros((views, 3))])
        log_gains = np.linalg.lstsq(system, target, rcond=None)[0]
        scale = 1.0 / np.maximum(np.linalg.norm(rows @ log_gains - ratios, axis=1), RESIDUAL_FLOOR)
    return log_gains


def exposure_gains(images: Tensor, matches: list[PairMatches]) -> Tensor:
    """Per-channel gains [V, 3] of photos images [V, 3, H, W] in [0, 1] relative to their common
    exposure, from ``matches`` between them: dividing each photo by its gains matches the
    exposures. A photo that no pair with MIN_POINTS usable points reaches keeps gains of 1."""
    views = images.shape[0]
    means = window_means(images)
    rows, ratios, counts = [], [], []
    for pair in matches:
        a, b = point_colours(means[pair.i], pair.pixels_i), point_colours(means[pair.j], pair.pixels_j)
        usable = ((a > DARKEST) & (a < BRIGHTEST) & (b > DARKEST) & (b < BRIGHTEST)).all(axis=1)
        if usable.sum() < MIN_POINTS:
            continue
        row = np.zeros(views)
        row[pair.i], row[pair.j] = 1.0, -1.0
        rows.append(row)
        ratios.append(np.median(np.log(a[usable]) - np.log(b[usable]), axis=0))  # log gain_i - log gain_j
        counts.append(usable.sum())
    if not rows:
        return torch.ones(views, 3, dtype=images.dtype)
    rows, ratios, counts = np.array(rows), np.array(ratios), np.array(counts, dtype=np.float64)
    log_gains = robust_log_gains(rows, ratios, counts)
    reached = np.abs(rows).sum(axis=0) > 0
    log_gains[reached] -= log_gains[reached].mean(axis=0)  # the common exposure: the matched photos' geometric mean
    log_gains[~reached] = 0.0
    gains = np.exp(np.clip(log_gains, -np.log(MAX_GAIN), np.log(MAX_GAIN)))
    return torch.from_numpy(gains).to(images.dtype)


def apply_gains(images: Tensor, gains: Tensor) -> Tensor:
    """images [..., V, 3, H, W] divided by gains [..., V, 3], clipped to [0, 1]."""
    return (images / gains[..., None, None].to(images)).clamp(0.0, 1.0)
