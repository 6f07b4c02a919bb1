"""`nvs render`: memorise a scene once, render every frame of a camera path from the SceneState."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from nvs.geometry.camera_paths import make_path
from nvs.datasets.formats import load_views, read_any_scene
from nvs.datasets.views import spread_order
from nvs.inference import DEVICE_HELP, add_inference_arguments, configure_inference, memorize_views, render_cameras, resolve_device
from nvs.io.media import save_video
from nvs.models import load_renderer


def render_path(checkpoint: Path, scene: Path, path: str, frames: int, fps: float | None, out: Path,
                views: int, size: tuple[int, int], scene_index: int = 0, chunk: int = 8, device: str = "auto",
                memory_budget: str | int | None = "auto", dtype: str = "fp32") -> dict:
    device = resolve_device(device)
    model = load_renderer(checkpoint, device=device)
    configure_inference(model, memory_budget, dtype)
    record = read_any_scene(scene, scene_index)
    n = record.cameras.shape[0]
    chosen = spread_order(n, min(views, n))[: min(views, n)].tolist()
    images, cams = load_views(record, chosen, *size)
    path_cams, path_fps = make_path(path, cams, frames)
    if (path_cams.height, path_cams.width) != size:
        path_cams = path_cams.resize(*size)
    fps = fps or path_fps or 24.0
    state, memorize_s = memorize_views(model, images, cams)
    video, render_s = render_cameras(model, state, path_cams, chunk=chunk)
    save_video(video, out, fps=fps)
    summary = {"checkpoint": str(checkpoint), "scene": record.name, "input_views": chosen, "path": path,
               "frames": int(video.shape[0]), "fps": fps, "size": list(size), "output": str(out),
               "device": str(device), "dtype": dtype, "memorize_s": memorize_s, "render_s_per_frame": render_s / video.shape[0]}
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2))
    return summary


def add_parser(sub) -> None:
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
    add_inference_arguments(p)
    p.add_argument("--out", required=True, help="video.mp4, video.gif, or a folder for PNG frames")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    s = render_path(Path(args.checkpoint), Path(args.scene), args.path, args.frames, args.fps, Path(args.out),
                    args.views, tuple(args.size), args.scene_index, device=args.device,
                    memory_budget=args.memory_budget, dtype=args.dtype)
    print(f"rendered {s['frames']} frames of scene {s['scene']} at {s['fps']} fps to {args.out} "
          f"(memorise {s['memorize_s']:.2f} s, {s['render_s_per_frame'] * 1000:.1f} ms/frame); summary {args.out}.json")
    return 0
