"""Multi-view scenes rendered from the packaged furniture models, deterministic from a seed.

- ``furniture`` (GSO/Objaverse-like): one model normalised to the unit sphere (or fitted into the
  cube [-1, 1]^3: :data:`FITS`), turned at random about up (+z), lit at random, on white; cameras
  on a sphere of radius 2.7 looking at the centre, 50 deg field of view, elevations 0-60 deg (as
  the procedural ``object`` kind).
- ``furnished-room`` (RealEstate10K-like walks) and ``furnished-orbit`` (rings around a piece in
  a room): see :mod:`nvs.datasets.furnished_room`.

Scene ``seed`` of a split uses model ``seed mod (models in the split)`` (furniture), so
consecutive seeds cover every model before repeating one in a new orientation. Every scene
carries the attribution of the models it shows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nvs.datasets import furniture
from nvs.datasets.procedural import OBJECT_FOV_DEG, Scene, object_cameras, object_distance_scale

ASSET_KINDS = ("furniture", "furnished-room", "furnished-orbit")
# how a model is scaled before it is rendered: its farthest vertex at radius 1 (the object renderer's
# training data), or its bounding box's longest side fitted to the cube [-1, 1]^3 (a model up to
# sqrt(3) times larger in the frame, cut by it where it reaches past the frame's edge)
FITS = {"sphere": "farthest vertex at radius 1", "cube": "bounding box fitted into [-1, 1]^3"}


@dataclass
class AssetScene(Scene):
    """images [V, 3, H, W] in [0, 1]; cameras [V]; depth [V, 1, H, W] (inf = background);
    attribution: one dict per model shown (see furniture.Piece.attribution); problems: what was
    wrong with the models (missing textures and such) and was worked around."""

    attribution: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def unavailable_reason() -> str | None:
    """Why asset scenes cannot be made here (no furniture package, no headless OpenGL), or None."""
    from nvs.datasets import mesh_render

    return furniture.missing_reason() or mesh_render.unavailable_reason()


def light_tint(rng: np.random.Generator) -> np.ndarray:
    """A light colour between warm and cool white (linear RGB)."""
    warm, cool = np.array([1.0, 0.86, 0.72]), np.array([0.82, 0.9, 1.0])
    t = rng.uniform()
    return (1 - t) * warm + t * cool if rng.uniform() < 0.7 else np.ones(3)


def object_lights(rng: np.random.Generator):
    """A key light from above at a random azimuth, a weaker fill from the other side, ambient."""
    from nvs.datasets.mesh_render import Light

    az, el = rng.uniform(0, 2 * math.pi), rng.uniform(math.radians(20), math.radians(75))
    key = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    fill = np.array([-key[0], -key[1], rng.uniform(-0.2, 0.6)])
    lights = [Light("directional", key, light_tint(rng), rng.uniform(2.0, 4.5)),
              Light("directional", fill, light_tint(rng), rng.uniform(0.4, 1.5))]
    return lights, float(rng.uniform(0.15, 0.45))


def check_fit(fit: str) -> None:
    """A ValueError naming :data:`FITS` unless ``fit`` is one of them."""
    if fit not in FITS:
        raise ValueError(f"unknown object fit {fit!r}; choose one of {tuple(FITS)}")


def fit_transform(model: furniture.Model, yaw: float, fit: str = "sphere") -> np.ndarray:
    """4x4 that centres the model's bounding box, scales it by ``fit`` (:data:`FITS`) and turns it
    by ``yaw`` about +z."""
    check_fit(fit)
    pts = np.concatenate([p.positions for p in model.parts]).astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max()) if fit == "sphere" else float((hi - lo).max() / 2)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = np.eye(4)
    out[:3, :3] = rot / max(radius, 1e-9)
    out[:3, 3] = -rot @ centre / max(radius, 1e-9)
    return out


def furniture_scene(seed: int, views: int, height: int = 128, width: int = 128, split: str = "train",
                    cameras=None, elevation_deg: tuple[float, float] = (0.0, 60.0), backdrop: float = 1.0,
                    fov_deg: float = OBJECT_FOV_DEG, fit: str = "sphere") -> AssetScene:
    """One furniture model, scaled by ``fit``, on a grey ``backdrop`` (1: white) from ``views``
    random sphere cameras at ``elevation_deg`` with a ``fov_deg`` lens (or ``cameras``)."""
    pieces = furniture.pieces_of_split(split)
    piece = pieces[seed % len(pieces)]
    g = torch.Generator().manual_seed(int(seed) * 2 + (split == "val"))
    rng = np.random.default_rng([int(seed), 1 + (split == "val")])
    model = furniture.simplified(furniture.load_model(piece), cells=256)
    cams = object_cameras(g, views, height, width, elevation_deg, fov_deg) if cameras is None else cameras
    images, depth = object_on_backdrop(model, rng, cams, backdrop, object_distance_scale(fov_deg), fit)
    return AssetScene(images, cams, depth, [piece.attribution()], list(model.problems))


def object_on_backdrop(model: furniture.Model, rng: np.random.Generator, cams, backdrop: float = 1.0,
                       distance_scale: float = 1.0, fit: str = "sphere") -> tuple[torch.Tensor, torch.Tensor]:
    """``model`` scaled by ``fit`` (:data:`FITS`), turned at random about up and lit at random (from
    ``rng``), rendered on a grey ``backdrop`` (1: white) from cams [V] standing ``distance_scale``
    times the usual distance from it (:func:`nvs.datasets.procedural.object_distance_scale`) ->
    (images [V, 3, H, W], depth [V, 1, H, W])."""
    from nvs.datasets import mesh_render

    pose = fit_transform(model, rng.uniform(0, 2 * math.pi), fit)
    lights, ambient = object_lights(rng)
    scene = mesh_render.build_scene([(mesh_render.make_mesh(model.parts), pose)], lights, ambient, (backdrop,) * 3)
    rgba, depth = mesh_render.render_views(scene, cams, znear=0.5 * distance_scale, zfar=5.0 * distance_scale)
    return rgba[:, :3].contiguous(), depth


def generate_asset_scene(kind: str, seed: int, views: int, height: int, width: int, split: str = "train",
                         elevation_deg: tuple[float, float] = (0.0, 60.0), backdrop: float = 1.0,
                         fov_deg: float = OBJECT_FOV_DEG, fit: str = "sphere") -> AssetScene:
    """The asset-scene counterpart of procedural.generate_scene (same arguments, plus ``split``, and
    the cameras' ``elevation_deg``, the ``backdrop`` grey, the lens's ``fov_deg`` and the model's
    ``fit`` for furniture)."""
    if kind not in ASSET_KINDS:
        raise ValueError(f"unknown asset scene kind {kind!r}; choose one of {ASSET_KINDS}")
    if split not in furniture.SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {furniture.SPLITS}")
    if kind == "furniture":
        return furniture_scene(seed, views, height, width, split, elevation_deg=elevation_deg, backdrop=backdrop,
                               fov_deg=fov_deg, fit=fit)
    from nvs.datasets.furnished_room import furnished_orbit_scene, furnished_room_scene

    make = furnished_room_scene if kind == "furnished-room" else furnished_orbit_scene
    return make(seed, views, height, width, split)


def merge_attribution(scenes: dict[str, list[dict]], source: str | None = None) -> dict:
    """{scene name: attributions} -> the ``attribution.json`` of a data set: every model once
    (with the scenes that show it) and, per licence, the models under it; ``source`` says where
    the models come from (default: the Debian furniture package)."""
    models: dict[str, dict] = {}
    for name, entries in scenes.items():
        for entry in entries:
            models.setdefault(entry["id"], {**entry, "scenes": []})["scenes"].append(name)
    licences: dict[str, list[str]] = {}
    for model_id, entry in sorted(models.items()):
        licences.setdefault(entry["licence"], []).append(model_id)
    source = source or (f"3D models from the Debian package {furniture.PACKAGE}; each model's creator, licence and "
                        "library are listed under 'models'")
    return {"source": source,
            "licences": licences, "models": [models[k] for k in sorted(models)]}


def asset_throughput(kinds=ASSET_KINDS, views: int = 24, size: int = 128, scenes: int = 4, split: str = "train",
                     workers: int = 1) -> list[dict]:
    """Views per second of the asset data writer (rendering and PNG files, as ``nvs data synth``
    runs it) at ``size`` x ``size`` (rooms: 16:9 at the same height, width a multiple of 16), in
    ``workers`` processes started and warmed up (GL context, shaders) before the clock starts."""
    import tempfile
    from contextlib import nullcontext

    from nvs.datasets.asset_dataset import scene_pool, write_asset_dataset

    rows = []
    for kind in kinds:
        width = size if kind == "furniture" else max(16, round(size * 16 / 9 / 16) * 16)
        with tempfile.TemporaryDirectory() as tmp, (
                scene_pool(workers, kind, split, size, width) if workers > 1 else nullcontext()) as pool:
            if pool is None:
                generate_asset_scene(kind, 10_000, 1, size, width, split)
            t0 = time.perf_counter()
            write_asset_dataset(tmp, kind, split, scenes, views, size, width, log=lambda m: None, pool=pool)
            seconds = time.perf_counter() - t0
        rows.append({"kind": kind, "height": size, "width": width, "views": views * scenes, "scenes": scenes,
                     "workers": workers, "seconds": round(seconds, 3), "views_per_second": round(views * scenes / seconds, 1)})
    return rows
