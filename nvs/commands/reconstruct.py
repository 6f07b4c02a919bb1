"""`nvs reconstruct`: pose a photo folder, photo files, a zip or a video with COLMAP into a scene folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from nvs.progress import StageProgress
from nvs.reconstruction.sfm import ReconstructOptions, reconstruct
from nvs.commands import argtypes as T


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="pose a photo set, zip or video with COLMAP (SfM) into a scene folder")
    p.add_argument("inputs", nargs="+", help="a folder of photos, photo files, a zip, or one video")
    p.add_argument("--out", type=T.out_dir, required=True, help="scene folder to write (opencv_cameras.json, images/, report.json)")
    p.add_argument("--max-size", type=T.int_range(64, 16384), default=1024, help="long side of the photos used for matching and written out")
    p.add_argument("--camera-model", default="SIMPLE_RADIAL", help="SIMPLE_PINHOLE | PINHOLE | SIMPLE_RADIAL | RADIAL | OPENCV")
    p.add_argument("--per-image-camera", action="store_true", help="one camera per photo (mixed devices or zoom)")
    p.add_argument("--matcher", default="auto", help="auto (sequential for videos) | exhaustive | sequential")
    p.add_argument("--frames", type=T.int_range(2, 10_000), default=40, help="frames sampled evenly from a video")
    p.add_argument("--no-retry", action="store_true", help="do not retry with relaxed settings when photos are left out")
    p.add_argument("--seed", type=T.seed, default=0)
    p.add_argument("--threads", type=T.threads, default=1,
                   help="COLMAP threads: 1 (default) gives the same poses for the same seed; -1 uses every core, "
                        "faster on large photo sets but varies from run to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    for warning in r["warnings"]:
        print(f"  warning: {warning}")
    out = r["outputs"]
    print(f"wrote {args.out}/opencv_cameras.json, {out['images']}/, report.json, {out['colmap']}/ "
          f"(render it: nvs render --scene {args.out} ...)")
    return 0
