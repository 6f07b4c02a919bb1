"""`nvs render`: memorise a scene once, render every frame of a camera path from the SceneState."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nvs.commands.eval import add_protocol_arguments, add_reading_setting_argument, protocol_defaults
from nvs.commands.adapt import add_adapt_options, options_from_args
from nvs.geometry.camera_paths import auto_path_kind, make_path
from nvs.geometry.scene_normalization import fitted_frame
from nvs.datasets.formats import load_views, read_any_scene
from nvs.datasets.views import FileViews, OfficialSampler, kmeans_views, read_eval_index, spread_order
from nvs.inference import (AUTO_VIEWS, AUTO_VIEWS_PHOTOS, DEVICE_HELP, RENDERER_HELP,
                           add_inference_arguments, apply_reading_settings, auto_input_views, capture_warning,
                           choose_checkpoint, configure_inference, exposure_gains, exposure_note, framing_canvas,
                           framing_note, framing_zoom, memorize_views, reads_backdrops, render_cameras, resolve_device,
                           resolve_turns, scene_octave, sweep_note, views_argument)
from nvs.assets import SHIPPED
from nvs.io.media import save_video
from nvs.models import load_renderer
from nvs.commands import argtypes as T


def choose_inputs(record, views: int, selection: str = "spread", scene: Path | None = None, scene_index: int = 0,
                  index: str | None = None, targets: int = 1) -> list[int]:
    """Input view indices of a scene: ``spread`` (evenly spaced), ``kmeans`` (the Long-LRM inputs),
    ``official`` (the official sampling, ``views`` inputs out of ``views + targets`` frames, the
    run-wide generator advanced over the data set's earlier scenes), or the ``context`` of the
    scene in an evaluation ``index`` file."""
    n = record.cameras.shape[0]
    if index is not None:
        entries = read_eval_index(index)
        if record.name not in entries:
            raise ValueError(f"{index}: has no entry for scene '{record.name}'")
        chosen = entries[record.name]["context"]
        bad = [v for v in chosen if not 0 <= v < n]
        if bad:
            raise ValueError(f"{index}: scene '{record.name}' has {n} views, the index names {bad}")
        return chosen
    if selection == "kmeans":
        return kmeans_views(record.cameras.c2w, min(views, n))[0]
    if selection == "official":
        if scene is not None and scene.is_dir():
            data = FileViews(scene, views, targets, 1, 1, selection="official")
            return data.views(scene_index, record)[0]
        return OfficialSampler().select(n, views, targets, f"scene '{record.name}'")[0]
    if selection != "spread":
        raise ValueError(f"unknown input selection {selection!r}; choose spread, official or kmeans")
    return spread_order(n, min(views, n))[: min(views, n)].tolist()


def render_path(checkpoint: Path | str, scene: Path, path: str, frames: int, fps: float | None, out: Path,
                views: int | str, size: tuple[int, int], scene_index: int = 0, chunk: int = 8, device: str = "auto",
                selection: str = "spread", normalize: str | None = None, resize: str | None = None,
                index: str | None = None, write_index: str | None = None,
                memory_budget: str | int | None = "auto", dtype: str = "fp32", adapt_options=None,
                turns: int | str = "auto", settings: list[tuple[str, object]] | None = None) -> dict:
    """Memorise the chosen input views of a scene and render a camera path. The path is built in
    the scene's world frame; with a normalisation, inputs and path are re-expressed together
    (fitted on the inputs: a path has no target views). ``views``: how many inputs, or auto (with
    the spread selection nvs.inference.auto_input_views of the renderer loaded, else AUTO_VIEWS;
    ignored with an ``index``). ``adapt_options`` (AdaptOptions): adapt
    the renderer to the input views first; ``turns``: nvs.inference.resolve_turns; ``settings``:
    nvs.inference.apply_reading_settings. ``checkpoint``:
    a file, or auto / object / scene (see nvs.inference.choose_checkpoint; auto looks at the
    chosen input cameras)."""
    device = resolve_device(device)
    record = read_any_scene(scene, scene_index)
    counted = views == "auto" and index is None and selection == "spread"  # official and kmeans keep their protocol's 8
    # both shipped renderers take AUTO_VIEWS_PHOTOS: --checkpoint auto then judges the capture on the views it memorises
    guess = AUTO_VIEWS_PHOTOS if counted and str(checkpoint) in ("auto", *SHIPPED) else AUTO_VIEWS
    chosen = choose_inputs(record, guess if views == "auto" else views, selection, scene, scene_index, index)
    # auto looks at the photos too, read as the shipped renderers read them (bilinear)
    loaded = load_views(record, chosen, *size, resize="bilinear") if str(checkpoint) == "auto" else None
    # the cameras and photos as the renderer will see them (resized and cropped to --size), as the warning below does
    seen_images, seen_cams = (None, record.cameras[chosen]) if loaded is None else loaded
    checkpoint, why = choose_checkpoint(checkpoint, seen_cams, seen_images)
    print(f"renderer: {checkpoint.name} ({why})")
    model = load_renderer(checkpoint, device=device)
    if counted:
        most, available = auto_input_views(model), record.cameras.shape[0]
        if min(most, available) != len(chosen):
            chosen, loaded = choose_inputs(record, min(most, available), selection, scene, scene_index), None
        print(f"input views: {len(chosen)} of the scene's {available} (--views auto: at most {most} for this renderer)")
    applied = apply_reading_settings(model, settings)
    turns = resolve_turns(model, turns)  # of the renderer loaded, adapted or not
    runner = configure_inference(model, memory_budget, dtype, turns)
    normalize, resize = protocol_defaults(model, normalize, resize)
    same = loaded is not None and resize == "bilinear"
    images, cams = loaded if same else load_views(record, chosen, *size, resize=resize)
    warning = capture_warning(model, cams, images)
    if warning:
        print(f"warning: {warning} (--adapt)")
    if path == "auto":
        path = auto_path_kind(cams)
        print(f"camera path: {path} (auto, from the input cameras)")
    capture_order = sorted(range(len(chosen)), key=chosen.__getitem__)  # official and index inputs come shuffled
    path_cams, path_fps = make_path(path, cams[capture_order], frames)
    if (path_cams.height, path_cams.width) != size:
        path_cams = path_cams.resize(*size)
    to_frame = fitted_frame(normalize, cams)
    cams, path_cams = to_frame(cams), to_frame(path_cams)
    if write_index:
        Path(write_index).write_text(json.dumps({record.name: {"context": chosen, "target": []}}, indent=1))
    fps = fps or path_fps or 24.0
    adapted = None
    if adapt_options is not None:
        from nvs.adaptation.search import adapt
        from nvs.progress import StageProgress

        with StageProgress() as bar:
            adapted = adapt(model, images, cams, adapt_options, progress=bar)
        runner = configure_inference(adapted.model, memory_budget, dtype, turns)
    state, memorize_s = memorize_views(runner, images, cams)
    gains = exposure_gains(state)
    video, render_s = render_cameras(runner, state, path_cams, chunk=chunk)
    save_video(video, out, fps=fps)
    summary = {"checkpoint": str(checkpoint), "renderer_choice": why, "scene": record.name, "input_views": chosen, "selection": selection,
               "normalize": normalize, "resize": resize, "path": path,
               "frames": int(video.shape[0]), "fps": fps, "size": list(size), "output": str(out),
               "device": str(device), "dtype": dtype, "turns": turns, "mirror": bool(getattr(model.config, "mirror", False)),
               "memorize_s": memorize_s, "render_s_per_frame": render_s / video.shape[0],
               "warnings": [warning] if warning else [],
               "exposure_gains": None if gains is None else [[round(g, 4) for g in row] for row in gains.tolist()],
               "backdrop_white": reads_backdrops(model), "sweep_octave": scene_octave(state),
               "framing_zoom": framing_zoom(state), "framing_canvas": framing_canvas(state)}
    if applied:
        summary["reading_settings"] = applied
    if adapted is not None:
        summary["adaptation"] = adapted.summary()
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2))
    return summary


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render a video along a camera path")
    p.add_argument("--checkpoint", default="auto", help=RENDERER_HELP)
    p.add_argument("--scene", required=True, help="data set folder/index, opencv_cameras.json, or an LVSM scene JSON")
    p.add_argument("--scene-index", type=T.nonneg_int(10**9), default=0, help="which scene of a data set")
    p.add_argument("--path", default="auto",
                   help="auto (orbit for a capture around an object, interpolate through a walk's inputs) | "
                        "orbit | spiral | interpolate | nerfstudio camera_path.json")
    p.add_argument("--frames", type=T.positive_int(10_000), default=60)
    p.add_argument("--fps", type=T.positive_float(1000), help="default: the path file's fps, else 24")
    p.add_argument("--views", type=views_argument, default="auto",
                   help=f"input views: auto (the default: with --selection spread every view of the scene, up to "
                        f"{AUTO_VIEWS_PHOTOS} for a renderer that draws from its photos, such as the shipped ones, "
                        f"{AUTO_VIEWS} for any other; {AUTO_VIEWS} with the official and kmeans selections) or N")
    p.add_argument("--selection", choices=["spread", "official", "kmeans"], default="spread",
                   help="which input views: evenly spaced, the official seeded sampling, or the Long-LRM k-means inputs")
    p.add_argument("--index", help="evaluation index JSON: take the scene's 'context' views as inputs")
    p.add_argument("--write-index", metavar="FILE", help="write the chosen input views as an evaluation index")
    p.add_argument("--size", type=T.image_side, nargs=2, metavar=("H", "W"), default=[256, 256])
    add_protocol_arguments(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_inference_arguments(p)
    add_reading_setting_argument(p)
    p.add_argument("--adapt", action="store_true", help="adapt the renderer to the scene's input views first")
    add_adapt_options(p, prefix="adapt-")
    p.add_argument("--out", type=T.out_media, required=True, help="video.mp4, video.gif, or a folder for PNG frames")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    s = render_path(args.checkpoint, Path(args.scene), args.path, args.frames, args.fps, Path(args.out),
                    args.views, tuple(args.size), args.scene_index, device=args.device, selection=args.selection,
                    normalize=args.normalize, resize=args.resize, index=args.index, write_index=args.write_index,
                    memory_budget=args.memory_budget, dtype=args.dtype,
                    adapt_options=options_from_args(args) if args.adapt else None, turns=args.turns,
                    settings=args.setting)
    print(f"rendered {s['frames']} frames of scene {s['scene']} at {s['fps']} fps to {args.out} "
          f"(memorise {s['memorize_s']:.2f} s, {s['render_s_per_frame'] * 1000:.1f} ms/frame); summary {args.out}.json")
    for note in (exposure_note(s["exposure_gains"], s["backdrop_white"]), sweep_note(s["sweep_octave"]),
                 framing_note(s["framing_zoom"], s["framing_canvas"])):
        if note:
            print(note)
    if "adaptation" in s:
        from nvs.adaptation.search import unkept_frame_note

        a = s["adaptation"]
        confirmed = "" if a["confirm_psnr"] is None else f", confirmation view {a['base_confirm_psnr']:.2f} -> {a['confirm_psnr']:.2f} dB"
        print(f"adaptation: verifier PSNR {a['base_verifier_psnr']:.2f} -> {a['best_verifier_psnr']:.2f} dB{confirmed} in {a['seconds']:.1f} s"
              + (f" ({a['fallback_reason']}: unadapted model used{unkept_frame_note(a['frame'], a['searched_frame'])})" if a["fallback"] else ""))
    return 0
