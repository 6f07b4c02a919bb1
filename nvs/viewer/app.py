"""The Gradio viewer: a scene in (built-in example, photos, or a posed zip), new views out.

Each session keeps its memorised SceneState, so moving the camera only renders. Every handler
turns failures into a readable message on the page (gr.Error); the queue runs one heavy job
(reconstruction, memorising, videos) at a time so two users cannot exhaust memory.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from nvs.viewer import session as viewer
from nvs.datasets.procedural import HELDOUT_SEED
from nvs.geometry.camera_paths import PATH_KINDS
from nvs.viewer.camera_plot import camera_figure
from nvs.assets import SHIPPED
from nvs.geometry.capture import MIN_OBJECT_FOV_DEG
from nvs.inference import (AUTO_VIEWS_PHOTOS, auto_input_views, capture_warning, choose_checkpoint, configure_inference,
                           exposure_gains, exposure_note, framing_canvas, framing_note, framing_zoom, reads_backdrops,
                           renderer_frame, resolve_turns, scene_octave, sweep_note)
from nvs.io.media import to_uint8
from nvs.io.untrusted import VIEWER_LIMITS, Limits, bounded_number, public_message
from nvs.viewer.session_files import SESSION_TTL_S, SessionFolders, check_port

log = logging.getLogger("nvs.viewer.app")
MAX_UPLOAD = "200mb"  # per file
# the rendered view fills its box's height at the frame's own aspect ratio (gradio shows an image
# at its pixel size otherwise: a 128-pixel frame would be a thumbnail)
VIEW_CSS = "#view img {height: 100%; width: auto; max-width: 100%; object-fit: contain}"


@dataclass
class Session:
    """What one browser session holds: its scene, the memorised state and a work folder."""

    scene: viewer.ViewerScene
    state: object
    work: Path
    renderer: str  # which of the app's renderers this scene uses
    frame: object = viewer.same_frame  # the viewer's cameras -> the renderer's (nvs.inference.renderer_frame)
    model: object = None  # this scene's adapted renderer, None: the shared one


def readable_errors(fn):
    """Show every failure as a message on the page; log unexpected ones with their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            # shown to a remote user: no path of the server
            raise gr.Error(public_message(str(exc)), print_exception=False) from exc
        except Exception as exc:  # anything else is a bug: keep the page alive, log the details
            log.error("unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"internal error ({type(exc).__name__}): {public_message(str(exc))}", print_exception=False) from exc

    return wrapper


def _drop_session(session: Session | None) -> None:
    if session is not None:
        shutil.rmtree(session.work, ignore_errors=True)


def _progress_callback(progress: gr.Progress):
    return lambda stage, fraction: progress(fraction, desc=stage)


MAX_INPUT_VIEWS = AUTO_VIEWS_PHOTOS  # the most --views auto gives any renderer (gains were measured up to 44)
VIEW_CHOICES = ["auto", *range(2, MAX_INPUT_VIEWS + 1)]


def _views(value) -> int | str:
    """The input views a request asks for: auto, or a whole number 2..MAX_INPUT_VIEWS (an int or its
    digits, whatever the API sends)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        value = int(text) if text.isdigit() else value
    try:
        return bounded_number(value, "input views", "the request", 2, MAX_INPUT_VIEWS, integer=True)
    except ValueError:
        raise ValueError(f"the request: 'input views' must be auto or a whole number in 2..{MAX_INPUT_VIEWS}, "
                         f"got {value!r}") from None


def _timings(scene: viewer.ViewerScene) -> str:
    return " · ".join(f"{k} {v:.2f} s" for k, v in scene.timings.items())


class ViewerApp:
    """The handlers, bound to the renderers shared (read-only) by all sessions."""

    def __init__(self, checkpoint: str | Path = "auto", size: int = 128, input_views: int | str = "auto",
                 device: str = "auto", memory_budget: str | int | None = "auto", dtype: str = "fp32",
                 limits: Limits = VIEWER_LIMITS, turns: int | str = "auto",
                 settings: list[tuple[str, object]] | None = None):
        """``checkpoint``: auto (both shipped renderers, each scene drawn by the one trained on its
        kind of capture), object, scene, or a checkpoint file. ``turns``: nvs.inference.resolve_turns;
        ``settings``: reading settings for every renderer loaded, nvs.inference.apply_reading_settings."""
        from nvs.inference import apply_reading_settings, configure_inference, resolve_device, resolve_turns
        from nvs.models import load_renderer

        self.choice = str(checkpoint)
        files = dict(SHIPPED) if self.choice == "auto" else {self.choice: choose_checkpoint(self.choice)[0]}
        self.renderers, self.runners = {}, {}  # as loaded (adaptation starts there), and as run
        for key, path in files.items():
            model = load_renderer(path, device=resolve_device(device))
            apply_reading_settings(model, settings)
            patch = model.config.patch_size
            if size <= 0 or size % patch:
                raise ValueError(f"--size {size} is not a positive multiple of {Path(path).name}'s patch size {patch}")
            self.renderers[key] = model
            self.runners[key] = configure_inference(model, memory_budget, dtype, resolve_turns(model, turns))
        self.inference = (memory_budget, dtype)
        self.turns = turns
        self.files = files
        self.size = size
        self.example_kinds = viewer.example_kinds()
        self.input_views = input_views
        self.limits = limits
        self.folders = SessionFolders()
        self.root = self.folders.root

    def _pick(self, scene: viewer.ViewerScene) -> tuple[str, str]:
        """(the renderer for this scene, why)."""
        if self.choice != "auto":
            return self.choice, "the renderer asked for"
        path, why = choose_checkpoint("auto", scene.cameras, scene.images)
        return next(k for k, p in SHIPPED.items() if p == path), why

    def _input_count(self, views: int | str) -> int:
        """A request's input views: a number as asked; for auto, nvs.inference.auto_input_views of the
        renderers that may draw the scene (the fewest, where they differ; both shipped ones take 48)."""
        return views if views != "auto" else min(auto_input_views(model) for model in self.renderers.values())

    def _model(self, session: Session):
        return session.model if session.model is not None else self.runners[session.renderer]

    def _work(self, session: Session | None) -> Path:
        if session is None:
            return self.folders.new()
        session.work.mkdir(parents=True, exist_ok=True)  # swept while idle: the scene itself is in memory
        self.folders.touch(session.work)
        return session.work

    def _load(self, session: Session | None, make_scene, progress):
        """Run one scene-loading request in the session's folder: a folder made for this request is
        removed again when it fails, and a session may not outgrow its disk budget."""
        work = self._work(session)
        try:
            scene = make_scene(work)
            self.folders.check_disk(work)
            return self._open(scene, work, progress)
        except BaseException:
            if session is None or work != session.work:
                self.folders.drop(work)
            raise

    def _open(self, scene: viewer.ViewerScene, work: Path, progress: gr.Progress):
        """Memorise a new scene and fill every output of the page."""
        progress(0.9, desc="memorising")
        key, why = self._pick(scene)
        model = self.runners[key]
        frame = renderer_frame(model, scene.cameras)
        state = viewer.memorize(model, scene, frame)
        session = Session(scene, state, work, key, frame)
        pose = viewer.initial_pose(scene)
        image, figure, timing = self._render(session, pose)
        pred, scores, note = viewer.score_heldout(model, state, scene, frame=frame)
        pairs = [(img, f"truth {i}") for i, img in enumerate(to_uint8(scene.heldout_images))]
        pairs += [(img, f"rendered {i}") for i, img in enumerate(to_uint8(pred))]
        if scores:
            metrics = "**Held-out views:** " + " · ".join(f"{k.upper()} {v:.3f}" for k, v in scores.items()) + f" ({note})"
        else:
            metrics = f"**Held-out views:** {note}"
        height, width = scene.images.shape[-2:]
        status = (f"**{scene.name}**: {scene.images.shape[0]} input views at {height}×{width} · {_timings(scene)} · "
                  f"{timing}\n\nrenderer `{Path(self.files[key]).name}` ({why})")
        notes = [*scene.notes, *filter(None, [capture_warning(model, scene.cameras, scene.images),
                                              exposure_note(exposure_gains(state), reads_backdrops(model)),
                                              sweep_note(scene_octave(state)),
                                              framing_note(framing_zoom(state), framing_canvas(state))])]
        if notes:
            status += "\n\n" + "\n".join(f"- {n}" for n in notes)
        gallery = [(img, f"input {i}") for i, img in enumerate(to_uint8(scene.images))]
        return (session, status, gallery, pose.azimuth, pose.elevation, pose.distance, pose.fov,
                image, figure, pairs, metrics)

    def _render(self, session: Session, pose: viewer.ViewPose):
        cam = viewer.virtual_camera(session.scene, pose)
        t0 = time.perf_counter()
        image = viewer.render_views(self._model(session), session.state, session.frame(cam))[0]
        seconds = time.perf_counter() - t0
        groups = [("inputs", session.scene.cameras, "tab:blue"), ("held out", session.scene.heldout_cameras, "tab:green"),
                  ("virtual camera", cam, "tab:red")]
        figure = camera_figure(groups, "cameras (scene frame)")
        return to_uint8(image), figure, f"render {seconds * 1000:.0f} ms/view"

    @readable_errors
    def load_example(self, seed, views, session, kind="procedural object", progress=gr.Progress()):
        progress(0.0, desc="generating the example")
        if kind not in self.example_kinds:
            raise gr.Error(f"unknown example {kind!r}; choose one of {', '.join(self.example_kinds)}", print_exception=False)
        seed = bounded_number(seed, "seed", "the example", 0, 2**32 - 1, integer=True)
        views = self._input_count(_views(views))
        return self._load(session, lambda work: viewer.example_scene(seed, views, 4, self.size, kind), progress)

    @readable_errors
    def load_photos(self, files, views, session, progress=gr.Progress()):
        if not files:
            raise gr.Error("no files uploaded: choose photos, a zip of photos or a video", print_exception=False)
        paths = [Path(f) for f in (files if isinstance(files, list) else [files])]
        views = self._input_count(_views(views))
        return self._load(session, lambda work: viewer.photo_scene(paths, work, views, self.size,
                                                                   _progress_callback(progress), limits=self.limits),
                          progress)

    @readable_errors
    def load_posed(self, zip_file, views, session, progress=gr.Progress()):
        if not zip_file:
            raise gr.Error("no zip uploaded: choose a zip holding opencv_cameras.json or transforms.json", print_exception=False)
        progress(0.0, desc="reading the posed scene")
        views = self._input_count(_views(views))
        return self._load(session, lambda work: viewer.posed_zip_scene(Path(zip_file), work, views, self.size,
                                                                        limits=self.limits),
                          progress)

    @readable_errors
    def render_view(self, azimuth, elevation, distance, fov, session):
        if session is None:
            raise gr.Error("load a scene first: an example, photos or a posed zip", print_exception=False)
        pose = viewer.ViewPose(bounded_number(azimuth, "azimuth", "the view", -360, 360),
                               bounded_number(elevation, "elevation", "the view", -89, 89),
                               bounded_number(distance, "distance", "the view", 0.1, 10),
                               bounded_number(fov, "field of view", "the view", *viewer.FOV_RANGE_DEG))
        image, figure, timing = self._render(session, pose)
        return image, figure, timing

    @readable_errors
    def render_video(self, kind, frames, fps, session, progress=gr.Progress()):
        if session is None:
            raise gr.Error("load a scene first: an example, photos or a posed zip", print_exception=False)
        if kind not in PATH_KINDS:  # before it names a file
            raise gr.Error(f"unknown trajectory: choose one of {', '.join(PATH_KINDS)}", print_exception=False)
        work = self._work(session)
        for old in work.glob("video-*.mp4"):  # this session's earlier videos, already sent to the browser
            old.unlink(missing_ok=True)
        self.folders.check_disk(work)
        out = work / f"video-{kind}-{int(time.time() * 1000)}.mp4"
        viewer.render_path_video(self._model(session), session.state, session.scene, str(kind),
                                 bounded_number(frames, "frames", "the video", 2, 600, integer=True),
                                 bounded_number(fps, "fps", "the video", 1, 60), out,
                                 _progress_callback(progress), frame=session.frame)
        return str(out)

    def runner_of(self, key: str, model):
        """``model`` (renderer ``key`` adapted to a scene) run as the shared renderer ``key`` runs:
        the same memory budget, dtype and turns, and its config's framing."""
        return configure_inference(model, *self.inference, resolve_turns(self.renderers[key], self.turns))

    @readable_errors
    def adapt(self, budget, session, progress=gr.Progress()):
        if session is None:
            raise gr.Error("load a scene first: an example, photos or a posed zip", print_exception=False)
        base, runner = self.renderers[session.renderer], self.runners[session.renderer]
        scene, frame = session.scene, session.frame
        _, before, _ = viewer.score_heldout(runner, viewer.memorize(runner, scene, frame), scene, frame=frame)
        model, result = viewer.adapt_to_scene(base, scene, float(budget), _progress_callback(progress), frame)
        session.model = None if result.fallback else self.runner_of(session.renderer, model)
        session.state = viewer.memorize(self._model(session), scene, frame)
        pred, after, note = viewer.score_heldout(self._model(session), session.state, scene, frame=frame)
        image, figure, timing = self._render(session, viewer.initial_pose(session.scene))
        pairs = [(img, f"truth {i}") for i, img in enumerate(to_uint8(session.scene.heldout_images))]
        pairs += [(img, f"rendered {i}") for i, img in enumerate(to_uint8(pred))]
        return session, image, figure, timing, pairs, viewer.adaptation_report(result, before, after)

    def build(self) -> gr.Blocks:
        # gradio's upload cache: files older than two hours are removed every hour
        with gr.Blocks(title="LaCT-NVS viewer", delete_cache=(3600, 7200)) as demo:
            # a closed session's scene and work folder (uploads, reconstruction, videos) are dropped
            session = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=_drop_session)
            renderer = ("the shipped object renderer for turntables on white, the scene renderer for walks "
                        "through a scene, photos with a background and turntables through a long lens (under "
                        f"{MIN_OBJECT_FOV_DEG:.0f}° across the photos' shorter side)"
                        if self.choice == "auto" else f"`{Path(self.files[self.choice]).name}`")
            gr.Markdown(f"# LaCT-NVS viewer\nRenderer: {renderer}. Load a scene, then move the camera: "
                        "the scene is memorised once (fast weights), each new view only renders.")
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Tab("Example"):
                        example = gr.Radio(list(self.example_kinds), value=self.example_kinds[0], label="example",
                                           elem_id="example-kind")
                        seed = gr.Number(HELDOUT_SEED, precision=0, label="seed (objects and models held out from training)")
                        example_btn = gr.Button("Load example", variant="primary", elem_id="load-example")
                    with gr.Tab("Photos"):
                        photos = gr.File(file_count="multiple", label=f"photos, a zip of photos or a video (≤ {viewer.MAX_PHOTOS} photos)",
                                         elem_id="photo-upload")
                        photos_btn = gr.Button("Reconstruct and memorise", variant="primary", elem_id="reconstruct")
                    with gr.Tab("Posed scene"):
                        posed = gr.File(file_types=[".zip"], label="zip with opencv_cameras.json or transforms.json + images",
                                        elem_id="posed-upload")
                        posed_btn = gr.Button("Load posed scene", variant="primary", elem_id="load-posed")
                    views = gr.Dropdown(VIEW_CHOICES, value=self.input_views, elem_id="input-views", allow_custom_value=True,
                                        label="input views (auto: as many as the renderer gains from; "
                                              "the rest are held out and scored)")
                    status = gr.Markdown("No scene yet.", elem_id="status")
                    budget = gr.Slider(10, 300, value=60, step=5, label="adaptation budget (s)", elem_id="adapt-budget")
                    adapt_btn = gr.Button("Adapt to this scene", elem_id="adapt")
                    gr.Markdown(viewer.adaptation_hint(), elem_id="adapt-hint")
                    adapt_report = gr.Markdown("", elem_id="adapt-report")
                with gr.Column(scale=2):
                    image = gr.Image(label="rendered view", interactive=False, elem_id="view", format="png", height=320)
                    timing = gr.Markdown("", elem_id="timing")
                    with gr.Row():
                        azimuth = gr.Slider(-180, 180, value=0, step=1, label="azimuth (°)", elem_id="azimuth")
                        elevation = gr.Slider(-89, 89, value=20, step=1, label="elevation (°)", elem_id="elevation")
                    with gr.Row():
                        distance = gr.Slider(0.4, 3.0, value=1.0, step=0.05, label="distance (× first view's)", elem_id="distance")
                        fov = gr.Slider(*viewer.FOV_RANGE_DEG, value=50, step=1, label="field of view (°)", elem_id="fov")
                    with gr.Row():
                        kind = gr.Dropdown(list(PATH_KINDS), value="auto", label="trajectory")
                        frames = gr.Slider(8, 240, value=48, step=1, label="frames")
                        fps = gr.Slider(1, 60, value=24, step=1, label="fps")
                    video_btn = gr.Button("Render video", elem_id="render-video")
                    video = gr.Video(label="trajectory", elem_id="video")
            with gr.Row():
                gallery = gr.Gallery(label="input views", columns=4, height=260)
                plot = gr.Plot(label="cameras")
            with gr.Row():
                heldout = gr.Gallery(label="held-out views: truth, then rendered", columns=4, height=260)
                metrics = gr.Markdown("", elem_id="metrics")

            scene_outputs = [session, status, gallery, azimuth, elevation, distance, fov, image, plot, heldout, metrics]
            example_btn.click(self.load_example, [seed, views, session, example], scene_outputs, api_name="load_example")
            photos_btn.click(self.load_photos, [photos, views, session], scene_outputs, api_name="reconstruct")
            posed_btn.click(self.load_posed, [posed, views, session], scene_outputs, api_name="load_posed")
            pose_inputs = [azimuth, elevation, distance, fov, session]
            for i, slider in enumerate((azimuth, elevation, distance, fov)):
                slider.release(self.render_view, pose_inputs, [image, plot, timing], concurrency_limit=2,
                               api_name="render_view" if i == 0 else False)
            adapt_btn.click(self.adapt, [budget, session], [session, image, plot, timing, heldout, adapt_report],
                            api_name="adapt")
            video_btn.click(self.render_video, [kind, frames, fps, session], video, api_name="render_video")
        return demo


