"""`nvs render`: memorise a scene once, render every frame of a camera path from the SceneState."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nvs.camera_paths import make_path
from nvs.datasets.formats import SceneRecord, list_scenes, load_views, read_lact_scene, read_lvsm_scene, read_scene
from nvs.datasets.nerfstudio import read_nerfstudio_scene
from nvs.datasets.views import spread_order
from nvs.devices import resolve_device, synchronize
from nvs.media import save_video
from nvs.models import load_renderer


def read_any_scene(path: Path, scene_index: int = 0) -> SceneRecord:
    """A scene from a data set folder/index (``scene_index``-th scene) or a single scene file."""
    if path.is_file() and path.name == "opencv_cameras.json":
        return read_lact_scene(path)
    if path.is_file() and path.name == "transforms.json":
        return read_nerfstudio_scene(path)
    if path.is_file() and path.suffix == ".json" and path.name != "index.json":
        return read_lvsm_scene(path)
    fmt, files = list_scenes(path)
    if not 0 <= scene_index < len(files):
        raise ValueError(f"{path}: scene {scene_index} requested, the data set has {len(files)}")
    return read_scene(fmt, files[scene_index])


def render_path(checkpoint: Path, scene: Path, path: str, frames: int, fps: float | None, out: Path,
                views: int, size: tuple[int, int], scene_index: int = 0, chunk: int = 8, device: str = "auto") -> dict:
    device = resolve_device(device)
    model = load_renderer(checkpoint, device=device)
    record = read_any_scene(scene, scene_index)
    n = record.cameras.shape[0]
    chosen = spread_order(n, min(views, n))[: min(views, n)].tolist()
    images, cams = load_views(record, chosen, *size)
    path_cams, path_fps = make_path(path, cams, frames)
    if (path_cams.height, path_cams.width) != size:
        path_cams = path_cams.resize(*size)
    fps = fps or path_fps or 24.0
    t0 = time.perf_counter()
    with torch.no_grad():
        state = model.memorize(images[None].to(device), cams.unsqueeze(0).to(device))
        synchronize(device)
        t1 = time.perf_counter()
        rendered = [model.render(state, path_cams[i : i + chunk].unsqueeze(0).to(device))[0].cpu()
                    for i in tqdm(range(0, path_cams.shape[0], chunk), desc="render", unit="chunk")]
    t2 = time.perf_counter()
    video = torch.cat(rendered)
    save_video(video, out, fps=fps)
    summary = {"checkpoint": str(checkpoint), "scene": record.name, "input_views": chosen, "path": path,
               "frames": int(video.shape[0]), "fps": fps, "size": list(size), "output": str(out),
               "device": str(device), "memorize_s": t1 - t0, "render_s_per_frame": (t2 - t1) / video.shape[0]}
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2))
    return summary
