"""`nvs bench`: benchmarks that print a table and write DIR/<name>.json (a list of rows)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from nvs.datasets.procedural import generate_scene


def bench_generator(out: Path, kinds=("object", "room"), views: int = 8, size: int = 128, scenes: int = 10) -> list[dict]:
    """Procedural views per second at size x size (rooms at 16:9 with the same height)."""
    rows = []
    for kind in kinds:
        width = size if kind == "object" else size * 16 // 9 // 8 * 8
        generate_scene(kind, 0, 2, size, width)  # warm-up
        t0 = time.perf_counter()
        for seed in range(1, scenes + 1):
            generate_scene(kind, seed, views, size, width)
        seconds = time.perf_counter() - t0
        rows.append({"kind": kind, "height": size, "width": width, "views": views * scenes, "seconds": round(seconds, 3),
                     "views_per_second": round(views * scenes / seconds, 1), "threads": torch.get_num_threads()})
    _report("generator", rows, out)
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
    from nvs.media import save_images
    from nvs.pose_metrics import aligned_pose_errors
    from nvs.reconstruct import ReconstructOptions, reconstruct

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
    _report("reconstruct", rows, out)
    return rows


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"


def _report(name: str, rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))
    print(f"machine: {machine()}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    print(f"wrote {out / (name + '.json')}")
