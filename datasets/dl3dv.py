"""DL3DV scenes in the raw benchmark layout, read with the cameras and pixels of the official
LaCT / Long-LRM converter (which writes ``opencv_cameras.json`` + ``images_undistort/``).

A scene folder holds ``nerfstudio/transforms.json`` and ``nerfstudio/images_4/`` (960x540 for the
benchmark). The converter's facts, reproduced here:
- intrinsics are the file's global ``fl_x fl_y cx cy`` (given for ``w`` x ``h``), scaled to the
  size of the ``images_4`` image; distortion is ``k1 k2 p1 p2``;
- each frame's image is ``images_4/<file name of its file_path>``, undistorted with
  ``cv2.undistort`` to the new intrinsics of ``cv2.getOptimalNewCameraMatrix(K, dist, size,
  alpha=0)`` (no invalid pixels, the image is slightly zoomed) - the cameras returned are those;
- poses: nerfstudio's ``applied_transform`` is undone (DL3DV's is the axis swap
  [[0, 1, 0], [1, 0, 0], [0, 0, -1]], assumed when the file has none), and the OpenGL camera axes
  are turned into OpenCV ones;
- portrait scenes (h > w in the file) are skipped by the converter: listing a data set leaves
  them out, reading one directly is refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nvs.cameras import Cameras, opengl_to_opencv
from nvs.datasets.records import SceneRecord, check_image, finite_matrix, image_size, load_json

DL3DV_APPLIED_TRANSFORM = ((0.0, 1.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0))
IMAGE_FOLDER = "images_4"


def transforms_path(scene: Path) -> Path:
    return scene / "nerfstudio" / "transforms.json"


def is_dl3dv_scene(folder: Path) -> bool:
    return transforms_path(folder).is_file()


def is_portrait(scene: Path) -> bool:
    """Whether the converter would skip the scene (h > w in its transforms.json)."""
    meta = load_json(transforms_path(scene), f"DL3DV scene '{scene.name}'")
    return isinstance(meta, dict) and _number(meta, "h", scene) > _number(meta, "w", scene)


def _number(meta: dict, key: str, scene: Path) -> float:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{transforms_path(scene)}: DL3DV scene '{scene.name}' needs a finite number '{key}', got {value!r}")
    return float(value)


def read_dl3dv_scene(scene: Path) -> SceneRecord:
    """A scene folder -> SceneRecord whose cameras are the converter's (undistorted, OpenCV c2w);
    :func:`nvs.datasets.formats.load_views` undistorts the images as the converter does."""
    import cv2
    import numpy as np

    scene = Path(scene)
    path = transforms_path(scene)
    meta = load_json(path, f"DL3DV scene '{scene.name}'")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: DL3DV scene '{scene.name}': transforms.json must be an object")
    w_file, h_file = _number(meta, "w", scene), _number(meta, "h", scene)
    if h_file > w_file:
        raise ValueError(f"{path}: DL3DV scene '{scene.name}' is portrait ({int(w_file)}x{int(h_file)}); "
                         "the official converter skips portrait scenes")
    fl_x, fl_y, cx, cy = (_number(meta, k, scene) for k in ("fl_x", "fl_y", "cx", "cy"))
    dist = [_number(meta, k, scene) for k in ("k1", "k2", "p1", "p2")]
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: DL3DV scene '{scene.name}' needs a non-empty 'frames' list")
    applied = meta.get("applied_transform", DL3DV_APPLIED_TRANSFORM)
    undo = torch.linalg.inv(finite_matrix(applied, f"{path} (scene '{scene.name}')", "applied_transform"))

    sources, c2w = [], []
    for i, frame in enumerate(frames):
        where = f"{path} (scene '{scene.name}', frame {i})"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str) or not frame["file_path"]:
            raise ValueError(f"{where}: a frame needs a non-empty 'file_path'")
        sources.append(check_image(path.parent / IMAGE_FOLDER / Path(frame["file_path"]).name, where))
        c2w.append(undo @ finite_matrix(frame.get("transform_matrix"), where, "transform_matrix"))
    h, w = image_size(sources[0], str(sources[0]))
    k = np.array([[fl_x / w_file * w, 0.0, cx / w_file * w], [0.0, fl_y / h_file * h, cy / h_file * h], [0.0, 0.0, 1.0]])
    new_k, _ = cv2.getOptimalNewCameraMatrix(k, np.array(dist), (w, h), 0, (w, h))
    views = len(frames)
    old = torch.tensor([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=torch.float64).expand(views, 4)
    new = torch.tensor([new_k[0, 0], new_k[1, 1], new_k[0, 2], new_k[1, 2]], dtype=torch.float64).expand(views, 4)
    cams = Cameras(new.float().contiguous(), opengl_to_opencv(torch.stack(c2w)).float(), h, w)
    distortion = torch.tensor(dist + [0.0], dtype=torch.float64).expand(views, 5).contiguous()
    return SceneRecord(scene.name, sources, cams.validate(f"{path} (scene '{scene.name}')"), str(path),
                       distortion, old.contiguous())
