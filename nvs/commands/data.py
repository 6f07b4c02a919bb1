"""`nvs data synth` (write a procedural or asset-rendered data set in a real format) and `nvs data info`
(validate one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from nvs.datasets.formats import FORMATS, list_scenes, load_views, read_scene, write_dataset
from nvs.datasets.procedural import OBJECT_FOV_DEG, SCENE_KINDS, generate_scene
from nvs.commands import argtypes as T


def synth(kind: str, scenes: int, views: int, height: int, width: int, fmt: str, out: Path, seed: int,
          split: str = "train", workers: int = 1, meshes: Path | None = None, up: str = "y",
          elevations: tuple[float, float] = (0.0, 60.0), backdrop: float = 1.0, fov: float = OBJECT_FOV_DEG,
          fit: str = "sphere") -> dict:
    """Procedural kinds (object, room), asset kinds (furniture, furnished-room: rendered from
    the models of ``split`` in ``workers`` processes, resumable in the lact format, with
    attribution.json) or ``meshes``: the models of the folder ``meshes``, ``up`` their up axis,
    scaled by ``fit`` (:data:`nvs.datasets.asset_scenes.FITS`), seen from ``elevations`` (degrees)
    with a ``fov`` lens (degrees across the width) on a grey ``backdrop`` (1: white)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if (kind == "meshes") != (meshes is not None):
        raise ValueError("--meshes DIR goes with --kind meshes, and --kind meshes needs it")
    if kind == "meshes" and split != "train":
        raise ValueError("--split does not apply to --kind meshes: every model of the folder is used")
    if not -90 < elevations[0] <= elevations[1] < 90:
        raise ValueError(f"--elevations must be LOW HIGH with -90 < LOW <= HIGH < 90 degrees, got {list(elevations)}")
    if kind not in ("meshes", "furniture") and tuple(elevations) != (0.0, 60.0):
        raise ValueError("--elevations applies to --kind furniture and meshes")
    if kind not in ("meshes", "furniture") and backdrop != 1.0:
        raise ValueError("--backdrop applies to --kind furniture and meshes")
    if kind not in ("meshes", "furniture") and fov != OBJECT_FOV_DEG:
        raise ValueError("--fov applies to --kind furniture and meshes")
    if kind not in ("meshes", "furniture") and fit != "sphere":
        raise ValueError("--fit applies to --kind furniture and meshes")
    from nvs.datasets.asset_scenes import ASSET_KINDS, unavailable_reason

    if kind == "meshes":
        from nvs.datasets import mesh_render
        from nvs.datasets.asset_dataset import write_mesh_dataset

        reason = mesh_render.unavailable_reason()
        if reason is not None:
            raise ValueError(f"cannot render meshes: {reason}")
        summary = write_mesh_dataset(out, meshes, scenes, views, height, width, seed, fmt, up, tuple(elevations),
                                     log=lambda m: tqdm.write(m), backdrop=backdrop, fov_deg=fov, fit=fit)
    elif kind in ASSET_KINDS:
        reason = unavailable_reason()
        if reason is not None:
            raise ValueError(f"cannot render {kind} scenes: {reason}")
        from nvs.datasets.asset_dataset import write_asset_dataset

        summary = write_asset_dataset(out, kind, split, scenes, views, height, width, seed, fmt,
                                      log=lambda m: tqdm.write(m), workers=workers, elevation_deg=tuple(elevations),
                                      backdrop=backdrop, fov_deg=fov, fit=fit)
    if kind == "meshes" or kind in ASSET_KINDS:
        return {**summary, "index": str(Path(out) / "index.json") if fmt == "lact" else summary.get("index", str(out))}
    records = []
    for i in tqdm(range(scenes), desc=f"synth {kind}", unit="scene"):
        s = generate_scene(kind, seed + i, views, height, width)
        records.append((f"{kind}_{seed + i:07d}", s.images, s.cameras))
    index = write_dataset(out, fmt, records)
    summary = {"kind": kind, "format": fmt, "scenes": scenes, "views": views, "height": height, "width": width,
               "seed": seed, "index": str(index)}
    (Path(out) / "synth.json").write_text(json.dumps(summary, indent=2))
    return summary


