"""Which torch device a command runs on."""

from __future__ import annotations

import torch


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None): ``cuda`` when torch sees a CUDA GPU, else ``cpu``; otherwise the named
    device, refused with a ValueError when this torch build cannot run on it."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only CPU and CUDA devices are supported")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a renderer's parameters live (its inputs must go there)."""
    return next(model.parameters()).device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
