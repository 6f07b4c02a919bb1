"""`nvs demo`: the main job end to end on built-in data, with nothing downloaded.

The package ships a small LaCT renderer trained by this project on procedural objects
(nvs/assets/demo_lact.safetensors, see MODEL_CARD.md). The demo generates held-out scenes from
seeds never used in training, memorises each from its input views, renders held-out views and an
orbit video, and compares with two references computed in the same run: the nearest input view
(by camera distance) and the same architecture untrained.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nvs.camera_paths import orbit_path
from nvs.datasets.procedural import object_scene
from nvs.evaluate import nearest_view
from nvs.media import image_grid, save_image, save_video
from nvs.metrics import all_metrics
from nvs.models import build_renderer, load_renderer

DEMO_CHECKPOINT = Path(__file__).parent / "assets" / "demo_lact.safetensors"
HELD_OUT_SEED = 900_000_000  # training used seeds 0 .. 1e6 + 3 and validation 5e7 .. 5e7 + 16
DEMO_SIZE = 128  # the shipped model's image size (16x16 patches: 8x8 tokens per view)


def _mean(scores: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    return {k: float(torch.cat([s[k] for s in scores]).mean()) for k in scores[0]}


def run_demo(out: Path, scenes: int = 8, input_views: int = 8, target_views: int = 4, size: int = DEMO_SIZE,
             checkpoint: Path = DEMO_CHECKPOINT) -> dict:
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    model = load_renderer(checkpoint)
    torch.manual_seed(0)
    untrained = build_renderer(model.config).eval()
    results = {"model": [], "nearest_view": [], "untrained": []}
    grid_rows = []
    first = None
    for i in tqdm(range(scenes), desc="demo scenes", unit="scene"):
        scene = object_scene(HELD_OUT_SEED + i, input_views + target_views, size, size)
        inputs, in_cams = scene.images[:input_views], scene.cameras[:input_views]
        targets, tg_cams = scene.images[input_views:], scene.cameras[input_views:]
        with torch.no_grad():
            state = model.memorize(inputs[None], in_cams.unsqueeze(0))
            pred = model.render(state, tg_cams.unsqueeze(0))[0]
            base = untrained(inputs[None], in_cams.unsqueeze(0), tg_cams.unsqueeze(0))[0]
        results["model"].append(all_metrics(pred, targets))
        results["nearest_view"].append(all_metrics(nearest_view(inputs, in_cams, tg_cams), targets))
        results["untrained"].append(all_metrics(base, targets))
        if i < 3:
            grid_rows += [[*inputs[:target_views]], [*targets], [*pred]]
        if first is None:
            first = (state, in_cams)
    state, in_cams = first
    orbit = orbit_path(in_cams, frames=60)
    with torch.no_grad():
        frames = torch.cat([model.render(state, orbit[j : j + 12].unsqueeze(0))[0] for j in range(0, 60, 12)])
    save_video(frames, out / "orbit.mp4", fps=24)
    save_image(image_grid(grid_rows), out / "grid.png")
    metrics = {
        "scenes": scenes,
        "input_views": input_views,
        "target_views": target_views,
        "size": [size, size],
        "checkpoint": str(checkpoint),
        "seconds": round(time.time() - t_start, 2),
        **{name: _mean(scores) for name, scores in results.items()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
