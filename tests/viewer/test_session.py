"""The viewer's logic without the page: normalisation, the virtual camera, posed zips, videos."""

import copy
import dataclasses
import math
import re
import zipfile
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from nvs.viewer import session as viewer
from nvs.datasets.procedural import HELDOUT_SEED
from nvs.cameras import Cameras
from nvs.datasets.formats import write_lact_scene
from nvs.datasets.nerfstudio import write_nerfstudio_scene
from nvs.datasets.procedural import object_scene, room_scene
from nvs.geometry.scene_normalization import OBJECT_CAMERA_RADIUS
from nvs.assets import OBJECT_CHECKPOINT
from nvs.models import load_renderer
from nvs.geometry.scene_normalization import rotation_between
from tests.helpers import FIXTURES


def _similarity(cams: Cameras, scale: float, seed: int = 0) -> Cameras:
    """cams moved by a random rotation, a translation and a scale (what SfM's gauge freedom gives)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    q = q * torch.sign(torch.det(q))
    c2w = cams.c2w.double().clone()
    c2w[:, :3, :3] = q @ c2w[:, :3, :3]
    c2w[:, :3, 3] = (c2w[:, :3, 3] @ q.T) * scale + torch.tensor([3.0, -1.0, 7.0], dtype=torch.float64)
    return Cameras(cams.intrinsics, c2w.float(), cams.height, cams.width)


def test_rotation_between_handles_all_cases():
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for a in (torch.tensor([1.0, 2.0, -0.5]), z, -z, torch.tensor([1.0, 0.0, 0.0])):
        a = torch.nn.functional.normalize(a.double(), dim=0)
        r = rotation_between(a, z)
        assert torch.allclose(r @ a, z, atol=1e-9)
        assert torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-9) and abs(float(torch.det(r)) - 1) < 1e-9


def test_normalisation_undoes_a_similarity():
    truth = object_scene(5, 12, 32, 32).cameras
    moved = _similarity(truth, scale=0.37)
    inputs, others = viewer.normalize_to_object_frame(moved[:8], moved[8:])
    # centres land on the training sphere, up is +z: the frame the renderer was trained in
    assert torch.allclose(inputs.centers.norm(dim=-1).mean(), torch.tensor(OBJECT_CAMERA_RADIUS), atol=1e-3)
    assert torch.allclose(inputs.centers.norm(dim=-1), truth.centers[:8].norm(dim=-1), atol=2e-3)
    assert torch.allclose(others.centers.norm(dim=-1), truth.centers[8:].norm(dim=-1), atol=2e-3)
    # up is recovered (cameras without roll), so elevations come back whatever the rotation was
    def elevation(c):
        return torch.asin(c.centers[:, 2] / c.centers.norm(dim=-1))
    assert torch.allclose(elevation(inputs), elevation(truth[:8]), atol=2e-3)
    # each camera still looks at the centre
    forward = inputs.c2w[:, :3, 2]
    to_centre = torch.nn.functional.normalize(-inputs.centers, dim=-1)
    assert ((forward * to_centre).sum(-1) > 0.9999).all()


def test_initial_pose_reproduces_the_first_input_camera():
    scene = viewer.example_scene(seed=7, input_views=4, heldout_views=1, size=32)
    cam = viewer.virtual_camera(scene, viewer.initial_pose(scene))
    assert torch.allclose(cam.c2w[0], scene.cameras.c2w[0], atol=2e-3)
    assert torch.allclose(cam.intrinsics[0], scene.cameras.intrinsics[0], rtol=2e-2)
    turned = viewer.virtual_camera(scene, viewer.ViewPose(90.0, 0.0, 2.0, 50.0))
    assert math.isclose(float(turned.centers.norm()), 2 * float(scene.cameras.centers[0].norm()), rel_tol=1e-3)
    assert abs(float(turned.centers[0, 2])) < 1e-3  # elevation 0 about the turntable's centre
    forward = turned.c2w[0, :3, 2]
    assert float(forward @ torch.nn.functional.normalize(-turned.centers[0], dim=0)) > 0.9999


def test_initial_pose_keeps_a_long_lens_and_clamps_to_the_slider_range():
    """A telephoto turntable (8 deg across, as a product-photo spin) opens on its own lens; a lens
    beyond the field-of-view slider's range opens at its end."""
    scene = viewer.example_scene(seed=7, input_views=4, heldout_views=1, size=32)
    low, high = viewer.FOV_RANGE_DEG
    for fov, expected in ((8.0, 8.0), (low / 2, low), (150.0, high)):
        focal = float(scene.cameras.width / (2 * math.tan(math.radians(fov) / 2)))
        intrinsics = scene.cameras.intrinsics.clone()
        intrinsics[:, :2] = focal
        lens = dataclasses.replace(scene, cameras=Cameras(intrinsics, scene.cameras.c2w, scene.cameras.height,
                                                          scene.cameras.width))
        pose = viewer.initial_pose(lens)
        assert pose.fov == pytest.approx(expected, abs=0.05)
        if fov == expected:
            cam = viewer.virtual_camera(lens, pose)
            assert torch.allclose(cam.intrinsics[0, :2], intrinsics[0, :2], rtol=1e-2)


