"""Writing images and videos: PNG, mp4 (imageio-ffmpeg), GIF, or a folder of PNG frames."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor


def to_uint8(image: Tensor) -> np.ndarray:
    """[3, H, W] or [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3]."""
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def save_image(image: Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, to_uint8(image))
    return path


def image_grid(rows: list[list[Tensor]], pad: int = 2) -> Tensor:
    """Tile images [3, H, W] (same size) into one [3, H', W'] image on white."""
    h, w = rows[0][0].shape[-2:]
    cols = max(len(r) for r in rows)
    grid = torch.ones(3, len(rows) * (h + pad) - pad, cols * (w + pad) - pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            grid[:, i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = img.detach().float().cpu()
    return grid


def save_video(frames: Tensor, path: str | Path, fps: float = 24.0) -> Path:
    """frames [N, 3, H, W] in [0, 1] -> .mp4 (H.264 via ffmpeg), .gif, or a folder of PNGs (no suffix)."""
    path = Path(path)
    data = to_uint8(frames)
    if path.suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(data):
            iio.imwrite(path / f"{i:05d}.png", frame)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        # yuv420p needs even sizes; pad by edge replication rather than resize
        h, w = data.shape[1:3]
        data = np.pad(data, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        _write_mp4(path, data, fps)
    elif path.suffix.lower() == ".gif":
        iio.imwrite(path, data, duration=1000.0 / fps, loop=0)
    else:
        raise ValueError(f"{path}: unsupported video format (use .mp4, .gif, or a folder path)")
    return path


def _write_mp4(path: Path, data: np.ndarray, fps: float) -> None:
    import imageio.v2 as iio2

    with iio2.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in data:
            writer.append_data(frame)
