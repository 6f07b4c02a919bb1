"""The one place where untrusted input becomes trusted data.

Everything a user hands over (an upload to the viewer, a zip, a scene file, a camera path, the
metadata of a checkpoint) passes through these checks before the rest of the code sees it:

- ``scene_path``: a path named inside a scene file resolves inside that scene's folder. Relative
  paths that climb out (``..``) are always refused; absolute paths are refused inside an upload
  (``request(confined=True)``) and, for local data sets, allowed only where the format defines
  them (index files, LVSM ``image_path``, nerfstudio ``file_path``).
- ``unpack_zip``: archives are unpacked only when no entry escapes the destination, within one
  budget of bytes and files shared by every archive of the request.
- ``Budget``: frames per posed scene, pixels decoded per request, unpacked bytes and files per
  request; a request that exceeds one gets a ``LimitExceeded`` naming the limit and its value.
- ``check_model_size``: a checkpoint's stored config must describe the tensors the file holds,
  checked before anything is allocated.
- ``public_message``: error text shown to a remote user names files relative to the upload, never
  a path on the server.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator


class LimitExceeded(ValueError):
    """A request asked for more than a resource limit allows; the message names the limit."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one request. None: not limited."""

    unpacked_bytes: int = 4 << 30  # over every archive of the request
    unpacked_files: int = 50_000  # files unpacked from every archive of the request
    frames: int = 100_000  # views of one posed scene
    pixels: int | None = None  # pixels decoded over the whole request
    image_pixels: int = 120_000_000  # one image, checked from its header before decoding (decompression bombs)
    text_bytes: int = 1 << 30  # one scene or index file (JSON, text) read into memory


CLI_LIMITS = Limits()
# the viewer serves remote users: every request is small enough to leave room for the next one
VIEWER_LIMITS = Limits(unpacked_bytes=1 << 30, unpacked_files=2_000, frames=128, pixels=1_000_000_000,
                       image_pixels=50_000_000, text_bytes=64 << 20)


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass
class Budget:
    """What one request has used so far, against its limits."""

    limits: Limits = CLI_LIMITS
    confined: bool = False  # True for uploads: no absolute paths, symlinks may not leave the scene folder
    unpacked_bytes: int = 0
    unpacked_files: int = 0
    pixels: int = 0
    notes: list[str] = field(default_factory=list)

    def add_unpacked(self, nbytes: int, where: str) -> None:
        self.unpacked_bytes += nbytes
        if self.unpacked_bytes > self.limits.unpacked_bytes:
            raise LimitExceeded(f"{where}: the archives of this request unpack to more than "
                                f"{_size(self.limits.unpacked_bytes)} (the limit per request)")

    def add_files(self, count: int, where: str) -> None:
        self.unpacked_files += count
        if self.unpacked_files > self.limits.unpacked_files:
            raise LimitExceeded(f"{where}: the archives of this request hold more than {self.limits.unpacked_files} "
                                "files (the limit per request)")

    def check_frames(self, count: int, where: str) -> None:
        if count > self.limits.frames:
            raise LimitExceeded(f"{where}: {count} frames in one scene; the limit is {self.limits.frames}")

    def check_image(self, height: int, width: int, where: str) -> None:
        """Before decoding an image of this size: its own size, then the request's total."""
        if height <= 0 or width <= 0:
            raise ValueError(f"{where}: image size {height}x{width} is not positive")
        if height * width > self.limits.image_pixels:
            raise LimitExceeded(f"{where}: {width}x{height} pixels is more than the "
                                f"{self.limits.image_pixels / 1e6:.0f} MP limit per image")
        self.pixels += height * width
        if self.limits.pixels is not None and self.pixels > self.limits.pixels:
            raise LimitExceeded(f"{where}: the images of this request add up to more than "
                                f"{self.limits.pixels / 1e6:.0f} MP (the limit per request)")


_CURRENT: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("nvs_request_budget", default=None)


def current() -> Budget:
    """The active request's budget; outside a request, a fresh one with the command line's limits."""
    budget = _CURRENT.get()
    return budget if budget is not None else Budget(CLI_LIMITS)


@contextlib.contextmanager
def request(limits: Limits = CLI_LIMITS, confined: bool = False) -> Iterator[Budget]:
    """Everything read inside the block counts against one budget. ``confined``: the input is an
    upload, so no path it names may be absolute or lead outside its folder (symlinks included)."""
    budget = Budget(limits, confined)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


# ----- paths named by scene files --------------------------------------------------------------
def _looks_absolute(name: str) -> bool:
    return name.startswith(("/", "\\", "~")) or bool(re.match(r"^[A-Za-z]:[\\/]", name))