def test_initial_pose_of_a_walk_is_the_first_photo_and_the_orbit_keeps_it_in_view():
    """A walk's cameras do not look at the scene centre: the initial view is still the first input
    camera, and the sliders orbit the point it looks at, with the horizon level."""
    scene = viewer.example_scene(seed=7, input_views=6, heldout_views=2, size=32, kind="procedural room")
    first = scene.cameras.c2w[0]
    assert float(first[:3, 2] @ torch.nn.functional.normalize(-first[:3, 3], dim=0)) < 0.999  # not aimed at the centre
    pose = viewer.initial_pose(scene)
    cam = viewer.virtual_camera(scene, pose)
    assert torch.allclose(cam.c2w[0, :3, 2], first[:3, 2], atol=1e-3)  # the same view direction
    assert torch.allclose(cam.c2w[0, :3, 3], first[:3, 3], atol=1e-3 * float(first[:3, 3].norm()))
    target = viewer.orbit_target(scene.cameras).float()
    for az, el in ((90.0, pose.elevation), (-40.0, 35.0)):
        moved = viewer.virtual_camera(scene, viewer.ViewPose(az, el, 1.0, pose.fov))
        to_target = target - moved.centers[0]
        assert math.isclose(float(to_target.norm()), float((target - first[:3, 3]).norm()), rel_tol=1e-4)
        assert float(moved.c2w[0, :3, 2] @ torch.nn.functional.normalize(to_target, dim=0)) > 0.9999
        assert abs(float(moved.c2w[0, 2, 0])) < 1e-5  # the camera's x axis stays horizontal
    moved = viewer.virtual_camera(scene, viewer.ViewPose(90.0, pose.elevation, 1.0, pose.fov))
    # a quarter turn about the vertical through the target
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(moved.centers[0] - target, quarter @ (cam.centers[0] - target), atol=1e-4)


def test_a_walk_that_starts_at_the_world_origin_orbits_a_point_ahead_of_its_first_photo():
    """Reconstructions may put the first camera at the origin: the orbit then looks half the
    cameras' spread ahead instead of collapsing onto the camera."""
    scene = viewer.example_scene(seed=7, input_views=6, heldout_views=2, size=32, kind="procedural room")
    c2w = scene.cameras.c2w.clone()
    c2w[:, :3, 3] -= c2w[0, :3, 3].clone()
    moved = dataclasses.replace(scene, cameras=Cameras(scene.cameras.intrinsics, c2w, 32, 32))
    target = viewer.orbit_target(moved.cameras)
    spread = float(moved.cameras.centers.norm(dim=-1).max())
    assert math.isclose(float(target.norm()), spread / 2, rel_tol=1e-5)
    assert float(torch.nn.functional.normalize(target.float(), dim=0) @ c2w[0, :3, 2]) > 0.9999
    cam = viewer.virtual_camera(moved, viewer.ViewPose(30.0, 10.0, 1.0, 50.0))
    assert torch.isfinite(cam.c2w).all() and float(cam.centers[0].norm()) > 0.1 * spread


