"""Structure from motion with COLMAP (pycolmap): a plain photo set or a video -> a posed scene.

Stages: load and check photos -> SIFT features -> matching (exhaustive, or sequential for video)
-> incremental mapping (models that share photos joined; retried with relaxed settings when photos
are still left out) -> undistortion
to pinhole -> ``SCENE_DIR/{opencv_cameras.json, images/, index.json, report.json, colmap/}``.
The scene is in the LaCT/GS-LRM layout, so ``nvs render`` and ``nvs eval`` read it directly.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nvs.cameras import Cameras
from nvs.io.media import save_images
from nvs.io.outputs import StagedOutput
from nvs.progress import Progress
from nvs.reconstruction.intrinsics_check import radial_strength, reconstruction_warnings
from nvs.reconstruction.join_models import join_into, triangulate_joined
from nvs.reconstruction.photos import PhotoSet, gather_files, load_photos
from nvs.reconstruction.unpinned_photos import drop_weakly_posed

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MATCHERS = ("auto", "exhaustive", "sequential")
MAX_BRIDGES = 3  # rounds of bridge models for photos the first model left out
BRIDGE_ANCHORS = 2  # posed photos added to a bridge per partner of the left-out photos


@dataclass
class ReconstructOptions:
    max_size: int = 1024  # long side of the photos used for matching and written out
    camera_model: str = "SIMPLE_RADIAL"
    single_camera: bool = True  # one shared camera (a single device); off for mixed sources
    matcher: str = "auto"  # auto: sequential for videos, exhaustive otherwise
    frames: int = 40  # frames sampled evenly from a video
    retry: bool = True  # relaxed settings when mapping leaves photos out
    refine_principal_point: bool = True  # in the final bundle adjustment, for a shared camera and 8+ photos
    seed: int = 0
    # COLMAP's threads. With several, the order in which photos enter its database and the order
    # of its RANSAC and bundle adjustment work vary from run to run, and so do the poses (a photo
    # near the registration threshold comes and goes); 1 gives the same result for the same seed.
    # -1: every core, faster on large photo sets.
    threads: int = 1
    max_photos: int | None = None  # refuse more photos than this (after unpacking zips), e.g. in the viewer

    def check(self) -> None:
        if self.camera_model not in CAMERA_MODELS:
            raise ValueError(f"camera model {self.camera_model!r} is not supported; choose one of {CAMERA_MODELS}")
        if self.matcher not in MATCHERS:
            raise ValueError(f"matcher {self.matcher!r} is not supported; choose one of {MATCHERS}")
        if self.threads == 0 or self.threads < -1:
            raise ValueError(f"threads must be a positive number, or -1 for every core; got {self.threads}")
        if self.max_size < 64 or self.frames < 2:
            raise ValueError("max_size must be at least 64 and frames at least 2")


@dataclass
class PosedScene:
    """A reconstructed scene: images (undistorted, one size) and their pinhole cameras [V]."""

    folder: Path
    names: list[str]
    image_paths: list[Path]
    cameras: Cameras
    report: dict = field(default_factory=dict)


@dataclass
class _Attempt:
    label: str
    max_features: int
    peak_threshold: float
    relaxed: bool
    use_exif_focal: bool
    new_features: bool = True  # False: map again from the previous attempt's features and matches


ATTEMPTS = (
    _Attempt("COLMAP defaults", 8192, 0.02 / 3, relaxed=False, use_exif_focal=False),
    _Attempt("relaxed mapping thresholds", 8192, 0.02 / 3, relaxed=True, use_exif_focal=False, new_features=False),
    _Attempt("more features, relaxed matching and mapping, EXIF focal", 16384, 0.004, relaxed=True, use_exif_focal=True),
)


def _exif_focal_px(photos: PhotoSet) -> float | None:
    """Focal length in pixels of the working images from EXIF FocalLengthIn35mmFilm (the median)."""
    values = [p.focal_35mm / 36.0 * max(p.pixels.shape[:2]) for p in photos.photos if p.focal_35mm]
    return float(np.median(values)) if values else None


def _camera_params(model: str, focal: float, h: int, w: int) -> str:
    cx, cy = w / 2, h / 2
    return {"SIMPLE_PINHOLE": f"{focal},{cx},{cy}", "PINHOLE": f"{focal},{focal},{cx},{cy}",
            "SIMPLE_RADIAL": f"{focal},{cx},{cy},0", "RADIAL": f"{focal},{cx},{cy},0,0",
            "OPENCV": f"{focal},{focal},{cx},{cy},0,0,0,0"}[model]


def _run_sfm(work: Path, names: list[str], photos: PhotoSet, opts: ReconstructOptions, attempt: _Attempt,
             sequential: bool, single: bool, timings: dict, progress: Progress, image_dir: Path, known_camera=None,
             previous_db=None):
    import pycolmap

    pycolmap.set_random_seed(opts.seed)
    work.mkdir(parents=True, exist_ok=True)
    if attempt.new_features or previous_db is None:
        db = _features_and_matches(work, image_dir, names, photos, opts, attempt, sequential, single, timings, progress,
                                   known_camera)
    else:
        db = work / "database.db"
        shutil.copy(previous_db, db)
        if known_camera is not None and single:
            database = pycolmap.Database.open(db)
            for camera in database.read_all_cameras():
                camera.params = known_camera.params
                database.update_camera(camera)
            database.close()
    return _map(db, image_dir, work, names, opts, attempt, single, timings, progress, known_camera), db


def _features_and_matches(work: Path, image_dir: Path, names: list[str], photos: PhotoSet, opts: ReconstructOptions,
                          attempt: _Attempt, sequential: bool, single: bool, timings: dict, progress: Progress,
                          known_camera) -> Path:
    import pycolmap

    db = work / "database.db"
    db.unlink(missing_ok=True)
    reader = pycolmap.ImageReaderOptions(camera_model=opts.camera_model)
    focal = _exif_focal_px(photos) if attempt.use_exif_focal else None
    if known_camera is not None and single:
        reader.camera_params = ",".join(str(float(v)) for v in known_camera.params)
    elif focal is not None and single:
        h, w = photos.photos[0].pixels.shape[:2]
        reader.camera_params = _camera_params(opts.camera_model, focal, h, w)
    extraction = pycolmap.FeatureExtractionOptions(max_image_size=opts.max_size)
    extraction.num_threads = opts.threads
    extraction.sift.max_num_features = attempt.max_features
    extraction.sift.peak_threshold = attempt.peak_threshold
    mode = pycolmap.CameraMode.SINGLE if single else pycolmap.CameraMode.PER_IMAGE

    progress(f"features ({attempt.label})", 0.0)
    t0 = time.perf_counter()
    pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    timings["features_s"] = timings.get("features_s", 0.0) + time.perf_counter() - t0

    progress(f"matching ({'sequential' if sequential else 'exhaustive'})", 0.0)
    t0 = time.perf_counter()
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = opts.seed
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = opts.threads
    if attempt.relaxed:
        verification.min_num_inliers = 10
        verification.ransac.max_error = 6.0
    if sequential:
        pycolmap.match_sequential(db, matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_exhaustive(db, matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu)
    timings["matching_s"] = timings.get("matching_s", 0.0) + time.perf_counter() - t0
    return db


@dataclass
class _Mapped:
    recon: object | None  # the model kept, with the models joined into it
    others: list  # models that could not be joined (photos in them were left out)
    first_model: int  # photos registered by the first model alone
    joined: int  # models joined into it
    weak: dict[str, str]  # photos taken out again because their pose was not pinned down -> why


def _map(db: Path, image_dir: Path, work: Path, names: list[str], opts: ReconstructOptions, attempt: _Attempt,
         single: bool, timings: dict, progress: Progress, known_camera) -> _Mapped:
    """Incremental mapping of one model, then bridges for the photos it left out.

    A bridge is a model of the left-out photos together with the registered photos they have
    verified matches with (and those photos' best partners); when it shares two or more posed
    photos with the model it is joined (nvs.reconstruction.join_models), and the joined model is triangulated
    again from all matches. A bridge bigger than the model (the first one can stall after a few
    photos) becomes the model instead, and the old one is joined into it. Left-out photos with no
    posed partner are mapped on their own: an unrelated set of photos may then make a bigger model
    than the first, and that one is kept.
    """
    import pycolmap

    progress(f"mapping ({attempt.label})", 0.0)
    t0 = time.perf_counter()
    pipeline = _pipeline_options(opts, attempt.relaxed, single, known_camera)
    pipeline.multiple_models = False
    first = pycolmap.incremental_mapping(db, image_dir, work / "sparse", pipeline)
    base = max(first.values(), key=lambda r: r.num_reg_images(), default=None)
    first_size = base.num_reg_images() if base is not None else 0
    others, groups = [], []  # groups: photos placed by a similarity, to confirm after triangulating
    pairs = None  # read from the database only when photos are left out
    joined = pycolmap.Reconstruction(base) if base is not None else None
    for round_ in range(MAX_BRIDGES):
        posed = {im.name for im in joined.images.values() if im.has_pose} if joined is not None else set()
        missing = set(names) - posed
        if not missing or joined is None:
            break
        pairs = pairs if pairs is not None else _verified_pairs(db, pipeline.min_num_matches)
        partners = {n for pair in pairs for n in pair if set(pair) & missing and n in posed}
        if not partners and len(missing) < 2:
            break
        # the partners' own best-matched posed photos give the bridge the parallax a spin lacks
        anchors = {n for p in partners for n in _strongest_partners(pairs, p, posed, BRIDGE_ANCHORS)}
        progress(f"mapping a bridge to {len(missing)} left-out photo(s)", 0.0)
        pipeline = _pipeline_options(opts, True, single, known_camera)
        pipeline.image_names = sorted(missing | partners | anchors)
        bridge = pycolmap.incremental_mapping(db, image_dir, work / f"bridge{round_}", pipeline)
        added = False
        for model in sorted(bridge.values(), key=lambda r: r.num_reg_images(), reverse=True):
            if model.num_reg_images() > joined.num_reg_images():
                # the bridge outgrew the model (whose first try may have stalled early): it becomes
                # the model, and the photos only the old one posed are joined into it
                bigger = pycolmap.Reconstruction(model)
                ids = join_into(bigger, joined)
                if ids is not None:
                    base, joined, groups, added = model, bigger, [ids] if ids else [], True
                    continue
            else:
                ids = join_into(joined, model)
                if ids is not None:
                    groups += [ids] if ids else []
                    added = added or bool(ids)
                    continue
            if {im.name for im in model.images.values() if im.has_pose} & missing:
                others.append(model)
        if not added:
            break
    timings["mapping_s"] = timings.get("mapping_s", 0.0) + time.perf_counter() - t0
    recon = joined if not groups else base  # base: the model before any photo was placed by a similarity
    if groups:
        progress("triangulating the joined model", 0.0)
        t0 = time.perf_counter()
        retriangulated = triangulate_joined(joined, groups, db, image_dir, work / "joined",
                                            _pipeline_options(opts, False, single, known_camera))
        timings["joining_s"] = timings.get("joining_s", 0.0) + time.perf_counter() - t0
        if retriangulated is not None:
            recon = retriangulated
        else:
            groups = []
    # photos of an unrelated scene can make a bigger model than the first one
    largest_other = max(others, key=lambda r: r.num_reg_images(), default=None)
    if largest_other is not None and (recon is None or largest_other.num_reg_images() > recon.num_reg_images()):
        others = [r for r in others if r is not largest_other] + ([recon] if recon is not None else [])
        recon = largest_other
    weak = drop_weakly_posed(recon) if recon is not None else {}
    return _Mapped(recon, others, first_size, len(groups), weak)


def _pipeline_options(opts: ReconstructOptions, relaxed: bool, single: bool, known_camera):
    import pycolmap

    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.min_model_size = 2
    pipeline.random_seed = opts.seed
    pipeline.mapper.random_seed = opts.seed
    pipeline.num_threads = pipeline.mapper.num_threads = opts.threads
    if relaxed:
        pipeline.min_num_matches = 10
        pipeline.init_num_trials = 400
        pipeline.mapper.init_min_num_inliers = 30
        pipeline.mapper.init_min_tri_angle = 4.0
        pipeline.mapper.abs_pose_min_num_inliers = 12
        pipeline.mapper.abs_pose_min_inlier_ratio = 0.1
        pipeline.mapper.max_reg_trials = 6
        pipeline.triangulation.ignore_two_view_tracks = False
    if known_camera is not None and single:
        pipeline.ba_refine_focal_length = False
        pipeline.ba_refine_extra_params = False
        pipeline.mapper.abs_pose_refine_focal_length = False
        pipeline.mapper.abs_pose_refine_extra_params = False
    return pipeline


def _strongest_partners(pairs: dict[tuple[str, str], int], name: str, among: set[str], k: int) -> list[str]:
    """The ``k`` photos in ``among`` with the most verified matches with ``name``."""
    scored = [(n, other) for (a, b), n in pairs.items() for other in ((b,) if a == name else (a,) if b == name else ())
              if other in among]
    return [other for _, other in sorted(scored, reverse=True)[:k]]


def _verified_pairs(db_path: Path, min_inliers: int) -> dict[tuple[str, str], int]:
    """Image-name pairs with at least ``min_inliers`` verified matches -> their inlier count."""
    import pycolmap

    db = pycolmap.Database.open(db_path)
    try:
        images = {im.image_id: im.name for im in db.read_all_images()}
        pairs = {}
        for pair_id, inliers in zip(*db.read_two_view_geometry_num_inliers()):
            if inliers >= min_inliers:
                a, b = pycolmap.pair_id_to_image_pair(pair_id)
                pairs[(images[a], images[b])] = int(inliers)
    finally:
        db.close()
    return pairs


def _final_refinement(recon, refine_principal_point: bool, threads: int) -> tuple:
    """A last global bundle adjustment with a robust (Cauchy) loss. The principal point is freed
    when asked (the mapper keeps it at the image centre, which costs real cameras up to a degree
    of rotation accuracy); distortion stays where the mapper put it, because on narrow rings it
    trades off against the focal length. A principal point that wanders more than 10% of the
    image from the centre means the problem was too weak: that result is dropped."""
    import pycolmap

    def adjust(model, free_pp: bool):
        options = pycolmap.BundleAdjustmentOptions()
        options.print_summary = False
        options.refine_principal_point = free_pp
        options.refine_extra_params = False
        options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        # Ceres' own default; pycolmap's 0 runs ~4x the iterations for changes far below the pose accuracy
        options.ceres.solver_options.function_tolerance = 1e-6
        options.ceres.solver_options.num_threads = threads
        pycolmap.bundle_adjustment(model, options)

    if refine_principal_point:
        trial = pycolmap.Reconstruction(recon)
        adjust(trial, True)
        cam = next(iter(trial.cameras.values()))
        offset = np.abs(np.array([cam.principal_point_x, cam.principal_point_y]) - [cam.width / 2, cam.height / 2]) / [cam.width, cam.height]
        if offset.max() <= 0.1:
            return trial, True
    adjust(recon, False)
    return recon, False


def _match_stats(db_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Per image name: SIFT keypoints, and the number of other images it has verified matches with."""
    import pycolmap

    db = pycolmap.Database.open(db_path)
    try:
        keypoints = {im.name: db.num_keypoints_for_image(im.image_id) for im in db.read_all_images()}
    finally:
        db.close()
    partners = Counter(name for pair in _verified_pairs(db_path, 15) for name in pair)
    return keypoints, {name: partners.get(name, 0) for name in keypoints}


def _why_left_out(name: str, keypoints: dict, partners: dict, other_models: set[str]) -> str:
    if keypoints.get(name, 0) < 64:
        return f"only {keypoints.get(name, 0)} SIFT features: too little texture, too dark or too blurry"
    if partners.get(name, 0) == 0:
        return "shares no reliable matches with any other photo (does it show the same scene?)"
    if name in other_models:
        return "belongs to a separate group of photos that does not connect to the main one"
    return f"matched {partners[name]} other photo(s), but its pose could not be estimated from them"


def _reprojection_errors(recon) -> dict[str, float]:
    """Mean reprojection error (pixels) of each registered image's triangulated points."""
    out = {}
    for im in recon.images.values():
        if not im.has_pose:
            continue
        errs = []
        for p in im.points2D:
            if p.has_point3D():
                proj = im.project_point(recon.points3D[p.point3D_id].xyz)
                if proj is not None:
                    errs.append(float(np.linalg.norm(np.asarray(proj) - np.asarray(p.xy))))
        out[im.name] = round(float(np.mean(errs)), 4) if errs else float("nan")
    return out


def _write_scene(out: Path, recon, photos: PhotoSet, images_dir: str = "images") -> tuple[list[str], list[Path], Cameras]:
    """Undistort registered images to pinhole, bring them to one size, write the LaCT layout."""
    from nvs.datasets.colmap import image_camera
    from nvs.datasets.formats import write_lact_frames
    from nvs.geometry.image_ops import resize_and_center_crop, undistort_image

    pixels = {p.name: p.pixels for p in photos.photos}
    registered = sorted((im for im in recon.images.values() if im.has_pose), key=lambda im: im.name)
    size = Counter(pixels[im.name].shape[:2] for im in registered).most_common(1)[0][0]
    images, cams = [], []
    for im in registered:
        intr, dist, w2c = image_camera(im, f"camera of {im.name}")
        img = torch.from_numpy(pixels[im.name].copy()).permute(2, 0, 1).float() / 255
        intr_t = torch.tensor(intr, dtype=torch.float32)
        if any(dist):
            img = undistort_image(img, intr_t, torch.tensor(dist, dtype=torch.float64))
        cam = Cameras.from_w2c(intr_t[None], w2c[None].float(), img.shape[1], img.shape[2])
        if tuple(img.shape[1:]) != tuple(size):
            img, cam = resize_and_center_crop(img[None], cam, *size)
            img = img[0]
        images.append(img)
        cams.append(cam)
    cameras = Cameras.cat(cams)
    names = [im.name for im in registered]
    write_lact_frames(out, torch.stack(images), cameras, names, images_dir)
    (out / "index.json").write_text(json.dumps(["opencv_cameras.json"]))
    return names, [out / images_dir / n for n in names], cameras


def reconstruct(inputs: list[Path] | Path, out: Path, options: ReconstructOptions | None = None,
                progress: Progress | None = None) -> PosedScene:
    """Pose a photo set (folders, files, zips) or one video with COLMAP; write the scene to ``out``.

    Raises ValueError with a plain message when the photos cannot be reconstructed.

    Nothing the run did not create is written to or deleted: the outputs are built in a staging
    folder inside ``out`` and renamed into place at the end (nvs.io.outputs); an entry name
    taken by an input (``--out scene`` for photos in ``scene/images``) gets a new name.
    """
    import pycolmap

    pycolmap.logging.minloglevel = 2  # COLMAP's per-step INFO/WARNING lines; our report says what matters
    opts = options or ReconstructOptions()
    opts.check()
    progress = progress or (lambda stage, fraction: None)
    inputs = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    out = Path(out)
    staged = StagedOutput(out, inputs, {"images": True, "colmap": True, "opencv_cameras.json": False,
                                        "index.json": False, "report.json": False})
    try:
        kept, cameras, report = _reconstruct_staged(inputs, staged, opts, progress)
    except BaseException:
        staged.abort()
        raise
    names = staged.commit()
    report["outputs"] = names
    progress("done", 1.0)
    return PosedScene(out, kept, [out / names["images"] / n for n in kept], cameras, report)


def _reconstruct_staged(inputs: list[Path], staged: StagedOutput, opts: ReconstructOptions,
                        progress: Progress) -> tuple[list[str], Cameras, dict]:
    import pycolmap

    work = staged.path("colmap")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    progress("loading photos", 0.0)
    t0 = time.perf_counter()
    files, is_video = gather_files(inputs, staged.staging / "input", opts.frames)
    if opts.max_photos is not None and len(files) > opts.max_photos:
        raise ValueError(f"{len(files)} files given (after unpacking archives); at most {opts.max_photos} photos are taken")
    photos = load_photos(files, opts.max_size)
    if len(photos.photos) < 2:
        reasons = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in photos.skipped[:5])
        raise ValueError(f"{', '.join(map(str, inputs))}: need at least 2 readable photos of the scene, found "
                         f"{len(photos.photos)}" + (f" ({reasons})" if reasons else ""))
    image_dir = work / "images"
    shutil.rmtree(image_dir, ignore_errors=True)
    image_dir.mkdir(parents=True)
    save_images([p.pixels for p in photos.photos], [image_dir / p.name for p in photos.photos])
    progress("loading photos", 1.0)
    names = [p.name for p in photos.photos]
    sizes = Counter(p.pixels.shape[:2] for p in photos.photos)
    single = opts.single_camera and len(sizes) == 1
    timings["load_s"] = time.perf_counter() - t0

    sequential = opts.matcher == "sequential" or (opts.matcher == "auto" and is_video)
    exif_focal = _exif_focal_px(photos)
    attempts, best, db = [], None, None
    for k, attempt in enumerate(ATTEMPTS if opts.retry else ATTEMPTS[:1]):
        # a first model that holds most photos fixes the intrinsics: weakly constrained extra photos
        # must not drag the focal length away (unless its camera is implausible)
        known = (next(iter(best[1].recon.cameras.values()))
                 if best is not None and best[0] >= max(3, len(names) // 2) and not best[3] else None)
        t_attempt = time.perf_counter()
        mapped, db = _run_sfm(work / f"attempt{k}", names, photos, opts, attempt, sequential, single, timings, progress,
                              image_dir, known, db if k else None)
        registered = mapped.recon.num_reg_images() if mapped.recon is not None else 0
        attempts.append({"settings": attempt.label, "registered": registered, "first_model": mapped.first_model,
                         "models_joined": mapped.joined, "weakly_posed": sorted(mapped.weak),
                         "seconds": round(time.perf_counter() - t_attempt, 3)})
        warnings = reconstruction_warnings(mapped.recon, exif_focal) if mapped.recon is not None else []
        attempts[-1]["camera_warnings"] = warnings
        if best is None or _better(registered, warnings, mapped, best):
            best = (registered, mapped, db, warnings)
        if registered == len(names) and not best[3]:
            break  # every photo posed with a plausible camera: no need for the other attempts
    registered, mapped, db, _ = best
    recon = mapped.recon
    if recon is None or registered < 2:
        raise ValueError(f"{', '.join(map(str, inputs))}: COLMAP could not reconstruct these {len(names)} photos: "
                         "no two of them overlap enough (they need to show the same scene from nearby viewpoints)")

    progress("final bundle adjustment", 0.0)
    t0 = time.perf_counter()
    recon, pp_refined = _final_refinement(recon, opts.refine_principal_point and single and registered >= 8, opts.threads)
    timings["refine_s"] = time.perf_counter() - t0

    progress("undistorting and writing", 0.0)
    t0 = time.perf_counter()
    final = work / "sparse" / "0"
    shutil.rmtree(work / "sparse", ignore_errors=True)  # inside this run's staging folder
    final.mkdir(parents=True)
    recon.write(final)
    kept, paths, cameras = _write_scene(staged.staging, recon, photos, staged.names["images"])
    timings["write_s"] = time.perf_counter() - t0

    keypoints, partners = _match_stats(db)
    in_other = {im.name for r in mapped.others for im in r.images.values() if im.has_pose}
    left_out = [{"file": n, "reason": mapped.weak.get(n) or _why_left_out(n, keypoints, partners, in_other)}
                for n in names if n not in set(kept)]
    timings["total_s"] = time.perf_counter() - t_start
    camera = next(iter(recon.cameras.values()))
    report = {
        "inputs": [str(p) for p in inputs], "video": is_video, "files_given": len(files), "photos_loaded": len(names),
        "images_registered": len(kept), "skipped_inputs": photos.skipped, "left_out": left_out,
        "image_size": [cameras.height, cameras.width], "mixed_input_sizes": len(sizes) > 1,
        "camera": {"model": camera.model.name, "params": [round(float(v), 4) for v in camera.params], "shared": single,
                   "principal_point_refined": pp_refined},
        "points3D": recon.num_points3D(), "mean_reprojection_error_px": round(float(recon.compute_mean_reprojection_error()), 4),
        "reprojection_error_px": _reprojection_errors(recon), "attempts": attempts,
        "timings_s": {k: round(v, 3) for k, v in timings.items()}, "options": asdict(opts),
        "warnings": reconstruction_warnings(recon, exif_focal), "outputs": dict(staged.names),
    }
    staged.path("report.json").write_text(json.dumps(report, indent=2))
    return kept, cameras, report


def _better(registered: int, warnings: list[str], mapped, best) -> bool:
    """More photos posed wins; among as many, a plausible camera beats an implausible one, and of
    two implausible ones the less distorted."""
    if registered != best[0]:
        return registered > best[0]
    if bool(warnings) != bool(best[3]):
        return not warnings
    return bool(warnings) and radial_strength(mapped.recon) < radial_strength(best[1].recon)

