"""`nvs adapt`: adapt a renderer to one scene on its own input views, save the adapter.

Also holds the ``--adapt`` options that `nvs eval` and `nvs render` share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nvs.adaptation.adapter import PARTS
from nvs.commands import argtypes as T
from nvs.adaptation.search import AdaptOptions, AdaptResult, adapt, unkept_frame_note
from nvs.inference import RENDERER_HELP
from nvs.progress import StageProgress

DEFAULT_BUDGET_S = AdaptOptions.budget_s


def add_adapt_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """Options of the adaptation; ``prefix`` ('adapt-') for commands where adapting is optional."""
    p.add_argument(f"--{prefix}budget", type=T.positive_float(86_400), default=DEFAULT_BUDGET_S, dest="adapt_budget",
                   help=f"seconds of adaptation per scene (default {DEFAULT_BUDGET_S:g})")
    p.add_argument(f"--{prefix}steps", type=T.positive_int(1_000_000), dest="adapt_steps",
                   help="stop after this many training steps (a reproducible run, given a budget that reaches it)")
    p.add_argument(f"--{prefix}parts", nargs="+", choices=PARTS, default=list(AdaptOptions.parts), dest="adapt_parts",
                   help="what is trained (default: %(default)s)")
    p.add_argument(f"--{prefix}verifier-views", type=T.positive_int(64), default=AdaptOptions.verifier_views, dest="adapt_verifier_views",
                   help="input views held out to choose the training step (and the scene frame)")
    p.add_argument(f"--{prefix}confirm-views", type=T.nonneg_int(64), default=AdaptOptions.confirm_views, dest="adapt_confirm_views",
                   help="further input views held out to confirm the chosen result once; 0 trusts the verifier alone "
                        "(default %(default)s)")
    p.add_argument(f"--{prefix}seed", type=T.nonneg_int(2**31 - 1), default=0, dest="adapt_seed")


def options_from_args(args: argparse.Namespace) -> AdaptOptions:
    return AdaptOptions(budget_s=args.adapt_budget, max_steps=args.adapt_steps, parts=tuple(args.adapt_parts),
                        verifier_views=args.adapt_verifier_views, confirm_views=args.adapt_confirm_views, seed=args.adapt_seed)


def describe(result: AdaptResult) -> str:
    """A short account of an adaptation: the verifier's before/after, what was kept, the curve."""
    head = (f"verifier PSNR {result.base_verifier_psnr:.2f} -> {result.best_verifier_psnr:.2f} dB after {result.steps} steps "
            f"in {result.seconds:.1f} s; ")
    if result.fallback:
        note = unkept_frame_note(result.adapter.frame.name, result.searched_frame)
        head += f"{result.fallback_reason}: the unadapted model is kept{note}"
    else:
        head += (f"kept step {result.adapter.info.get('step', 0)}, frame '{result.adapter.frame.name}', "
                 f"augmentations {'+'.join(result.augmentations) or 'none'}, {result.adapter.num_values()} adapter values")
    if result.confirm_psnr is not None:
        head += f"\nconfirmation views PSNR {result.base_confirm_psnr:.2f} -> {result.confirm_psnr:.2f} dB"
    curve = ", ".join(f"{c['step']}:{c['psnr']:.2f}" for c in result.curve if c["phase"] != "confirm")
    return f"{head}\nverifier curve (step:PSNR, phases in the JSON): {curve}"


def add_parser(sub) -> None:
    p = sub.add_parser("adapt", help="adapt a renderer to one scene on its input views (saves a small adapter)")
    p.add_argument("--checkpoint", default="auto", help=RENDERER_HELP)
    p.add_argument("--scene", required=True, help="data set folder/index, opencv_cameras.json, transforms.json, "
                                                 "an LVSM scene JSON or a Middlebury *_par.txt")
    p.add_argument("--scene-index", type=T.nonneg_int(10**9), default=0, help="which scene of a data set")
    p.add_argument("--views", type=T.positive_int(4096), default=8, help="input views (evenly spaced over the scene)")
    p.add_argument("--size", type=T.positive_int(8192), nargs=2, metavar=("H", "W"), default=[128, 128])
    p.add_argument("--object-frame", action="store_true",
                   help="move the cameras into the object frame first (as the viewer does)")
    add_adapt_options(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="adapter .safetensors (a JSON report is written beside it)")
    p.set_defaults(func=run)


def load_scene_inputs(scene: Path, scene_index: int, views: int, size, object_frame: bool = False):
    """Input images [K, 3, H, W] and cameras [K] of a scene, evenly spaced over its views."""
    from nvs.datasets.formats import load_views, read_any_scene
    from nvs.datasets.views import spread_order

    record = read_any_scene(scene, scene_index)
    n = record.cameras.shape[0]
    chosen = spread_order(n, min(views, n))[: min(views, n)].tolist()
    images, cams = load_views(record, chosen, *size)
    if object_frame:
        from nvs.geometry.scene_normalization import fitted_frame

        cams = fitted_frame("object", cams)(cams)
    return record.name, chosen, images, cams


def run(args: argparse.Namespace) -> int:
    from nvs.inference import capture_warning, choose_checkpoint, renderer_frame, resolve_device
    from nvs.models import load_renderer

    name, chosen, images, cams = load_scene_inputs(Path(args.scene), args.scene_index, args.views, tuple(args.size),
                                                   args.object_frame)
    checkpoint, why = choose_checkpoint(args.checkpoint, cams, images)
    print(f"renderer: {checkpoint.name} ({why})")
    model = load_renderer(checkpoint, device=resolve_device(args.device))
    warning = capture_warning(model, cams, images)
    if warning:
        print(f"warning: {warning}")
    if not args.object_frame:
        cams = renderer_frame(model, cams)(cams)
    with StageProgress() as bar:
        result = adapt(model, images, cams, options_from_args(args), progress=bar)
    out = result.adapter.save(args.out, base_name=checkpoint.name)
    report = {"checkpoint": str(checkpoint), "renderer_choice": why, "capture_warning": warning, "scene": name, "input_views": chosen, "size": list(args.size),
              "object_frame": args.object_frame, **result.summary()}
    Path(str(out) + ".json").write_text(json.dumps(report, indent=2))
    print(describe(result))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB) and {out}.json")
    return 0
