"""Procedural multi-view scenes that need no downloads, deterministic from a seed.

- ``object``: 2-6 textured primitives on white, cameras on a sphere (GSO/Objaverse renders:
  radius 2.7, 50 deg field of view, elevation 0-60 deg), world up = +z.
- ``room``: the inside of a textured box with furniture-like boxes and objects, seen by a camera
  moving forward along a smooth path with small rotations (RealEstate10K-like), 16:9 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs.cameras import Cameras, fov_to_focal, look_at
from nvs.datasets.raycast import TEXTURES, Primitive, cast
from nvs.geometry.capture import OBJECT_FOV_DEG
from nvs.geometry.scene_normalization import OBJECT_CAMERA_RADIUS
from nvs.cameras import pixel_rays

SCENE_KINDS = ("object", "room")
OBJECT_SHAPES = ("sphere", "box", "cylinder", "cone", "torus")
ROOM_FOV_DEG = 60.0
AMBIENT = 0.35
# Seeds from here on are never trained on (training uses 0 .. ~1e6, validation 5e7 ..): the demo and
# the viewer's examples draw from them.
HELDOUT_SEED = 900_000_000


@dataclass
class Scene:
    """images [V, 3, H, W] in [0, 1]; cameras [V]; depth [V, 1, H, W] (z-depth, inf = background)."""

    images: Tensor
    cameras: Cameras
    depth: Tensor


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g) if shape else lo + (hi - lo) * torch.rand((), generator=g)


def _random_rotation(g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_primitive(g: torch.Generator, kind: str, center: Tensor, scale: float, rotation: Tensor | None = None) -> Primitive:
    size = {
        "sphere": torch.tensor([scale, 0.0, 0.0]),
        "box": _uniform(g, 0.5, 1.0, 3) * scale,
        "cylinder": torch.tensor([scale * _uniform(g, 0.5, 0.9).item(), scale * _uniform(g, 0.6, 1.1).item(), 0.0]),
        "cone": torch.tensor([scale * _uniform(g, 0.6, 1.0).item(), scale * _uniform(g, 0.7, 1.1).item(), 0.0]),
        "torus": torch.tensor([scale * 0.8, scale * _uniform(g, 0.25, 0.4).item(), 0.0]),
    }[kind]
    texture = TEXTURES[int(torch.randint(len(TEXTURES), (1,), generator=g))]
    return Primitive(
        kind=kind,
        center=center,
        rotation=_random_rotation(g) if rotation is None else rotation,
        size=size,
        color_a=_uniform(g, 0.05, 0.95, 3),
        color_b=_uniform(g, 0.05, 0.95, 3),
        texture=texture,
        frequency=float(_uniform(g, 3.0, 10.0)),
        phases=torch.cat([torch.randn(4, 3, generator=g), _uniform(g, 0, 2 * math.pi, 4, 1)], -1),
    )


def render_primitives(
    prims: list[Primitive], cams: Cameras, light: Tensor, background: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Lambert + ambient shading of the nearest primitive per pixel.

    cams [V]; light: unit direction towards the light [3]; background [3] or None (then every ray
    must hit). Returns images [V, 3, H, W] and z-depth [V, 1, H, W].
    """
    origins, dirs = pixel_rays(cams)  # [V, 3, H, W]
    v, _, h, w = origins.shape
    o = origins.permute(0, 2, 3, 1).reshape(-1, 3)
    d = dirs.permute(0, 2, 3, 1).reshape(-1, 3)
    t, normal, albedo = cast(prims, o, d)
    hit = torch.isfinite(t)
    # two-sided: a normal facing away from the viewer is flipped (open caps, room walls)
    normal = torch.where(((normal * d).sum(-1, keepdim=True) > 0), -normal, normal)
    shade = AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0)
    color = albedo * shade[:, None]
    if background is not None:
        color = torch.where(hit[:, None], color, background.expand_as(color))
    forward = cams.c2w[:, :3, 2].float()  # [V, 3]
    zdepth = t.view(v, h * w) * (d.view(v, h * w, 3) * forward[:, None]).sum(-1)
    images = color.view(v, h, w, 3).permute(0, 3, 1, 2).clamp(0, 1)
    return images.contiguous(), zdepth.view(v, 1, h, w)


