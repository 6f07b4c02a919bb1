"""`nvs eval`: memorise each scene's input views once, render its targets, score every view.

Outputs in DIR: summary.json (mean/std per metric, ``psnr_pooled`` - the official script's PSNR of
the MSE pooled over each scene's target views -, counts, checkpoint, data, protocol, timings),
per_view.csv, and images/<scene>/<view>.png (ground truth | prediction).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from tqdm import tqdm

from nvs.cameras import Cameras
from nvs.inference import framing_zoom, memorize_views, render_cameras
from nvs.io.media import image_grid, save_image
from nvs.evaluation.metrics import all_metrics, psnr


def nearest_view(inputs: torch.Tensor, in_cams: Cameras, tg_cams: Cameras) -> torch.Tensor:
    """For each target camera, the input image whose camera centre is closest. [T, 3, H, W]."""
    idx = torch.cdist(tg_cams.centers.float(), in_cams.centers.float()).argmin(-1)
    return inputs[idx]


def jitter_exposure(images: torch.Tensor, amount: float, seed: int) -> torch.Tensor:
    """images [V, 3, H, W] in [0, 1], each view's channels multiplied by its own gain drawn
    uniformly from [1 - amount, 1 + amount] (a generator seeded by ``seed``), clipped: photos
    metered one by one, as a camera's auto exposure and white balance take them."""
    generator = torch.Generator().manual_seed(seed)
    gains = 1.0 + amount * (2.0 * torch.rand(images.shape[0], 3, 1, 1, generator=generator, dtype=torch.float64) - 1.0)
    return (images * gains.to(images)).clamp(0.0, 1.0)


def jitter_poses(c2w: torch.Tensor, degrees: float, seed: int) -> torch.Tensor:
    """c2w [V, 4, 4] (OpenCV camera-to-world), each camera turned about its own centre by an angle
    drawn from a normal of standard deviation ``degrees`` about a uniformly random axis (a generator
    seeded by ``seed``): the orientation error structure from motion leaves. The centres, and so
    the nearest input view of each target, stay as they are."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(c2w.shape[0], 3, generator=generator, dtype=torch.float64), dim=-1)
    angles = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64)) * torch.randn(c2w.shape[0], 1, generator=generator,
                                                                                      dtype=torch.float64)
    turned = c2w.clone()
    turned[:, :3, :3] = c2w[:, :3, :3] @ axis_angle_to_rotation_matrix(axes * angles).to(c2w)
    return turned


def pooled_psnr(rows: list[dict]) -> dict:
    """The official LaCT inference's number: per scene, the PSNR of the MSE pooled over all its
    target views (every pixel and channel alike, views of one size), then mean/std over scenes.
    Per-view MSEs are recovered exactly from the per-view PSNRs (-10 log10 MSE on [0, 1])."""
    per_scene: dict[str, list[float]] = {}
    for r in rows:
        per_scene.setdefault(r["scene"], []).append(10.0 ** (-r["psnr"] / 10.0))
    values = {scene: -10.0 * math.log10(statistics.fmean(mses)) for scene, mses in per_scene.items()}
    return {"mean": statistics.fmean(values.values()), "std": statistics.pstdev(values.values()), "per_scene": values}


@dataclass
class EvalScene:
    """One scene to evaluate: inputs [V, 3, H, W] with cameras [V], targets [T, 3, H, W] with cameras [T]."""

    name: str
    inputs: torch.Tensor
    input_cams: Cameras
    targets: torch.Tensor
    target_cams: Cameras


def evaluate(model, scenes: Iterator[EvalScene], out: Path, meta: dict, lpips_net: str = "vgg",
             save_images: bool = True, total: int | None = None,
             adapt: Callable[[torch.Tensor, Cameras], torch.nn.Module] | None = None,
             oracle: Callable[[EvalScene], torch.Tensor] | None = None) -> dict:
    """Score ``model`` on every scene. ``adapt(inputs [V, 3, H, W], input_cams [V]) -> model``, when
    given, makes a model per scene from its input views alone (test-time adaptation).
    ``oracle(scene) -> [T, 3, H, W]``, when given, is scored too (PSNR, as ``oracle_psnr``): a
    diagnostic that may see the targets (:mod:`nvs.evaluation.sweep_oracle`)."""
    out.mkdir(parents=True, exist_ok=True)
    adapt_s = 0.0
    rows: list[dict] = []
    memorize_s, render_s, rendered = 0.0, 0.0, 0
    scene_count, zooms = 0, []
    for scene in tqdm(scenes, total=total, desc="eval", unit="scene"):
        if scene.targets.shape[0] == 0:
            raise ValueError(f"scene {scene.name}: no target views to evaluate")
        try:
            if scene_count == 0:  # untimed: one-off costs (kernel compilation, allocator growth) are not per scene
                render_cameras(model, memorize_views(model, scene.inputs, scene.input_cams)[0], scene.target_cams)
            scene_model = model
            if adapt is not None:
                start = time.perf_counter()
                scene_model = adapt(scene.inputs, scene.input_cams)
                adapt_s += time.perf_counter() - start
            state, seconds = memorize_views(scene_model, scene.inputs, scene.input_cams)
            pred, render_seconds = render_cameras(scene_model, state, scene.target_cams, chunk=scene.target_cams.shape[0])
        except ValueError as exc:  # anything refused on this scene (a broken render, bad inputs): name the scene
            raise ValueError(f"scene {scene.name}: {exc}") from None
        memorize_s += seconds
        render_s += render_seconds
        zooms.append(framing_zoom(state))
        rendered += pred.shape[0]
        scene_count += 1
        scores = all_metrics(pred, scene.targets, lpips_net)
        reference = all_metrics(nearest_view(scene.inputs, scene.input_cams, scene.target_cams), scene.targets, lpips_net)
        oracle_psnr = psnr(oracle(scene).clamp(0, 1), scene.targets) if oracle is not None else None
        for i in range(pred.shape[0]):
            rows.append({"scene": scene.name, "view": i, **{k: float(v[i]) for k, v in scores.items()},
                         **{f"nearest_{k}": float(v[i]) for k, v in reference.items()}})
            if oracle_psnr is not None:
                rows[-1]["oracle_psnr"] = float(oracle_psnr[i])
            if save_images:
                save_image(image_grid([[scene.targets[i], pred[i]]]), out / "images" / scene.name / f"{i:03d}.png")
    if not rows:
        raise ValueError("the data set holds no scenes to evaluate")
    with open(out / "per_view.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {**meta, "scenes": scene_count, "views": len(rows)}
    for key in ("psnr", "ssim", "lpips"):
        values = [r[key] for r in rows]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}
    summary["psnr_pooled"] = pooled_psnr(rows)
    # object framing (model config frame_extent): how many scenes it zoomed out, and how far at most
    summary["framed_scenes"] = sum(zoom < 1.0 for zoom in zooms)
    summary["least_framing_zoom"] = min(zooms)
    # reference: the input view whose camera is nearest each target, scored the same way
    summary["nearest_view"] = {key: statistics.fmean(r[f"nearest_{key}"] for r in rows) for key in ("psnr", "ssim", "lpips")}
    if oracle is not None:
        summary["oracle_psnr"] = statistics.fmean(r["oracle_psnr"] for r in rows)
    summary["lpips_net"] = lpips_net
    summary["seconds_per_scene_memorize"] = memorize_s / scene_count
    summary["seconds_per_view_render"] = render_s / rendered
    if adapt is not None:
        summary["adapt_seconds_per_scene"] = adapt_s / scene_count
    summary["renders_per_second"] = rendered / max(render_s, 1e-9)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
