"""`nvs demo`: the main job end to end on built-in data, with nothing downloaded.

The package ships a small LaCT object renderer trained by this project (nvs/assets/lact_object.safetensors,
see docs/models/lact_object.md). The demo makes held-out scenes (procedural objects from seeds never
trained on and, where the furniture package is installed, renders of furniture models held out
from training), memorises each from its input views, renders held-out views and an orbit video,
and compares with two references computed in the same run: the nearest input view (by camera
distance) and the same architecture untrained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from nvs.assets import OBJECT_CHECKPOINT
from nvs.datasets.procedural import HELDOUT_SEED, Scene, object_scene
from nvs.geometry.camera_paths import orbit_path
from nvs.evaluation.evaluate import nearest_view
from nvs.io.media import image_grid, save_image, save_video
from nvs.evaluation.metrics import all_metrics
from nvs.inference import memorize_views, render_cameras
from nvs.models import build_renderer, load_renderer
from nvs.commands import argtypes as T

DEMO_SIZE = 128  # the shipped model's image size (16x16 patches: 8x8 tokens per view)


def _mean(scores: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    return {k: float(torch.cat([s[k] for s in scores]).mean()) for k in scores[0]}


def demo_sets(size: int) -> tuple[dict[str, Callable[[int, int], Scene]], list[str]]:
    """The held-out scene sources the demo renders ({name: make(i, views) -> Scene}) and notes on
    the ones it cannot make here: procedural objects (seeds never trained on) and, where Debian's
    furniture package and headless OpenGL are installed (``make assets``), renders of the
    furniture models held out from training."""
    sets: dict[str, Callable[[int, int], Scene]] = {
        "procedural objects": lambda i, views: object_scene(HELDOUT_SEED + i, views, size, size)}
    from nvs.datasets.asset_scenes import generate_asset_scene, unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        sets["furniture models"] = lambda i, views: generate_asset_scene("furniture", i, views, size, size, split="val")
    return sets, ([] if reason is None else [f"furniture models skipped: {reason} (make assets installs them)"])


def run_demo(out: Path, scenes: int = 8, input_views: int = 8, target_views: int = 4, size: int = DEMO_SIZE,
             checkpoint: Path = OBJECT_CHECKPOINT) -> dict:
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    model = load_renderer(checkpoint)
    torch.manual_seed(0)
    untrained = build_renderer(model.config).eval()
    sets, notes = demo_sets(size)
    summary, grid_rows, last = {}, [], None
    for name, make in sets.items():
        results = {"model": [], "nearest_view": [], "untrained": []}
        for i in tqdm(range(scenes), desc=f"demo: {name}", unit="scene"):
            scene = make(i, input_views + target_views)
            inputs, in_cams = scene.images[:input_views], scene.cameras[:input_views]
            targets, tg_cams = scene.images[input_views:], scene.cameras[input_views:]
            state, _ = memorize_views(model, inputs, in_cams)
            pred, _ = render_cameras(model, state, tg_cams)
            with torch.no_grad():
                base = untrained(inputs[None], in_cams.unsqueeze(0), tg_cams.unsqueeze(0))[0]
            results["model"].append(all_metrics(pred, targets))
            results["nearest_view"].append(all_metrics(nearest_view(inputs, in_cams, tg_cams), targets))
            results["untrained"].append(all_metrics(base, targets))
            if i < 2:
                grid_rows += [[*inputs[:target_views]], [*targets], [*pred]]
            if i == 0:
                last = (state, in_cams)  # the orbit video shows the first scene of the last set
        summary[name] = {k: _mean(v) for k, v in results.items()}
    state, in_cams = last
    frames, _ = render_cameras(model, state, orbit_path(in_cams, frames=60), chunk=12)
    save_video(frames, out / "orbit.mp4", fps=24)
    save_image(image_grid(grid_rows), out / "grid.png")
    metrics = {
        "scenes": scenes,
        "input_views": input_views,
        "target_views": target_views,
        "size": [size, size],
        "checkpoint": str(checkpoint),
        "seconds": round(time.time() - t_start, 2),
        "sets": summary,
        "notes": notes,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on built-in held-out scenes (no downloads)")
    p.add_argument("--out", type=T.out_dir, default="outputs/demo", help="output folder")
    p.add_argument("--scenes", type=T.positive_int(10_000), default=8, help="held-out scenes to render")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    m = run_demo(Path(args.out), scenes=args.scenes)
    print(f"\n{m['scenes']} held-out scenes per set, {m['input_views']} input views, {m['target_views']} novel views each "
          f"({m['size'][0]}x{m['size'][1]}), {m['seconds']:.1f} s")
    for set_name, scores in m["sets"].items():
        print(f"\n{set_name:24}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}")
        for name in ("model", "nearest_view", "untrained"):
            r = scores[name]
            print(f"  {name:22}{r['psnr']:8.2f}{r['ssim']:8.3f}{r['lpips']:8.3f}")
    for note in m["notes"]:
        print(f"\n{note}")
    print(f"\nwrote {args.out}/grid.png (rows per scene: inputs | truth | renders), orbit.mp4, metrics.json")
    return 0