def info(path: Path) -> dict:
    """Read and validate every scene, decoding every image (a scene is invalid when one is corrupt
    or not the size its camera says); summarise views, resolutions and camera statistics."""
    fmt, files = list_scenes(path)
    views, sizes, dist, focal, problems = [], {}, [], [], []
    for f in tqdm(files, desc="checking scenes", unit="scene"):
        try:
            rec = read_scene(fmt, f)
            for i in range(rec.cameras.shape[0]):  # one at a time: memory of one image
                load_views(rec, [i])
        except ValueError as exc:
            problems.append(str(exc))
            continue
        views.append(rec.cameras.shape[0])
        key = f"{rec.cameras.height}x{rec.cameras.width}"
        sizes[key] = sizes.get(key, 0) + 1
        centers = rec.cameras.centers.double()
        dist.append(float((centers - centers.mean(0)).norm(dim=-1).mean()))
        focal.append(float(rec.cameras.intrinsics[:, 0].mean()))
    stats = lambda xs: {"min": min(xs), "mean": sum(xs) / len(xs), "max": max(xs)} if xs else None  # noqa: E731
    return {"path": str(path), "format": fmt, "scenes": len(files), "valid_scenes": len(views), "invalid_scenes": len(problems),
            "views_per_scene": stats(views), "resolutions": sizes, "camera_spread": stats(dist), "focal_px": stats(focal),
            "problems": problems[:20]}


def add_parser(sub) -> None:
    from nvs.datasets.asset_scenes import ASSET_KINDS, FITS

    data = sub.add_parser("data", help="write procedural data sets, inspect data sets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synth", help="generate a procedural or asset-rendered data set in a real format")
    p.add_argument("--kind", choices=[*SCENE_KINDS, *ASSET_KINDS, "meshes"], default="object",
                   help="object/room: procedural primitives; furniture (one model on white), furnished-room "
                        "(a walk through a furnished room), furnished-orbit (a ring around a piece in a furnished "
                        "room): rendered from Debian's sweethome3d-furniture models (`make assets`); meshes: your "
                        "own textured OBJ models (--meshes), rendered as furniture is; lact-format runs of several "
                        "kinds may write into one folder")
    p.add_argument("--meshes", type=Path, help="--kind meshes: a folder with one OBJ model (and its MTL and "
                   "textures) per sub-folder, or OBJ files side by side, and optionally attribution.json "
                   "({model: {creator, licence, source}})")
    p.add_argument("--up", choices=["y", "z"], default="y",
                   help="--kind meshes: the models' up axis (y: the OBJ and glTF convention; z: Google Scanned Objects)")
    p.add_argument("--elevations", type=T.finite_float(-90, 90), nargs=2, metavar=("LOW", "HIGH"), default=[0.0, 60.0],
                   help="--kind furniture and meshes: the cameras' elevations in degrees (default 0 60)")
    p.add_argument("--backdrop", type=T.finite_float(0, 1), default=1.0, metavar="GREY",
                   help="--kind furniture and meshes: the grey level behind the object (default 1: white)")
    p.add_argument("--fov", type=T.finite_float(5, 90), default=OBJECT_FOV_DEG, metavar="DEG",
                   help="--kind furniture and meshes: the cameras' field of view across the width, in degrees "
                        "(default 50, the object renderer's training lens); the cameras stand as far away as keeps the "
                        "object's size in the frame")
    p.add_argument("--fit", choices=list(FITS), default="sphere",
                   help="--kind furniture and meshes: how the model is scaled, " + "; ".join(f"{k}: {v}" for k, v in FITS.items())
                        + " (default sphere, the object renderer's training data; cube draws it up to 1.7 times larger, "
                        "cut by the frame where it reaches past it)")
    p.add_argument("--split", choices=["train", "val"], default="train",
                   help="asset kinds: the models to use (val: the fixed held-out 10%%)")
    p.add_argument("--scenes", type=T.positive_int(), default=10)
    p.add_argument("--views", type=T.positive_int(4096), default=12)
    p.add_argument("--size", type=T.image_side, nargs=2, metavar=("H", "W"), default=[128, 128])
    p.add_argument("--format", choices=list(FORMATS), default="lact")
    p.add_argument("--seed", type=T.seed, default=0)
    p.add_argument("--workers", type=T.workers, default=T.default_workers(),
                   help="furniture and rooms: processes rendering scenes (default: one per core; "
                        "--kind meshes renders in this process)")
    p.add_argument("--out", type=T.out_dir, required=True)
    p.set_defaults(func=run_synth)
    p = data.add_parser("info", help="validate a data set and print what it holds (exit 1 if any scene is invalid)")
    p.add_argument("path", help="data set folder or its index file")
    p.set_defaults(func=run_info)


def run_synth(args: argparse.Namespace) -> int:
    summary = synth(args.kind, args.scenes, args.views, args.size[0], args.size[1], args.format, Path(args.out), args.seed,
                    args.split, args.workers, args.meshes, args.up, tuple(args.elevations), args.backdrop, args.fov,
                    args.fit)
    print(f"wrote {summary['scenes']} {args.kind} scenes x {args.views} views ({args.format}) to {args.out}: {summary['index']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    report = info(Path(args.path))
    print(json.dumps(report, indent=2))
    return 0 if report["invalid_scenes"] == 0 else 1
