"""`nvs eval`: PSNR / SSIM / LPIPS of a renderer on a data set (summary.json, per_view.csv, images/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch

from nvs.cameras import Cameras
from nvs.commands.adapt import add_adapt_options, options_from_args
from nvs.datasets.views import FileViews
from nvs.evaluation.evaluate import EvalScene, evaluate, jitter_exposure, jitter_poses
from nvs.evaluation.sweep_oracle import oracle_plane_images
from nvs.geometry.image_ops import RESIZE_RULES
from nvs.geometry.scene_normalization import NORMALIZATIONS
from nvs.inference import (DEVICE_HELP, add_inference_arguments, apply_reading_settings, choose_checkpoint,
                           configure_inference, resolve_device, resolve_turns)
from nvs.models.config import READING_SETTINGS
from nvs.models import load_renderer
from nvs.commands import argtypes as T


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR / SSIM / LPIPS of a renderer on a data set")
    p.add_argument("--checkpoint", required=True, help="object or scene (the shipped renderers), or a checkpoint file: "
                   "ours (.safetensors) or a published LaCT .pt")
    p.add_argument("--data", required=True, help="data set folder or index (lact / lvsm layout)")
    p.add_argument("--index", help="pixelSplat evaluation index JSON {scene: {context, target}}")
    p.add_argument("--views", type=T.positive_int(4096), default=4, help="input views per scene")
    p.add_argument("--targets", type=T.nonneg_int(4096), default=0, help="target views per scene (0: all remaining)")
    p.add_argument("--selection", choices=["first", "spread", "official", "kmeans"], default="first",
                   help="first K views as inputs, or K evenly spaced ones, the rest targets; official: the seeded "
                        "sampling of the official LaCT inference; kmeans: the Long-LRM protocol (targets every 8th "
                        "frame, inputs nearest k-means centroids of camera position + direction)")
    p.add_argument("--write-index", metavar="FILE", help="write the views used per scene as an evaluation index "
                   "(reusable with --index)")
    p.add_argument("--size", type=T.image_side, nargs=2, metavar=("H", "W"), default=[256, 256], help="resize + centre-crop")
    add_protocol_arguments(p)
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg")
    p.add_argument("--no-images", action="store_true", help="skip writing GT | prediction images")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_inference_arguments(p)
    add_reading_setting_argument(p)
    p.add_argument("--adapt", action="store_true",
                   help="adapt the renderer to each scene on its input views only (never its targets) before scoring")
    add_adapt_options(p, prefix="adapt-")
    p.add_argument("--input-exposure-jitter", type=T.float_range(0.0, 0.9), default=0.0, metavar="J",
                   help="a robustness protocol: each input view's colour channels are multiplied by gains drawn "
                        "uniformly from [1 - J, 1 + J] (seeded by the scene's position in the data set), as photos "
                        "metered one by one; the targets, and so the scores, stay as they are (default 0: none)")
    p.add_argument("--input-pose-noise", type=T.float_range(0.0, 10.0), default=0.0, metavar="DEG",
                   help="a robustness protocol: each input camera is turned about its centre by an angle drawn from "
                        "a normal of standard deviation DEG degrees about a random axis (seeded by the scene's "
                        "position in the data set), as structure from motion leaves poses; the targets' cameras stay "
                        "as they are (default 0: none)")
    p.add_argument("--sweep-oracle", action="store_true",
                   help="also score a diagnostic that sees the targets: the renderer's plane sweep with each pixel's "
                        "plane chosen by the ground truth (the photos averaged there; oracle_psnr in per_view.csv and "
                        "summary.json): an upper bound on what better depth could give")
    p.add_argument("--out", type=T.out_dir, required=True)
    p.set_defaults(func=run)


def add_protocol_arguments(p) -> None:
    """--normalize and --resize, shared by `nvs eval` and `nvs render`."""
    p.add_argument("--normalize", nargs="?", const="lvsm", choices=NORMALIZATIONS, default=None,
                   help="scene normalisation: lact (the official rule: mean camera of inputs and targets, "
                        "translations / max |t|), lvsm (mean input camera, 1.35 margin; a bare --normalize), object "
                        "(the inputs' gaze point at the origin, up +z, radius 2.7) or none; default: the renderer's "
                        "own (its checkpoint's), lact for published LaCT checkpoints, else none")
    p.add_argument("--resize", choices=RESIZE_RULES, default=None,
                   help="how images are resized to cover the size before the centre crop: bilinear (antialiased) "
                        "or official (PIL Lanczos, the official rule); default: official for published LaCT "
                        "checkpoints, bilinear otherwise")


def add_reading_setting_argument(parser, what: str = "read the photos with this value of one of the renderer's reading "
                                                      "settings instead of its checkpoint's (repeatable; the weights stay; "
                                                      "e.g. sweep_refine=0 turns the depth refinement off)") -> None:
    """--setting KEY=VALUE of `nvs eval`, `nvs render`, `nvs app` and `nvs bench render`
    (:func:`apply_reading_settings`), and of `nvs bench train-step` (``what`` says what it does there)."""
    parser.add_argument("--setting", type=T.reading_setting, action="append", metavar="KEY=VALUE",
                        help=f"{what}: {', '.join(READING_SETTINGS)}; values as in a model config: numbers, "
                             "true / false, fixed / inputs, bilinear / cubic")


def protocol_defaults(model, normalize: str | None, resize: str | None) -> tuple[str, str]:
    """(normalisation, resize rule): the ones asked for, else the renderer's own normalisation (its
    checkpoint's metadata), else the official ones for an official checkpoint."""
    official = getattr(model, "source_format", "") == "official"
    own = getattr(model, "normalization", None)
    return normalize or own or ("lact" if official else "none"), resize or ("official" if official else "bilinear")


