"""Depth maps on disk: 16-bit PNGs of z-depth (distance along the camera's optical axis).

A stored value v means a depth of v * scale scene units (the frame's ``depth_scale``, 0.001 when
written here: millimetres of a scene in metres, as in nerfstudio and ScanNet); 0 means no surface
(background, or beyond 65.535 units). In memory a depth map is [1, H, W] float with 0 where none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEPTH_SCALE = 1e-3
MAX_STORED = 65535


def write_depth_png(path: Path, depth: Tensor) -> Path:
    """depth [H, W] (z-depth; inf, nan or 0 = no surface) -> a 16-bit PNG at ``path``."""
    import imageio.v3 as iio

    stored = (depth.double() / DEPTH_SCALE).round()
    known = torch.isfinite(stored) & (stored > 0) & (stored <= MAX_STORED)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, torch.where(known, stored, torch.zeros_like(stored)).numpy().astype(np.uint16), extension=".png")
    return path


def read_depth_png(path: Path, scale: float, size: tuple[int, int], where: str) -> Tensor:
    """A 16-bit depth PNG of ``size`` (H, W) -> [1, H, W] float z-depth (0 = no surface)."""
    import imageio.v3 as iio

    from nvs.io.untrusted import check_image_file

    if not Path(path).is_file():
        raise ValueError(f"{where}: depth map {path} is missing")
    stored = check_image_file(path, where)
    if stored != tuple(size):
        raise ValueError(f"{where}: depth map {path.name} is {stored} pixels, its image {tuple(size)}")
    try:
        pixels = iio.imread(path)
    except Exception as exc:
        raise ValueError(f"{where}: depth map {path.name} is not a readable PNG") from exc
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(f"{where}: depth map {path.name} must be one 16-bit channel, got {pixels.dtype} {pixels.shape}")
    return torch.from_numpy(pixels.astype(np.float32))[None] * float(scale)
