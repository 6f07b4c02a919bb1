"""What the viewer does, without the page: load a scene (example, photos, posed zip), memorise it,
render orbit views, camera paths and held-out views with metrics. The Gradio app (nvs/viewer/app.py)
and its API are thin wrappers around these functions.

Scenes are brought into an object frame, where the virtual camera moves: the point the cameras
look at is the origin, up (see nvs.geometry.scene_normalization.estimate_scene_frame) is +z, and the inputs
sit at the object renderer's training radius. A renderer trained on re-expressed scenes gets every
camera moved once more into its own frame (:func:`nvs.inference.renderer_frame`).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from nvs.geometry.camera_paths import PATH_KINDS, make_path
from nvs.geometry.capture import capture_kind
from nvs.cameras import Cameras, fov_to_focal, look_at
from nvs.datasets.formats import load_views, read_any_scene, read_lact_scene
from nvs.datasets.procedural import HELDOUT_SEED, object_scene, room_scene
from nvs.datasets.views import spread_order
from nvs.inference import memorize_views, render_cameras
from nvs.io.media import save_video
from nvs.evaluation.metrics import psnr, ssim
from nvs.io.untrusted import VIEWER_LIMITS, LimitExceeded, Limits, public_message, request, unpack_zip
from nvs.reconstruction.photos import VIDEO_SUFFIXES
from nvs.reconstruction.sfm import ReconstructOptions, reconstruct
from nvs.geometry.scene_normalization import SceneNormalization
from nvs.progress import Progress, no_progress

MAX_PHOTOS = 64  # per upload: SfM on more than this is not interactive on a CPU
POSED_FILES = ("opencv_cameras.json", "transforms.json")
SCORE_BATCH = 8  # held-out views scored at a time: memory stays bounded whatever their number


@dataclass
class ViewerScene:
    """Input views [K, 3, H, W] and cameras [K]; held-out views [T, 3, H, W] with cameras [T] (T may be 0)."""

    name: str
    images: Tensor
    cameras: Cameras
    heldout_images: Tensor
    heldout_cameras: Cameras
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ViewPose:
    """The virtual camera: degrees around the scene centre, distance as a multiple of the inputs'."""

    azimuth: float = 0.0
    elevation: float = 20.0
    distance: float = 1.0
    fov: float = 50.0


FOV_RANGE_DEG = (5.0, 120.0)  # the virtual camera's horizontal field of view: a long lens to a wide angle

OBJECT_EXAMPLES = ("furniture model", "procedural object")
SCENE_EXAMPLES = ("furnished room", "furnished room orbit", "procedural room")
ASSET_EXAMPLES = {"furniture model": "furniture", "furnished room": "furnished-room",
                  "furnished room orbit": "furnished-orbit"}  # example -> nvs.datasets.asset_scenes kind


def frame_size(size: int, aspect: float) -> tuple[int, int]:
    """(height, width) of the viewer's frames for photos of ``aspect`` (width / height): the short
    side ``size``, the long side rounded to a multiple of 16 (any renderer's patch) and at most
    twice the short side."""
    long = min(2 * size, max(size, round(size * max(aspect, 1 / aspect) / 16) * 16))
    return (size, long) if aspect >= 1 else (long, size)


def example_kinds() -> tuple[str, ...]:
    """The built-in examples this machine can make: renders of held-out furniture models, rooms
    furnished with them (walked through, or one piece circled) where Debian's furniture package and
    headless OpenGL are installed (``make assets``), and procedural objects and rooms everywhere."""
    from nvs.datasets.asset_scenes import unavailable_reason

    if unavailable_reason() is None:
        return (*ASSET_EXAMPLES, "procedural object", "procedural room")
    return ("procedural object", "procedural room")


