"""What LaCT claims, measured on this machine: `nvs bench peak | lact-layer | views | memorize | train-step`.

Each benchmark prints a table, writes DIR/<name>.json (a list of rows) and DIR/<name>.png.
FLOPs count multiply-adds as two and only the matrix products (elementwise work is small beside them).
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from nvs.commands.bench import report
from nvs.commands.bench_child import run_in_child, send_to_parent
from nvs.inference import resolve_device, synchronize
from nvs.kernels import triton_available
from nvs.models.fast_weight import TTTOp, run_fast_weight_ops

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def best_time(fn: Callable[[], object], repeats: int = 3, device: torch.device = torch.device("cpu")) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up call (seconds)."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


# ----- peak -------------------------------------------------------------------------------------
def measure_peak(dtype: str = "fp32", sizes=None, device: str | None = None) -> list[dict]:
    """Square products of each size (default 1024-3072; 256-1024 for bf16 on CPUs without bf16
    units, where it runs at about 1 GFLOP/s)."""
    dev = resolve_device(device)
    if sizes is None:
        sizes = (256, 512, 1024) if dtype == "bf16" and dev.type == "cpu" else (1024, 2048, 3072)
    rows = []
    for n in sizes:
        a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
        b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
        # shared or throttled machines vary by 2x from call to call: the best of many is the peak
        seconds = best_time(lambda: a @ b, repeats=10 if n <= 2048 else 4, device=dev)
        rows.append({"dtype": dtype, "n": n, "seconds": round(seconds, 5), "gflops": round(2 * n**3 / seconds / 1e9, 1)})
    return rows


def bench_peak(out: Path, dtypes=("fp32", "bf16"), device: str | None = None) -> list[dict]:
    """Dense square matmul throughput: the reference for every utilisation figure."""
    rows = [r for dt in dtypes for r in measure_peak(dt, device=device)]
    report("peak", rows, out)
    _plot_bars(out / "peak.png", [f"{r['dtype']} n={r['n']}" for r in rows], [r["gflops"] for r in rows], "GFLOP/s",
               "dense matmul throughput")
    return rows


def peak_gflops(dtype: str = "fp32", device: str | None = None) -> float:
    return max(r["gflops"] for r in measure_peak(dtype, device=device))


# ----- the LaCT layer -------------------------------------------------------------------------------
def lact_layer_flops(tokens: int, d: int, dh: int, updates: int, muon_steps: int) -> float:
    """Matmul FLOPs of ``updates`` updates over ``tokens`` tokens in total, plus applying to them all."""
    grads = 2 * tokens * d * dh * 6  # k W0, k W2, v W1^T, and the three weight gradients
    apply = 2 * tokens * d * dh * 3
    m, n = min(d, dh), max(d, dh)
    ns_step = 2 * m * m * n * 2 + 2 * m**3  # x x^T, gram @ gram, poly @ x
    return grads + apply + updates * 3 * muon_steps * ns_step


def lact_layer_case(tokens: int, chunk: int | None, d: int = 768, dh: int = 1536, muon_steps: int = 5,
                    dtype: str = "fp32", device: str | None = None, max_chunks: int = 8) -> dict:
    """Update + apply over ``tokens`` tokens: one chunk (chunk None) or online minibatches of
    ``chunk`` tokens (each updated on, then applied to). Minibatch runs time only the first
    ``max_chunks`` minibatches: every minibatch costs the same, so the rate carries over."""
    dev = resolve_device(device)
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dev, DTYPES[dtype])

    timed = tokens if chunk is None else min(tokens, chunk * max_chunks)
    q, k, v = (rand(1, timed, d, scale=d**-0.5) for _ in range(3))
    weights = (rand(1, d, dh, scale=d**-0.5), rand(1, dh, d, scale=dh**-0.5), rand(1, d, dh, scale=d**-0.5))
    lrs = tuple(torch.full((1, timed, 1), 0.01, device=dev, dtype=DTYPES[dtype]) for _ in range(3))
    if chunk is None:
        ops = [TTTOp(0, timed, True, True)]
    else:
        ops = [TTTOp(s, min(s + chunk, timed), True, True) for s in range(0, timed, chunk)]

    def run():
        with torch.no_grad():
            run_fast_weight_ops(weights, q, k, v, lrs, ops, muon_steps)

    seconds = best_time(run, repeats=2 if timed >= 16384 else 3, device=dev)
    flops = lact_layer_flops(timed, d, dh, len(ops), muon_steps)
    return {"tokens": tokens, "chunk": "full" if chunk is None else chunk, "dtype": dtype, "tokens_timed": timed,
            "seconds": round(seconds * tokens / timed, 6), "tokens_per_s": round(timed / seconds, 1),
            "gflops": round(flops / seconds / 1e9, 1)}


@contextmanager
def kernels_selected(choice: str):
    """Run the fast-weight layer with NVS_KERNELS=choice (auto | torch | triton) inside the block."""
    before = os.environ.get("NVS_KERNELS")
    os.environ["NVS_KERNELS"] = choice
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NVS_KERNELS", None)
        else:
            os.environ["NVS_KERNELS"] = before


def bench_lact_layer(out: Path, token_counts=(1024, 4096, 16384, 65536), chunks=(None, 16, 64, 256),
                     d: int = 768, dh: int = 1536, dtype: str = "fp32", device: str | None = None,
                     kernels=("auto",)) -> list[dict]:
    """The fast-weight update + apply of one LaCT head at the published size (768 -> 1536), large
    chunk vs minibatches, with each of ``kernels`` (auto and torch: the reference; triton: the fused kernels)."""
    dev = resolve_device(device)
    if "triton" in kernels and not triton_available(dev):
        raise ValueError(f"--kernels triton times the Triton kernels on a CUDA GPU; this machine runs on {dev.type} "
                         "(use --kernels torch or auto)")
    peak = peak_gflops(dtype, device)
    rows = []
    for choice in kernels:
        with kernels_selected(choice):
            for tokens in token_counts:
                for chunk in chunks:
                    if chunk is not None and chunk >= tokens:
                        continue
                    row = lact_layer_case(tokens, chunk, d, dh, dtype=dtype, device=device)
                    used = "triton" if choice == "triton" else "torch"
                    row = {**row, "kernels": used, "percent_of_peak": _sig3(100 * row["gflops"] / peak)}
                    rows.append(row)
    report("lact-layer", rows, out)
    print(f"peak ({dtype}): {peak} GFLOP/s")
    series = {}
    for r in rows:
        series.setdefault(f"chunk {r['chunk']}" + (f" ({r['kernels']})" if len(kernels) > 1 else ""), []).append(
            (r["tokens"], r["tokens_per_s"]))
    _plot_lines(out / "lact-layer.png", series, "tokens", "tokens / s (update + apply)",
                f"LaCT fast-weight layer, d={d}, dh={dh}, {dtype} (peak {peak:.0f} GFLOP/s)", logy=True)
    return rows


# ----- renderers ----------------------------------------------------------------------------------
def _views_model(arch: str):
    from nvs.assets import OBJECT_CHECKPOINT
    from nvs.inference import reuse_freed_memory
    from nvs.models import build_renderer
    from nvs.models.checkpoint import load_renderer
    from nvs.models.config import ModelConfig

    reuse_freed_memory()  # a child process: the allocator as the ``nvs`` command sets it
    torch.manual_seed(0)  # the same weights in every child process
    base = load_renderer(OBJECT_CHECKPOINT).config  # its trunk: a plane sweep needs arch lact
    # without the sweep, nor what reads the photos for it (the backdrops)
    return build_renderer(ModelConfig(**{**base.to_dict(), "arch": arch, "sweep_views": 0, "backdrop_white": False})).eval()


def _memorize_case(arch: str, views: int, size: int, reps: int, conn) -> None:
    """Child process 1: memorise the inputs; report time and peak memory, and send the state on."""
    from nvs.datasets.procedural import object_scene

    model = _views_model(arch)
    scene = object_scene(1, views + 1, size, size)
    images, cams = scene.images[None, :views], scene.cameras[None, :views]
    _clear_peak_rss()  # a spawned process's rusage peak starts at its parent's: VmHWM is its own
    base_kb = _vm_kb("VmRSS")
    with torch.no_grad():
        memorize_s = best_time(lambda: model.memorize(images, cams), repeats=reps)
        state = model.memorize(images, cams)
    send_to_parent(conn, {"memorize_s": memorize_s, "peak_mem_mb": (_vm_kb("VmHWM") - base_kb) / 1024, "state": state,
                          "target": scene.cameras[None, views:]})


def _render_case(arch: str, cases: list, rounds: int, conn) -> None:
    """Child process 2: render one target view from every received state, round-robin over the
    states, so that this shared machine's drifts in speed fall on all of them alike."""
    model = _views_model(arch)
    best = [float("inf")] * len(cases)
    with torch.no_grad():
        for state, target in cases:  # warm-up
            model.render(state, target)
        for _ in range(rounds):
            for i, (state, target) in enumerate(cases):
                t0 = time.perf_counter()
                model.render(state, target)
                best[i] = min(best[i], time.perf_counter() - t0)
    send_to_parent(conn, best)