def _zip_folder(folder, archive, prefix=""):
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, prefix + str(path.relative_to(folder)))
    return archive


@pytest.mark.parametrize("writer", [write_lact_scene, write_nerfstudio_scene])
def test_posed_zip_scene_reads_both_layouts(tmp_path, writer):
    truth = object_scene(3, 10, 48, 48)
    written = writer(tmp_path / "data", "s", truth.images, _similarity(truth.cameras, 4.0))
    folder = written.parent if written.is_file() else written
    archive = _zip_folder(folder, tmp_path / "scene.zip", prefix="my_capture/")
    scene = viewer.posed_zip_scene(archive, tmp_path / "work", input_views=6, size=32)
    assert scene.images.shape == (6, 3, 32, 32) and scene.heldout_images.shape == (4, 3, 32, 32)
    assert torch.allclose(scene.cameras.centers.norm(dim=-1).mean(), torch.tensor(OBJECT_CAMERA_RADIUS), atol=1e-3)
    assert any("held out" in n for n in scene.notes)


def test_a_scene_with_fewer_views_than_asked_takes_them_all_and_says_so(tmp_path):
    """The viewer's auto asks for 48: a capture of 20 becomes 20 inputs and nothing to score."""
    truth = object_scene(3, 20, 48, 48)
    written = write_lact_scene(tmp_path / "data", "s", truth.images, _similarity(truth.cameras, 2.0))
    archive = _zip_folder(written.parent, tmp_path / "scene.zip")
    every = viewer.posed_zip_scene(archive, tmp_path / "work", input_views=48, size=32)
    assert every.images.shape[0] == 20 and every.heldout_images.shape[0] == 0
    assert any(n.startswith("all 20 posed views are inputs") for n in every.notes)
    some = viewer.posed_zip_scene(archive, tmp_path / "work", input_views=12, size=32)
    assert some.images.shape[0] == 12 and some.heldout_images.shape[0] == 8
    assert not any(n.startswith("all ") for n in some.notes)


def test_frames_keep_a_walk_s_shape_and_square_a_turntable(tmp_path):
    assert viewer.frame_size(128, 16 / 9) == (128, 224) and viewer.frame_size(128, 3 / 4) == (176, 128)
    assert viewer.frame_size(128, 1.0) == (128, 128) and viewer.frame_size(64, 5.0) == (64, 128)  # at most 2:1
    walk = room_scene(4, 10, 72, 128)
    written = write_lact_scene(tmp_path / "walk", "s", walk.images, walk.cameras)
    scene = viewer.posed_zip_scene(_zip_folder(written.parent, tmp_path / "walk.zip"), tmp_path / "w1", 6, size=32)
    assert scene.images.shape == (6, 3, 32, 64) and scene.heldout_images.shape == (4, 3, 32, 64)
    assert (scene.cameras.height, scene.cameras.width) == (32, 64)
    turntable = object_scene(3, 10, 48, 64)
    written = write_lact_scene(tmp_path / "turn", "s", turntable.images, turntable.cameras)
    scene = viewer.posed_zip_scene(_zip_folder(written.parent, tmp_path / "turn.zip"), tmp_path / "w2", 6, size=32)
    assert scene.images.shape == (6, 3, 32, 32) and scene.cameras.width == 32


