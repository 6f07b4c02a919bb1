"""Readers and writers of multi-view data sets on disk.

- ``lact``: LaCT / GS-LRM object data. ``index.json`` is a JSON list of per-scene
  ``opencv_cameras.json`` paths (relative to the index); each of those is a list of frames
  ``{w, h, fx, fy, cx, cy, w2c (4x4, OpenCV), file_path}`` with paths relative to that file.
- ``lvsm``: LVSM's RealEstate10K layout. ``full_list.txt`` lists per-scene JSON files (relative to
  the list), each ``{"scene_name", "frames": [{image_path, fxfycxcy (pixels), w2c 4x4}]}``.

Every reader returns :class:`SceneRecord` (paths + cameras at the stored image size) and checks
what it reads: a problem raises ValueError naming the file and the scene.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nvs.cameras import Cameras, invert_rigid
from nvs.media import read_image, save_image

FORMATS = ("lact", "lvsm")
INDEX_FILES = {"lact": "index.json", "lvsm": "full_list.txt"}


@dataclass
class SceneRecord:
    """One scene on disk: image paths [V] and their cameras [V] (intrinsics in stored pixels)."""

    name: str
    image_paths: list[Path]
    cameras: Cameras


def _finite_matrix(value, where: str) -> Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: w2c is not a 4x4 matrix of numbers") from exc
    if m.shape != (4, 4):
        raise ValueError(f"{where}: w2c must be 4x4, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{where}: w2c contains NaN or inf")
    return m


def _number(frame: dict, key: str, where: str) -> float:
    value = frame.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _cameras(intr: list[list[float]], w2c: list[Tensor], sizes: set[tuple[int, int]], where: str) -> Cameras:
    if len(sizes) != 1:
        raise ValueError(f"{where}: images of mixed resolutions {sorted(sizes)}; a scene must have one size")
    (h, w), = sizes
    cams = Cameras.from_w2c(torch.tensor(intr, dtype=torch.float32), torch.stack(w2c).float(), h, w)
    return cams.validate(where)


def _load_json(path: Path, what: str):
    if not path.is_file():
        raise ValueError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {what} is not valid JSON ({exc})") from exc


def _check_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise ValueError(f"{where}: image file {path} is missing")
    return path


# ----- LaCT / GS-LRM ---------------------------------------------------------------------------
def read_lact_scene(cameras_json: Path, name: str | None = None) -> SceneRecord:
    name = name or cameras_json.parent.name
    frames = _load_json(cameras_json, f"cameras of scene '{name}'")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{cameras_json}: scene '{name}' must be a non-empty list of frames")
    intr, w2c, paths, sizes = [], [], [], set()
    for i, f in enumerate(frames):
        where = f"{cameras_json} (scene '{name}', frame {i})"
        if not isinstance(f, dict):
            raise ValueError(f"{where}: a frame must be an object")
        intr.append([_number(f, k, where) for k in ("fx", "fy", "cx", "cy")])
        sizes.add((int(_number(f, "h", where)), int(_number(f, "w", where))))
        w2c.append(_finite_matrix(f.get("w2c"), where))
        if "file_path" not in f:
            raise ValueError(f"{where}: missing 'file_path'")
        paths.append(_check_image(cameras_json.parent / f["file_path"], where))
    return SceneRecord(name, paths, _cameras(intr, w2c, sizes, f"{cameras_json} (scene '{name}')"))


def write_lact_scene(root: Path, name: str, images: Tensor, cams: Cameras) -> Path:
    """images [V, 3, H, W] -> root/scenes/<name>/{images/*.png, opencv_cameras.json}."""
    folder = root / "scenes" / name
    frames = []
    w2c = cams.w2c.double()
    for i in range(images.shape[0]):
        rel = f"images/{i:03d}.png"
        save_image(images[i], folder / rel)
        fx, fy, cx, cy = (float(v) for v in cams.intrinsics[i])
        frames.append({"w": cams.width, "h": cams.height, "fx": fx, "fy": fy, "cx": cx, "cy": cy,
                       "w2c": w2c[i].tolist(), "file_path": rel})
    (folder / "opencv_cameras.json").write_text(json.dumps(frames, indent=1))
    return folder / "opencv_cameras.json"


# ----- LVSM RealEstate10K JSON -------------------------------------------------------------------
def read_lvsm_scene(scene_json: Path) -> SceneRecord:
    data = _load_json(scene_json, "scene file")
    name = data.get("scene_name", scene_json.stem) if isinstance(data, dict) else scene_json.stem
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{scene_json}: scene '{name}' needs a non-empty 'frames' list")
    intr, w2c, paths, sizes = [], [], [], set()
    for i, f in enumerate(frames):
        where = f"{scene_json} (scene '{name}', frame {i})"
        k = f.get("fxfycxcy") if isinstance(f, dict) else None
        if not isinstance(k, list) or len(k) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in k):
            raise ValueError(f"{where}: 'fxfycxcy' must be 4 finite numbers, got {k!r}")
        intr.append([float(v) for v in k])
        w2c.append(_finite_matrix(f.get("w2c"), where))
        path = _check_image(scene_json.parent / f.get("image_path", ""), where)
        paths.append(path)
        sizes.add(_image_size(path, where))
    return SceneRecord(name, paths, _cameras(intr, w2c, sizes, f"{scene_json} (scene '{name}')"))


def _image_size(path: Path, where: str) -> tuple[int, int]:
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
    except Exception as exc:
        raise ValueError(f"{where}: {path} is not a readable image") from exc
    return int(props.shape[0]), int(props.shape[1])


def write_lvsm_scene(root: Path, name: str, images: Tensor, cams: Cameras) -> Path:
    folder = root / "scenes" / name
    w2c = cams.w2c.double()
    frames = []
    for i in range(images.shape[0]):
        rel = f"images/{i:03d}.png"
        save_image(images[i], folder / rel)
        frames.append({"image_path": rel, "fxfycxcy": [float(v) for v in cams.intrinsics[i]], "w2c": w2c[i].tolist()})
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"scene_name": name, "frames": frames}, indent=1))
    return path


# ----- whole data sets ------------------------------------------------------------------------
def detect_format(root: Path) -> str:
    for fmt, index in INDEX_FILES.items():
        if (root / index).is_file():
            return fmt
    raise ValueError(f"{root}: no data set found (expected {' or '.join(INDEX_FILES.values())})")


def list_scenes(root: str | Path) -> tuple[str, list[Path]]:
    """(format, per-scene files) of a data set folder (or its index file)."""
    root = Path(root)
    if root.is_file():
        index, root = root, root.parent
        fmt = next((f for f, name in INDEX_FILES.items() if name == index.name), "lact" if index.suffix == ".json" else "lvsm")
    else:
        if not root.exists():
            raise ValueError(f"{root}: data set path does not exist")
        fmt = detect_format(root)
        index = root / INDEX_FILES[fmt]
    if fmt == "lact":
        entries = _load_json(index, "scene index")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError(f"{index}: must be a JSON list of opencv_cameras.json paths")
    else:
        entries = [line.strip() for line in index.read_text().splitlines() if line.strip()]
    if not entries:
        raise ValueError(f"{index}: the data set lists no scenes")
    return fmt, [root / e for e in entries]


def read_scene(fmt: str, path: Path) -> SceneRecord:
    return read_lact_scene(path) if fmt == "lact" else read_lvsm_scene(path)


def write_dataset(root: str | Path, fmt: str, scenes: list[tuple[str, Tensor, Cameras]]) -> Path:
    """Write scenes [(name, images [V, 3, H, W], cams [V])] in ``fmt``; returns the index file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    root = Path(root)
    writer = write_lact_scene if fmt == "lact" else write_lvsm_scene
    rels = [str(writer(root, name, images, cams).relative_to(root)) for name, images, cams in scenes]
    index = root / INDEX_FILES[fmt]
    index.write_text(json.dumps(rels, indent=1) if fmt == "lact" else "\n".join(rels) + "\n")
    return index


def load_views(record: SceneRecord, indices: list[int], height: int | None = None, width: int | None = None) -> tuple[Tensor, Cameras]:
    """Images [K, 3, H, W] and cameras [K] of selected views, resized to cover (height, width)
    and centre-cropped, intrinsics updated in the same step."""
    from nvs.image_ops import resize_and_center_crop

    images, cams = [], record.cameras[torch.tensor(indices)]
    for i in indices:
        img = read_image(record.image_paths[i])
        if tuple(img.shape[1:]) != (record.cameras.height, record.cameras.width):
            raise ValueError(f"{record.image_paths[i]} (scene '{record.name}'): image is {tuple(img.shape[1:])} pixels, "
                             f"its camera says {(record.cameras.height, record.cameras.width)}")
        images.append(img)
    stack = torch.stack(images)
    if height is not None and width is not None:
        stack, cams = resize_and_center_crop(stack, cams, height, width)
    return stack, cams
