"""`nvs bench`: benchmarks that print a table and write DIR/<name>.json (a list of rows).

This module holds the command, the data benchmarks (generator, reconstruct) and the shared
reporting; the model benchmarks are in :mod:`nvs.commands.bench_model`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nvs.datasets.asset_scenes import ASSET_KINDS
from nvs.datasets.procedural import SCENE_KINDS, generate_scene
from nvs.commands import argtypes as T
from nvs.commands.eval import add_reading_setting_argument
from nvs.inference import DTYPE_HELP, INFERENCE_DTYPES


GENERATOR_KINDS = (*SCENE_KINDS, *ASSET_KINDS)


def bench_generator(out: Path, kinds=GENERATOR_KINDS, views: int = 24, size: int = 128,
                    scenes: int = 10, workers: int = 1) -> list[dict]:
    """Generated views per second at size x size (rooms at 16:9 with the same height). The asset
    kinds (ASSET_KINDS) time the data writer in ``workers`` processes, and are
    skipped, saying why, where they cannot render."""
    from nvs.datasets.asset_scenes import asset_throughput, unavailable_reason

    rows = []
    for kind in kinds:
        if kind in ASSET_KINDS:
            reason = unavailable_reason()
            if reason is not None:
                print(f"{kind}: skipped, {reason}")
                continue
            (row,) = asset_throughput((kind,), views=views, size=size, scenes=scenes, workers=workers)
            rows.append({k: row[k] for k in ("kind", "height", "width", "views", "seconds", "views_per_second")}
                        | {"threads": torch.get_num_threads(), "workers": workers})
            continue
        width = size if kind == "object" else size * 16 // 9 // 8 * 8
        generate_scene(kind, 0, 2, size, width)  # warm-up
        t0 = time.perf_counter()
        for seed in range(1, scenes + 1):
            generate_scene(kind, seed, views, size, width)
        seconds = time.perf_counter() - t0
        rows.append({"kind": kind, "height": size, "width": width, "views": views * scenes, "seconds": round(seconds, 6),
                     "views_per_second": round(views * scenes / seconds, 1), "threads": torch.get_num_threads(),
                     "workers": 1})
    report("generator", rows, out)
    return rows


def bench_reconstruct(out: Path, view_counts=(20, 50), width: int = 640, scene_kind: str = "room",
                      threads: int = 1) -> list[dict]:
    """Seconds per SfM stage on a procedural photo set (detail texture) at width x 9/16 width:
    a room walk (frames in path order) or a turntable around an object (two rings), with the
    median pose errors against the known cameras after a similarity alignment. ``threads``:
    COLMAP's (ReconstructOptions.threads)."""
    import shutil
    import tempfile

    from nvs.datasets.procedural import object_scene, room_scene, turntable_cameras
    from nvs.io.media import save_images
    from nvs.reconstruction.pose_errors import aligned_pose_errors
    from nvs.reconstruction.sfm import ReconstructOptions, reconstruct

    rows = []
    height = width * 9 // 16
    for views in view_counts:
        if scene_kind == "room":
            scene = room_scene(1, views, height, width, texture="detail")
        else:
            scene = object_scene(2, views, height, width, cameras=turntable_cameras(views, height, width), texture="detail")
        work = Path(tempfile.mkdtemp(prefix="nvs-bench-sfm-"))
        try:
            save_images(list(scene.images), [work / "photos" / f"{i:03d}.png" for i in range(len(scene.images))])
            result = reconstruct(work / "photos", work / "scene", ReconstructOptions(threads=threads))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        times = result.report["timings_s"]
        order = [int(Path(n).stem) for n in result.names]
        errors = aligned_pose_errors(result.cameras.c2w, scene.cameras.c2w[order])
        rows.append({"scene": scene_kind, "views": views, "height": height, "width": width, "colmap_threads": threads,
                     "registered": result.report["images_registered"],
                     "attempts": len(result.report["attempts"]),
                     "rotation_err_deg": round(float(errors["rotation_deg"].median()), 3),
                     "centre_err_pct": round(100 * float(errors["centre_fraction"].median()), 3),
                     **{k: times.get(k, 0.0) for k in ("load_s", "features_s", "matching_s", "mapping_s", "joining_s",
                                                       "refine_s", "write_s", "total_s")}})
    report("reconstruct", rows, out)
    return rows


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"


