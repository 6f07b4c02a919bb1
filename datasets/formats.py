"""Readers and writers of multi-view data sets on disk.

- ``lact``: LaCT / GS-LRM object data. ``index.json`` is a JSON list of per-scene
  ``opencv_cameras.json`` paths (relative to the index); each of those is a list of frames
  ``{w, h, fx, fy, cx, cy, w2c (4x4, OpenCV), file_path}`` with paths relative to that file.
- ``lvsm``: LVSM's RealEstate10K layout. ``full_list.txt`` lists per-scene JSON files (relative to
  the list), each ``{"scene_name", "frames": [{image_path, fxfycxcy (pixels), w2c 4x4}]}``.
- ``pixelsplat``: pixelSplat's RealEstate10K chunks. ``index.json`` maps scene keys to ``*.torch``
  chunk files; a chunk is a list of ``{key, url, timestamps [N], cameras [N, 18], images: [JPEG
  bytes as uint8 tensors]}``; a camera row is fx, fy, cx, cy divided by width/height, two unused
  numbers, then the 3x4 world-to-camera matrix row by row. Chunks load with weights_only=True.
- ``nerfstudio`` (:mod:`nvs.datasets.nerfstudio`) and ``colmap`` (:mod:`nvs.datasets.colmap`): no
  index; a scene folder, or a folder of scene folders (directly or under ``scenes/``).
- ``dl3dv`` (:mod:`nvs.datasets.dl3dv`, read only): the raw DL3DV benchmark layout, a scene folder
  with ``nerfstudio/transforms.json`` + ``nerfstudio/images_4/``, or a folder of them.
- ``middlebury`` (:mod:`nvs.datasets.middlebury`, read only): the Middlebury multi-view sets, a
  folder with a ``*_par.txt`` beside its images, or a folder of them.

Every reader returns :class:`SceneRecord` (paths + cameras at the stored image size) and checks
what it reads: a problem raises ValueError naming the file and the scene.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from nvs.cameras import Cameras, normalized_to_pixel_intrinsics, pixel_to_normalized_intrinsics
from nvs.datasets.depth_maps import DEPTH_SCALE, write_depth_png
from nvs.datasets.records import SceneRecord, cameras_from_w2c, check_image, finite_matrix, image_size, load_json, number
from nvs.datasets.colmap import is_colmap_scene, read_colmap_scene, write_colmap_scene
from nvs.datasets.dl3dv import is_dl3dv_scene, read_dl3dv_scene
from nvs.datasets.middlebury import read_middlebury_scene
from nvs.datasets.dl3dv import is_portrait as is_dl3dv_portrait
from nvs.datasets.nerfstudio import read_nerfstudio_scene, write_nerfstudio_scene
from nvs.io.untrusted import current, scene_path
from nvs.io.media import decode_image, read_image, save_images

FORMATS = ("lact", "lvsm", "pixelsplat", "nerfstudio", "colmap")
INDEX_FILES = {"lact": "index.json", "lvsm": "full_list.txt", "pixelsplat": "index.json"}
MAX_DEPTH_SCALE = 1e3  # scene units per stored depth step (a 16-bit map then reaches 6.5e7 units)


# ----- LaCT / GS-LRM ---------------------------------------------------------------------------
def read_lact_scene(cameras_json: Path, name: str | None = None) -> SceneRecord:
    name = name or cameras_json.parent.name
    frames = load_json(cameras_json, f"cameras of scene '{name}'")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{cameras_json}: scene '{name}' must be a non-empty list of frames")
    current().check_frames(len(frames), f"{cameras_json} (scene '{name}')")
    intr, w2c, paths, sizes = [], [], [], set()
    for i, f in enumerate(frames):
        where = f"{cameras_json} (scene '{name}', frame {i})"
        if not isinstance(f, dict):
            raise ValueError(f"{where}: a frame must be an object")
        intr.append([number(f, k, where) for k in ("fx", "fy", "cx", "cy")])
        sizes.add((int(number(f, "h", where)), int(number(f, "w", where))))
        w2c.append(finite_matrix(f.get("w2c"), where))
        if "file_path" not in f:
            raise ValueError(f"{where}: missing 'file_path'")
        paths.append(check_image(scene_path(cameras_json.parent, f["file_path"], where), where))
    where = f"{cameras_json} (scene '{name}')"
    return SceneRecord(name, paths, cameras_from_w2c(intr, w2c, sizes, where), str(cameras_json),
                       depths=_lact_depths(frames, cameras_json.parent, where))


def _lact_depths(frames: list[dict], folder: Path, where: str) -> list[tuple[Path, float]] | None:
    """Each frame's (depth map, scale) when the frames name them (all or none), else None."""
    named = ["depth_path" in f for f in frames]
    if not any(named):
        return None
    if not all(named):
        raise ValueError(f"{where}: frames {[i for i, n in enumerate(named) if not n][:10]} have no 'depth_path' "
                         "while others do; give every frame a depth map or none")
    depths = []
    for i, f in enumerate(frames):
        scale = number(f, "depth_scale", f"{where}, frame {i}")
        if not 0 < scale <= MAX_DEPTH_SCALE:
            raise ValueError(f"{where}, frame {i}: 'depth_scale' must be in (0, {MAX_DEPTH_SCALE:g}], got {scale}")
        # read (and found missing) only where depth is asked for: a copy without depth/ still renders
        depths.append((scene_path(folder, f["depth_path"], f"{where}, frame {i}"), scale))
    return depths