def _sig3(x: float) -> float:
    """Three significant figures: fixed decimals would round small-image timings and states to 0."""
    return float(f"{x:.3g}")


def bench_views(out: Path, view_counts=(2, 4, 8, 16, 32, 64), size: int = 128, reps: int = 3) -> list[dict]:
    """Memorise and per-view render time as inputs grow: LaCT vs full attention of the shipped object renderer's width and depth."""
    rows = []
    for arch, name in (("lact", "LaCT"), ("full_attention", "full attention")):
        memorized = [run_in_child(_memorize_case, arch, views, size, reps, what=f"memorising {views} views ({name})")
                     for views in view_counts]
        render_s = run_in_child(_render_case, arch, [(m["state"], m["target"]) for m in memorized], reps * 4,
                                what=f"rendering ({name})")
        for views, m, seconds in zip(view_counts, memorized, render_s):
            rows.append({"model": name, "views": views, "memorize_s": _sig3(m["memorize_s"]),
                         "render_s_per_view": _sig3(seconds), "peak_mem_mb": round(m["peak_mem_mb"], 1),
                         "state_mb": _sig3(m["state"].nbytes() / 2**20)})
    report("views", rows, out)
    series = {}
    for r in rows:
        series.setdefault(f"{r['model']}: render / view", []).append((r["views"], r["render_s_per_view"]))
        series.setdefault(f"{r['model']}: memorise", []).append((r["views"], r["memorize_s"]))
    _plot_lines(out / "views.png", series, "input views", "seconds", f"renderers at {size}x{size}", logy=True)
    return rows


