"""Builders of hostile inputs shared by the attack tests: scene files that point elsewhere, zips
that escape or explode, images whose header lies about their size."""

from __future__ import annotations

import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import torch

from nvs.datasets.procedural import object_scene
from nvs.io.media import save_image


def small_scene(folder: Path, views: int = 3, size: int = 32, seed: int = 1) -> list[dict]:
    """A real posed object scene in the LaCT layout (folder/images/*.png + opencv_cameras.json);
    returns its frames for the caller to tamper with."""
    scene = object_scene(seed, views, size, size)
    w2c = scene.cameras.w2c.double()
    frames = []
    for i in range(views):
        save_image(scene.images[i], folder / "images" / f"{i:03d}.png")
        fx, fy, cx, cy = (float(v) for v in scene.cameras.intrinsics[i])
        frames.append({"w": size, "h": size, "fx": fx, "fy": fy, "cx": cx, "cy": cy, "w2c": w2c[i].tolist(),
                       "file_path": f"images/{i:03d}.png"})
    write_frames(folder, frames)
    return frames


def write_frames(folder: Path, frames: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opencv_cameras.json"
    path.write_text(json.dumps(frames))
    return path


def zip_folder(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Every file below ``folder`` (names relative to it), plus ``extra`` raw entries."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return zip_path


def symlink_zip(zip_path: Path, name: str, target: str) -> Path:
    """A zip holding one symbolic link ``name`` -> ``target`` (as `zip --symlinks` stores it)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr(info, target)
    return zip_path


def zeros_zip(zip_path: Path, nbytes: int, name: str = "zeros.bin") -> Path:
    """A small zip that unpacks to ``nbytes`` of zeros."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open(name, "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for start in range(0, nbytes, len(block)):
                f.write(block[: min(len(block), nbytes - start)])
    return zip_path


def lying_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds a few bytes of data: a
    decoder that trusts the header allocates the full image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def random_image(path: Path, size: int = 32, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    return save_image(torch.rand(3, size, size, generator=g), path)
