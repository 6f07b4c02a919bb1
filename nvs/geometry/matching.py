"""SIFT matches between neighbouring posed photos, kept where the known cameras' epipolar geometry
agrees. What the input photos alone say about a scene starts here: where its surfaces lie
(:mod:`nvs.geometry.depth_range`) and how the photos' exposures differ (:mod:`nvs.geometry.exposure`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from nvs.cameras import Cameras

NEIGHBOURS = 3  # each view is matched with this many views whose centres are nearest its own
# In a capture of more than SPREAD_VIEWS views (the renderers' training count), paired views are at least
# PAIR_SPACING times the spacing that SPREAD_VIEWS views spread over the capture would have apart.
SPREAD_VIEWS = 8
PAIR_SPACING = 0.7
MIN_SIDE = 384  # photos are upsampled to at least this many pixels on their short side before SIFT
RATIO = 0.75  # Lowe's ratio test
MAX_EPIPOLAR_PX = 1.5  # Sampson distance to the known epipolar line, in pixels of the photo


@dataclass
class PairMatches:
    """Matches between views i < j: keypoint ids [N] of each view (one id is one SIFT keypoint of
    that view, shared by all its pairs) and their pixels [N, 2] (x, y; pixel centres at
    half-integers, as the cameras have them)."""

    i: int
    j: int
    keypoints_i: np.ndarray
    keypoints_j: np.ndarray
    pixels_i: np.ndarray
    pixels_j: np.ndarray

    def __len__(self) -> int:
        return len(self.keypoints_i)


def _gray_uint8(image: Tensor, scale: float) -> np.ndarray:
    gray = (image.float().clamp(0, 1).mean(0) * 255).round().to(torch.uint8).cpu().numpy()
    if scale != 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return gray


def sift_features(grays: list[np.ndarray], workers: int | None = None) -> list[tuple]:
    """(keypoints, descriptors) of each grey image, ``workers`` images at a time (None: as many as
    torch's CPU threads). OpenCV releases the GIL while it detects, and each image's keypoints are
    its own, so the result does not depend on the workers."""
    def detect(gray: np.ndarray) -> tuple:
        return cv2.SIFT_create().detectAndCompute(gray, None)

    workers = min(len(grays), torch.get_num_threads() if workers is None else workers)
    if workers <= 1:
        return [detect(gray) for gray in grays]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(detect, grays))


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


def spread_spacing(centers: np.ndarray, count: int = SPREAD_VIEWS) -> float:
    """How far apart ``count`` views spread over a capture would be: of centres [V, 3], ``count`` are
    picked by farthest-point sampling (from the one nearest the mean centre), and the median distance
    from each to its nearest other among them is returned; 0 when V <= count."""
    if len(centers) <= count:
        return 0.0
    picked = [int(np.linalg.norm(centers - centers.mean(axis=0), axis=1).argmin())]
    nearest = np.linalg.norm(centers - centers[picked[0]], axis=1)
    for _ in range(count - 1):
        picked.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, np.linalg.norm(centers - centers[picked[-1]], axis=1))
    among = np.linalg.norm(centers[picked][:, None] - centers[picked][None], axis=-1)
    np.fill_diagonal(among, np.inf)
    return float(np.median(among.min(axis=1)))


def neighbour_pairs(cams: Cameras, neighbours: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """(i, j), i < j, sorted: each view of cams [V] with its ``neighbours`` nearest by centre among
    those at least PAIR_SPACING x :func:`spread_spacing` away (any, in a capture of at most
    SPREAD_VIEWS views), then, where too few are that far, the farthest of the closer ones.
    Neighbouring frames of a dense capture (a video, a walk of 40 photos) see a far wall from almost
    the same place: their matches meet at too small an angle to place it."""
    centers = cams.centers.double().cpu().numpy()
    gap = PAIR_SPACING * spread_spacing(centers)
    gap = gap if np.isfinite(gap) else 0.0
    pairs = set()
    for v in range(len(centers)):
        distance = np.linalg.norm(centers - centers[v], axis=1)
        order = np.argsort(distance)
        order = order[order != v]
        far = distance[order] >= gap
        chosen = np.concatenate([order[far], order[~far][::-1]])[:neighbours]
        pairs.update((min(v, int(u)), max(v, int(u))) for u in chosen)
    return sorted(pairs)


def epipolar_matches(images: Tensor, cams: Cameras, neighbours: int = NEIGHBOURS) -> list[PairMatches]:
    """Matches between photos images [V, 3, H, W] in [0, 1] taken by cams [V]: SIFT keypoints of
    the pairs of :func:`neighbour_pairs` that pass the ratio test and lie within MAX_EPIPOLAR_PX of
    the known epipolar lines. Pairs without a match are left out."""
    height, width = images.shape[-2:]
    scale = max(1.0, MIN_SIDE / min(height, width))
    features = sift_features([_gray_uint8(image, scale) for image in images])
    k = cams.K.double().cpu().numpy()
    w2c = cams.w2c.double().cpu().numpy()
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    found = []
    for i, j in neighbour_pairs(cams, neighbours):
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
        if keep.any():
            found.append(PairMatches(i, j, index_i[keep], index_j[keep], x_i[keep], x_j[keep]))
    return found


def scene_matches(images: Tensor, cams: Cameras) -> list[list[PairMatches]]:
    """:func:`epipolar_matches` of each scene of images [B, V, 3, H, W] taken by cams [B, V]
    (OpenCV, on the CPU)."""
    images, cams = images.detach().cpu(), cams.to("cpu")
    return [epipolar_matches(images[b], cams[b]) for b in range(images.shape[0])]
