"""Scenes of a folder of the user's own textured meshes (scanned objects, Objaverse or GSO exports),
rendered as the ``furniture`` kind renders the packaged models: one model normalised to the unit
sphere (or fitted into the cube [-1, 1]^3), turned at random about up, lit at random, on white,
from cameras on a sphere of radius 2.7 (50 deg field of view) looking at its centre.

The folder holds one model per sub-folder (one OBJ anywhere inside it, with its MTL and textures,
as in Google Scanned Objects' ``meshes/model.obj`` and ``materials/textures/``; the sub-folder's
name is the model's name), or OBJ files side by side. Files are read only from inside the model's
sub-folder: an MTL or texture reference that leaves it (``..`` above it, absolute paths, links out)
is reported as missing. An optional ``attribution.json`` in the folder gives, per model name, what a
data set must say about it (``creator``, ``licence``, ``source``); models it does not name are
recorded with the licence "not given".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from nvs.datasets import furniture
from nvs.datasets.asset_scenes import AssetScene, object_on_backdrop
from nvs.datasets.procedural import OBJECT_FOV_DEG, object_cameras, object_distance_scale

# rotations applied before furniture.load_obj_model's turn from y up to z up
UP_AXES = {"y": None, "z": (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)}
ATTRIBUTION_KEYS = ("creator", "licence", "source")
MAX_FILE_BYTES = 512 << 20  # a model's OBJ, MTL or texture; a larger one is refused


@dataclass(frozen=True)
class MeshEntry:
    name: str
    folder: Path  # files are read from inside it only
    obj: str  # the OBJ's name inside ``folder``
    credits: tuple[tuple[str, str], ...]
    where: str  # the OBJ's path inside the mesh folder

    def attribution(self) -> dict:
        given = dict(self.credits)
        return {"id": self.name, "name": self.name, "creator": given.get("creator", "not given"),
                "licence": given.get("licence", "not given"),
                "source": given.get("source", f"mesh folder: {self.where}")}


def _read_attribution(root: Path) -> dict[str, dict]:
    path = root / "attribution.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{model name: {{creator, licence, source}}}}")
    for name, entry in data.items():
        bad = [k for k, v in entry.items() if k not in ATTRIBUTION_KEYS or not isinstance(v, str)]
        if bad:
            raise ValueError(f"{path}: model {name!r}: keys must be {ATTRIBUTION_KEYS} with text values, got {bad}")
    return data


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"  # editors' and archivers' litter


def find_meshes(root: str | Path, log=None) -> list[MeshEntry]:
    """The models of a mesh folder, sorted by name; sub-folders without an OBJ are left out, and
    ``log`` (if given) is told so. A sub-folder or OBJ that is a link out of the folder is refused."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"mesh folder {root} does not exist or is not a folder")
    inside = root.resolve()
    credits = _read_attribution(root)
    entries = []
    for path in sorted(p for p in root.iterdir() if not _hidden(p)):
        if not path.resolve().is_relative_to(inside):
            raise ValueError(f"{path} is a link out of the mesh folder {root}")
        if path.is_file() and path.suffix.lower() == ".obj":
            entries.append(MeshEntry(path.stem, root, path.name, (), path.name))
        elif path.is_dir():
            objs = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                          if p.suffix.lower() == ".obj" and p.is_file() and not any(map(_hidden, p.relative_to(path).parents))
                          and not _hidden(p))
            if len(objs) > 1:
                raise ValueError(f"{path} holds {len(objs)} OBJ files ({', '.join(objs[:4])}): keep one model per folder")
            if objs:
                entries.append(MeshEntry(path.name, path, objs[0], (), f"{path.name}/{objs[0]}"))
            elif log is not None:
                log(f"{path}: no OBJ file inside; left out")
    if not entries:
        raise ValueError(f"mesh folder {root} holds no OBJ model (one per sub-folder, or *.obj files in it)")
    names = [e.name for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"mesh folder {root}: model names given twice: {twice}")
    unknown = sorted(set(credits) - set(names))
    if unknown:
        raise ValueError(f"{root / 'attribution.json'} names models the folder does not hold: {unknown[:5]}")
    return sorted((dataclasses.replace(e, credits=tuple(sorted(credits.get(e.name, {}).items()))) for e in entries),
                  key=lambda e: e.name)


def _reader(folder: Path, problems: list[str]):
    """read_member(name) -> bytes for files inside ``folder``. An MTL the OBJ names but its folder
    lacks is read from that folder's only MTL, if it has exactly one (exports often rename one of
    the two), and ``problems`` says so."""
    base = folder.resolve()

    def read_member(name: str) -> bytes:
        try:
            path = (base / name).resolve()
            if path.suffix.lower() == ".mtl" and path.parent.is_relative_to(base) and not path.exists():
                only = [p for p in path.parent.glob("*") if p.suffix.lower() == ".mtl" and p.is_file()]
                if len(only) == 1:
                    problems.append(f"{folder / name} does not exist; read {only[0].name} instead")
                    path = only[0].resolve()
            if not path.is_relative_to(base) or not path.is_file():
                raise ValueError(f"{folder / name}: no such file inside the model's folder")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"{folder / name} is over the {MAX_FILE_BYTES >> 20} MB a model's file may have")
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{folder / name}: cannot be read ({exc.strerror or exc})") from None

    return read_member


@lru_cache(maxsize=64)
def load_mesh(entry: MeshEntry, up: str = "y") -> furniture.Model:
    """The entry's model, turned so that ``up`` (its OBJ axis that points up) is +z (cached)."""
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {tuple(UP_AXES)}, got {up!r}")
    problems: list[str] = []
    model = furniture.load_obj_model(_reader(entry.folder, problems), entry.obj, str(entry.folder / entry.obj),
                                     UP_AXES[up])
    model = furniture.simplified(model, cells=256)
    return furniture.Model(model.piece, model.parts, problems + list(model.problems))


def mesh_scene(entries: list[MeshEntry], seed: int, views: int, height: int = 128, width: int = 128, up: str = "y",
               elevation_deg: tuple[float, float] = (0.0, 60.0), backdrop: float = 1.0,
               fov_deg: float = OBJECT_FOV_DEG, fit: str = "sphere") -> AssetScene:
    """Model ``seed mod len(entries)``, scaled by ``fit`` (:data:`nvs.datasets.asset_scenes.FITS`), on a
    grey ``backdrop`` (1: white) from ``views`` random sphere cameras with a ``fov_deg`` lens."""
    entry = entries[seed % len(entries)]
    g = torch.Generator().manual_seed(int(seed) * 2 + 1)
    rng = np.random.default_rng([int(seed), 7])
    model = load_mesh(entry, up)
    cams = object_cameras(g, views, height, width, elevation_deg, fov_deg)
    images, depth = object_on_backdrop(model, rng, cams, backdrop, object_distance_scale(fov_deg), fit)
    return AssetScene(images, cams, depth, [entry.attribution()], list(model.problems))
