"""`nvs bench official-size`: the published model size end to end, with no download.

Builds the 312M-parameter LaCT renderer (``configs/lact-l24-d768-ttt2x.yaml``) with random weights,
writes it as the published checkpoints are laid out (a ``.pt`` with the official key names and the
official YAML beside it), reads it back through :func:`nvs.models.load_renderer`, memorises
``views`` procedural views and renders one. Loading, memorising and rendering run in a child
process so that its peak memory is theirs alone, not the builder's.
"""

from __future__ import annotations

import gc
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch

from nvs.commands.bench import report
from nvs.commands.bench_child import run_in_child, send_to_parent

OFFICIAL_SIZE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lact-l24-d768-ttt2x.yaml"


def _fingerprint(state: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Per tensor (sum, sum of squares) in float64: changes if a tensor lands under another name."""
    return {k: (float(v.double().sum()), float(v.double().square().sum())) for k, v in state.items()}


def _seconds(x: float) -> float:
    """Seconds to three significant digits: a fast step of a small model must not read as 0."""
    return float(f"{x:.3g}")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class PeakRSS:
    """Samples this process's resident memory every few milliseconds inside a ``with`` block;
    ``peak_mb`` is the largest rise over the RSS at entry (MiB). A lifetime maximum (ru_maxrss)
    would carry over the peak of loading into the peak of memorising."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak_mb = 0.0

    def __enter__(self) -> "PeakRSS":
        self._start = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb() - self._start)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb() - self._start)


def _load_and_run(checkpoint: Path, yaml_path: Path, views: int, size: int, conn) -> None:
    """Child: load the official-format files, check the weights, memorise ``views`` views, render one."""
    from nvs.datasets.procedural import object_scene
    from nvs.models import load_renderer

    try:
        with PeakRSS() as load_mem:
            t0 = time.perf_counter()
            model = load_renderer(checkpoint, config=yaml_path)
            load_s = time.perf_counter() - t0
        fingerprint = _fingerprint(model.state_dict())
        scene = object_scene(1, views + 1, size, size)
        images, cams, target = scene.images[None, :views], scene.cameras[None, :views], scene.cameras[None, views:]
        with torch.no_grad(), PeakRSS() as run_mem:
            t0 = time.perf_counter()
            state = model.memorize(images, cams)
            memorize_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            image = model.render(state, target)
            render_s = time.perf_counter() - t0
        result = {
            "load_s": load_s, "load_peak_mb": load_mem.peak_mb, "memorize_s": memorize_s, "render_s": render_s,
            "run_peak_mb": run_mem.peak_mb, "state_mb": state.nbytes() / 2**20, "fingerprint": fingerprint,
            "finite": bool(torch.isfinite(image).all()), "source_format": getattr(model, "source_format", ""),
            "newton_schulz_dtype": model.config.newton_schulz_dtype,
        }
    except Exception as exc:  # reported by the parent with its message
        result = {"error": f"{type(exc).__name__}: {exc}"}
    send_to_parent(conn, result)


def bench_official_size(out: Path, views: int = 32, size: int = 128, config: str | Path = OFFICIAL_SIZE_CONFIG,
                        workdir: str | Path | None = None) -> list[dict]:
    """One row: parameters, save/load seconds, memorise/render seconds and peak memory (MiB of RSS)."""
    from nvs.models import ModelConfig, build_renderer
    from nvs.models.checkpoint import ours_to_official, save_official_checkpoint

    cfg = ModelConfig.from_yaml(config)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_renderer(cfg).eval()
    build_s = time.perf_counter() - t0
    params = model.num_parameters
    expected = _fingerprint(ours_to_official(model.state_dict()))
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="nvs-bench-official-")) if own_dir else Path(workdir)
    try:
        t0 = time.perf_counter()
        checkpoint, yaml_path = save_official_checkpoint(model, work / "lact-official-size.pt")
        save_s = time.perf_counter() - t0
        file_mb = checkpoint.stat().st_size / 2**20
        del model
        gc.collect()
        result = run_in_child(_load_and_run, checkpoint, yaml_path, views, size, what="the official-size model")
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    if "error" in result:
        raise RuntimeError(f"official-size model failed after saving: {result['error']}")
    # the loader renames to our keys: compare on the official names
    loaded = _fingerprint_official(result["fingerprint"])
    if loaded != expected:
        raise RuntimeError("the weights read back from the official-format checkpoint differ from those written")
    rows = [{
        "config": Path(config).name, "parameters_m": round(params / 1e6, 1), "views": views, "size": size,
        "newton_schulz": result["newton_schulz_dtype"], "build_s": _seconds(build_s), "save_s": _seconds(save_s),
        "file_mb": round(file_mb, 1), "load_s": _seconds(result["load_s"]), "load_peak_mb": round(result["load_peak_mb"], 1),
        "memorize_s": _seconds(result["memorize_s"]), "render_s": _seconds(result["render_s"]),
        "run_peak_mb": round(result["run_peak_mb"], 1), "state_mb": round(result["state_mb"], 1),
        "weights_equal": True, "finite": result["finite"], "threads": torch.get_num_threads(),
    }]
    report("official-size", rows, out)
    return rows


def _fingerprint_official(ours: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    from nvs.models.checkpoint import ours_to_official

    return ours_to_official(ours)  # type: ignore[arg-type]  (renames keys; values pass through)