def example_scene(seed: int = HELDOUT_SEED, input_views: int = 8, heldout_views: int = 4, size: int = 128,
                  kind: str = "procedural object") -> ViewerScene:
    """A built-in example with ground truth for every view: a procedural object or room (a held-out
    seed by default), or a furniture model or a room furnished with models of the held-out split
    (``seed`` picks the model and its turn, or the room). Objects take their first views as
    inputs; a room's walk or ring (16:9 frames of height ``size``) takes inputs spread along it,
    and the frames between are held out."""
    t0 = time.perf_counter()
    views = input_views + heldout_views
    # rooms in 16:9 frames, as photo walks are taken (and the scene renderer trained)
    _, width = frame_size(size, 1.0 if kind in OBJECT_EXAMPLES else 16 / 9)
    notes: list[str] = []
    if kind in ASSET_EXAMPLES:
        from nvs.datasets.asset_scenes import generate_asset_scene

        scene = generate_asset_scene(ASSET_EXAMPLES[kind], int(seed), views, size, width, split="val")
        notes = [f"model '{p['name']}' by {p['creator']}, {p['licence']} ({p['library']})" for p in scene.attribution]
        name = {"furniture model": f"held-out furniture model '{scene.attribution[0]['name']}'",
                "furnished room": f"room {seed} furnished with {len(scene.attribution)} held-out models",
                "furnished room orbit": f"held-out '{scene.attribution[0]['name']}' circled in room {seed}"}[kind]
    elif kind == "procedural object":
        scene, name = object_scene(int(seed), views, size, size), f"procedural object {seed}"
    elif kind == "procedural room":
        scene, name = room_scene(int(seed), views, size, width), f"procedural room {seed}"
    else:
        raise ValueError(f"unknown example {kind!r}; choose one of {example_kinds()}")
    if kind in OBJECT_EXAMPLES:
        inputs, heldout = list(range(input_views)), list(range(input_views, views))
        in_cams, out_cams = scene.cameras[inputs], scene.cameras[heldout]
    else:
        order = spread_order(views, input_views).tolist()
        inputs, heldout = order[:input_views], order[input_views:]
        in_cams, out_cams = normalize_to_object_frame(scene.cameras[inputs], scene.cameras[heldout])
    return ViewerScene(name, scene.images[inputs], in_cams, scene.images[heldout], out_cams,
                       {"generate": time.perf_counter() - t0}, notes)


def normalize_to_object_frame(cams: Cameras, others: Cameras | None = None) -> tuple[Cameras, Cameras | None]:
    """Inputs [K] (and any other cameras of the scene) in the object frame fitted to the inputs
    (nvs.geometry.scene_normalization, rule ``object``)."""
    fitted = SceneNormalization.fit_object(cams.c2w.double())

    def move(c: Cameras) -> Cameras:
        return Cameras(c.intrinsics, fitted.apply(c.c2w.double()).to(c.c2w.dtype), c.height, c.width)

    return move(cams), (move(others) if others is not None else None)


def _by_file_name(exc: Exception, files: list[Path], work: Path, extra: list[tuple[Path, str]] = ()) -> ValueError:
    """The error with uploads named by file name (files inside an upload relative to it), never
    by a path on the server."""
    roots = [*extra, *((f, f.name) for f in files), (work, "")]
    message = public_message(str(exc), roots)
    return LimitExceeded(message) if isinstance(exc, LimitExceeded) else ValueError(message)


def _split_views(record, input_views: int, size: int, name: str, timings: dict, notes: list[str]) -> ViewerScene:
    n = record.cameras.shape[0]
    if n < 2:
        raise ValueError(f"{name}: {n} posed view; the viewer needs at least 2")
    k = min(input_views, n)
    order = spread_order(n, k).tolist()
    # a turntable in square frames, as object renderers are trained; a walk keeps its photos' shape
    aspect = 1.0 if capture_kind(record.cameras) == "object" else record.cameras.width / record.cameras.height
    height, width = frame_size(size, aspect)
    images, cams = load_views(record, order, height, width)
    in_cams, out_cams = normalize_to_object_frame(cams[:k], cams[k:] if n > k else None)
    if n > k:
        notes.append(f"{n - k} posed view(s) beyond the {k} inputs are held out and scored")
    else:
        notes.append(f"all {n} posed views are inputs; choose fewer input views to hold some out and score them")
    empty = Cameras(torch.zeros(0, 4), torch.zeros(0, 4, 4), height, width)
    return ViewerScene(name, images[:k], in_cams, images[k:], out_cams if out_cams is not None else empty, timings, notes)