def write_lact_frames(folder: Path, images: Tensor, cams: Cameras, file_names: list[str] | None = None,
                      images_dir: str = "images", depths: Tensor | None = None) -> Path:
    """images [V, 3, H, W] -> folder/{images/<file name>, opencv_cameras.json} (names default to
    000.png ...); with ``depths`` [V, 1, H, W] (z-depth, inf or 0 = no surface), also
    ``depth/<name>.png`` (see :func:`write_depth_png`), named by each frame's ``depth_path``."""
    frames = []
    w2c = cams.w2c.double()
    rels = [f"{images_dir}/{file_names[i] if file_names else f'{i:03d}.png'}" for i in range(images.shape[0])]
    save_images(list(images), [folder / rel for rel in rels])
    for i, rel in enumerate(rels):
        fx, fy, cx, cy = (float(v) for v in cams.intrinsics[i])
        frame = {"w": cams.width, "h": cams.height, "fx": fx, "fy": fy, "cx": cx, "cy": cy,
                 "w2c": w2c[i].tolist(), "file_path": rel}
        if depths is not None:
            depth_rel = f"depth/{Path(rel).stem}.png"
            if any(f.get("depth_path") == depth_rel for f in frames):
                raise ValueError(f"{folder}: two frames would share the depth map {depth_rel}; give file names distinct stems")
            write_depth_png(folder / depth_rel, depths[i, 0])
            frame.update(depth_path=depth_rel, depth_scale=DEPTH_SCALE)
        frames.append(frame)
    (folder / "opencv_cameras.json").write_text(json.dumps(frames, indent=1))
    return folder / "opencv_cameras.json"


def write_lact_scene(root: Path, name: str, images: Tensor, cams: Cameras, depths: Tensor | None = None) -> Path:
    """images [V, 3, H, W] (and depths [V, 1, H, W]) -> root/scenes/<name>/{images/*.png, depth/*.png,
    opencv_cameras.json}."""
    return write_lact_frames(root / "scenes" / name, images, cams, depths=depths)


# ----- LVSM RealEstate10K JSON -------------------------------------------------------------------
def read_lvsm_scene(scene_json: Path) -> SceneRecord:
    data = load_json(scene_json, "scene file")
    name = data.get("scene_name", scene_json.stem) if isinstance(data, dict) else scene_json.stem
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{scene_json}: scene '{name}' needs a non-empty 'frames' list")
    current().check_frames(len(frames), f"{scene_json} (scene '{name}')")
    intr, w2c, paths, sizes = [], [], [], set()
    for i, f in enumerate(frames):
        where = f"{scene_json} (scene '{name}', frame {i})"
        k = f.get("fxfycxcy") if isinstance(f, dict) else None
        if not isinstance(k, list) or len(k) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in k):
            raise ValueError(f"{where}: 'fxfycxcy' must be 4 finite numbers, got {k!r}")
        intr.append([float(v) for v in k])
        w2c.append(finite_matrix(f.get("w2c"), where))
        if not isinstance(f, dict):
            raise ValueError(f"{where}: a frame must be an object")
        # LVSM's own preprocessing writes absolute image paths
        path = check_image(scene_path(scene_json.parent, f.get("image_path"), where, absolute_ok=True), where)
        paths.append(path)
        sizes.add(image_size(path, where))
    return SceneRecord(name, paths, cameras_from_w2c(intr, w2c, sizes, f"{scene_json} (scene '{name}')"), str(scene_json))