def launch(checkpoint: str | Path | None = None, port: int = 7860, share: bool = False, size: int = 128,
           host: str = "127.0.0.1", block: bool = True, device: str = "auto", memory_budget: str | int | None = "auto",
           dtype: str = "fp32", limits: Limits = VIEWER_LIMITS, turns: int | str = "auto",
           settings: list[tuple[str, object]] | None = None) -> gr.Blocks:
    """Build and serve the app; the queue runs one heavy job at a time, 32 waiting at most. The
    sessions' files are removed when the server stops (SIGINT, SIGTERM, exit or ``demo.close()``)."""
    check_port(host, port)  # before loading the renderer: a busy port is a message, not a traceback
    app = ViewerApp(checkpoint or "auto", size, device=device, memory_budget=memory_budget, dtype=dtype,
                    limits=limits, turns=turns, settings=settings)
    demo = app.build()
    demo.nvs_app = app  # its session folders, for tests and tools
    demo.queue(max_size=32, default_concurrency_limit=1)
    close = demo.close

    def close_and_clean(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            app.folders.cleanup()

    demo.close = close_and_clean
    if block:
        app.folders.remove_on_signals()
    try:
        demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                    prevent_thread_lock=not block, show_error=True, quiet=not block, css=VIEW_CSS)
    except OSError as exc:  # gradio's own check: the port was taken in the meantime
        app.folders.cleanup()
        raise ValueError(f"--port {port}: cannot serve on {host}:{port} ({exc})") from None
    finally:
        if block:
            app.folders.cleanup()
    return demo