def scene_path(folder: Path, name, where: str, absolute_ok: bool = False) -> Path:
    """The file ``name`` (as written in a scene file) resolved against the scene's ``folder``.

    Refused: anything but a non-empty string, NUL bytes, relative paths that lead outside
    ``folder``, and absolute paths unless ``absolute_ok`` (the format defines them) and the input
    is not an upload. Inside an upload, symlinks may not lead outside ``folder`` either.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: a file path must be a non-empty string, got {name!r}")
    if "\x00" in name or len(name) > 4096:
        raise ValueError(f"{where}: file path {name[:80]!r} is not a valid path")
    budget = current()
    folder = Path(folder)
    if _looks_absolute(name):
        if not absolute_ok or budget.confined:
            raise ValueError(f"{where}: file path '{name}' is absolute; paths in a scene file must be relative "
                             "to the scene's folder")
        return Path(os.path.expanduser(name))
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        # lexically: the path must stay below the folder after removing '..'
        inside = Path(os.path.normpath(folder / name.replace("\\", "/")))
        base = Path(os.path.normpath(folder))
        if inside != base and base not in inside.parents:
            raise ValueError(f"{where}: file path '{name}' leads outside the scene's folder")
        path = inside
    else:
        path = folder / name
    if budget.confined:
        real, base = path.resolve(), folder.resolve()
        if real != base and base not in real.parents:
            raise ValueError(f"{where}: file path '{name}' leads outside the scene's folder")
    return path


# ----- archives ----------------------------------------------------------------------------------
def _member_path(info: zipfile.ZipInfo, where: str) -> PurePosixPath | None:
    """The entry's relative path, None for entries to skip (folders, hidden files, macOS metadata);
    ValueError for entries that would land outside the destination."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    path = PurePosixPath(name)
    escapes = (_looks_absolute(name) or ".." in path.parts or "\x00" in name
               or stat.S_ISLNK(mode) or (mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR)))
    if escapes:
        raise ValueError(f"{where}: zip entry '{info.filename}' points outside the archive's folder "
                         "(an absolute path, '..', a link or a device); refusing the archive")
    if info.is_dir() or any(p.startswith(".") for p in path.parts) or "__MACOSX" in path.parts:
        return None
    return path


def unpack_zip(path: Path, dest: Path, keep_folders: bool = False, label: str | None = None) -> list[Path]:
    """Unpack a zip's files into ``dest`` (flattened to unique names, or with their folders when
    ``keep_folders``). Every entry is checked before anything is written; the bytes written are
    counted as they are written (declared sizes can lie) against the request's budget. ``label``
    names the archive in messages (default: its file name)."""
    budget = current()
    label = label or Path(path).name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{label}: not a readable zip archive ({type(exc).__name__})") from exc
    with archive:
        members = []
        for info in archive.infolist():
            inner = _member_path(info, label)
            if inner is not None:
                members.append((info, inner))
        budget.add_files(len(members), label)
        budget.add_unpacked(0, label)
        declared = sum(info.file_size for info, _ in members)
        left = budget.limits.unpacked_bytes - budget.unpacked_bytes
        if declared > left:
            raise LimitExceeded(f"{label}: the archive unpacks to {_size(declared)}, more than the {_size(left)} left of "
                                f"the {_size(budget.limits.unpacked_bytes)} a request may unpack")
        dest.mkdir(parents=True, exist_ok=True)
        out, taken = [], set()
        for i, (info, inner) in enumerate(sorted(members, key=lambda m: m[0].filename)):
            target = dest.joinpath(*inner.parts) if keep_folders else dest / f"{i:04d}_{inner.name}"
            if target in taken:
                raise ValueError(f"{label}: the archive holds '{info.filename}' twice")
            taken.add(target)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "xb") as dst:
                    while chunk := src.read(1 << 20):
                        budget.add_unpacked(len(chunk), label)
                        dst.write(chunk)
            except LimitExceeded:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ValueError(f"{label}: entry '{info.filename}' cannot be unpacked ({type(exc).__name__})") from exc
            out.append(target)
    return out


def check_file_size(path: Path, what: str) -> None:
    """A text file (scene file, index) must be small enough to read into memory whole."""
    size = Path(path).stat().st_size
    limit = current().limits.text_bytes
    if size > limit:
        raise LimitExceeded(f"{path}: the {what} is {_size(size)}, more than the {_size(limit)} a scene file may be")


# ----- images --------------------------------------------------------------------------------
def image_header_size(source: Path | bytes, where: str) -> tuple[int, int]:
    """(height, width) of an image file or encoded bytes, read from its header without decoding
    the pixels; ValueError when it is not a readable image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{where}: not a readable image ({type(exc).__name__})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{where}: not a readable image ({exc})") from exc
    return int(height), int(width)


def check_image_file(source: Path | bytes, where: str) -> tuple[int, int]:
    """The header size of an image about to be decoded, counted against the request's pixels."""
    height, width = image_header_size(source, where)
    current().check_image(height, width, where)
    return height, width


