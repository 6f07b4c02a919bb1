"""The `nvs` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEVICE_HELP = "auto (the default: the CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N"


def _demo(args: argparse.Namespace) -> int:
    from nvs.demo import run_demo

    m = run_demo(Path(args.out), scenes=args.scenes)
    print(f"\n{m['scenes']} held-out procedural scenes, {m['input_views']} input views, {m['target_views']} novel views each "
          f"({m['size'][0]}x{m['size'][1]}), {m['seconds']:.1f} s")
    print(f"{'':16}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}")
    for name in ("model", "nearest_view", "untrained"):
        r = m[name]
        print(f"{name:16}{r['psnr']:8.2f}{r['ssim']:8.3f}{r['lpips']:8.3f}")
    print(f"wrote {args.out}/grid.png (rows per scene: inputs | truth | renders), orbit.mp4, metrics.json")
    return 0


def _app(args: argparse.Namespace) -> int:
    from nvs.app import launch

    launch(args.checkpoint, port=args.port, share=args.share, size=args.size, host=args.host, device=args.device)
    return 0


def _train(args: argparse.Namespace) -> int:
    from nvs.training.config import load_train_config
    from nvs.training.loop import train

    cfg = load_train_config(args.config, args.overrides)
    if args.out:
        cfg.run.out_dir = args.out
    resume = None if args.no_resume else (args.resume or "auto")
    summary = train(cfg, resume=resume, max_steps=args.max_steps)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained to step {summary['steps']} ({summary['skipped_steps']} skipped steps); "
          f"run folder {cfg.run.out_dir} (summary.json, config.yaml, checkpoints/, tensorboard/)")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    import json

    from nvs.media import read_image
    from nvs.metrics import all_metrics

    a, b = read_image(args.image_a), read_image(args.image_b)
    if a.shape != b.shape:
        raise ValueError(f"{args.image_a} is {tuple(a.shape[1:])} pixels but {args.image_b} is {tuple(b.shape[1:])}")
    values = all_metrics(a[None], b[None], lpips_net=args.lpips_net)
    print(json.dumps({k: round(float(v[0]), 6) for k, v in values.items()}))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from nvs.data_cli import synth

    summary = synth(args.kind, args.scenes, args.views, args.size[0], args.size[1], args.format, Path(args.out), args.seed)
    print(f"wrote {summary['scenes']} {args.kind} scenes x {args.views} views ({args.format}) to {args.out}: {summary['index']}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    import json

    from nvs.data_cli import info

    report = info(Path(args.path))
    print(json.dumps(report, indent=2))
    return 0 if report["invalid_scenes"] == 0 else 1


def _eval(args: argparse.Namespace) -> int:
    from nvs.cameras import Cameras
    from nvs.datasets.views import FileViews
    from nvs.evaluate import EvalScene, evaluate
    from nvs.devices import resolve_device
    from nvs.models import load_renderer

    device = resolve_device(args.device)
    model = load_renderer(args.checkpoint, device=device)
    data = FileViews(args.data, args.views, args.targets, args.size[0], args.size[1], selection=args.selection,
                     index=args.index, normalize=args.normalize)
    h, w = args.size

    def scenes():
        for i in range(len(data)):
            sample = data[i]
            yield EvalScene(data.name(i), sample["inputs"], Cameras(sample["input_intrinsics"], sample["input_c2w"], h, w),
                            sample["targets"], Cameras(sample["target_intrinsics"], sample["target_c2w"], h, w))

    protocol = {"selection": "index" if args.index else args.selection, "input_views": args.views,
                "target_views": args.targets or "all remaining", "size": [h, w], "normalized": args.normalize}
    meta = {"checkpoint": str(args.checkpoint), "data": str(args.data), "index": args.index, "protocol": protocol,
            "device": str(device)}
    summary = evaluate(model, scenes(), Path(args.out), meta, lpips_net=args.lpips_net,
                       save_images=not args.no_images, total=len(data))
    print(f"{summary['scenes']} scenes, {summary['views']} views: PSNR {summary['psnr']['mean']:.2f} "
          f"SSIM {summary['ssim']['mean']:.4f} LPIPS({args.lpips_net}) {summary['lpips']['mean']:.4f}; "
          f"memorise {summary['seconds_per_scene_memorize']:.3f} s/scene, render {summary['seconds_per_view_render']:.4f} s/view")
    ref = summary["nearest_view"]
    print(f"nearest input view (reference): PSNR {ref['psnr']:.2f} SSIM {ref['ssim']:.4f} LPIPS({args.lpips_net}) {ref['lpips']:.4f}")
    print(f"wrote {args.out}/summary.json, per_view.csv" + ("" if args.no_images else ", images/"))
    return 0


def _render(args: argparse.Namespace) -> int:
    from nvs.render_cli import render_path

    s = render_path(Path(args.checkpoint), Path(args.scene), args.path, args.frames, args.fps, Path(args.out),
                    args.views, tuple(args.size), args.scene_index, device=args.device)
    print(f"rendered {s['frames']} frames of scene {s['scene']} at {s['fps']} fps to {args.out} "
          f"(memorise {s['memorize_s']:.2f} s, {s['render_s_per_frame'] * 1000:.1f} ms/frame); summary {args.out}.json")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from nvs.reconstruct import ReconstructOptions, StageProgress, reconstruct

    options = ReconstructOptions(max_size=args.max_size, camera_model=args.camera_model, single_camera=not args.per_image_camera,
                                 matcher=args.matcher, frames=args.frames, retry=not args.no_retry, seed=args.seed,
                                 threads=args.threads)
    with StageProgress() as progress:
        scene = reconstruct([Path(p) for p in args.inputs], Path(args.out), options, progress)
    r = scene.report
    print(f"registered {r['images_registered']} of {r['photos_loaded']} photos ({r['files_given']} files given) in "
          f"{r['timings_s']['total_s']:.1f} s; mean reprojection error {r['mean_reprojection_error_px']:.2f} px")
    for item in r["skipped_inputs"] + r["left_out"]:
        print(f"  left out {item['file']}: {item['reason']}")
    print(f"wrote {args.out}/opencv_cameras.json, images/, report.json, colmap/ (render it: nvs render --scene {args.out} ...)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from nvs import bench

    if args.bench_command == "generator":
        bench.bench_generator(Path(args.out), size=args.size, scenes=args.scenes)
    elif args.bench_command == "reconstruct":
        bench.bench_reconstruct(Path(args.out), view_counts=tuple(args.views), width=args.width, scene_kind=args.scene,
                                 threads=args.threads)
    else:
        from nvs import perf_bench

        if args.bench_command == "peak":
            perf_bench.bench_peak(Path(args.out), dtypes=tuple(args.dtypes))
        elif args.bench_command == "lact-layer":
            chunks = tuple(None if c == "full" else int(c) for c in args.chunks)
            perf_bench.bench_lact_layer(Path(args.out), tuple(args.tokens), chunks, args.dim, args.hidden, args.dtype,
                                        kernels=tuple(args.kernels))
        elif args.bench_command == "views":
            perf_bench.bench_views(Path(args.out), tuple(args.views), args.size)
        elif args.bench_command == "train-step":
            perf_bench.bench_train_step(Path(args.out), args.recipe)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from nvs.datasets.formats import FORMATS

    parser = argparse.ArgumentParser(prog="nvs", description="LaCT novel view synthesis")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the main job on built-in procedural data (no downloads)")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--scenes", type=int, default=8, help="held-out scenes to render")
    p.set_defaults(func=_demo)

    p = sub.add_parser("app", help="the Gradio viewer: upload photos (or pick an example), move the camera")
    p.add_argument("--checkpoint", default=None, help="renderer: ours (.safetensors) or a published LaCT .pt (default: the demo model)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for the local network)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--size", type=int, default=128, help="square image size the renderer works at")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=_app)

    data = sub.add_parser("data", help="write procedural data sets, inspect data sets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synth", help="generate a procedural data set in a real format")
    p.add_argument("--kind", choices=["object", "room"], default="object")
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--views", type=int, default=12)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[128, 128])
    p.add_argument("--format", choices=list(FORMATS), default="lact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_data_synth)
    p = data.add_parser("info", help="validate a data set and print what it holds (exit 1 if any scene is invalid)")
    p.add_argument("path", help="data set folder or its index file")
    p.set_defaults(func=_data_info)

    p = sub.add_parser("eval", help="PSNR / SSIM / LPIPS of a renderer on a data set")
    p.add_argument("--checkpoint", required=True, help="ours (.safetensors) or a published LaCT .pt")
    p.add_argument("--data", required=True, help="data set folder or index (lact / lvsm layout)")
    p.add_argument("--index", help="pixelSplat evaluation index JSON {scene: {context, target}}")
    p.add_argument("--views", type=int, default=4, help="input views per scene")
    p.add_argument("--targets", type=int, default=0, help="target views per scene (0: all remaining)")
    p.add_argument("--selection", choices=["first", "spread"], default="first",
                   help="first K views as inputs, or K evenly spaced ones; the rest are targets")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[256, 256], help="resize + centre-crop")
    p.add_argument("--normalize", action="store_true", help="normalise scenes to the mean input camera (scene-level data)")
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg")
    p.add_argument("--no-images", action="store_true", help="skip writing GT | prediction images")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_eval)

    p = sub.add_parser("render", help="render a video along a camera path")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--scene", required=True, help="data set folder/index, opencv_cameras.json, or an LVSM scene JSON")
    p.add_argument("--scene-index", type=int, default=0, help="which scene of a data set")
    p.add_argument("--path", default="orbit", help="orbit | spiral | interpolate | nerfstudio camera_path.json")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--fps", type=float, help="default: the path file's fps, else 24")
    p.add_argument("--views", type=int, default=8, help="input views (evenly spaced over the scene)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[256, 256])
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", required=True, help="video.mp4, video.gif, or a folder for PNG frames")
    p.set_defaults(func=_render)

    p = sub.add_parser("reconstruct", help="pose a photo set, zip or video with COLMAP (SfM) into a scene folder")
    p.add_argument("inputs", nargs="+", help="a folder of photos, photo files, a zip, or one video")
    p.add_argument("--out", required=True, help="scene folder to write (opencv_cameras.json, images/, report.json)")
    p.add_argument("--max-size", type=int, default=1024, help="long side of the photos used for matching and written out")
    p.add_argument("--camera-model", default="SIMPLE_RADIAL", help="SIMPLE_PINHOLE | PINHOLE | SIMPLE_RADIAL | RADIAL | OPENCV")
    p.add_argument("--per-image-camera", action="store_true", help="one camera per photo (mixed devices or zoom)")
    p.add_argument("--matcher", default="auto", help="auto (sequential for videos) | exhaustive | sequential")
    p.add_argument("--frames", type=int, default=40, help="frames sampled evenly from a video")
    p.add_argument("--no-retry", action="store_true", help="do not retry with relaxed settings when photos are left out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="COLMAP threads: 1 (default) gives the same poses for the same seed; -1 uses every core, "
                        "faster on large photo sets but varies from run to run")
    p.set_defaults(func=_reconstruct)

    bench = sub.add_parser("bench", help="benchmarks (print a table, write DIR/<name>.json)").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("generator", help="procedural scene generator throughput (views/s)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)
    p = bench.add_parser("reconstruct", help="seconds per SfM stage for procedural photo sets")
    p.add_argument("--views", type=int, nargs="+", default=[20, 50])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=1, help="COLMAP threads (-1: every core)")
    p.add_argument("--scene", choices=["room", "object"], default="room",
                   help="a walk through a procedural room, or a turntable around a procedural object")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)
    p = bench.add_parser("peak", help="dense matmul GFLOP/s of this machine (the reference for utilisation)")
    p.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)
    p = bench.add_parser("lact-layer", help="fast-weight update + apply: one large chunk vs online minibatches")
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--chunks", nargs="+", default=["full", "16", "64", "256"], help="'full' and/or minibatch sizes")
    p.add_argument("--dim", type=int, default=768, help="fast-weight input width (published: 768)")
    p.add_argument("--hidden", type=int, default=1536, help="fast-weight hidden width (published ttt2x: 1536)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--kernels", nargs="+", choices=["auto", "torch", "triton"], default=["auto"],
                   help="auto: what the renderer runs by default (the torch reference, the faster where measured); "
                        "torch: the reference; triton: the fused Triton kernels (CUDA GPU only)")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)
    p = bench.add_parser("views", help="memorise / render-per-view time and memory vs input views, LaCT vs full attention")
    p.add_argument("--views", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--size", type=int, default=128, help="square image size (128: the project's standard)")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)
    p = bench.add_parser("train-step", help="tokens/s of a training step of a recipe")
    p.add_argument("--recipe", default="configs/train-demo-object.yaml")
    p.add_argument("--out", default="outputs/bench")
    p.set_defaults(func=_bench)

    p = sub.add_parser("metrics", help="PSNR / SSIM / LPIPS of two images of the same size, as JSON")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg")
    p.set_defaults(func=_metrics)

    p = sub.add_parser("train", help="train a renderer from a YAML recipe (CPU, GPU, or `accelerate launch`)")
    p.add_argument("config", help="recipe, e.g. configs/train-demo-object.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 run.out_dir=runs/x")
    p.add_argument("--out", help="run folder (same as run.out_dir=...)")
    p.add_argument("--resume", help="checkpoint folder to resume from (default: the run folder's latest)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has checkpoints")
    p.add_argument("--max-steps", type=int, help="stop after this step (the schedule still spans optim.steps)")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "overrides", None) is None or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nvs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