def object_distance_scale(fov_deg: float) -> float:
    """How much farther than OBJECT_CAMERA_RADIUS a camera of ``fov_deg`` (across the width) stands
    to see the object as large as one of OBJECT_FOV_DEG does: 1 at OBJECT_FOV_DEG."""
    return math.tan(math.radians(OBJECT_FOV_DEG) / 2) / math.tan(math.radians(fov_deg) / 2)


def object_cameras(g: torch.Generator, views: int, height: int, width: int, elevation_deg=(0.0, 60.0),
                   fov_deg: float = OBJECT_FOV_DEG) -> Cameras:
    """``views`` cameras at random azimuths and ``elevation_deg`` looking at the origin, with a
    ``fov_deg`` lens (across the width) at the distance that keeps the object's size in the frame."""
    az = _uniform(g, 0, 2 * math.pi, views)
    el = torch.deg2rad(_uniform(g, *elevation_deg, views))
    radius = OBJECT_CAMERA_RADIUS * object_distance_scale(fov_deg)
    eye = radius * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    focal = fov_to_focal(math.radians(fov_deg), width)
    intr = torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4).clone()
    return Cameras(intr, c2w, height, width)


def turntable_cameras(views: int, height: int, width: int | None = None) -> Cameras:
    """Two interleaved rings (20 and 45 deg elevation) around the object, as a turntable capture."""
    width = height if width is None else width
    i = torch.arange(views)
    az = (i // 2) * (4 * math.pi / views) + (i % 2) * (2 * math.pi / views)
    el = torch.deg2rad(torch.where(i % 2 == 0, 20.0, 45.0))
    eye = OBJECT_CAMERA_RADIUS * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    focal = fov_to_focal(math.radians(OBJECT_FOV_DEG), width)
    return Cameras(torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4).clone(), c2w, height, width)


def detail_waves(g: torch.Generator, waves: int = 24, freq=(8.0, 120.0)) -> Tensor:
    """Parameters [3, waves, 6] of the detail texture: per channel, plane waves with random unit
    directions, log-uniform angular frequencies (rad per scene unit), random phases, and amplitudes
    falling as 1/sqrt(frequency), normalised to unit energy."""
    dirs = torch.nn.functional.normalize(torch.randn(3, waves, 3, generator=g), dim=-1)
    f = torch.exp(_uniform(g, math.log(freq[0]), math.log(freq[1]), 3, waves))
    phase = _uniform(g, 0, 2 * math.pi, 3, waves)
    amp = f.rsqrt()
    amp = amp / amp.square().sum(-1, keepdim=True).sqrt()
    return torch.cat([dirs, f[..., None], phase[..., None], amp[..., None]], -1)


def _force_texture(prims: list[Primitive], texture: str | None, seed: int) -> None:
    """Give every primitive ``texture`` (None: keep the random ones). Detail waves come from their
    own generator so the rest of the scene is the same as without it."""
    if texture is None:
        return
    if texture not in (*TEXTURES, "detail"):
        raise ValueError(f"unknown texture {texture!r}; choose one of {(*TEXTURES, 'detail')}")
    g = _rng(seed * 7 + 3)
    for prim in prims:
        prim.texture = texture
        if texture == "detail":
            prim.detail = detail_waves(g, freq=(10.0, 200.0) if prim.kind == "room" else (20.0, 250.0))


def object_primitives(g: torch.Generator) -> list[Primitive]:
    count = int(torch.randint(2, 7, (1,), generator=g))
    prims = []
    for _ in range(count):
        kind = OBJECT_SHAPES[int(torch.randint(len(OBJECT_SHAPES), (1,), generator=g))]
        center = torch.randn(3, generator=g) * 0.3
        prims.append(_random_primitive(g, kind, center, float(_uniform(g, 0.2, 0.45))))
    return prims


def object_scene(seed: int, views: int, height: int = 128, width: int = 128, cameras: Cameras | None = None,
                 texture: str | None = None) -> Scene:
    """An Objaverse/GSO-like object scene; ``cameras`` overrides the random sphere cameras;
    ``texture`` gives every primitive one texture ("detail": dense colour noise, for SfM)."""
    g = _rng(seed)
    prims = object_primitives(g)
    _force_texture(prims, texture, seed)
    light = torch.nn.functional.normalize(torch.randn(3, generator=g) + torch.tensor([0.0, 0.0, 1.5]), dim=0)
    cams = object_cameras(g, views, height, width) if cameras is None else cameras
    images, depth = render_primitives(prims, cams, light, background=torch.ones(3))
    return Scene(images, cams, depth)


