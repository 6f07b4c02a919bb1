"""The Gradio viewer: a scene in (built-in example, photos, or a posed zip), new views out.

Each session keeps its memorised SceneState, so moving the camera only renders. Every handler
turns failures into a readable message on the page (gr.Error); the queue runs one heavy job
(reconstruction, memorising, videos) at a time so two users cannot exhaust memory.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from nvs.viewer import session as viewer
from nvs.datasets.procedural import HELDOUT_SEED
from nvs.geometry.camera_paths import PATH_KINDS
from nvs.viewer.camera_plot import camera_figure
from nvs.assets import DEMO_CHECKPOINT
from nvs.io.media import to_uint8

log = logging.getLogger("nvs.viewer.app")
MAX_UPLOAD = "200mb"  # per file


@dataclass
class Session:
    """What one browser session holds: its scene, the memorised state and a work folder."""

    scene: viewer.ViewerScene
    state: object
    work: Path


def readable_errors(fn):
    """Show every failure as a message on the page; log unexpected ones with their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except Exception as exc:  # anything else is a bug: keep the page alive, log the details
            log.error("unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"internal error ({type(exc).__name__}): {exc}", print_exception=False) from exc

    return wrapper


def _drop_session(session: Session | None) -> None:
    if session is not None:
        shutil.rmtree(session.work, ignore_errors=True)


def _progress_callback(progress: gr.Progress):
    return lambda stage, fraction: progress(fraction, desc=stage)


def _timings(scene: viewer.ViewerScene) -> str:
    return " · ".join(f"{k} {v:.2f} s" for k, v in scene.timings.items())


class ViewerApp:
    """The handlers, bound to one renderer shared (read-only) by all sessions."""

    def __init__(self, checkpoint: str | Path = DEMO_CHECKPOINT, size: int = 128, input_views: int = 8,
                 device: str = "auto", memory_budget: str | int | None = "auto", dtype: str = "fp32"):
        from nvs.inference import configure_inference, resolve_device
        from nvs.models import load_renderer

        self.checkpoint = Path(checkpoint)
        self.model = load_renderer(self.checkpoint, device=resolve_device(device))
        configure_inference(self.model, memory_budget, dtype)
        patch = self.model.config.patch_size
        if size <= 0 or size % patch:
            raise ValueError(f"--size {size} is not a positive multiple of {self.checkpoint.name}'s patch size {patch}")
        self.size = size
        self.input_views = input_views
        self.root = Path(tempfile.mkdtemp(prefix="nvs-app-"))

    def _work(self, session: Session | None) -> Path:
        return session.work if session is not None else Path(tempfile.mkdtemp(dir=self.root))

    def _open(self, scene: viewer.ViewerScene, work: Path, progress: gr.Progress):
        """Memorise a new scene and fill every output of the page."""
        progress(0.9, desc="memorising")
        state = viewer.memorize(self.model, scene)
        session = Session(scene, state, work)
        pose = viewer.initial_pose(scene)
        image, figure, timing = self._render(session, pose)
        pred, scores, note = viewer.score_heldout(self.model, state, scene)
        pairs = [(img, f"truth {i}") for i, img in enumerate(to_uint8(scene.heldout_images))]
        pairs += [(img, f"rendered {i}") for i, img in enumerate(to_uint8(pred))]
        if scores:
            metrics = "**Held-out views:** " + " · ".join(f"{k.upper()} {v:.3f}" for k, v in scores.items()) + f" ({note})"
        else:
            metrics = f"**Held-out views:** {note}"
        status = f"**{scene.name}**: {scene.images.shape[0]} input views at {self.size}×{self.size} · {_timings(scene)} · {timing}"
        if scene.notes:
            status += "\n\n" + "\n".join(f"- {n}" for n in scene.notes)
        gallery = [(img, f"input {i}") for i, img in enumerate(to_uint8(scene.images))]
        return (session, status, gallery, pose.azimuth, pose.elevation, pose.distance, pose.fov,
                image, figure, pairs, metrics)

    def _render(self, session: Session, pose: viewer.ViewPose):
        cam = viewer.virtual_camera(session.scene, pose)
        t0 = time.perf_counter()
        image = viewer.render_views(self.model, session.state, cam)[0]
        seconds = time.perf_counter() - t0
        groups = [("inputs", session.scene.cameras, "tab:blue"), ("held out", session.scene.heldout_cameras, "tab:green"),
                  ("virtual camera", cam, "tab:red")]
        figure = camera_figure(groups, "cameras (scene frame)")
        return to_uint8(image), figure, f"render {seconds * 1000:.0f} ms/view"

    @readable_errors
    def load_example(self, seed, views, session, progress=gr.Progress()):
        progress(0.0, desc="generating the example")
        scene = viewer.example_scene(int(seed), int(views), 4, self.size)
        return self._open(scene, self._work(session), progress)

    @readable_errors
    def load_photos(self, files, views, session, progress=gr.Progress()):
        if not files:
            raise gr.Error("no files uploaded: choose photos, a zip of photos or a video", print_exception=False)
        work = self._work(session)
        paths = [Path(f) for f in (files if isinstance(files, list) else [files])]
        scene = viewer.photo_scene(paths, work, int(views), self.size, _progress_callback(progress))
        return self._open(scene, work, progress)

    @readable_errors
    def load_posed(self, zip_file, views, session, progress=gr.Progress()):
        if not zip_file:
            raise gr.Error("no zip uploaded: choose a zip holding opencv_cameras.json or transforms.json", print_exception=False)
        work = self._work(session)
        progress(0.0, desc="reading the posed scene")
        scene = viewer.posed_zip_scene(Path(zip_file), work, int(views), self.size)
        return self._open(scene, work, progress)

    @readable_errors
    def render_view(self, azimuth, elevation, distance, fov, session):
        if session is None:
            raise gr.Error("load a scene first: an example, photos or a posed zip", print_exception=False)
        image, figure, timing = self._render(session, viewer.ViewPose(float(azimuth), float(elevation), float(distance), float(fov)))
        return image, figure, timing

    @readable_errors
    def render_video(self, kind, frames, fps, session, progress=gr.Progress()):
        if session is None:
            raise gr.Error("load a scene first: an example, photos or a posed zip", print_exception=False)
        out = session.work / f"{kind}-{int(time.time() * 1000)}.mp4"
        viewer.render_path_video(self.model, session.state, session.scene, kind, int(frames), float(fps), out,
                                 _progress_callback(progress))
        return str(out)

    def build(self) -> gr.Blocks:
        # gradio's upload cache: files older than two hours are removed every hour
        with gr.Blocks(title="LaCT-NVS viewer", delete_cache=(3600, 7200)) as demo:
            # a closed session's scene and work folder (uploads, reconstruction, videos) are dropped
            session = gr.State(None, delete_callback=_drop_session)
            gr.Markdown(f"# LaCT-NVS viewer\nRenderer: `{self.checkpoint.name}`. Load a scene, then move the camera: "
                        "the scene is memorised once (fast weights), each new view only renders.")
            with gr.Row():
                with gr.Column(scale=1):
                    with gr.Tab("Example"):
                        seed = gr.Number(HELDOUT_SEED, precision=0, label="procedural object seed (held out from training)")
                        example_btn = gr.Button("Load example", variant="primary", elem_id="load-example")
                    with gr.Tab("Photos"):
                        photos = gr.File(file_count="multiple", label=f"photos, a zip of photos or a video (≤ {viewer.MAX_PHOTOS} photos)",
                                         elem_id="photo-upload")
                        photos_btn = gr.Button("Reconstruct and memorise", variant="primary", elem_id="reconstruct")
                    with gr.Tab("Posed scene"):
                        posed = gr.File(file_types=[".zip"], label="zip with opencv_cameras.json or transforms.json + images",
                                        elem_id="posed-upload")
                        posed_btn = gr.Button("Load posed scene", variant="primary", elem_id="load-posed")
                    views = gr.Slider(2, 16, value=self.input_views, step=1, label="input views")
                    status = gr.Markdown("No scene yet.", elem_id="status")
                with gr.Column(scale=2):
                    image = gr.Image(label="rendered view", interactive=False, elem_id="view", format="png", height=320)
                    timing = gr.Markdown("", elem_id="timing")
                    with gr.Row():
                        azimuth = gr.Slider(-180, 180, value=0, step=1, label="azimuth (°)", elem_id="azimuth")
                        elevation = gr.Slider(-89, 89, value=20, step=1, label="elevation (°)", elem_id="elevation")
                    with gr.Row():
                        distance = gr.Slider(0.4, 3.0, value=1.0, step=0.05, label="distance (× inputs')", elem_id="distance")
                        fov = gr.Slider(10, 120, value=50, step=1, label="field of view (°)", elem_id="fov")
                    with gr.Row():
                        kind = gr.Dropdown(list(PATH_KINDS), value="orbit", label="trajectory")
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
            example_btn.click(self.load_example, [seed, views, session], scene_outputs, api_name="load_example")
            photos_btn.click(self.load_photos, [photos, views, session], scene_outputs, api_name="reconstruct")
            posed_btn.click(self.load_posed, [posed, views, session], scene_outputs, api_name="load_posed")
            pose_inputs = [azimuth, elevation, distance, fov, session]
            for i, slider in enumerate((azimuth, elevation, distance, fov)):
                slider.release(self.render_view, pose_inputs, [image, plot, timing], concurrency_limit=2,
                               api_name="render_view" if i == 0 else False)
            video_btn.click(self.render_video, [kind, frames, fps, session], video, api_name="render_video")
        return demo


def launch(checkpoint: str | Path | None = None, port: int = 7860, share: bool = False, size: int = 128,
           host: str = "127.0.0.1", block: bool = True, device: str = "auto", memory_budget: str | int | None = "auto",
           dtype: str = "fp32") -> gr.Blocks:
    """Build and serve the app; the queue runs one heavy job at a time, 32 waiting at most."""
    demo = ViewerApp(checkpoint or DEMO_CHECKPOINT, size, device=device, memory_budget=memory_budget, dtype=dtype).build()
    demo.queue(max_size=32, default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                prevent_thread_lock=not block, show_error=True, quiet=not block)
    return demo