def test_posed_zip_refusals(tmp_path):
    bad = tmp_path / "corrupt.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="corrupt.zip: not a readable zip"):
        viewer.posed_zip_scene(bad, tmp_path / "w")
    photos_only = tmp_path / "photos.zip"
    with zipfile.ZipFile(photos_only, "w") as z:
        z.writestr("a.png", b"x")
    with pytest.raises(ValueError, match="no opencv_cameras.json or transforms.json"):
        viewer.posed_zip_scene(photos_only, tmp_path / "w")
    escaping = tmp_path / "escape.zip"
    with zipfile.ZipFile(escaping, "w") as z:
        z.writestr("../opencv_cameras.json", b"[]")
    with pytest.raises(ValueError, match="outside the archive"):
        viewer.posed_zip_scene(escaping, tmp_path / "w")
    assert not (tmp_path / "opencv_cameras.json").exists()


def test_too_many_photos_and_no_photos_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no files"):
        viewer.photo_scene([], tmp_path)
    many = [tmp_path / f"p{i}.png" for i in range(viewer.MAX_PHOTOS + 1)]
    with pytest.raises(ValueError, match=f"at most {viewer.MAX_PHOTOS}"):
        viewer.photo_scene(many, tmp_path)


@pytest.mark.slow
def test_memorise_render_score_and_video(tmp_path):
    model = load_renderer(OBJECT_CHECKPOINT)
    scene = viewer.example_scene(seed=HELDOUT_SEED, input_views=4, heldout_views=2, size=64)
    state = viewer.memorize(model, scene)
    pred, scores, note = viewer.score_heldout(model, state, scene)
    assert pred.shape == (2, 3, 64, 64) and set(scores) >= {"psnr", "ssim"} and "2 held-out" in note
    video = viewer.render_path_video(model, state, scene, "orbit", 6, 12, tmp_path / "orbit.mp4")
    frames = iio.imread(video)
    assert frames.shape[0] == 6 and frames.shape[1:3] == (64, 64)
    with pytest.raises(ValueError, match="unknown trajectory"):
        viewer.render_path_video(model, state, scene, "zigzag", 6, 12, tmp_path / "x.mp4")


def test_app_handlers_run_a_published_layout_checkpoint():
    """`nvs app --checkpoint` with official key names (the parity fixture): example, render, errors."""
    import gradio as gr

    from nvs.viewer.app import ViewerApp

    app = ViewerApp(FIXTURES / "two_heads.safetensors", size=64)
    session, status, gallery, *_pose, image, _plot, heldout, metrics = app.load_example(HELDOUT_SEED + 1, 4, None)
    assert "4 input views at 64×64" in status and len(gallery) == 4 and len(heldout) == 8 and "PSNR" in metrics
    view, _, timing = app.render_view(30, 20, 1.0, 50, session)
    assert view.shape == image.shape == (64, 64, 3) and "ms/view" in timing
    with pytest.raises(gr.Error, match="load a scene first"):
        app.render_view(0, 0, 1, 50, None)
    with pytest.raises(gr.Error, match="unknown trajectory"):
        app.render_video("zigzag", 8, 12, session)
    from nvs.viewer.app import _drop_session

    assert session.work.is_dir()
    _drop_session(session)  # what gradio calls when the browser session ends
    assert not session.work.exists()
    with pytest.raises(ValueError, match="not a positive multiple of two_heads.safetensors's patch size 8"):
        ViewerApp(FIXTURES / "two_heads.safetensors", size=60)


