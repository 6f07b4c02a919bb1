"""What kind of capture a set of cameras is: a turntable around an object, or a walk through a scene.

The shipped renderers are trained on one kind each (nvs/assets): the object renderer on cameras
on a sphere looking at its centre, the scene renderer on camera walks through rooms. A capture
counts as an object capture when the optical axes meet near one point that lies in front of
the cameras, the cameras keep about the same distance from it, and they see it from directions
spread over a wide angle. A walk that keeps its gaze on one spot meets the first test but not
the other two (measured on the furnished-room walks of nvs/datasets/furnished_room.py: arcs up
to 54 deg at distance ratios of 1.7 and more).

The object renderer has only seen objects on white. Photos that circle an object but show a
background (a table, a room, a black cloth; an inward-facing capture of a whole scene) are what
the scene renderer draws: :func:`white_background` tells them apart by the inputs' borders. It has
also seen one lens only, a 50 deg field of view, and through a much longer lens (a telephoto, as
product photographers use) it draws objects worse than the scene renderer: :func:`long_lens`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nvs.cameras import Cameras

CAPTURE_KINDS = ("object", "scene")
MAX_AXIS_MISS_DEG = 20.0  # how far an optical axis may point away from the common centre
MIN_ARC_DEG = 60.0  # how widely the cameras must surround the centre
MAX_DISTANCE_RATIO = 1.5  # farthest over nearest camera distance to the centre
MIN_SHARE = 0.8  # share of cameras whose axis must point at the centre
WHITE_LEVEL = 0.75  # a white background pixel: every channel at least this bright
MIN_WHITE_BORDER = 0.6  # share of the pixels along the inputs' borders that must be white
BORDER = 1 / 16  # width of that strip, as a share of the image's height and width
OBJECT_FOV_DEG = 50.0  # the field of view of the object renderer's training renders (nvs.datasets.procedural uses it)
# Below this field of view (across the photos' shorter side) the scene renderer drew held-out furniture
# turntables better: at 20 deg and narrower on all three metrics, at 26 deg the two split (docs/models/lact_object.md)
MIN_OBJECT_FOV_DEG = 23.0


def axes_meeting_point(c2w: Tensor, min_views: int = 3) -> Tensor | None:
    """The point closest, in least squares, to every optical axis of c2w [V, 4, 4] (OpenCV, +z
    forward), float64, or None when there are fewer than ``min_views`` cameras or the axes are
    near-parallel and meet nowhere in particular."""
    c2w = c2w.double()
    centers, forward = c2w[:, :3, 3], torch.nn.functional.normalize(c2w[:, :3, 2], dim=-1)
    if len(c2w) < max(2, min_views):
        return None
    proj = torch.eye(3, dtype=c2w.dtype) - forward[:, :, None] * forward[:, None, :]  # [V, 3, 3]
    a, b = proj.sum(0), (proj @ centers[:, :, None]).sum(0)[:, 0]
    if float(torch.linalg.svdvals(forward - forward.mean(0)).max()) < 0.2 or torch.linalg.cond(a) > 1e6:
        return None
    return torch.linalg.solve(a, b)


def capture_kind(cams: Cameras) -> str:
    """``"object"`` for a capture around an object (turntable, orbit, a ring of photos),
    ``"scene"`` otherwise (a walk through a room, a forward-facing capture)."""
    c2w = cams.c2w.reshape(-1, 4, 4).double()
    center = axes_meeting_point(c2w)
    if center is None:
        return "scene"
    to_center = center - c2w[:, :3, 3]
    distance = to_center.norm(dim=-1).clamp_min(1e-9)
    forward = torch.nn.functional.normalize(c2w[:, :3, 2], dim=-1)
    cos_miss = (to_center * forward).sum(-1) / distance
    facing = cos_miss > math.cos(math.radians(MAX_AXIS_MISS_DEG))
    if facing.double().mean() < MIN_SHARE or float(distance.max() / distance.min()) > MAX_DISTANCE_RATIO:
        return "scene"
    # the widest angle between two directions from the centre to a camera
    dirs = -to_center / distance[:, None]
    arc = math.degrees(math.acos(float((dirs @ dirs.T).min().clamp(-1, 1))))
    return "object" if arc >= MIN_ARC_DEG else "scene"


def white_background(images: Tensor) -> bool:
    """Whether photos [V, 3, H, W] in [0, 1] show their subject on white, as the object renderer's
    training renders do: most pixels of a strip along the borders of the images are near-white."""
    height, width = images.shape[-2:]
    rows, cols = max(1, round(height * BORDER)), max(1, round(width * BORDER))
    strip = torch.zeros(height, width, dtype=torch.bool)
    strip[:rows], strip[-rows:], strip[:, :cols], strip[:, -cols:] = True, True, True, True
    white = images.reshape(-1, *images.shape[-3:]).amin(-3) >= WHITE_LEVEL  # [V, H, W]
    return float(white[:, strip].float().mean()) >= MIN_WHITE_BORDER


def field_of_view_deg(cams: Cameras) -> float:
    """The median, over cams [..., V], of the angle each photo's shorter side spans (what a square
    crop of it keeps), in degrees."""
    k = cams.K.reshape(-1, 3, 3).double()
    focal = k[:, 0, 0] if cams.width <= cams.height else k[:, 1, 1]
    return math.degrees(float(2.0 * torch.atan(min(cams.height, cams.width) / 2.0 / focal).median()))


def long_lens(cams: Cameras) -> bool:
    """Whether cams [..., V] see through a lens much longer than the object renderer's: a field of
    view (:func:`field_of_view_deg`) under MIN_OBJECT_FOV_DEG."""
    return field_of_view_deg(cams) < MIN_OBJECT_FOV_DEG


def suited_renderer(cams: Cameras, images: Tensor | None = None) -> tuple[str, str]:
    """(the shipped renderer a capture suits, "object" or "scene"; the test that decided: "walk",
    "background" or "long lens" for the scene renderer, "turntable" for the object renderer) of
    cams [V] and, when at hand, their photos images [V, 3, H, W] (without them: taken as on white)."""
    if capture_kind(cams) == "scene":
        return "scene", "walk"
    if images is not None and not white_background(images):
        return "scene", "background"
    if long_lens(cams):
        return "scene", "long lens"
    return "object", "turntable"
