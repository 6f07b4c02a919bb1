"""Comparing recovered camera poses with ground truth (float64 throughout)."""

from __future__ import annotations

import torch
from torch import Tensor


def rotation_angle_deg(r: Tensor) -> Tensor:
    """Angle of rotation matrices [..., 3, 3] in degrees."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def project_to_rotation(m: Tensor) -> Tensor:
    """The rotation nearest to a 3x3 matrix (Frobenius norm)."""
    u, _, vt = torch.linalg.svd(m)
    fix = torch.eye(3, dtype=m.dtype)
    fix[2, 2] = torch.sign(torch.det(u @ vt))
    return u @ fix @ vt


def fit_similarity(c2w_src: Tensor, c2w_dst: Tensor) -> tuple[float, Tensor, Tensor]:
    """The similarity x_dst = s R x_src + t that best carries cameras c2w_src onto c2w_dst.

    R is the chordal mean of R_dst R_src^T over cameras (well defined even when the centres are
    nearly collinear, as on a forward walk); s and t then fit the centres in least squares.
    c2w_* [N, 4, 4] OpenCV, the same cameras in two frames. Returns (s, R [3, 3], t [3]) in float64.
    """
    src, dst = c2w_src.double(), c2w_dst.double()
    rot = project_to_rotation((dst[:, :3, :3] @ src[:, :3, :3].transpose(-1, -2)).sum(0))
    a = src[:, :3, 3] - src[:, :3, 3].mean(0)
    b = dst[:, :3, 3] - dst[:, :3, 3].mean(0)
    s = float(((a @ rot.T) * b).sum() / a.square().sum().clamp_min(1e-300))
    return s, rot, dst[:, :3, 3].mean(0) - s * rot @ src[:, :3, 3].mean(0)


def aligned_pose_errors(c2w_est: Tensor, c2w_gt: Tensor) -> dict[str, Tensor]:
    """Per-camera errors after aligning the estimate to ground truth with a similarity (fit_similarity).

    c2w_* [N, 4, 4] OpenCV. Returns rotation errors (deg) [N] and centre errors [N] as fractions
    of the ground-truth scene size (largest distance of a centre from their mean).
    """
    est, gt = c2w_est.double(), c2w_gt.double()
    s, rot, t = fit_similarity(est, gt)
    centres = s * est[:, :3, 3] @ rot.T + t
    size = (gt[:, :3, 3] - gt[:, :3, 3].mean(0)).norm(dim=-1).max()
    rot_err = rotation_angle_deg(gt[:, :3, :3].transpose(-1, -2) @ rot @ est[:, :3, :3])
    return {"rotation_deg": rot_err, "centre_fraction": (centres - gt[:, :3, 3]).norm(dim=-1) / size}


def relative_rotation_errors(c2w_est: Tensor, c2w_gt: Tensor) -> Tensor:
    """Angle (deg) between estimated and true relative rotations of every pair i < j; needs no alignment."""
    est, gt = c2w_est[:, :3, :3].double(), c2w_gt[:, :3, :3].double()
    i, j = torch.triu_indices(len(est), len(est), 1)
    rel_est = est[i].transpose(-1, -2) @ est[j]
    rel_gt = gt[i].transpose(-1, -2) @ gt[j]
    return rotation_angle_deg(rel_gt.transpose(-1, -2) @ rel_est)
