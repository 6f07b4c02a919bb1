"""What every data-set reader returns, and the checks the readers share."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nvs.cameras import Cameras


@dataclass
class SceneRecord:
    """One scene: per view an image file or encoded image bytes, and cameras [V] (pixels of the
    stored images). ``where`` names the file the scene came from, for error messages."""

    name: str
    sources: list[Path | bytes]
    cameras: Cameras
    where: str = ""
    distortion: Tensor | None = None  # [V, 5] OpenCV k1 k2 p1 p2 k3 of the stored images, or None
    # [V, 4] when the cameras are those of a converter that undistorts to new intrinsics (DL3DV):
    # the stored images' own intrinsics, from which cv2.undistort maps to ``cameras.intrinsics``
    distorted_intrinsics: Tensor | None = None
    # per view a depth map file and its scale (see nvs.datasets.depth_maps), or None
    depths: list[tuple[Path, float]] | None = None


def finite_matrix(value, where: str, key: str = "w2c") -> Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {key} is not a 4x4 matrix of numbers") from exc
    if m.shape == (3, 4):
        m = torch.cat([m, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
    if m.shape != (4, 4):
        raise ValueError(f"{where}: {key} must be 4x4, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{where}: {key} contains NaN or inf")
    if (m[3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
        raise ValueError(f"{where}: the fourth row of {key} must be [0, 0, 0, 1], got {m[3].tolist()}")
    return m


def number(frame: dict, key: str, where: str) -> float:
    value = frame.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def cameras_from_w2c(intr: list[list[float]], w2c: list[Tensor], sizes: set[tuple[int, int]], where: str) -> Cameras:
    if len(sizes) != 1:
        raise ValueError(f"{where}: images of mixed resolutions {sorted(sizes)}; a scene must have one size")
    (h, w), = sizes
    cams = Cameras.from_w2c(torch.tensor(intr, dtype=torch.float32), torch.stack(w2c).float(), h, w)
    return cams.validate(where)


def load_json(path: Path, what: str):
    from nvs.io.untrusted import check_file_size

    if not path.is_file():
        raise ValueError(f"{path}: {what} not found")
    check_file_size(path, what)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {what} is not valid JSON ({exc})") from exc
    except RecursionError:
        raise ValueError(f"{path}: {what} is nested too deeply to be a scene file") from None


def check_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise ValueError(f"{where}: image file {path} is missing")
    return path


def image_size(source: Path | bytes, where: str) -> tuple[int, int]:
    import imageio.v3 as iio

    try:
        props = iio.improps(source, extension=".jpg") if isinstance(source, bytes) else iio.improps(source)
    except Exception as exc:
        raise ValueError(f"{where}: {'the encoded image' if isinstance(source, bytes) else source} is not a readable image") from exc
    return int(props.shape[0]), int(props.shape[1])