@pytest.mark.slow
def test_auto_draws_turntables_with_the_object_renderer_and_walks_with_the_scene_renderer():
    from nvs.viewer.app import ViewerApp

    app = ViewerApp(size=64)
    assert set(app.renderers) == {"object", "scene"}
    for kind, renderer, width in (("procedural object", "lact_object", 64), ("procedural room", "lact_scene", 112)):
        session, status, *_ = app.load_example(HELDOUT_SEED, 6, None, kind)
        assert f"renderer `{renderer}.safetensors` (auto: " in status and session.renderer == renderer.split("_")[1]
        assert "trained on" not in status  # no capture warning: each scene went to its own renderer
        assert f"6 input views at 64×{width}" in status  # rooms in 16:9 frames
        view, *_ = app.render_view(20, 10, 1.0, 50, session)
        assert view.shape == (64, width, 3)
    forced = ViewerApp("object", size=64)  # the user's choice wins over the capture
    session, status, *_ = forced.load_example(HELDOUT_SEED, 6, None, "procedural room")
    assert "renderer `lact_object.safetensors` (the renderer asked for)" in status and "--checkpoint scene" in status


def test_scene_renderer_sees_the_scene_in_its_own_frame():
    """The viewer's cameras go to a scene-normalised renderer re-expressed as in its training:
    in the mean input camera's frame, which a similarity of the scene does not change."""
    from nvs.assets import SCENE_CHECKPOINT
    from nvs.inference import renderer_frame

    model = load_renderer(SCENE_CHECKPOINT)
    scene = viewer.example_scene(HELDOUT_SEED, 6, 2, 64, "procedural room")
    frame = renderer_frame(model, scene.cameras)
    inputs = frame(scene.cameras)
    assert torch.allclose(inputs.centers.mean(0), torch.zeros(3), atol=1e-5)
    assert inputs.centers.norm(dim=-1).max() == pytest.approx(1 / 1.35, abs=1e-5)
    pred, scores, _ = viewer.score_heldout(model, viewer.memorize(model, scene, frame), scene, lpips_net="alex", frame=frame)
    assert pred.shape == (2, 3, 64, 112) and scores["psnr"] > 10


