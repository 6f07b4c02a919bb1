"""Camera trajectories for rendering videos: orbit, spiral, interpolation, nerfstudio paths.

Every path returns Cameras [N] in OpenCV convention with the intrinsics of a reference camera.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from kornia.geometry.conversions import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion
from torch import Tensor

from nvs.cameras import Cameras, fov_to_focal, look_at, opengl_to_opencv
from nvs.geometry.capture import capture_kind
from nvs.geometry.scene_normalization import estimate_scene_frame

PATH_KINDS = ("auto", "orbit", "spiral", "interpolate")


def _with_intrinsics(c2w: Tensor, ref: Cameras) -> Cameras:
    intr = ref.intrinsics.reshape(-1, 4)[0].expand(c2w.shape[0], 4).clone()
    return Cameras(intr, c2w.float(), ref.height, ref.width)


def _basis(up: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors orthogonal to up and to each other."""
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.nn.functional.normalize(torch.linalg.cross(up, helper), dim=0)
    return e1, torch.linalg.cross(up, e1)


def orbit_path(cams: Cameras, frames: int, elevation_deg: float | None = None, radius_scale: float = 1.0) -> Cameras:
    """A full circle around the scene centre at the inputs' mean elevation (or ``elevation_deg``)."""
    center, up, radius = estimate_scene_frame(cams.c2w)
    radius *= radius_scale
    e1, e2 = _basis(up)
    if elevation_deg is None:
        rel = torch.nn.functional.normalize(cams.centers.float() - center, dim=-1)
        elevation = float(torch.asin((rel @ up).clamp(-1, 1)).mean())
    else:
        elevation = math.radians(elevation_deg)
    rel0 = cams.centers.float()[0] - center
    az0 = math.atan2(float(rel0 @ e2), float(rel0 @ e1))
    az = az0 + torch.arange(frames) * (2 * math.pi / frames)
    ring = torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2
    eye = center + radius * (math.cos(elevation) * ring + math.sin(elevation) * up)
    return _with_intrinsics(look_at(eye, center.expand_as(eye), up.expand_as(eye)), cams)


def spiral_path(cams: Cameras, frames: int, rotations: float = 2.0, amplitude: float = 0.5) -> Cameras:
    """A spiral around the mean camera, looking at the scene centre (forward-facing captures)."""
    center, up, _ = estimate_scene_frame(cams.c2w)
    mean_pos = cams.centers.float().mean(0)
    offsets = cams.centers.float() - mean_pos
    span = float(offsets.norm(dim=-1).max()) if len(cams) > 1 else 0.1
    view = torch.nn.functional.normalize(center - mean_pos, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(view, up), dim=0)
    true_up = torch.linalg.cross(right, view)
    s = torch.linspace(0, 1, frames)
    ang = 2 * math.pi * rotations * s
    r = amplitude * span * (0.5 + 0.5 * torch.sin(math.pi * s))
    eye = mean_pos + r[:, None] * (torch.cos(ang)[:, None] * right + torch.sin(ang)[:, None] * true_up)
    return _with_intrinsics(look_at(eye, center.expand_as(eye), up.expand_as(eye)), cams)


def slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of unit quaternions [4] at times t [N] -> [N, 4]."""
    dot = float((q0 * q1).sum())
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        return torch.nn.functional.normalize(q0 + t[:, None] * (q1 - q0), dim=-1)
    theta = math.acos(dot)
    w0 = torch.sin((1 - t) * theta) / math.sin(theta)
    w1 = torch.sin(t * theta) / math.sin(theta)
    return w0[:, None] * q0 + w1[:, None] * q1


def interpolate_path(cams: Cameras, frames: int) -> Cameras:
    """Through the given cameras in order: SLERP for rotations, linear for positions."""
    c2w = cams.c2w.float()
    n = c2w.shape[0]
    if n < 2:
        raise ValueError("interpolation needs at least two cameras")
    quats = rotation_matrix_to_quaternion(c2w[:, :3, :3].contiguous())
    s = torch.linspace(0, n - 1, frames)
    seg = s.floor().long().clamp(max=n - 2)
    local = s - seg
    out = torch.zeros(frames, 4, 4)
    out[:, 3, 3] = 1
    for i in range(n - 1):
        sel = seg == i
        if sel.any():
            out[sel, :3, :3] = quaternion_to_rotation_matrix(slerp(quats[i], quats[i + 1], local[sel]))
            out[sel, :3, 3] = c2w[i, :3, 3] + local[sel, None] * (c2w[i + 1, :3, 3] - c2w[i, :3, 3])
    return _with_intrinsics(out, cams)


def read_nerfstudio_path(path: str | Path, height: int | None = None, width: int | None = None) -> tuple[Cameras, float]:
    """A nerfstudio ``camera_path.json``: per frame ``camera_to_world`` (OpenGL, 16 numbers row by
    row) and vertical ``fov`` in degrees. Returns (Cameras [N], fps)."""
    from nvs.io.untrusted import LimitExceeded, bounded_number, current

    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = data["camera_path"]
        if not isinstance(frames, list):
            raise TypeError("'camera_path' must be a list of frames")
        current().check_frames(len(frames), str(path))
        h = height or bounded_number(data.get("render_height", 256), "render_height", "the file", 1, 8192, integer=True)
        w = width or bounded_number(data.get("render_width", 256), "render_width", "the file", 1, 8192, integer=True)
        for i, f in enumerate(frames):
            matrix = f["camera_to_world"]
            if not isinstance(matrix, list) or len(matrix) not in (16, 4):
                raise ValueError(f"frame {i}: 'camera_to_world' must hold 16 numbers")
        mats = torch.tensor([f["camera_to_world"] for f in frames], dtype=torch.float64).reshape(-1, 4, 4)
        fovs = torch.tensor([bounded_number(f.get("fov", data.get("default_fov", 50.0)), "fov", f"frame {i}",
                                            0.1, 179.0) for i, f in enumerate(frames)])
        fps = bounded_number(data.get("fps", 24), "fps", "the file", 0.01, 1000)
    except LimitExceeded:
        raise
    except (OSError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid nerfstudio camera path ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid nerfstudio camera path ({exc})") from exc
    if mats.shape[0] == 0:
        raise ValueError(f"{path}: the camera path has no frames")
    if len(frames) != mats.shape[0]:
        raise ValueError(f"{path}: every 'camera_to_world' must hold 16 numbers")
    mats = mats.float()
    focal = fov_to_focal(torch.deg2rad(fovs), h)
    intr = torch.stack([focal, focal, torch.full_like(focal, w / 2), torch.full_like(focal, h / 2)], -1)
    cams = Cameras(intr, opengl_to_opencv(mats), h, w)
    cams.validate(str(path))
    return cams, fps


def auto_path_kind(cams: Cameras) -> str:
    """The path a capture's own kind calls for: an orbit around an object, and through a walk's
    cameras in order (an orbit about a room's far wall leaves the views the inputs saw); an orbit
    for a single camera, which has no path to follow."""
    return "interpolate" if cams.shape[0] >= 2 and capture_kind(cams) == "scene" else "orbit"


def make_path(kind_or_file: str, cams: Cameras, frames: int) -> tuple[Cameras, float | None]:
    """Build a path by name (``auto``: see auto_path_kind), or read a nerfstudio camera_path.json.
    Returns (Cameras, fps or None)."""
    if kind_or_file == "auto":
        kind_or_file = auto_path_kind(cams)
    if kind_or_file == "orbit":
        return orbit_path(cams, frames), None
    if kind_or_file == "spiral":
        return spiral_path(cams, frames), None
    if kind_or_file == "interpolate":
        return interpolate_path(cams, frames), None
    if kind_or_file.endswith(".json"):
        path_cams, fps = read_nerfstudio_path(kind_or_file)
        return path_cams, fps
    raise ValueError(f"unknown camera path {kind_or_file!r}: use one of {PATH_KINDS} or a camera_path.json")
