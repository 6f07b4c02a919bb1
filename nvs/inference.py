"""Running a renderer on a scene: which device, memorising once, rendering cameras in chunks, timing.

Every command and the viewer memorise and render through :func:`memorize_views` and
:func:`render_cameras`, so device placement, GPU synchronisation and chunking live in one place.
"""

from __future__ import annotations

import time
import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.progress import Progress


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


DEVICE_HELP = "auto (the default: the CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)



@torch.no_grad()
def memorize_views(model: torch.nn.Module, images: Tensor, cams: Cameras):
    """Memorise one scene: images [V, 3, H, W] and cams [V] (any device) -> (state on the model's
    device, seconds including the wait for the GPU)."""
    device = model_device(model)
    start = time.perf_counter()
    state = model.memorize(images[None].to(device), cams.unsqueeze(0).to(device))
    synchronize(device)
    return state, time.perf_counter() - start


@torch.no_grad()
def render_cameras(model: torch.nn.Module, state, cams: Cameras, chunk: int = 8,
                   progress: Progress | None = None) -> tuple[Tensor, float]:
    """Render cams [N] from a memorised state, ``chunk`` views per call -> (images [N, 3, H, W] on the
    CPU, seconds of rendering including the wait for the GPU, not the copies back)."""
    device = model_device(model)
    out, seconds = [], 0.0
    for i in range(0, cams.shape[0], chunk):
        start = time.perf_counter()
        pred = model.render(state, cams[i : i + chunk].unsqueeze(0).to(device))[0]
        synchronize(device)
        seconds += time.perf_counter() - start
        out.append(pred.cpu())
        if progress is not None:
            progress("rendering", min(1.0, (i + chunk) / cams.shape[0]))
    images = torch.cat(out) if out else torch.zeros(0, 3, cams.height, cams.width)
    return images, seconds
