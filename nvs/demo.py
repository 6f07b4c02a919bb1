"""`nvs demo`: the main job end to end on built-in data, with nothing downloaded.

Until a trained model ships with the package, the demo fits a tiny LaCT renderer to one
procedural object scene for a fixed time budget, then renders views it never trained on and an
orbit video. It prints and records how the renders compare with two references computed in the
same run: the nearest input view, and the same renderer before fitting.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nvs.camera_paths import orbit_path
from nvs.cameras import Cameras
from nvs.datasets.procedural import object_scene
from nvs.media import image_grid, save_image, save_video
from nvs.metrics import psnr
from nvs.models import LaCTRenderer, ModelConfig

DEMO_CONFIG = ModelConfig(patch_size=8, dim=96, layers=3, attn_head_dim=32, ttt_head_dim=48, ttt_inter_multi=2.0)


def nearest_view(inputs: torch.Tensor, in_cams: Cameras, tg_cams: Cameras) -> torch.Tensor:
    """For each target camera, the input image whose camera centre is closest. [T, 3, H, W]."""
    idx = torch.cdist(tg_cams.centers.float(), in_cams.centers.float()).argmin(-1)
    return inputs[idx]


def run_demo(out: Path, seconds: float = 45.0, size: int = 64, input_views: int = 8, seed: int = 7) -> dict:
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    scene = object_scene(seed=90_000 + seed, views=input_views + 16 + 4, height=size, width=size)
    idx_in = torch.arange(input_views)
    idx_train = torch.arange(input_views, input_views + 16)
    idx_held = torch.arange(input_views + 16, input_views + 20)
    imgs, cams = scene.images, scene.cameras
    inputs, in_cams = imgs[idx_in][None], cams[idx_in].unsqueeze(0)
    held, held_cams = imgs[idx_held], cams[idx_held]

    model = LaCTRenderer(DEMO_CONFIG)
    with torch.no_grad():
        untrained = model(inputs, in_cams, held_cams.unsqueeze(0))[0]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    steps = 0
    fit_start = time.time()
    with tqdm(desc="fitting the demo renderer", unit="step", total=int(seconds), bar_format="{l_bar}{bar}| {n:.0f}/{total}s {postfix}") as bar:
        while time.time() - fit_start < seconds:
            pick = idx_train[torch.randperm(len(idx_train))[:4]]
            pred = model(inputs, in_cams, cams[pick].unsqueeze(0))
            loss = torch.nn.functional.mse_loss(pred[0], imgs[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            bar.n = min(time.time() - fit_start, seconds)
            bar.set_postfix(loss=f"{loss.item():.4f}", steps=steps)
            bar.refresh()
    model.eval()
    with torch.no_grad():
        state = model.memorize(inputs, in_cams)
        pred = model.render(state, held_cams.unsqueeze(0))[0]
        orbit = orbit_path(cams[idx_in], frames=48)
        frames = torch.cat([model.render(state, orbit[i : i + 8].unsqueeze(0))[0] for i in range(0, 48, 8)])
    near = nearest_view(imgs[idx_in], cams[idx_in], held_cams)
    metrics = {
        "what": "a tiny LaCT renderer fitted for a fixed time to ONE procedural scene, evaluated on 4 views it never trained on",
        "scenes": 1,
        "input_views": input_views,
        "fit_steps": steps,
        "seconds": round(time.time() - t_start, 2),
        "model": {"psnr": psnr(pred, held).mean().item()},
        "nearest_view": {"psnr": psnr(near, held).mean().item()},
        "untrained": {"psnr": psnr(untrained, held).mean().item()},
    }
    save_image(image_grid([[*imgs[idx_in][:4]], [*held], [*pred]]), out / "grid.png")
    save_video(frames, out / "orbit.mp4", fps=24)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