def test_app_device_is_checked():
    from nvs.viewer.app import ViewerApp

    with pytest.raises(ValueError, match="not a device name"):
        ViewerApp(OBJECT_CHECKPOINT, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            ViewerApp(OBJECT_CHECKPOINT, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
def test_viewer_renders_on_the_gpu():
    """With the renderer on CUDA, scenes go to the GPU and images come back to the CPU, scoring
    the held-out views as the CPU does."""
    scene = viewer.example_scene()
    scores = {}
    for device in ("cpu", "cuda"):
        model = load_renderer(OBJECT_CHECKPOINT, device=device)
        state = viewer.memorize(model, scene)
        pose = viewer.initial_pose(scene)
        image = viewer.render_views(model, state, viewer.virtual_camera(scene, pose))
        assert image.device.type == "cpu" and image.shape == (1, 3, 128, 128)
        pred, scores[device], _ = viewer.score_heldout(model, state, scene, lpips_net="alex")
    assert abs(scores["cpu"]["psnr"] - scores["cuda"]["psnr"]) < 0.05, scores


def test_the_adaptation_report_says_which_frame_a_fallbacks_search_chose_and_the_hint_names_the_gate():
    from nvs.adaptation.adapter import Adapter
    from nvs.adaptation.search import AdaptOptions, AdaptResult

    result = AdaptResult(None, Adapter.empty(0.0), True, 12.0, 11.5, fallback_reason="the verifier did not improve",
                         searched_frame="object")
    report = viewer.adaptation_report(result, None, None)
    assert "the unadapted model is kept (the search chose frame 'object', not kept)" in report
    assert f"gain at least {AdaptOptions.min_gain_db:g} dB" in viewer.adaptation_hint()


@pytest.mark.slow
def test_app_adapts_to_the_scene_and_reports_before_and_after():
    """The "Adapt to this scene" handler: adapts within the budget, re-memorises, scores before/after."""
    import gradio as gr

    from nvs.viewer.app import ViewerApp

    app = ViewerApp(FIXTURES / "two_heads.safetensors", size=64)
    session, *_ = app.load_example(HELDOUT_SEED + 2, 4, None)
    with pytest.raises(gr.Error, match="load a scene first"):
        app.adapt(10, None)
    with pytest.raises(gr.Error, match="5-600 seconds"):
        app.adapt(1, session)
    session, image, _plot, timing, heldout, report = app.adapt(5, session)
    assert image.shape == (64, 64, 3) and "ms/view" in timing and len(heldout) == 8
    assert re.search(r"held-out input view PSNR [0-9.]+ → [0-9.]+ dB", report), report
    assert re.search(r"held-out views: PSNR [0-9.]+ → [0-9.]+", report), report
    assert ("unadapted model is kept" in report) == (session.model is None)
    assert session.scene.timings["adapt"] <= 5 * 1.5


def test_an_adapted_renderer_runs_with_the_shared_renderers_turns_and_framing():
    """The viewer runs a renderer adapted to a scene as it runs the shared one: its turns (read
    from the shared renderer, not off a runner wrapped in object framing) and its config's framing."""
    from nvs.models.object_framing import ObjectFraming
    from nvs.models.turn_ensemble import TurnEnsemble
    from nvs.viewer.app import ViewerApp

    app = ViewerApp(FIXTURES / "two_heads.safetensors", size=64, turns=2, settings=[("frame_extent", 0.85)])
    (key, shared), = app.runners.items()
    adapted = app.runner_of(key, copy.deepcopy(app.renderers[key]))
    for runner in (shared, adapted):
        assert isinstance(runner, ObjectFraming) and isinstance(runner.renderer, TurnEnsemble)
        assert runner.renderer.turns == 2


def test_a_held_out_furniture_model_is_an_example_with_its_attribution():
    from nvs.datasets.asset_scenes import unavailable_reason
    from nvs.datasets.furniture import split_of

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    assert viewer.example_kinds()[0] == "furniture model"
    scene = viewer.example_scene(seed=3, input_views=4, heldout_views=2, size=32, kind="furniture model")
    assert scene.images.shape == (4, 3, 32, 32) and scene.heldout_images.shape == (2, 3, 32, 32)
    assert "held-out furniture model" in scene.name and " by " in scene.notes[0] and "CC" in scene.notes[0]
    from nvs.datasets.asset_scenes import generate_asset_scene

    piece_id = generate_asset_scene("furniture", 3, 1, 16, 16, split="val").attribution[0]["id"]
    assert split_of(piece_id) == "val"  # never trained on


def test_a_piece_circled_in_a_room_is_an_example_the_scene_renderer_draws():
    from nvs.assets import SCENE_CHECKPOINT
    from nvs.datasets.asset_scenes import unavailable_reason
    from nvs.inference import choose_checkpoint

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    scene = viewer.example_scene(seed=2, input_views=4, heldout_views=2, size=32, kind="furnished room orbit")
    assert scene.images.shape == (4, 3, 32, 64) and scene.heldout_images.shape == (2, 3, 32, 64)
    assert "circled in room 2" in scene.name and len(scene.notes) >= 2
    # the cameras circle a point like a turntable's, but the photos show a room: the scene renderer
    assert choose_checkpoint("auto", scene.cameras, scene.images)[0] == SCENE_CHECKPOINT


def test_an_unknown_example_is_named():
    with pytest.raises(ValueError, match="unknown example 'teapot'"):
        viewer.example_scene(kind="teapot")


def test_the_viewer_reads_with_the_settings_given_to_nvs_app():
    from nvs.viewer.app import ViewerApp

    app = ViewerApp(size=64, settings=[("sweep_refine", 0)])
    assert {key: model.config.sweep_refine for key, model in app.renderers.items()} == {"object": 0, "scene": 0}
    assert ViewerApp(size=64).renderers["scene"].config.sweep_refine == 5  # the checkpoint's own
    with pytest.raises(ValueError, match="match_exposure and backdrop_white both set the photos' gains"):
        ViewerApp(size=64, settings=[("match_exposure", True)])  # the object renderer reads backdrops
