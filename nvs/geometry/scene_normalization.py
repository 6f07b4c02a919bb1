"""Scene normalisation: re-express cameras in a canonical frame, then rescale.

Data is normalised so that networks see the frame they were trained in. Named rules
(:data:`NORMALIZATIONS`):
- ``lact`` (the official LaCT ``--scene_inference``, for the published scene checkpoints): the
  mean camera at the origin looking down +z, fitted on all sampled views, inputs and targets
  together; translations divided by their largest absolute coordinate, so every camera lies in
  [-1, 1]^3.
- ``lvsm``: the mean camera frame fitted on the input views only (a ring of inward-looking
  cameras, whose mean axes leave the heading undefined, takes its first camera's heading);
  translations divided by ``1.35 * max distance``, so the farthest input camera lies at distance
  1/1.35.
- ``object`` (the object renderers): fitted on the input views, the point their optical axes
  meet at the origin, up (:func:`estimate_scene_frame`) along +z, and the cameras' mean distance
  from it OBJECT_CAMERA_RADIUS, the frame the object data is rendered in. A capture already in
  that frame is left as it is, up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs.cameras import Cameras, invert_rigid
from nvs.geometry.capture import axes_meeting_point

LVSM_SCALE_MARGIN = 1.35
RING_ANGLE_DEG = 20.0  # mean forward and mean down axes closer than this: a ring of cameras (mean_camera)
OBJECT_CAMERA_RADIUS = 2.7  # the distance of the object data's cameras from the object (as in the LaCT object data)
NORMALIZATIONS = ("lact", "lvsm", "object", "none")


def mean_camera(c2w: Tensor, level_rings: bool = False) -> Tensor:
    """Average pose of [..., V, 4, 4] cameras -> [..., 4, 4].

    Position: mean centre. Orientation: mean forward (z) and down (y) axes, re-orthonormalised.
    With ``level_rings``, where those two means are within RING_ANGLE_DEG of parallel (cameras
    spread around a ring and looking inwards: the horizontal parts of their axes cancel), the
    forward axis is instead the first camera's, made orthogonal to the mean down axis; without
    it such a frame's heading is whatever the rounding leaves.
    """
    center = c2w[..., :3, 3].mean(-2)
    forward = torch.nn.functional.normalize(c2w[..., :3, 2].mean(-2), dim=-1)
    down = c2w[..., :3, 1].mean(-2)
    if level_rings:
        unit_down = torch.nn.functional.normalize(down, dim=-1)
        ring = torch.linalg.cross(unit_down, forward).norm(dim=-1) < math.sin(math.radians(RING_ANGLE_DEG))
        first = c2w[..., 0, :3, 2]
        level = torch.nn.functional.normalize(first - (first * unit_down).sum(-1, keepdim=True) * unit_down, dim=-1)
        forward = torch.where(ring[..., None], level, forward)
    right = torch.nn.functional.normalize(torch.linalg.cross(down, forward), dim=-1)
    down = torch.linalg.cross(forward, right)
    out = torch.zeros(*c2w.shape[:-3], 4, 4, dtype=c2w.dtype, device=c2w.device)
    out[..., :3, 0], out[..., :3, 1], out[..., :3, 2], out[..., :3, 3] = right, down, forward, center
    out[..., 3, 3] = 1.0
    return out


def estimate_scene_frame(c2w: Tensor) -> tuple[Tensor, Tensor, float]:
    """(centre [3], up [3], radius) of a scene seen by cameras c2w [V, 4, 4] (OpenCV).

    Up is the direction most orthogonal to every camera's x axis (exact for cameras without roll,
    as photos are taken), oriented along the cameras' mean up vector (OpenCV -y); when the x axes
    do not span a plane (cameras all turned the same way) it is that mean up vector. The centre
    is the point closest, in least squares, to all optical axes; for near-parallel axes
    (forward-facing captures) it falls back to a point in front of the mean camera. The radius is
    the cameras' mean distance from the centre.
    """
    c2w = c2w.double()
    centers, forward, right = c2w[:, :3, 3], c2w[:, :3, 2], c2w[:, :3, 0]
    up = torch.nn.functional.normalize(-c2w[:, :3, 1].mean(0), dim=0)
    evals, evecs = torch.linalg.eigh(right.T @ right)
    if float(evals[1]) > 0.05 * len(c2w):  # the x axes span a plane: its normal is up
        up = evecs[:, 0] * torch.sign(evecs[:, 0] @ up)
    center = axes_meeting_point(c2w, min_views=2)
    if center is None:
        dist = max(float((centers - centers.mean(0)).norm(dim=-1).max()), 1e-3) * 3
        center = centers.mean(0) + torch.nn.functional.normalize(forward.mean(0), dim=0) * dist
    radius = float((centers - center).norm(dim=-1).mean())
    return center.float(), up.float(), radius


@dataclass
class SceneNormalization:
    """world_normalised = scale * inverse(frame) @ world.

    frame: [..., 4, 4] the mean camera's c2w; scale: [...] positive factor.
    """

    frame: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, c2w: Tensor, margin: float = LVSM_SCALE_MARGIN) -> "SceneNormalization":
        """Fit to reference cameras [..., V, 4, 4] (normally the input views); a ring's heading is
        its first camera's (mean_camera's ``level_rings``)."""
        frame = mean_camera(c2w, level_rings=True)
        local = invert_rigid(frame)[..., None, :, :] @ c2w
        extent = local[..., :3, 3].norm(dim=-1).amax(-1)
        scale = 1.0 / (margin * extent.clamp_min(1e-8))
        return cls(frame, scale)

    @classmethod
    def fit_lact(cls, c2w: Tensor) -> "SceneNormalization":
        """The official LaCT rule, fitted to all sampled cameras [..., V, 4, 4] (inputs and targets):
        mean camera frame, then translations / max |t| (largest absolute coordinate, no margin)."""
        frame = mean_camera(c2w)
        local = invert_rigid(frame)[..., None, :, :] @ c2w
        extent = local[..., :3, 3].abs().flatten(-2).amax(-1)
        return cls(frame, 1.0 / extent.clamp_min(1e-8))

    @classmethod
    def fit_object(cls, c2w: Tensor, radius: float = OBJECT_CAMERA_RADIUS) -> "SceneNormalization":
        """The object frame (module docstring) fitted to cameras [V, 4, 4] around an object."""
        center, up, distance = estimate_scene_frame(c2w)
        rot = rotation_between(torch.nn.functional.normalize(up.double(), dim=0),
                               torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        frame = torch.eye(4, dtype=torch.float64)
        frame[:3, :3], frame[:3, 3] = rot.T, center.double()
        return cls(frame.to(c2w.dtype), torch.tensor(radius / max(distance, 1e-6), dtype=c2w.dtype))

    def apply(self, c2w: Tensor) -> Tensor:
        """Map cameras [..., V, 4, 4] into the normalised frame."""
        out = invert_rigid(self.frame)[..., None, :, :] @ c2w
        out = out.clone()
        out[..., :3, 3] = out[..., :3, 3] * self.scale[..., None, None]
        return out

    def apply_points(self, points: Tensor) -> Tensor:
        """Map world points [..., N, 3] into the normalised frame."""
        w2f = invert_rigid(self.frame)
        local = points @ w2f[..., :3, :3].transpose(-1, -2) + w2f[..., None, :3, 3]
        return local * self.scale[..., None, None]


def rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """The smallest rotation [3, 3] taking unit vector a [3] to unit vector b [3]."""
    v, c = torch.linalg.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis orthogonal to a
        axis = torch.linalg.cross(a, torch.tensor([1.0, 0.0, 0.0], dtype=a.dtype))
        if axis.norm() < 1e-6:
            axis = torch.linalg.cross(a, torch.tensor([0.0, 1.0, 0.0], dtype=a.dtype))
        axis = torch.nn.functional.normalize(axis, dim=0)
        return 2 * torch.outer(axis, axis) - torch.eye(3, dtype=a.dtype)
    vx = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=a.dtype)
    return torch.eye(3, dtype=a.dtype) + vx + vx @ vx / (1 + c)


def normalize_views(rule: str, input_c2w: Tensor, target_c2w: Tensor) -> tuple[Tensor, Tensor]:
    """Apply a named rule (:data:`NORMALIZATIONS`) to input [..., V, 4, 4] and target [..., T, 4, 4]
    cameras of one sample; returns both, re-expressed. ``lact`` fits on inputs and targets
    together, ``lvsm`` on the inputs only, ``none`` returns them unchanged."""
    norm = fit_views(rule, input_c2w, target_c2w)
    if norm is None:
        return input_c2w, target_c2w
    return norm.apply(input_c2w), norm.apply(target_c2w)


def fit_views(rule: str, input_c2w: Tensor, target_c2w: Tensor) -> "SceneNormalization | None":
    """The normalisation :func:`normalize_views` applies (None for ``none``): its ``scale`` also
    converts the sample's depths to the new frame."""
    if rule == "none":
        return None
    if rule == "lact":
        return SceneNormalization.fit_lact(torch.cat([input_c2w, target_c2w], dim=-3))
    if rule == "lvsm":
        return SceneNormalization.fit(input_c2w)
    if rule == "object":
        if input_c2w.ndim != 3:
            raise ValueError("the object normalisation is fitted to one sample's cameras [V, 4, 4]")
        return SceneNormalization.fit_object(input_c2w)
    raise ValueError(f"unknown scene normalisation {rule!r}; choose one of {NORMALIZATIONS}")


def fitted_frame(rule: str, input_cams: Cameras):
    """Cameras -> the same cameras re-expressed by a named rule fitted on ``input_cams`` alone
    (lact: the official rule on the inputs; lvsm; object; none: unchanged), for cameras that come
    after the inputs are fixed (camera paths, a viewer's virtual camera)."""
    if rule == "none":
        return lambda cams: cams
    if rule not in NORMALIZATIONS:
        raise ValueError(f"unknown scene normalisation {rule!r}; choose one of {NORMALIZATIONS}")
    c2w = input_cams.c2w.double()
    fitted = {"lact": SceneNormalization.fit_lact, "lvsm": SceneNormalization.fit,
              "object": SceneNormalization.fit_object}[rule](c2w)
    return lambda cams: Cameras(cams.intrinsics, fitted.apply(cams.c2w.double()).to(cams.c2w.dtype), cams.height, cams.width)