def report(name: str, rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))
    print(f"machine: {machine()}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    print(f"wrote {out / (name + '.json')}")


def run_bench_adapt(args: argparse.Namespace) -> None:
    from nvs.commands.bench_adapt import bench_adapt, plot_gain, summarize

    rows = bench_adapt(args.checkpoint, Path(args.out), tuple(args.sets), args.scenes, tuple(args.budgets))
    report("adapt-summary", summarize(rows), Path(args.out))
    plot = plot_gain(rows, Path(args.out) / "adapt.png")
    if plot is not None:
        print(f"wrote {plot} (gain against budget)")


def run_bench_adapt_ablation(args: argparse.Namespace) -> None:
    from nvs.commands.bench_adapt_ablation import ablation_arms, bench_adapt_ablation, summarize_ablation

    arms = ablation_arms(args.augmentations, args.lpips_weights)
    rows = bench_adapt_ablation(args.checkpoint, Path(args.out), tuple(args.sets), args.scenes, arms, args.steps, args.seed)
    report("adapt-ablation-summary", summarize_ablation(rows), Path(args.out))


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print a table, write DIR/<name>.json)").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("generator", help="scene generator throughput (views/s)")
    p.add_argument("--kinds", nargs="+", choices=GENERATOR_KINDS, default=list(GENERATOR_KINDS))
    p.add_argument("--size", type=T.image_side, default=128)
    p.add_argument("--scenes", type=T.positive_int(), default=10)
    p.add_argument("--views", type=T.positive_int(4096), default=24, help="views per scene (the training sets have 24)")
    p.add_argument("--workers", type=T.workers, default=T.default_workers(),
                   help="processes rendering the asset kinds (default: one per core)")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("reconstruct", help="seconds per SfM stage for procedural photo sets")
    p.add_argument("--views", type=T.int_range(2, 10_000), nargs="+", default=[20, 50])
    p.add_argument("--width", type=T.int_range(64, 8192), default=640)
    p.add_argument("--threads", type=T.threads, default=1, help="COLMAP threads (-1: every core)")
    p.add_argument("--scene", choices=["room", "object"], default="room",
                   help="a walk through a procedural room, or a turntable around a procedural object")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("peak", help="dense matmul GFLOP/s of this machine (the reference for utilisation)")
    p.add_argument("--dtypes", nargs="+", choices=INFERENCE_DTYPES, default=list(INFERENCE_DTYPES))
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("lact-layer", help="fast-weight update + apply: one large chunk vs online minibatches")
    p.add_argument("--tokens", type=T.positive_int(1 << 24), nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--chunks", type=T.chunk, nargs="+", default=["full", "16", "64", "256"], help="'full' and/or minibatch sizes")
    p.add_argument("--dim", type=T.positive_int(65536), default=768, help="fast-weight input width (published: 768)")
    p.add_argument("--hidden", type=T.positive_int(65536), default=1536, help="fast-weight hidden width (published ttt2x: 1536)")
    p.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32")
    p.add_argument("--kernels", nargs="+", choices=["auto", "torch", "triton"], default=["auto"],
                   help="auto: what the renderer runs by default (the torch reference, the faster where measured); "
                        "torch: the reference; triton: the fused Triton kernels (CUDA GPU only)")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("views", help="memorise / render-per-view time and memory vs input views, LaCT vs full attention")
    p.add_argument("--views", type=T.positive_int(4096), nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--size", type=T.image_side, default=128, help="square image size (128: the project's standard)")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("render", help="seconds to memorise and to render a view with the shipped renderers, "
                         "as the viewer and nvs render run them")
    p.add_argument("--renderers", nargs="+", choices=["scene", "object"], default=["scene", "object"])
    p.add_argument("--sizes", type=T.image_side, nargs="+", default=[128],
                   help="short side of the frames in pixels (128: the viewer's)")
    p.add_argument("--views", type=T.positive_int(64), default=8, help="input views")
    p.add_argument("--batch", type=T.positive_int(64), default=8, help="views per call for the video row")
    p.add_argument("--repeats", type=T.positive_int(100), default=5, help="timed calls per number (the fastest is kept)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32", help=DTYPE_HELP)
    add_reading_setting_argument(p)
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("memorize", help="seconds and peak memory of memorising many tokens (fresh process per row)")
    p.add_argument("--config", default="configs/lact-l24-d768-ttt2x.yaml", help="model config (random weights)")
    p.add_argument("--tokens", type=T.positive_int(1 << 24), nargs="+", default=[8192, 32768, 131072])
    p.add_argument("--layers", type=T.positive_int(1024), nargs="+", default=[1], help="cut the config to these layer counts")
    p.add_argument("--dtype", choices=INFERENCE_DTYPES, default="fp32")
    p.add_argument("--size", type=T.image_side, default=256, help="square view size in pixels (256: 1024 tokens per view)")
    p.add_argument("--budget-per-token", type=T.memory_size, default="10K",
                   help="memory budget per input token (10K: 10 KiB), or none for one pass over all tokens")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("official-size", help="the published 312M model with random weights: official .pt written, "
                         "read back, memorise and render (seconds, peak memory)")
    p.add_argument("--views", type=T.positive_int(4096), default=32)
    p.add_argument("--size", type=T.image_side, default=128, help="square image size")
    p.add_argument("--config", default=None, help="model config (default: configs/lact-l24-d768-ttt2x.yaml)")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("adapt", help="test-time adaptation: what nvs adapt gains on held-out sets")
    p.add_argument("--checkpoint", default="auto", help="auto (the default: each scene adapted by the shipped renderer "
                   "nvs adapt picks for it), object, scene, or a checkpoint file")
    p.add_argument("--sets", nargs="+", default=["objects", "rooms", "temple", "furniture", "furnished-rooms", "objects-detail"],
                   choices=["objects", "objects-detail", "rooms", "temple", "furniture", "furnished-rooms"],
                   help="held-out sets (furniture sets need sweethome3d-furniture and headless OpenGL)")
    p.add_argument("--scenes", type=T.positive_int(1000), default=2, help="scenes per set")
    p.add_argument("--budgets", type=T.positive_float(86_400), nargs="+", default=[60.0], help="adaptation budgets in seconds (several: a plot)")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("adapt-ablation", help="test-time adaptation: each augmentation set and training loss alone, "
                         "a fixed number of steps (target-view scores)")
    p.add_argument("--checkpoint", default="auto", help="auto (the default: each scene adapted by the shipped renderer "
                   "nvs adapt picks for it), object, scene, or a checkpoint file")
    p.add_argument("--sets", nargs="+", default=["rooms", "furnished-rooms", "temple", "furniture"],
                   choices=["objects", "objects-detail", "rooms", "temple", "furniture", "furnished-rooms"])
    p.add_argument("--scenes", type=T.positive_int(1000), default=2, help="scenes per set")
    p.add_argument("--augmentations", nargs="+", default=["none", "mirror", "rotate", "colour", "all"],
                   choices=["none", "mirror", "rotate", "colour", "all"], help="augmentation sets, each alone (all: the three together)")
    p.add_argument("--lpips-weights", type=T.float_range(0.0, 100.0), nargs="+", default=[0.0],
                   help="training losses: MSE + weight * LPIPS (alex); 0 is MSE alone")
    p.add_argument("--steps", type=T.positive_int(100_000), default=20, help="training steps per run (no time budget)")
    p.add_argument("--seed", type=T.nonneg_int(2**31 - 1), default=0)
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)
    p = bench.add_parser("train-step", help="tokens/s and peak memory of a training step of each recipe")
    p.add_argument("--recipes", nargs="+", default=["configs/train-object-cpu.yaml"], help="training recipes (YAML)")
    add_reading_setting_argument(p, "train each recipe's model with this value of one of its reading settings (repeatable; "
                                    "e.g. photo_interpolation=bilinear)")
    p.add_argument("--out", type=T.out_dir, default="outputs/bench")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.bench_command == "generator":
        bench_generator(Path(args.out), kinds=tuple(args.kinds), views=args.views, size=args.size, scenes=args.scenes,
                        workers=args.workers)
    elif args.bench_command == "reconstruct":
        bench_reconstruct(Path(args.out), view_counts=tuple(args.views), width=args.width, scene_kind=args.scene,
                                 threads=args.threads)
    else:
        from nvs.commands import bench_model  # it imports this module for report()

        if args.bench_command == "peak":
            bench_model.bench_peak(Path(args.out), dtypes=tuple(args.dtypes))
        elif args.bench_command == "lact-layer":
            chunks = tuple(None if c == "full" else int(c) for c in args.chunks)
            bench_model.bench_lact_layer(Path(args.out), tuple(args.tokens), chunks, args.dim, args.hidden, args.dtype,
                                        kernels=tuple(args.kernels))
        elif args.bench_command == "views":
            bench_model.bench_views(Path(args.out), tuple(args.views), args.size)
        elif args.bench_command == "render":
            bench_model.bench_render(Path(args.out), tuple(args.renderers), tuple(args.sizes), args.views, args.batch,
                                     args.repeats, args.device, args.dtype, args.setting)
        elif args.bench_command == "memorize":
            from nvs.models.chunked import parse_memory_size

            bench_model.bench_memorize(Path(args.out), args.config, tuple(args.tokens), tuple(args.layers), args.dtype,
                                       args.size, parse_memory_size(args.budget_per_token), args.device)
        elif args.bench_command == "official-size":
            from nvs.commands import bench_official

            bench_official.bench_official_size(Path(args.out), args.views, args.size,
                                               args.config or bench_official.OFFICIAL_SIZE_CONFIG)
        elif args.bench_command == "adapt":
            run_bench_adapt(args)
        elif args.bench_command == "adapt-ablation":
            run_bench_adapt_ablation(args)
        elif args.bench_command == "train-step":
            bench_model.bench_train_step(Path(args.out), args.recipes, settings=args.setting)
    return 0
