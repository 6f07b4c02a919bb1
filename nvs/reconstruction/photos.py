"""Turning what a user hands us (a folder, files, a zip, a video) into checked RGB photos.

Every problem is either fatal (a ValueError naming the file) or recorded as a skipped input with
the reason in plain words; nothing is written outside the folder the caller gives.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
MAX_PIXELS = 120_000_000  # refuse larger images before decoding them whole (decompression bombs)
MAX_ZIP_BYTES = 4 << 30


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


def _safe_members(archive: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    members, total = [], 0
    for info in archive.infolist():
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ValueError(f"{where}: zip entry '{info.filename}' points outside the archive's folder; refusing the archive")
        if not info.is_dir() and not path.name.startswith(".") and "__MACOSX" not in path.parts:
            members.append(info)
            total += info.file_size
    if total > MAX_ZIP_BYTES:
        raise ValueError(f"{where}: the archive unpacks to {total / 2**30:.1f} GiB, more than {MAX_ZIP_BYTES >> 30} GiB")
    return members


def extract_zip(path: Path, dest: Path, keep_folders: bool = False) -> list[Path]:
    """Extract a zip's files into ``dest`` (flattened with unique names, or with their folders
    when ``keep_folders``); refuse entries that escape the folder (absolute paths, '..',
    symlinks) before writing anything."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: not a readable zip archive ({exc})") from exc
    with archive:
        members = _safe_members(archive, path)
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for i, info in enumerate(sorted(members, key=lambda m: m.filename)):
            inner = PurePosixPath(info.filename.replace("\\", "/"))
            target = dest / inner if keep_folders else dest / f"{i:04d}_{inner.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(archive.read(info))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ValueError(f"{path}: entry '{info.filename}' cannot be read ({exc})") from exc
            out.append(target)
    return out


def video_frames(path: Path, frames: int, dest: Path) -> list[Path]:
    """Sample ``frames`` frames evenly from a video with imageio-ffmpeg; written as PNGs to ``dest``."""
    import imageio.v3 as iio
    import imageio_ffmpeg

    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise ValueError(f"{path}: not a readable video ({exc})") from exc
    if count < 2:
        raise ValueError(f"{path}: the video has {count} frame(s); need at least 2")
    wanted = set(np.linspace(0, count - 1, min(frames, count)).round().astype(int).tolist())
    w, h = meta["size"]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, data in enumerate(reader):
        if i in wanted:
            target = dest / f"frame_{i:05d}.png"
            iio.imwrite(target, np.frombuffer(data, np.uint8).reshape(h, w, 3))
            out.append(target)
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
            files += sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
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

    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return None, f"{img.width}x{img.height} pixels is more than the {MAX_PIXELS / 1e6:.0f} MP limit"
            focal = _exif_focal_35mm(img)
            img = ImageOps.exif_transpose(img)
            img.load()
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