def room_layout(g: torch.Generator) -> tuple[list[Primitive], Tensor]:
    """Primitives of a room and its half extents [3] (x, y horizontal, z up, floor at z = -ext_z)."""
    ext = torch.tensor([_uniform(g, 2.5, 4.0).item(), _uniform(g, 2.5, 4.0).item(), 1.4])
    room = _random_primitive(g, "box", torch.zeros(3), 1.0, rotation=torch.eye(3))
    room.kind, room.size = "room", ext
    room.texture = ("checker", "stripes", "noise")[int(torch.randint(3, (1,), generator=g))]
    room.frequency = float(_uniform(g, 1.0, 2.5))
    prims = [room]
    for _ in range(int(torch.randint(3, 7, (1,), generator=g))):
        kind = ("box", "box", "cylinder", "sphere")[int(torch.randint(4, (1,), generator=g))]
        scale = float(_uniform(g, 0.25, 0.6))
        xy = (torch.rand(2, generator=g) * 2 - 1) * (ext[:2] - 0.8)
        yaw = float(_uniform(g, 0, 2 * math.pi))
        rot = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        prim = _random_primitive(g, kind, torch.zeros(3), scale, rotation=rot)
        half_height = {"box": prim.size[2], "cylinder": prim.size[1], "sphere": prim.size[0]}[kind]
        prim.center = torch.cat([xy, (-ext[2] + half_height).reshape(1)])  # resting on the floor
        prims.append(prim)
    return prims, ext


def room_cameras(g: torch.Generator, views: int, height: int, width: int, ext: Tensor) -> Cameras:
    """A smooth forward walk: a cubic Bezier path through the room, gaze a little off the tangent."""
    margin = ext[:2] * 0.6
    pts = (torch.rand(4, 2, generator=g) * 2 - 1) * margin
    s = torch.linspace(0, 1, views)[:, None]
    bez = ((1 - s) ** 3) * pts[0] + 3 * ((1 - s) ** 2) * s * pts[1] + 3 * (1 - s) * s**2 * pts[2] + s**3 * pts[3]
    tangent = 3 * ((1 - s) ** 2) * (pts[1] - pts[0]) + 6 * (1 - s) * s * (pts[2] - pts[1]) + 3 * s**2 * (pts[3] - pts[2])
    heading = torch.atan2(tangent[:, 1], tangent[:, 0]) + 0.15 * torch.sin(s[:, 0] * math.pi * 2 + float(_uniform(g, 0, 6)))
    pitch = torch.full_like(heading, -0.1) + 0.05 * torch.sin(s[:, 0] * math.pi * 3)
    z = torch.full((views, 1), float(-ext[2] + 1.4))
    eye = torch.cat([bez, z], -1)
    look = torch.stack([heading.cos() * pitch.cos(), heading.sin() * pitch.cos(), pitch.sin()], -1)
    c2w = look_at(eye, eye + look, torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    focal = fov_to_focal(math.radians(ROOM_FOV_DEG), width)
    intr = torch.tensor([focal, focal, width / 2, height / 2]).expand(views, 4).clone()
    return Cameras(intr, c2w, height, width)


def room_scene(seed: int, views: int, height: int = 144, width: int = 256, cameras: Cameras | None = None,
               texture: str | None = None) -> Scene:
    """A RealEstate10K-like indoor sequence (frames in trajectory order); ``texture`` as in object_scene."""
    g = _rng(seed)
    prims, ext = room_layout(g)
    _force_texture(prims, texture, seed)
    light = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, 1.0]) + 0.3 * torch.randn(3, generator=g), dim=0)
    cams = room_cameras(g, views, height, width, ext) if cameras is None else cameras
    images, depth = render_primitives(prims, cams, light, background=None)
    return Scene(images, cams, depth)


def generate_scene(kind: str, seed: int, views: int, height: int, width: int) -> Scene:
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {SCENE_KINDS}")
    return (object_scene if kind == "object" else room_scene)(seed, views, height, width)