def find_posed_scene(folder: Path) -> Path | None:
    """The first opencv_cameras.json or transforms.json under folder (shallowest first)."""
    found = sorted((p for name in POSED_FILES for p in folder.rglob(name)), key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def posed_zip_scene(zip_path: Path, work: Path, input_views: int = 8, size: int = 128,
                    limits: Limits = VIEWER_LIMITS) -> ViewerScene:
    """A zip holding opencv_cameras.json or transforms.json with its images (folders kept)."""
    t0 = time.perf_counter()
    zip_path = Path(zip_path)
    dest = work / "posed"
    shutil.rmtree(dest, ignore_errors=True)  # this session's previous upload
    try:
        # an upload: every path its scene file names stays inside it, within the viewer's budgets
        with request(limits, confined=True):
            unpack_zip(zip_path, dest, keep_folders=True, label=zip_path.name)
            found = find_posed_scene(dest)
            if found is None:
                raise ValueError(f"{zip_path.name}: no opencv_cameras.json or transforms.json inside; "
                                 "upload the photos instead to pose them with COLMAP")
            return _split_views(read_any_scene(found), input_views, size, zip_path.name,
                                {"read": time.perf_counter() - t0}, [])
    except ValueError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise _by_file_name(exc, [zip_path], work, [(dest, zip_path.name)]) from exc


def photo_scene(files: list[Path], work: Path, input_views: int = 8, size: int = 128, progress: Progress = no_progress,
                max_size: int = 640, frames: int = 24, limits: Limits = VIEWER_LIMITS) -> ViewerScene:
    """Pose photos (files, zips or one video) with COLMAP, then take ``input_views`` of them as inputs."""
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("no files given: upload photos, a zip of photos or a video")
    images = [f for f in files if f.suffix.lower() not in VIDEO_SUFFIXES | {".zip"}]
    if len(images) > MAX_PHOTOS:
        raise ValueError(f"{len(images)} photos uploaded; the viewer takes at most {MAX_PHOTOS}")
    out = work / "reconstruction"
    shutil.rmtree(out, ignore_errors=True)  # this session's previous reconstruction
    try:
        with request(limits, confined=True):
            posed = reconstruct(files, out, ReconstructOptions(max_size=max_size, frames=frames, max_photos=MAX_PHOTOS),
                                progress)
    except ValueError as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise _by_file_name(exc, files, work) from exc
    report = posed.report
    notes = [f"COLMAP registered {report['images_registered']} of {report['photos_loaded']} photos"]
    notes += [f"warning: {w}" for w in report.get("warnings", [])]
    notes += [f"left out {item['file']}: {item['reason']}" for item in report["left_out"]]
    notes += [f"skipped {Path(item['file']).name}: {item['reason']}" for item in report["skipped_inputs"]]
    timings = {"reconstruct": float(report["timings_s"]["total_s"])}
    record = read_lact_scene(posed.folder / "opencv_cameras.json")
    return _split_views(record, input_views, size, "uploaded photos", timings, notes)


def orbit_target(cams: Cameras) -> Tensor:
    """The point [3] the viewer's camera orbits: the point of the first input camera's optical axis
    nearest the scene centre (the origin). On a turntable that is the centre; on a walk, whose
    cameras look across the room, it is a point the first photo looks at."""
    first = cams.c2w[0].double()
    eye, forward = first[:3, 3], first[:3, 2]
    # how far to look when the centre gives no answer: the centre's distance, or, from a camera at
    # the centre itself, half the spread of the cameras
    reach = max(float(eye.norm()), float((cams.centers.double() - eye).norm(dim=-1).max()) / 2, 1e-6)
    depth = float(-(eye @ forward))
    if depth < 0.1 * reach:  # the centre is behind the camera or beside it
        depth = reach
    return eye + depth * forward


def virtual_camera(scene: ViewerScene, pose: ViewPose) -> Cameras:
    """A camera [1] at (azimuth, elevation) about :func:`orbit_target`, looking at it, up +z, at
    ``distance`` times the first input camera's distance from it; azimuth 0 is the first input's."""
    target = orbit_target(scene.cameras)
    offset = scene.cameras.c2w[0, :3, 3].double() - target
    base_az = math.degrees(math.atan2(float(offset[1]), float(offset[0])))
    radius = float(offset.norm()) * pose.distance
    az, el = math.radians(base_az + pose.azimuth), math.radians(pose.elevation)
    eye = target + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)],
                                         dtype=torch.float64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    c2w = look_at(eye[None], target[None], up[None]).float()
    h, w = scene.cameras.height, scene.cameras.width
    focal = float(fov_to_focal(math.radians(pose.fov), w))
    return Cameras(torch.tensor([[focal, focal, w / 2, h / 2]]), c2w, h, w)