def write_lvsm_scene(root: Path, name: str, images: Tensor, cams: Cameras) -> Path:
    folder = root / "scenes" / name
    w2c = cams.w2c.double()
    frames = []
    rels = [f"images/{i:03d}.png" for i in range(images.shape[0])]
    save_images(list(images), [folder / rel for rel in rels])
    for i, rel in enumerate(rels):
        frames.append({"image_path": rel, "fxfycxcy": [float(v) for v in cams.intrinsics[i]], "w2c": w2c[i].tolist()})
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"scene_name": name, "frames": frames}, indent=1))
    return path


# ----- pixelSplat chunks ----------------------------------------------------------------------
@lru_cache(maxsize=2)
def _load_chunk(path: Path) -> list:
    try:
        chunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable pixelSplat chunk ({type(exc).__name__}: {exc})") from exc
    if not isinstance(chunk, list):
        raise ValueError(f"{path}: a pixelSplat chunk must be a list of scenes")
    return chunk


def read_pixelsplat_scene(chunk_path: Path, key: str) -> SceneRecord:
    where = f"{chunk_path} (scene '{key}')"
    found = [e for e in _load_chunk(chunk_path) if isinstance(e, dict) and e.get("key") == key]
    if len(found) != 1:
        raise ValueError(f"{where}: the scene is not in the chunk the index names")
    example = found[0]
    cams, images = example.get("cameras"), example.get("images")
    if not isinstance(cams, Tensor) or cams.ndim != 2 or cams.shape[1] != 18:
        shape = tuple(cams.shape) if isinstance(cams, Tensor) else type(cams).__name__
        raise ValueError(f"{where}: camera rows must have 18 numbers, got {shape}")
    current().check_frames(cams.shape[0], where)
    if not isinstance(images, list) or len(images) != cams.shape[0]:
        raise ValueError(f"{where}: expected one image per camera row ({cams.shape[0]})")
    if not torch.isfinite(cams).all():
        raise ValueError(f"{where}: cameras contain NaN or inf")
    data = [bytes(img.numpy().tobytes()) for img in images]
    sizes = {image_size(d, f"{where}, frame {i}") for i, d in enumerate(data)}
    if len(sizes) != 1:
        raise ValueError(f"{where}: images of mixed resolutions {sorted(sizes)}; a scene must have one size")
    (h, w), = sizes
    intr = normalized_to_pixel_intrinsics(cams[:, :4].float(), h, w)
    w2c = cams[:, 6:].reshape(-1, 3, 4).double()
    return SceneRecord(key, data, Cameras.from_w2c(intr, w2c.float(), h, w).validate(where), str(chunk_path))


def write_pixelsplat(root: Path, scenes: list[tuple[str, Tensor, Cameras]], per_chunk: int = 8, quality: int = 95) -> Path:
    import imageio.v3 as iio

    from nvs.io.media import to_uint8

    root.mkdir(parents=True, exist_ok=True)
    index = {}
    for c in range(0, len(scenes), per_chunk):
        chunk, name = [], f"{c // per_chunk:06d}.torch"
        for key, images, cams in scenes[c : c + per_chunk]:
            norm = pixel_to_normalized_intrinsics(cams.intrinsics.double(), cams.height, cams.width)
            rows = torch.cat([norm, torch.zeros(len(cams), 2, dtype=torch.float64), cams.w2c.double()[:, :3].reshape(-1, 12)], 1)
            jpegs = [torch.frombuffer(bytearray(iio.imwrite("<bytes>", to_uint8(img), extension=".jpg", quality=quality)), dtype=torch.uint8)
                     for img in images]
            chunk.append({"key": key, "url": "", "timestamps": torch.arange(len(cams)), "cameras": rows.float(), "images": jpegs})
            index[key] = name
        torch.save(chunk, root / name)
    (root / "index.json").write_text(json.dumps(index, indent=1))
    return root / "index.json"


# ----- whole data sets ------------------------------------------------------------------------
SceneRef = Path | tuple[Path, str]


def _dl3dv_folders(root: Path) -> tuple[str, list[Path]] | None:
    """A DL3DV scene folder (``nerfstudio/transforms.json``) or a folder of them; portrait scenes
    are left out, as the official converter leaves them out."""
    if is_dl3dv_scene(root):
        return "dl3dv", [root]
    scenes = sorted(p for p in root.glob("*") if p.is_dir() and is_dl3dv_scene(p))
    if not scenes:
        return None
    landscape = [p for p in scenes if not is_dl3dv_portrait(p)]
    if not landscape:
        raise ValueError(f"{root}: all {len(scenes)} DL3DV scenes are portrait (the official converter skips those)")
    return "dl3dv", landscape