def bench_render(out: Path, renderers=("scene", "object"), sizes=(128,), views: int = 8, batch: int = 8,
                 repeats: int = 5, device: str = "auto", dtype: str = "fp32",
                 settings: list[tuple[str, object]] | None = None) -> list[dict]:
    """Seconds to memorise a scene and to render from it with the shipped renderers, run as the
    viewer and ``nvs render`` run them (their frame, ``--turns auto``), on the viewer's built-in
    held-out examples: the scene renderer on a procedural room (16:9 frames of height ``size``), the
    object renderer on a procedural object (size x size), ``views`` inputs. Rendering is timed one
    view per call (the viewer, on a slider's release) and ``batch`` views per call (a video's
    frames); each time is the fastest of ``repeats`` after a warm-up; ``dtype`` as ``nvs render --dtype``;
    ``settings``: reading settings of every renderer (nvs.inference.apply_reading_settings), kept in each row."""
    from nvs.assets import SHIPPED
    from nvs.inference import (apply_reading_settings, configure_inference, memorize_views, render_cameras,
                               renderer_frame, resolve_turns)
    from nvs.models import load_renderer
    from nvs.viewer.session import example_scene

    device = resolve_device(device)
    examples = {"scene": "procedural room", "object": "procedural object"}
    rows = []
    for name in renderers:
        model = load_renderer(SHIPPED[name], device=device)
        applied = apply_reading_settings(model, settings)
        turns = resolve_turns(model, "auto")
        runner = configure_inference(model, dtype=dtype, turns=turns)
        for size in sizes:
            scene = example_scene(input_views=views, heldout_views=0, size=size, kind=examples[name])
            frame = renderer_frame(runner, scene.cameras)
            cams = frame(scene.cameras)
            state = memorize_views(runner, scene.images, cams)[0]
            path = cams[torch.arange(batch) % views]  # the input cameras, repeated: any camera costs the same

            def one_view():
                render_cameras(runner, state, path[:1], chunk=1)

            def frames():
                render_cameras(runner, state, path, chunk=batch)

            rows.append({"renderer": name, "example": examples[name], "height": scene.images.shape[-2],
                         "width": scene.images.shape[-1], "input_views": views, "turns": turns,
                         "memorize_s": _sig3(best_time(lambda: memorize_views(runner, scene.images, cams), repeats, device)),
                         "render_s_one_view": _sig3(best_time(one_view, repeats, device)),
                         f"render_s_per_view_{batch}_per_call": _sig3(best_time(frames, repeats, device) / batch),
                         "device": device.type, "dtype": dtype, "threads": torch.get_num_threads(),
                         **({"reading_settings": applied} if applied else {})})
    report("render", rows, out)
    return rows