def sweep_oracle(model) -> Callable[[EvalScene], torch.Tensor]:
    """The ``oracle`` of :func:`nvs.evaluation.evaluate.evaluate` for a renderer with a plane sweep:
    its k views and planes (each scene's own range where the renderer finds one from its inputs),
    and the photos as it reads and samples them (their exposures matched where it matches them)."""
    sweep = getattr(model, "sweep", None)
    if sweep is None:
        raise ValueError("--sweep-oracle needs a renderer with a plane sweep (model config sweep_views > 0); "
                         "this checkpoint has none")

    def oracle(scene: EvalScene) -> torch.Tensor:
        with torch.no_grad():
            inputs, ranges, _ = model.read_inputs(scene.inputs[None], scene.input_cams.unsqueeze(0))
            planes = sweep.inverse_depths(None, ranges).reshape(-1)
            return oracle_plane_images(inputs[0].float(), scene.input_cams, scene.targets.float(), scene.target_cams,
                                       planes, views=sweep.views, interpolation=sweep.interpolation)

    return oracle


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    checkpoint = choose_checkpoint(args.checkpoint)[0]
    model = load_renderer(checkpoint, device=device)
    settings = apply_reading_settings(model, args.setting)
    oracle = sweep_oracle(model) if args.sweep_oracle else None
    turns = resolve_turns(model, args.turns)  # of the renderer loaded, adapted or not
    runner = configure_inference(model, args.memory_budget, args.dtype, turns)
    normalize, resize = protocol_defaults(model, args.normalize, args.resize)
    data = FileViews(args.data, args.views, args.targets, args.size[0], args.size[1], selection=args.selection,
                     index=args.index, normalize=normalize, resize=resize)
    h, w = args.size

    def scenes():
        for i in range(len(data)):
            sample = data[i]
            inputs = sample["inputs"]
            if args.input_exposure_jitter:
                inputs = jitter_exposure(inputs, args.input_exposure_jitter, seed=i)
            input_c2w = sample["input_c2w"]
            if args.input_pose_noise:
                input_c2w = jitter_poses(input_c2w, args.input_pose_noise, seed=i)
            yield EvalScene(data.name(i), inputs, Cameras(sample["input_intrinsics"], input_c2w, h, w),
                            sample["targets"], Cameras(sample["target_intrinsics"], sample["target_c2w"], h, w))

    protocol = {"selection": "index" if args.index else args.selection, "input_views": args.views,
                "target_views": args.targets or "all remaining", "size": [h, w], "normalize": normalize, "resize": resize}
    if args.input_exposure_jitter:
        protocol["input_exposure_jitter"] = args.input_exposure_jitter
    if args.input_pose_noise:
        protocol["input_pose_noise_deg"] = args.input_pose_noise
    meta = {"checkpoint": str(checkpoint), "data": str(args.data), "index": args.index, "protocol": protocol,
            "device": str(device), "dtype": args.dtype, "turns": turns,
            "mirror": bool(getattr(model.config, "mirror", False))}
    if settings:
        meta["reading_settings"] = settings
    adapt_scene = None
    if args.adapt:
        from nvs.adaptation.search import adapt

        options = options_from_args(args)
        meta["adapt"] = {"budget_s": options.budget_s, "steps": options.max_steps, "parts": list(options.parts),
                         "verifier_views": options.verifier_views, "confirm_views": options.confirm_views, "seed": options.seed}

        def adapt_scene(inputs, input_cams):  # sees the input views alone
            adapted = adapt(model, inputs, input_cams, options).model
            return configure_inference(adapted, args.memory_budget, args.dtype, turns)

    summary = evaluate(runner, scenes(), Path(args.out), meta, lpips_net=args.lpips_net,
                       save_images=not args.no_images, total=len(data), adapt=adapt_scene,
                       oracle=oracle)
    if args.write_index:
        Path(args.write_index).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_index).write_text(json.dumps(data.chosen, indent=1))
        print(f"wrote the views of {len(data.chosen)} scenes to {args.write_index} (reuse with --index)")
    print(f"{summary['scenes']} scenes, {summary['views']} views: PSNR {summary['psnr']['mean']:.2f} "
          f"(pooled per scene as the official script: {summary['psnr_pooled']['mean']:.2f}) "
          f"SSIM {summary['ssim']['mean']:.4f} LPIPS({args.lpips_net}) {summary['lpips']['mean']:.4f}; "
          f"memorise {summary['seconds_per_scene_memorize']:.3f} s/scene, render {summary['seconds_per_view_render']:.4f} s/view")
    if summary["framed_scenes"]:
        print(f"object framing (model config frame_extent) zoomed {summary['framed_scenes']} of {summary['scenes']} "
              f"scenes out, down to {summary['least_framing_zoom']:.2f}x")
    if args.adapt:
        print(f"adaptation: {summary['adapt_seconds_per_scene']:.1f} s/scene")
    if args.sweep_oracle:
        print(f"the sweep with each pixel's plane chosen by the ground truth (diagnostic): PSNR {summary['oracle_psnr']:.2f}")
    ref = summary["nearest_view"]
    print(f"nearest input view (reference): PSNR {ref['psnr']:.2f} SSIM {ref['ssim']:.4f} LPIPS({args.lpips_net}) {ref['lpips']:.4f}")
    print(f"wrote {args.out}/summary.json, per_view.csv" + ("" if args.no_images else ", images/"))
    return 0