# ----- checkpoint metadata -----------------------------------------------------------------------
MODEL_BOUNDS = {"patch_size": (1, 256), "dim": (1, 32768), "layers": (1, 1024), "attn_head_dim": (1, 32768),
                "ttt_head_dim": (1, 32768), "muon_steps": (0, 100)}
MODEL_FACTORS = {"mlp_inter_multi": 64.0, "ttt_inter_multi": 64.0}


def check_model_fields(values: dict, where: str) -> None:
    """Refuse a stored model config with sizes outside what any renderer uses, before it is built."""
    for key, (low, high) in MODEL_BOUNDS.items():
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{where}: model config '{key}' = {value!r} is outside {low}..{high}")
    for key, high in MODEL_FACTORS.items():
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= high:
            raise ValueError(f"{where}: model config '{key}' = {value!r} must be a number in (0, {high}]")
    lr = values.get("ttt_base_lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)):
        raise ValueError(f"{where}: model config 'ttt_base_lr' = {lr!r} must be a finite number")


def estimated_parameters(values: dict) -> int:
    """A lower bound on the parameters a renderer config describes (the large matrices only):
    per block attention 4 d^2 and MLP 2 d h, for LaCT also its projections 4 d^2 and fast
    weights 3 d h'; the patch embedding and the RGB head 15 p^2 d. Pure arithmetic: nothing is
    built, so an absurd config costs nothing to check."""
    d, layers, p = int(values["dim"]), int(values["layers"]), int(values["patch_size"])
    mlp = max(0, int(d * float(values["mlp_inter_multi"])) - 1)
    block = 4 * d * d + 2 * d * mlp
    if values.get("arch", "lact") == "lact":
        hidden = max(0, int(int(values["ttt_head_dim"]) * float(values["ttt_inter_multi"])) - 1)
        block += 4 * d * d + 3 * d * hidden
    return layers * block + 15 * p * p * d


def check_model_size(values: dict, held: int, where: str) -> None:
    """Refuse a config that asks for more parameters than the file's ``held`` numbers, before
    anything is allocated for it."""
    wanted = estimated_parameters(values)
    if wanted > held:
        raise ValueError(f"{where}: the model config asks for at least {wanted:,} parameters but the file holds "
                         f"{held:,} numbers; refusing to build it")


# ----- numbers read from files -------------------------------------------------------------------
def bounded_number(value, key: str, where: str, low: float, high: float, integer: bool = False) -> float:
    """A finite number within [low, high] read from a file (bools are not numbers)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and low <= value <= high and (not integer or float(value).is_integer()))
    if not ok:
        kind = "a whole number" if integer else "a finite number"
        raise ValueError(f"{where}: '{key}' must be {kind} in {low:g}..{high:g}, got {value!r}")
    return int(value) if integer else float(value)


# ----- messages for remote users -----------------------------------------------------------------
_ABSOLUTE = re.compile(r"(?<![\w/.:~-])/(?:[^\s'\"`,;()\[\]{}<>|]+)")


def public_message(text: str, roots: Iterable[tuple[Path | str, str]] = ()) -> str:
    """``text`` without server paths: each path under a root becomes ``label/relative`` (label ''
    for just the relative name), any other absolute path its last component."""
    pairs = []
    for root, label in roots:
        root = str(root).rstrip("/")
        if root:
            pairs.append((root, label))
            real = os.path.realpath(root)
            if real != root:
                pairs.append((real, label))
    for root, label in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(root + "/", f"{label}/" if label else "").replace(root, label or ".")
    return _ABSOLUTE.sub(lambda m: PurePosixPath(m.group(0).rstrip("/.")).name or "(path)", text)


def ffmpeg_reason(exc: BaseException) -> str:
    """The line of an ffmpeg failure that says what went wrong, without its banner and build flags."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    noise = ("ffmpeg version", "built with", "configuration:", "lib", "Copyright", "Input #", "Metadata:",
             "Duration:", "Stream #", "encoder", "handler_name", "major_brand", "minor_version", "compatible_brands",
             "creation_time", "vendor_id", "FFMPEG COMMAND", "FFMPEG STDERR", "Side data", "Press [q]")
    useful = [ln for ln in lines if not ln.startswith(noise) and not re.match(r"^(\[|/|-)", ln)]
    errors = [ln for ln in useful if re.search(r"error|invalid|no such|not found|could not|unable|failed|permission",
                                                ln, re.I)]
    chosen = (errors or useful or [type(exc).__name__])[-1]
    return chosen[:300]


def with_limits(limits: Limits, **changes) -> Limits:
    return replace(limits, **changes)