def initial_pose(scene: ViewerScene) -> ViewPose:
    """The pose that reproduces the first input view: its position, its view direction (up to any
    roll) and its horizontal field of view."""
    offset = scene.cameras.c2w[0, :3, 3].double() - orbit_target(scene.cameras)
    elevation = math.degrees(math.asin(float(offset[2] / offset.norm().clamp_min(1e-9))))
    fx = float(scene.cameras.intrinsics[0, 0])
    fov = math.degrees(2 * math.atan(scene.cameras.width / (2 * fx)))
    return ViewPose(0.0, round(elevation, 2), 1.0, round(min(max(fov, FOV_RANGE_DEG[0]), FOV_RANGE_DEG[1]), 1))


def same_frame(cams: Cameras) -> Cameras:
    return cams


def memorize(model, scene: ViewerScene, frame=same_frame):
    """The renderer's state for the scene's input views, on the renderer's device; ``frame`` maps
    the viewer's cameras to the renderer's (nvs.inference.renderer_frame), here and in every call below."""
    state, scene.timings["memorize"] = memorize_views(model, scene.images, frame(scene.cameras))
    return state


def render_views(model, state, cams: Cameras, progress: Progress = no_progress) -> Tensor:
    """Images [N, 3, H, W] (on the CPU) for cameras [N] in the renderer's frame."""
    return render_cameras(model, state, cams, progress=progress)[0]


def render_path_video(model, state, scene: ViewerScene, kind: str, frames: int, fps: float, out: Path,
                      progress: Progress = no_progress, frame=same_frame) -> Path:
    """An mp4 along an orbit, spiral or interpolation through the input cameras (``auto``: the one
    the capture calls for, nvs.geometry.camera_paths.auto_path_kind)."""
    if kind not in PATH_KINDS:
        raise ValueError(f"unknown trajectory {kind!r}: one of {', '.join(PATH_KINDS)}")
    if not 2 <= frames <= 600 or not 1 <= fps <= 60:
        raise ValueError("a video needs 2-600 frames at 1-60 fps")
    cams, _ = make_path(kind, scene.cameras, int(frames))
    return save_video(render_views(model, state, frame(cams), progress=progress), out, fps=float(fps))


