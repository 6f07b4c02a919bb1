"""NeRF / nerfstudio ``transforms.json`` scenes.

A scene is a folder with ``transforms.json``: ``frames[{file_path, transform_matrix}]`` where
``transform_matrix`` is an OpenGL camera-to-world (x right, y up, z backward). Intrinsics are
global or per frame: ``fl_x``/``fl_y`` in pixels, or ``camera_angle_x`` (the Blender NeRF scenes);
``cx``/``cy`` default to the image centre and ``w``/``h`` to the image file's size. Radial and
tangential distortion ``k1 k2 k3 p1 p2`` is removed with OpenCV when the images are loaded; fisheye
models are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from nvs.cameras import Cameras, opencv_to_opengl, opengl_to_opencv
from nvs.datasets.records import SceneRecord, check_image, finite_matrix, image_size, load_json
from nvs.io.untrusted import current, scene_path
from nvs.io.media import save_image

DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")  # OpenCV's order
FISHEYE_MODELS = ("OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR")


def _value(frame: dict, meta: dict, key: str, where: str) -> float | None:
    value = frame.get(key, meta.get(key))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _image_path(folder: Path, file_path, where: str) -> Path:
    if not isinstance(file_path, str) or not file_path:
        raise ValueError(f"{where}: 'file_path' must be a non-empty string")
    path = scene_path(folder, file_path, where, absolute_ok=True)  # nerfstudio's loader accepts absolute paths
    if not path.suffix and not path.exists():  # Blender NeRF scenes omit the extension
        path = path.with_suffix(".png")
    return check_image(path, where)


def read_nerfstudio_scene(transforms_json: Path, name: str | None = None) -> SceneRecord:
    """A scene from its ``transforms.json``; cameras are converted to OpenCV c2w."""
    name = name or transforms_json.parent.name
    meta = load_json(transforms_json, f"transforms of scene '{name}'")
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{transforms_json}: scene '{name}' needs a non-empty 'frames' list")
    current().check_frames(len(frames), f"{transforms_json} (scene '{name}')")
    model = meta.get("camera_model", "OPENCV")
    if model in FISHEYE_MODELS or "k4" in meta:
        raise ValueError(f"{transforms_json}: scene '{name}' uses the fisheye camera model {model!r}; "
                         "only pinhole cameras with k1 k2 k3 p1 p2 distortion can be read (undistort the images first)")
    intr, c2w, paths, sizes, dist = [], [], [], set(), []
    for i, f in enumerate(frames):
        where = f"{transforms_json} (scene '{name}', frame {i})"
        if not isinstance(f, dict):
            raise ValueError(f"{where}: a frame must be an object")
        if f.get("camera_model", model) in FISHEYE_MODELS or "k4" in f:
            raise ValueError(f"{where}: fisheye cameras are not supported (undistort the images first)")
        path = _image_path(transforms_json.parent, f.get("file_path"), where)
        w, h = _value(f, meta, "w", where), _value(f, meta, "h", where)
        if w is None or h is None:
            h, w = image_size(path, where)
        fx = _value(f, meta, "fl_x", where)
        if fx is None:
            angle = _value(f, meta, "camera_angle_x", where)
            if angle is None:
                raise ValueError(f"{where}: no focal length ('fl_x' or 'camera_angle_x')")
            fx = 0.5 * w / math.tan(0.5 * angle)
        fy = _value(f, meta, "fl_y", where)
        if fy is None:
            angle_y = _value(f, meta, "camera_angle_y", where)
            fy = 0.5 * h / math.tan(0.5 * angle_y) if angle_y is not None else fx
        cx, cy = _value(f, meta, "cx", where), _value(f, meta, "cy", where)
        intr.append([fx, fy, w / 2 if cx is None else cx, h / 2 if cy is None else cy])
        dist.append([_value(f, meta, k, where) or 0.0 for k in DISTORTION_KEYS])
        c2w.append(finite_matrix(f.get("transform_matrix"), where, "transform_matrix"))
        paths.append(path)
        sizes.add((int(h), int(w)))
    if len(sizes) != 1:
        raise ValueError(f"{transforms_json}: scene '{name}' has images of mixed resolutions {sorted(sizes)}")
    (h, w), = sizes
    cams = Cameras(torch.tensor(intr, dtype=torch.float32), opengl_to_opencv(torch.stack(c2w)).float(), h, w)
    distortion = torch.tensor(dist, dtype=torch.float64)
    return SceneRecord(name, paths, cams.validate(f"{transforms_json} (scene '{name}')"), str(transforms_json),
                       distortion if distortion.abs().max() > 0 else None)


def write_nerfstudio_scene(root: Path, name: str, images: Tensor, cams: Cameras) -> Path:
    """images [V, 3, H, W] -> root/scenes/<name>/{images/*.png, transforms.json} (OpenGL c2w)."""
    folder = root / "scenes" / name
    c2w_gl = opencv_to_opengl(cams.c2w.double())
    frames = []
    for i in range(images.shape[0]):
        rel = f"images/{i:03d}.png"
        save_image(images[i], folder / rel)
        fx, fy, cx, cy = (float(v) for v in cams.intrinsics[i])
        frames.append({"file_path": rel, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
                       "transform_matrix": c2w_gl[i].tolist()})
    path = folder / "transforms.json"
    path.write_text(json.dumps({"camera_model": "OPENCV", "w": cams.width, "h": cams.height, "frames": frames}, indent=1))
    return path