def _scene_folders(root: Path) -> tuple[str, list[Path]] | None:
    """nerfstudio / COLMAP data sets have no index: a scene folder, or a folder of scene folders
    (directly or under ``scenes/``)."""
    dl3dv = _dl3dv_folders(root)
    if dl3dv is not None:
        return dl3dv
    if (root / "transforms.json").is_file():
        return "nerfstudio", [root / "transforms.json"]
    if is_colmap_scene(root):
        return "colmap", [root]
    if list(root.glob("*_par.txt")):
        return "middlebury", sorted(root.glob("*_par.txt"))
    for parent in (root, root / "scenes"):
        nerf = sorted(parent.glob("*/transforms.json"))
        colmap = sorted(p for p in parent.glob("*") if p.is_dir() and is_colmap_scene(p))
        if nerf and colmap:
            raise ValueError(f"{parent}: holds both nerfstudio and COLMAP scenes; keep one format per data set")
        if nerf or colmap:
            return ("nerfstudio", nerf) if nerf else ("colmap", colmap)
    middlebury = sorted(root.glob("*/*_par.txt"))
    return ("middlebury", middlebury) if middlebury else None


def list_scenes(root: str | Path) -> tuple[str, list[SceneRef]]:
    """(format, scene references) of a data set folder (or its index file)."""
    root = Path(root)
    if root.is_file():
        root = root.parent
    if not root.exists():
        raise ValueError(f"{root}: data set path does not exist")
    if (root / "full_list.txt").is_file():
        fmt = "lvsm"
    elif (root / "index.json").is_file():
        fmt = "pixelsplat" if isinstance(load_json(root / "index.json", "scene index"), dict) else "lact"
    else:
        found = _scene_folders(root)
        if found is None:
            raise ValueError(f"{root}: no data set found (expected index.json, full_list.txt, transforms.json, "
                             "a COLMAP scene with images/ and sparse/, or a Middlebury *_par.txt)")
        return found
    index = root / INDEX_FILES[fmt]
    if fmt == "pixelsplat":
        entries = load_json(index, "scene index")
        if not isinstance(entries, dict):
            raise ValueError(f"{index}: must map scene keys to chunk files")
        refs: list[SceneRef] = [(scene_path(root, chunk, f"{index} (scene '{key}')", absolute_ok=True), key)
                                for key, chunk in entries.items()]
    elif fmt == "lact":
        entries = load_json(index, "scene index")
        if not all(isinstance(e, str) for e in entries):
            raise ValueError(f"{index}: must be a JSON list of opencv_cameras.json paths")
        refs = [scene_path(root, e, f"{index} (entry {i})", absolute_ok=True) for i, e in enumerate(entries)]
    else:
        lines = [line.strip() for line in index.read_text().splitlines() if line.strip()]
        refs = [scene_path(root, line, f"{index} (line {i + 1})", absolute_ok=True) for i, line in enumerate(lines)]
    if not refs:
        raise ValueError(f"{index}: the data set lists no scenes")
    return fmt, refs


def scene_name(fmt: str, ref: SceneRef) -> str:
    """The name of a scene from its reference, without reading it."""
    if fmt == "pixelsplat":
        return ref[1]
    if fmt in ("colmap", "dl3dv"):
        return ref.name
    if fmt == "middlebury":
        return ref.name.removesuffix("_par.txt")
    return ref.parent.name if fmt in ("lact", "nerfstudio") else ref.stem


READERS = {"lact": read_lact_scene, "lvsm": read_lvsm_scene, "nerfstudio": read_nerfstudio_scene, "colmap": read_colmap_scene,
           "dl3dv": read_dl3dv_scene, "middlebury": read_middlebury_scene}
WRITERS = {"lact": write_lact_scene, "lvsm": write_lvsm_scene, "nerfstudio": write_nerfstudio_scene, "colmap": write_colmap_scene}


def read_scene(fmt: str, ref: SceneRef) -> SceneRecord:
    if fmt == "pixelsplat":
        return read_pixelsplat_scene(*ref)
    return READERS[fmt](ref)


