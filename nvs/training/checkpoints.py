"""Training checkpoints: written atomically, found again after any crash.

Layout: ``RUN/checkpoints/step-0001000/`` holding ``model.safetensors`` (loadable by
``load_renderer``) and ``trainer.pt`` (optimizer, RNG, counters, elapsed time; tensors and plain
containers only, read back with ``weights_only=True``). A checkpoint is written into a hidden
temporary folder and renamed into place, so a folder named ``step-*`` is always complete; a
killed writer leaves only a ``.tmp-*`` folder that is ignored and cleaned up.
"""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nvs.models import CheckpointError, load_renderer, save_renderer

PREFIX = "step-"


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain numbers (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save_checkpoint(run_dir: Path, step: int, model, trainer_state: dict[str, Any], keep_last: int,
                    normalization: str | None = None, config=None) -> Path:
    """``config``: the model config model.safetensors records (default the model's; see save_renderer)."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"{PREFIX}{step:07d}"
    tmp = ckpt_root / f".tmp-{PREFIX}{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_renderer(model, tmp / "model.safetensors", {"step": step, **({"normalize": normalization} if normalization else {})},
                  config)
    torch.save(trainer_state, tmp / "trainer.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    for stale in root.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_checkpoint(path: Path, device="cpu"):
    """(model, trainer_state) of one checkpoint folder; CheckpointError if anything is unreadable."""
    model = load_renderer(path / "model.safetensors", device=device)
    try:
        state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path / 'trainer.pt'}: unreadable trainer state: {exc}") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path / 'trainer.pt'}: not a trainer state")
    return model, state


def latest_readable_checkpoint(run_dir: Path):
    """Newest checkpoint that loads completely, skipping (with a warning) any that do not.
    Returns (path, model, trainer_state) or None."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            model, state = load_checkpoint(path)
            return path, model, state
        except (CheckpointError, OSError) as exc:
            warnings.warn(f"skipping unreadable checkpoint {path}: {exc}", stacklevel=2)
    return None
