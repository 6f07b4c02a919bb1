"""Turning what a user hands us (a folder, files, a zip, a video) into checked RGB photos.

Every problem is either fatal (a ValueError naming the file) or recorded as a skipped input with
the reason in plain words; nothing is written outside the folder the caller gives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nvs.io.outputs import is_output_path
from nvs.io.untrusted import LimitExceeded, current, ffmpeg_reason, unpack_zip

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


@dataclass
class Photo:
    """A decoded photo, EXIF orientation applied, RGB uint8 [H, W, 3], downscaled to the working size."""

    name: str
    source: Path
    pixels: np.ndarray
    original_size: tuple[int, int]  # (H, W) as stored, after EXIF rotation
    focal_35mm: float | None = None  # EXIF FocalLengthIn35mmFilm when present


@dataclass
class PhotoSet:
    photos: list[Photo]
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}


def extract_zip(path: Path, dest: Path, keep_folders: bool = False) -> list[Path]:
    """Extract a zip's files into ``dest`` (flattened with unique names, or with their folders
    when ``keep_folders``); entries that escape the folder (absolute paths, '..', links) are
    refused before anything is written, and the bytes count against the request's budget."""
    return unpack_zip(path, dest, keep_folders, label=str(path))


def video_frames(path: Path, frames: int, dest: Path) -> list[Path]:
    """Sample ``frames`` frames evenly from a video with imageio-ffmpeg; written as PNGs to ``dest``."""
    import imageio.v3 as iio
    import imageio_ffmpeg

    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise ValueError(f"{path}: not a readable video ({ffmpeg_reason(exc)})") from exc
    if count < 2:
        raise ValueError(f"{path}: the video has {count} frame(s); need at least 2")
    wanted = set(np.linspace(0, count - 1, min(frames, count)).round().astype(int).tolist())
    w, h = meta["size"]
    budget = current()
    for _ in wanted:
        budget.check_image(h, w, f"{path.name} (a frame)")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        for i, data in enumerate(reader):
            if i in wanted:
                target = dest / f"frame_{i:05d}.png"
                iio.imwrite(target, np.frombuffer(data, np.uint8).reshape(h, w, 3))
                out.append(target)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: the video cannot be decoded ({ffmpeg_reason(exc)})") from exc
    finally:
        reader.close()
    return out


def gather_files(inputs: list[Path], work: Path, frames: int = 40) -> tuple[list[Path], bool]:
    """(candidate files, is_video) from folders, files, zips or one video; zips and videos are
    unpacked under ``work``."""
    files: list[Path] = []
    is_video = False
    for item in inputs:
        item = Path(item)
        if not item.exists():
            raise ValueError(f"{item}: no such file or folder")
        if item.is_dir():
            # hidden entries, and what an earlier run wrote into this folder, are not photos
            files += sorted(p for p in item.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(item).parts)
                            and not is_output_path(p, item))
        elif item.suffix.lower() == ".zip":
            files += extract_zip(item, work / "unzipped" / item.stem)
        elif item.suffix.lower() in VIDEO_SUFFIXES:
            if len(inputs) > 1:
                raise ValueError(f"{item}: give a video on its own, not with other inputs")
            files += video_frames(item, frames, work / "frames")
            is_video = True
        else:
            files.append(item)
    if not is_video:  # uploads arrive in any order; SfM's choices (first pair, retries) should not depend on it
        files.sort(key=lambda p: (p.name, str(p)))
    return files, is_video


def _exif_focal_35mm(img) -> float | None:
    try:
        exif = img.getexif().get_ifd(0x8769)  # the Exif sub-IFD
        value = exif.get(0xA405)  # FocalLengthIn35mmFilm
        return float(value) if value else None
    except Exception:
        return None


def load_photo(path: Path, max_size: int) -> tuple[Photo | None, str]:
    """(photo, "") or (None, reason). EXIF orientation applied; grayscale, palette, RGBA (on
    white) and 16-bit images become RGB uint8; the long side is downscaled to ``max_size``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    budget = current()
    try:
        with Image.open(path) as img:
            if img.width * img.height > budget.limits.image_pixels:
                return None, f"{img.width}x{img.height} pixels is more than the {budget.limits.image_pixels / 1e6:.0f} MP limit"
            budget.check_image(img.height, img.width, path.name)  # the request's total: fatal when exceeded
            focal = _exif_focal_35mm(img)
            img = ImageOps.exif_transpose(img)
            img.load()
    except LimitExceeded:
        raise
    except UnidentifiedImageError:
        return None, "not an image (unknown file format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"unreadable image ({exc})"
    original = (img.height, img.width)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((arr / max(arr.max(), 1) * 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("RGB")
    scale = max_size / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return Photo(path.name, path, np.asarray(img), original, focal), ""


def load_photos(files: list[Path], max_size: int) -> PhotoSet:
    """Decode and check every file; unreadable files and exact duplicates are skipped with a reason."""
    photos, skipped, seen, names = [], [], {}, set()
    for path in files:
        photo, reason = load_photo(path, max_size)
        if photo is None:
            skipped.append({"file": str(path), "reason": reason})
            continue
        digest = hashlib.sha1(photo.pixels.tobytes()).hexdigest()
        if digest in seen:
            skipped.append({"file": str(path), "reason": f"duplicate of {seen[digest]}"})
            continue
        seen[digest] = path.name
        stem, k = Path(photo.name).stem, 1
        name = f"{stem}.png"
        while name in names:  # same file name in two folders
            k += 1
            name = f"{stem}_{k}.png"
        names.add(name)
        photo.name = name
        photos.append(photo)
    return PhotoSet(photos, skipped)
