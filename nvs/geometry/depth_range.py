"""Where a scene's surfaces lie, from its posed photos alone: SIFT points matched between
neighbouring views, kept where the known cameras' epipolar geometry agrees, and triangulated.

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

NEIGHBOURS = 3  # each view is matched with this many views whose centres are nearest its own
MIN_SIDE = 384  # photos are upsampled to at least this many pixels on their short side before SIFT
RATIO = 0.75  # Lowe's ratio test
MAX_EPIPOLAR_PX = 1.5  # Sampson distance to the known epipolar line, in pixels of the photo
MAX_REPROJECTION_PX = 2.0
MIN_PARALLAX_DEG = 1.0  # rays meeting at a smaller angle fix no depth
MAX_TRACK_SPREAD = 0.03  # two pairs' triangulations of one keypoint agree within this share of its distance
MIN_POINTS = 12  # fewer triangulated points: no range
QUANTILES = (0.02, 0.98)  # the range spans the points' distances between these quantiles ...
MARGIN = 0.25  # ... widened by this share on either side (near / (1 + m), far * (1 + m))


def _gray_uint8(image: Tensor, scale: float) -> np.ndarray:
    gray = (image.float().clamp(0, 1).mean(0) * 255).round().to(torch.uint8).cpu().numpy()
    if scale != 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return gray


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def fundamental_matrix(k_i: np.ndarray, w2c_i: np.ndarray, k_j: np.ndarray, w2c_j: np.ndarray) -> np.ndarray:
    """F [3, 3] with x_j^T F x_i = 0 for pixels x_i of camera i and x_j of camera j seeing one point
    (intrinsic matrices k [3, 3], world-to-camera w2c [4, 4])."""
    rel = w2c_j @ np.linalg.inv(w2c_i)
    essential = _skew(rel[:3, 3]) @ rel[:3, :3]
    return np.linalg.inv(k_j).T @ essential @ np.linalg.inv(k_i)


def sampson_distance(f: np.ndarray, x_i: np.ndarray, x_j: np.ndarray) -> np.ndarray:
    """First-order distance, in pixels, of matches x_i [N, 2] <-> x_j [N, 2] from satisfying F."""
    hi = np.concatenate([x_i, np.ones((len(x_i), 1))], axis=1)
    hj = np.concatenate([x_j, np.ones((len(x_j), 1))], axis=1)
    fx_i, ftx_j = hi @ f.T, hj @ f
    error = (hj * fx_i).sum(1)
    return np.abs(error) / np.sqrt(fx_i[:, 0] ** 2 + fx_i[:, 1] ** 2 + ftx_j[:, 0] ** 2 + ftx_j[:, 1] ** 2 + 1e-12)


def triangulate(p_i: np.ndarray, p_j: np.ndarray, x_i: np.ndarray, x_j: np.ndarray) -> np.ndarray:
    """World points [N, 3] of matches x_i <-> x_j [N, 2] seen by projection matrices p [3, 4] (linear)."""
    homogeneous = cv2.triangulatePoints(p_i, p_j, x_i.T.astype(np.float64), x_j.T.astype(np.float64))
    return (homogeneous[:3] / homogeneous[3:]).T


def sparse_points(images: Tensor, cams: Cameras, neighbours: int = NEIGHBOURS) -> Tensor:
    """Triangulated surface points [N, 3] (float64, world frame) of photos images [V, 3, H, W] in
    [0, 1] taken by cams [V]: SIFT matches between each view and its ``neighbours`` nearest views
    that pass the ratio test, lie on the known epipolar lines, reproject into both views and meet
    at an angle of at least MIN_PARALLAX_DEG, in front of both cameras. Empty when none do."""
    views = images.shape[0]
    height, width = images.shape[-2:]
    scale = max(1.0, MIN_SIDE / min(height, width))
    sift = cv2.SIFT_create()
    features = [sift.detectAndCompute(_gray_uint8(image, scale), None) for image in images]
    k = cams.K.double().cpu().numpy()
    w2c = cams.w2c.double().cpu().numpy()
    centers = cams.centers.double().cpu().numpy()
    projections = [k[v] @ w2c[v][:3] for v in range(views)]
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = set()
    for v in range(views):
        order = np.argsort(np.linalg.norm(centers - centers[v], axis=1))
        pairs.update((min(v, int(u)), max(v, int(u))) for u in order[1 : neighbours + 1])
    found = []  # (view i, keypoint of i, view j, keypoint of j, world point [3]) per kept match
    for i, j in sorted(pairs):
        (kp_i, desc_i), (kp_j, desc_j) = features[i], features[j]
        if desc_i is None or desc_j is None or len(kp_i) < 2 or len(kp_j) < 2:
            continue
        good = [m[0] for m in matcher.knnMatch(desc_i, desc_j, k=2) if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
        if not good:
            continue
        index_i, index_j = np.array([m.queryIdx for m in good]), np.array([m.trainIdx for m in good])
        # SIFT's pixel centres are at integer coordinates of the upsampled photo; the cameras' at half-integers
        x_i = (np.array([kp_i[q].pt for q in index_i]) + 0.5) / scale
        x_j = (np.array([kp_j[t].pt for t in index_j]) + 0.5) / scale
        keep = sampson_distance(fundamental_matrix(k[i], w2c[i], k[j], w2c[j]), x_i, x_j) < MAX_EPIPOLAR_PX
        world = triangulate(projections[i], projections[j], x_i, x_j)
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
        found += [(i, int(a), j, int(b), p) for a, b, p in zip(index_i[keep], index_j[keep], world[keep])]
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