def write_dataset(root: str | Path, fmt: str, scenes: list[tuple[str, Tensor, Cameras]]) -> Path:
    """Write scenes [(name, images [V, 3, H, W], cams [V])] in ``fmt``; returns the index file, or
    the data set folder for the formats without one (nerfstudio, colmap)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    root = Path(root)
    if fmt == "pixelsplat":
        return write_pixelsplat(root, scenes)
    rels = [str(WRITERS[fmt](root, name, images, cams).relative_to(root)) for name, images, cams in scenes]
    if fmt not in INDEX_FILES:
        return root
    index = root / INDEX_FILES[fmt]
    index.write_text(json.dumps(rels, indent=1) if fmt == "lact" else "\n".join(rels) + "\n")
    return index


def load_views(record: SceneRecord, indices: list[int], height: int | None = None, width: int | None = None,
               resize: str = "bilinear") -> tuple[Tensor, Cameras]:
    """Images [K, 3, H, W] and cameras [K] of selected views, resized to cover (height, width)
    and centre-cropped, intrinsics updated in the same step. ``resize``: ``bilinear``
    (antialiased) or ``official`` (the official LaCT rule: PIL Lanczos, see
    :func:`~nvs.geometry.image_ops.official_resize_and_crop`). Each image's header is checked
    (size, the request's pixel budget) before it is decoded, and images are resized one at a time."""
    from nvs.geometry.image_ops import (RESIZE_RULES, official_resize_and_crop, resize_and_center_crop,
                                        undistort_as_opencv, undistort_image)
    from nvs.io.untrusted import check_image_file

    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    rule = official_resize_and_crop if resize == "official" else resize_and_center_crop
    images, cams = [], []
    for i in indices:
        source = record.sources[i]
        label = f"{record.where} (scene '{record.name}', frame {i})" if isinstance(source, bytes) else str(source)
        # the header first: a file larger than its camera says is refused before it is decoded
        stored = check_image_file(source, label)
        if stored != (record.cameras.height, record.cameras.width):
            raise ValueError(f"{label} (scene '{record.name}'): image is {stored} pixels, "
                             f"its camera says {(record.cameras.height, record.cameras.width)}")
        img = decode_image(source, label) if isinstance(source, bytes) else read_image(source)
        if tuple(img.shape[1:]) != stored:
            raise ValueError(f"{label} (scene '{record.name}'): decodes to {tuple(img.shape[1:])} pixels, its header says {stored}")
        if record.distorted_intrinsics is not None:
            img = undistort_as_opencv(img, record.distorted_intrinsics[i], record.distortion[i], record.cameras.intrinsics[i])
        elif record.distortion is not None:
            img = undistort_image(img, record.cameras.intrinsics[i], record.distortion[i])
        cam = record.cameras[i : i + 1]
        if height is not None and width is not None:  # one image at a time: memory stays that of the outputs
            img, cam = rule(img[None], cam, height, width)
            img = img[0]
        images.append(img)
        cams.append(cam)
    return torch.stack(images), Cameras.cat(cams)


def load_depths(record: SceneRecord, indices: list[int], height: int, width: int) -> Tensor:
    """Depth maps [K, 1, H, W] (z-depth, 0 = no surface) of selected views, read at their stored
    size, which must be (height, width): depth is not resampled."""
    from nvs.datasets.depth_maps import read_depth_png

    if record.depths is None:
        raise ValueError(f"{record.where or record.name}: scene '{record.name}' has no depth maps")
    size = (record.cameras.height, record.cameras.width)
    if size != (height, width):
        raise ValueError(f"scene '{record.name}': depth maps are read at their stored size {size}, not resized to "
                         f"{(height, width)}; ask for that size")
    return torch.stack([read_depth_png(record.depths[i][0], record.depths[i][1], size,
                                       f"{record.where} (scene '{record.name}', frame {i})") for i in indices])


def read_any_scene(path: Path, scene_index: int = 0) -> SceneRecord:
    """A scene from a data set folder/index (``scene_index``-th scene) or a single scene file."""
    if path.is_file() and path.name == "opencv_cameras.json":
        return read_lact_scene(path)
    if path.is_file() and path.name == "transforms.json":
        if path.parent.name == "nerfstudio" and (path.parent / "images_4").is_dir():  # DL3DV layout
            return read_dl3dv_scene(path.parent.parent)
        return read_nerfstudio_scene(path)
    if path.is_file() and path.suffix == ".json" and path.name != "index.json":
        return read_lvsm_scene(path)
    if path.is_file() and path.name.endswith("_par.txt"):
        return read_middlebury_scene(path)
    fmt, files = list_scenes(path)
    if not 0 <= scene_index < len(files):
        raise ValueError(f"{path}: scene {scene_index} requested, the data set has {len(files)}")
    return read_scene(fmt, files[scene_index])
