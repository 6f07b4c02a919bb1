"""Where a scene's surfaces lie, from its posed photos alone: SIFT points matched between
neighbouring views, kept where the known cameras' epipolar geometry agrees
(:mod:`nvs.geometry.matching`), and triangulated.

A plane sweep (models/plane_sweep.py) spends its planes between a near and a far distance. A
range fixed at training time fits the training data's frame only: an object that fills less of
the view, or a real capture whose scale the normalisation guesses, puts most planes in empty
space. The sparse points here give each scene its own range.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.geometry.matching import PairMatches, epipolar_matches

MAX_REPROJECTION_PX = 2.0
MIN_PARALLAX_DEG = 1.0  # rays meeting at a smaller angle fix no depth
MAX_TRACK_SPREAD = 0.03  # two pairs' triangulations of one keypoint agree within this share of its distance
MIN_POINTS = 12  # fewer triangulated points: no range
QUANTILES = (0.02, 0.98)  # the range spans the points' distances between these quantiles ...
MARGIN = 0.25  # ... widened by this share on either side (near / (1 + m), far * (1 + m))


def triangulate(p_i: np.ndarray, p_j: np.ndarray, x_i: np.ndarray, x_j: np.ndarray) -> np.ndarray:
    """World points [N, 3] of matches x_i <-> x_j [N, 2] seen by projection matrices p [3, 4] (linear)."""
    homogeneous = cv2.triangulatePoints(p_i, p_j, x_i.T.astype(np.float64), x_j.T.astype(np.float64))
    return (homogeneous[:3] / homogeneous[3:]).T


def sparse_points(images: Tensor, cams: Cameras, matches: list[PairMatches] | None = None) -> Tensor:
    """Triangulated surface points [N, 3] (float64, world frame) of photos images [V, 3, H, W] in
    [0, 1] taken by cams [V]: the epipolar matches between neighbouring views
    (:func:`nvs.geometry.matching.epipolar_matches`, or ``matches`` already found for these
    photos) that reproject into both views and meet at an angle of at least MIN_PARALLAX_DEG, in
    front of both cameras, and that another pair confirms. Empty when none do."""
    if matches is None:
        matches = epipolar_matches(images, cams)
    k = cams.K.double().cpu().numpy()
    w2c = cams.w2c.double().cpu().numpy()
    centers = cams.centers.double().cpu().numpy()
    found = []  # (view i, keypoint of i, view j, keypoint of j, world point [3]) per kept match
    for pair in matches:
        i, j, x_i, x_j = pair.i, pair.j, pair.pixels_i, pair.pixels_j
        world = triangulate(k[i] @ w2c[i][:3], k[j] @ w2c[j][:3], x_i, x_j)
        keep = np.ones(len(pair), dtype=bool)
        rays = []
        for v, x in ((i, x_i), (j, x_j)):
            cam = world @ w2c[v][:3, :3].T + w2c[v][:3, 3]
            keep &= cam[:, 2] > 0
            pixels = cam @ k[v].T
            pixels = pixels[:, :2] / np.where(np.abs(pixels[:, 2:]) > 1e-12, pixels[:, 2:], 1e-12)
            keep &= np.linalg.norm(pixels - x, axis=1) < MAX_REPROJECTION_PX
            rays.append(world - centers[v])
        cos = (rays[0] * rays[1]).sum(1) / (np.linalg.norm(rays[0], axis=1) * np.linalg.norm(rays[1], axis=1) + 1e-12)
        keep &= cos < np.cos(np.radians(MIN_PARALLAX_DEG))
        found += [(i, int(a), j, int(b), p) for a, b, p in zip(pair.keypoints_i[keep], pair.keypoints_j[keep], world[keep])]
    points = confirmed(found, centers)
    return torch.from_numpy(points) if len(points) else torch.zeros(0, 3, dtype=torch.float64)


def confirmed(found: list, centers: np.ndarray) -> np.ndarray:
    """The points [N, 3] of ``found`` (view, keypoint, view, keypoint, point) that another pair's
    triangulation of the same keypoint puts within MAX_TRACK_SPREAD of their distance from that
    view. A wrong match still slides along its epipolar line, so one pair alone cannot fix a depth."""
    by_keypoint: dict[tuple[int, int], list[int]] = {}
    for n, (i, a, j, b, _) in enumerate(found):
        by_keypoint.setdefault((i, a), []).append(n)
        by_keypoint.setdefault((j, b), []).append(n)
    keep = []
    for n, (i, a, j, b, point) in enumerate(found):
        for view, key in ((i, (i, a)), (j, (j, b))):
            distance = np.linalg.norm(point - centers[view])
            if any(m != n and np.linalg.norm(found[m][4] - point) < MAX_TRACK_SPREAD * distance for m in by_keypoint[key]):
                keep.append(point)
                break
    return np.array(keep).reshape(-1, 3)


def distances_seen(points: Tensor, cams: Cameras) -> Tensor:
    """Distances [M] from each camera of cams [V] to each of points [N, 3] that lies in front of it
    and projects inside its image (a camera's sweep measures distance along its rays)."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.float64)
    flat = cams.reshape(-1).to(torch.float64)
    pixels, z = flat.project(points.double()[None].expand(flat.shape[0], -1, -1))
    inside = (z > 0) & (pixels[..., 0] >= 0) & (pixels[..., 0] <= cams.width) & (pixels[..., 1] >= 0) \
        & (pixels[..., 1] <= cams.height)
    distance = (points.double()[None] - flat.centers[:, None]).norm(dim=-1)
    return distance[inside]


def depth_range(points: Tensor, cams: Cameras, quantiles: tuple[float, float] = QUANTILES, margin: float = MARGIN,
                min_points: int = MIN_POINTS) -> tuple[float, float] | None:
    """(near, far): the distances from cams [...] to the sparse points [N, 3] they see, between the
    given quantiles, widened by ``margin``; None when the cameras see fewer than ``min_points``."""
    distance = distances_seen(points, cams)
    if distance.numel() < min_points:
        return None
    low, high = torch.quantile(distance, torch.tensor(quantiles, dtype=distance.dtype)).tolist()
    return low / (1.0 + margin), high * (1.0 + margin)