def score_heldout(model, state, scene: ViewerScene, lpips_net: str = "vgg",
                  frame=same_frame) -> tuple[Tensor, dict[str, float] | None, str]:
    """(predictions [T, 3, H, W], mean PSNR/SSIM/LPIPS or None, a note on what was scored)."""
    if scene.heldout_cameras.shape[0] == 0:
        return torch.zeros(0, 3, scene.cameras.height, scene.cameras.width), None, "no held-out views with ground truth"
    preds, per_view = [], {"psnr": [], "ssim": [], "lpips": []}
    note = f"{scene.heldout_cameras.shape[0]} held-out view(s)"
    lpips_missing = None
    for i in range(0, scene.heldout_cameras.shape[0], SCORE_BATCH):  # batches: bounded memory
        pred = render_views(model, state, frame(scene.heldout_cameras[i : i + SCORE_BATCH])).clamp(0, 1)
        target = scene.heldout_images[i : i + SCORE_BATCH]
        per_view["psnr"].append(psnr(pred, target))
        per_view["ssim"].append(ssim(pred, target))
        if lpips_missing is None:
            try:
                from nvs.evaluation.metrics import lpips

                per_view["lpips"].append(lpips(pred, target, net=lpips_net))
            except FileNotFoundError as exc:
                lpips_missing = str(exc)
        preds.append(pred)
    scores = {k: float(torch.cat(v).mean()) for k, v in per_view.items() if v and (k != "lpips" or lpips_missing is None)}
    if lpips_missing is not None:
        note += f"; LPIPS unavailable ({public_message(lpips_missing)})"
    return torch.cat(preds), scores, note


def adapt_to_scene(model, scene: ViewerScene, budget_s: float, progress: Progress = no_progress, frame=same_frame):
    """Test-time adaptation on the scene's input views (its held-out views are never shown to it).
    Returns (the model to use from now on, the AdaptResult)."""
    from nvs.adaptation.search import AdaptOptions, adapt

    if not 5 <= budget_s <= 600:
        raise ValueError("the adaptation budget must be 5-600 seconds")
    result = adapt(model, scene.images, frame(scene.cameras), AdaptOptions(budget_s=float(budget_s)), progress)
    scene.timings["adapt"] = result.seconds
    return result.model, result


def adaptation_hint() -> str:
    """What the "Adapt to this scene" button does and how often it keeps anything, before it is pressed."""
    from nvs.adaptation.search import AdaptOptions

    gate = AdaptOptions.min_gain_db
    return (f"Adapting trains a small adapter on the input views and keeps it only if held-out input views gain "
            f"at least {gate:g} dB; otherwise the renderer stays as it is. With the renderer `auto` picks for the capture, "
            f"held-out scenes seldom kept an adapter; it can pay where the renderer is not of the capture's kind.")


def adaptation_report(result, before: dict[str, float] | None, after: dict[str, float] | None) -> str:
    """Markdown: before/after on the held-out input views (the verifier, and the confirmation view when
    it was asked), and on the scene's held-out views with ground truth when it has them."""
    from nvs.adaptation.search import unkept_frame_note

    lines = [f"**Adaptation** ({result.steps} steps, {result.seconds:.0f} s): held-out input view PSNR "
             f"{result.base_verifier_psnr:.2f} → {result.best_verifier_psnr:.2f} dB"]
    if result.confirm_psnr is not None:
        lines.append(f"second held-out input view (confirmation): {result.base_confirm_psnr:.2f} → {result.confirm_psnr:.2f} dB")
    if result.fallback:
        note = unkept_frame_note(result.adapter.frame.name, result.searched_frame)
        lines.append(f"{result.fallback_reason}: the unadapted model is kept{note}")
    else:
        lines.append(f"kept: scene frame '{result.adapter.frame.name}', augmentations "
                     f"{'+'.join(result.augmentations) or 'none'}, {result.adapter.num_values()} adapter values")
    if before and after:
        lines.append("held-out views: " + " · ".join(f"{k.upper()} {before[k]:.3f} → {after[k]:.3f}" for k in before if k in after))
    return "\n\n".join(lines)