# ----- memorise at scale ----------------------------------------------------------------------------
def _clear_peak_rss() -> bool:
    """Reset this process's peak resident size (VmHWM) to its current size; False where Linux cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _memorize_row(config: dict, tokens: int, size: int, dtype: str, budget_per_token: float | None,
                  device: str, conn) -> None:
    """Child process: build the model, make the inputs, memorise once; send time and peak memory
    above the loaded model (inputs included)."""
    from nvs.datasets.procedural import turntable_cameras
    from nvs.inference import configure_inference, memorize_views, reuse_freed_memory
    from nvs.models import build_renderer
    from nvs.models.config import ModelConfig

    reuse_freed_memory()  # the allocator as the ``nvs`` command sets it
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_renderer(ModelConfig(**config)).to(dev).eval()
    per_view = (size // model.config.patch_size) ** 2
    views = tokens // per_view
    budget = None if budget_per_token is None else int(budget_per_token * views * per_view)
    configure_inference(model, budget, dtype)
    # warm-up on one small view: lazily built kernels and thread buffers are not the scene's memory
    memorize_views(model, torch.rand(1, 3, 64, 64), turntable_cameras(1, 64))
    synchronize(dev)
    if dev.type == "cuda":
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        _clear_peak_rss()
        base = _vm_kb("VmRSS") * 1024
    images = torch.rand(views, 3, size, size, generator=torch.Generator().manual_seed(0))
    cams = turntable_cameras(views, size)
    state, seconds = memorize_views(model, images, cams)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = _vm_kb("VmHWM") * 1024 - base
    with torch.no_grad():
        plan = model.chunk_plan(1, views, per_view) if hasattr(model, "chunk_plan") else None
    send_to_parent(conn, {"views": views, "seconds": seconds, "peak_bytes": peak, "state_bytes": state.nbytes(),
                          "chunk_views": plan.views if plan else views,
                          "chunk_tokens": plan.tokens if plan else views * per_view})


def bench_memorize(out: Path, config: str = "configs/lact-l24-d768-ttt2x.yaml", token_counts=(8192, 32768, 131072),
                   layer_counts=(1,), dtype: str = "fp32", size: int = 256, budget_per_token: float | None = 10240,
                   device: str | None = None) -> list[dict]:
    """Seconds and peak memory of memorising ``tokens`` tokens (square views of ``size`` pixels) with the
    model of ``config`` cut to each layer count (random weights); one fresh process per row. The memory
    budget is ``budget_per_token`` bytes per token (None: one pass over all tokens)."""
    from nvs.models.config import ModelConfig

    base = ModelConfig.from_yaml(config)
    dev = resolve_device(device)
    per_view = (size // base.patch_size) ** 2
    rows = []
    for layers in layer_counts:
        for tokens in token_counts:
            if tokens % per_view:
                raise ValueError(f"--tokens {tokens} is not a whole number of {size}x{size} views ({per_view} tokens each)")
            cfg = {**base.to_dict(), "layers": layers}
            m = run_in_child(_memorize_row, cfg, tokens, size, dtype, budget_per_token, str(dev),
                             what=f"memorising {tokens} tokens with {layers} layers")
            row = {"tokens": tokens, "layers": layers, "dim": base.dim, "dtype": dtype, "device": dev.type,
                   "views": m["views"], "size": size,
                   "budget_mb": None if budget_per_token is None else round(budget_per_token * tokens / 2**20, 1),
                   "chunk_views": m["chunk_views"], "chunk_tokens": m["chunk_tokens"],
                   "seconds": _sig3(m["seconds"]), "tokens_per_s": round(tokens / m["seconds"], 1),
                   "peak_mb": round(m["peak_bytes"] / 2**20, 1), "bytes_per_token": round(m["peak_bytes"] / tokens)}
            rows.append(row)
            print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    report("memorize", rows, out)
    series = {}
    for r in rows:
        series.setdefault(f"{r['layers']} layer(s), {r['dtype']}", []).append((r["tokens"], r["peak_mb"]))
    _plot_lines(out / "memorize.png", series, "input tokens", "peak memory above the model (MB)",
                f"memorise, dim {base.dim}, {dev.type}" + ("" if budget_per_token is None
                                                            else f", budget {budget_per_token / 1024:g} KB / token"),
                logy=True)
    return rows


def bench_train_step(out: Path, recipes: list[str] = ("configs/train-object-cpu.yaml",), steps: int = 5,
                     settings: list[tuple[str, object]] | None = None) -> list[dict]:
    """Tokens per second and peak memory of training steps of each recipe as `nvs train` takes
    them on this machine's CPU: its model (random weights) and optimizer as training builds them
    (:func:`nvs.training.loop.model_and_optimizer`), its loss terms (LPIPS included where it
    switches on), its mixed precision, gradient clipping; each recipe in its own process.
    ``settings``: reading settings laid over each recipe's model config (how it samples its photos,
    say), kept in each row."""
    from nvs.inference import chosen_reading_settings
    from nvs.training.config import load_train_config

    for recipe in recipes:  # a setting the recipe's model refuses is named here, not in a child's traceback
        model = load_train_config(recipe).model
        chosen = chosen_reading_settings(settings, model.sweep_views > 0, bool(model.sweep_views or model.view_blend))
        try:
            dataclasses.replace(model, **chosen)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--setting with {recipe}: {exc}") from None
    rows = []
    for recipe in recipes:
        row = run_in_child(_train_step_row, recipe, steps, list(settings or []), what=f"training steps of {recipe}")
        if "error" in row:
            raise ValueError(f"{recipe}: {row['error']}")
        rows.append(row)
    report("train-step", rows, out)
    _plot_bars(out / "train-step.png", [Path(r["recipe"]).stem for r in rows], [r["tokens_per_s"] for r in rows],
               "tokens / s", "training step")
    return rows


def _train_step_row(recipe: str, steps: int, settings: list[tuple[str, object]], conn) -> None:
    """Child process: the recipe's model, optimizer, batch and losses built, then ``steps`` steps;
    sends the best step's time and how far the resident size rose during the steps above what it
    was after the build, freed memory returned first (gradients, optimizer state, the activations
    autograd keeps; None where Linux cannot reset the peak), or {"error": why} where the recipe's
    data or model cannot be built."""
    from nvs.inference import reuse_freed_memory
    from nvs.models.chunked import return_freed_memory
    from nvs.training.config import load_train_config
    from nvs.training.loop import Losses, build_dataset, model_and_optimizer

    reuse_freed_memory()
    try:
        cfg = load_train_config(recipe)
        cfg.model = dataclasses.replace(cfg.model, **dict(settings))
        model, optim = model_and_optimizer(cfg)
        losses = Losses(cfg, torch.device("cpu"))
        data = build_dataset(cfg)
        items = [data[i] for i in range(cfg.optim.batch_size)]
    except (ValueError, OSError) as exc:
        send_to_parent(conn, {"error": str(exc)})
        return
    model.train()
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    lpips_step = cfg.loss.lpips_start if cfg.loss.lpips_weight > 0 else 0
    terms: list[str] = []

    def step():
        with torch.autocast("cpu", dtype=torch.float16 if cfg.run.mixed_precision == "fp16" else torch.bfloat16,
                            enabled=cfg.run.mixed_precision != "no"):
            _, loss, logs = losses.of(model, batch, lpips_step)
        terms[:] = list(logs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
        optim.step()
        optim.zero_grad(set_to_none=True)

    return_freed_memory()  # the peak below counts what the steps allocate, not memory freed before them
    peak_resets = _clear_peak_rss()
    base_kb = _vm_kb("VmRSS")
    seconds = best_time(step, repeats=steps)
    peak_mb = round((_vm_kb("VmHWM") - base_kb) / 1024, 1) if peak_resets else None
    patch = cfg.model.patch_size
    tokens = cfg.optim.batch_size * (cfg.data.input_views + cfg.data.target_views) * (cfg.data.height // patch) * (
        cfg.data.width // patch)
    row = {"recipe": recipe, "batch": cfg.optim.batch_size, "tokens_per_step": tokens, "loss_terms": terms,
           "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
           "mixed_precision": cfg.run.mixed_precision, "seconds_per_step": round(seconds, 4),
           "tokens_per_s": round(tokens / seconds, 1), "peak_mb": peak_mb}
    if settings:  # as the model built has them
        row["reading_settings"] = {key: getattr(model.config, key) for key, _ in settings}
    send_to_parent(conn, row)


# ----- plots ----------------------------------------------------------------------------------------
def _plot_bars(path: Path, labels: list[str], values: list[float], ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.bar(labels, values, color="tab:blue")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_lines(path: Path, series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
                logy: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
