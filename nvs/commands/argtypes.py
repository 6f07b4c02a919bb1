"""Argument types for the `nvs` command line: every number and output path is checked while the
arguments are parsed, so a bad value ends as argparse's usage error (exit code 2, the flag named)
before any code divides by it or allocates with it.
"""

from __future__ import annotations

import argparse
import os
import math
from pathlib import Path
from typing import Callable

MAX_IMAGE_SIDE = 8192
MAX_COUNT = 1_000_000
MAX_SEED = 2**32 - 1


def _integer(text: str) -> int:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_range(low: int, high: int, name: str | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = name or f"int_{low}_{high}"
    return parse


def positive_int(high: int = MAX_COUNT) -> Callable[[str], int]:
    return int_range(1, high, "positive_int")


def nonneg_int(high: int = MAX_COUNT) -> Callable[[str], int]:
    return int_range(0, high, "nonneg_int")


def float_range(low: float, high: float, low_open: bool = False, name: str | None = None) -> Callable[[str], float]:
    """A finite number in [low, high] (or (low, high] when ``low_open``)."""

    def parse(text: str) -> float:
        value = _real(text)
        if value > high or value < low or (low_open and value == low):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"must be a number in {bracket}{low:g}, {high:g}], got {text!r}")
        return value

    parse.__name__ = name or "float_range"
    return parse


def positive_float(high: float = 1e9) -> Callable[[str], float]:
    return float_range(0.0, high, low_open=True, name="positive_float")


def finite_float(low: float = -1e12, high: float = 1e12) -> Callable[[str], float]:
    return float_range(low, high, name="finite_float")


image_side = int_range(1, MAX_IMAGE_SIDE, "image_side")  # one side of an image, in pixels
port = int_range(1, 65535, "port")
seed = int_range(0, MAX_SEED, "seed")


def threads(text: str) -> int:
    """COLMAP threads: a positive number, or -1 for every core."""
    value = _integer(text)
    if value != -1 and not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1024, or -1 for every core; got {text!r}")
    return value


def workers(text: str) -> int:
    """Worker processes: 1 to 64."""
    value = _integer(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be from 1 to 64 worker processes; got {text!r}")
    return value


def default_workers() -> int:
    """One worker process per core this process may use."""
    return max(1, min(64, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def chunk(text: str) -> str:
    """'full' or a positive minibatch size (bench lact-layer --chunks)."""
    if text == "full":
        return text
    value = _integer(text)
    if not 1 <= value <= 1 << 24:
        raise argparse.ArgumentTypeError(f"must be 'full' or a whole number from 1 to {1 << 24}, got {text!r}")
    return str(value)


def memory_size(text: str) -> str:
    """'auto', 'none', or a positive size such as 512M or 8G (see nvs.inference.memory_size_argument)."""
    from nvs.inference import memory_size_argument

    return memory_size_argument(text)


def _path_text(text: str) -> Path:
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise argparse.ArgumentTypeError(f"must be a path, got {text!r}")
    return Path(text)


def _check_parents(text: str, path: Path) -> None:
    """An output path cannot lie below an existing file."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' lies below '{parent}', which is a file")


def out_dir(text: str) -> str:
    """A folder to write into: it may exist, but not as a file."""
    path = _path_text(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is an existing file; give a folder to write into")
    _check_parents(text, path)
    return text


def out_media(text: str) -> str:
    """A video or image file to write (.mp4, .gif), or a folder for PNG frames (no suffix)."""
    path = _path_text(text)
    if path.suffix:
        if path.suffix.lower() not in (".mp4", ".gif"):
            raise argparse.ArgumentTypeError(f"'{text}': unsupported video format (use .mp4, .gif, or a folder path)")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is an existing folder; give a video file name")
    elif path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is an existing file; give a folder for PNG frames or a .mp4/.gif name")
    _check_parents(text, path)
    return text


def reading_setting(text: str) -> tuple[str, bool | int | float | str]:
    """KEY=VALUE of a renderer's reading settings (nvs.models.config.READING_SETTINGS) -> (key,
    value): a whole number, a finite number, true / false, or else the text; whether the value suits
    the key is checked against the renderer's config once it is loaded."""
    from nvs.models.config import READING_SETTINGS

    key, sep, raw = str(text).partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    if key not in READING_SETTINGS:
        raise argparse.ArgumentTypeError(f"{key!r} is not a reading setting; choose one of {', '.join(READING_SETTINGS)}")
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    try:
        return key, int(raw)
    except ValueError:
        pass
    try:
        return key, _real(raw)
    except argparse.ArgumentTypeError:
        return key, raw
