import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as iio2
import pytest
import torch

from nvs.geometry.camera_paths import interpolate_path, make_path, orbit_path, read_nerfstudio_path, spiral_path
from nvs.cameras import Cameras, look_at, opencv_to_opengl
from nvs.datasets.procedural import object_cameras
from nvs.models import LaCTRenderer, save_renderer

from tests.helpers import run_nvs, tiny_config


def _run_process(*args):
    """``nvs ARGS`` as a user runs it, in its own process (most tests here run it in-process: run_nvs)."""
    return subprocess.run([sys.executable, "-m", "nvs", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrender")
    out = run_nvs("data", "synth", "--scenes", "2", "--views", "5", "--size", "32", "32", "--out", root / "data")
    assert out.returncode == 0, out.stderr
    torch.manual_seed(0)
    ckpt = save_renderer(LaCTRenderer(tiny_config()), root / "model.safetensors")
    return root, ckpt


def test_eval_writes_summary_csv_and_images(workspace):
    root, ckpt = workspace
    out = _run_process("eval", "--checkpoint", ckpt, "--data", root / "data", "--views", "3", "--size", "32", "32", "--out", root / "ev")
    assert out.returncode == 0, out.stderr
    summary = json.loads((root / "ev" / "summary.json").read_text())
    assert summary["scenes"] == 2 and summary["views"] == 4
    assert 3 < summary["psnr"]["mean"] < 40 and 0 <= summary["ssim"]["mean"] <= 1 and 0 <= summary["lpips"]["mean"] <= 1
    assert summary["protocol"]["input_views"] == 3 and summary["renders_per_second"] > 0
    rows = list(csv.DictReader(open(root / "ev" / "per_view.csv")))
    assert len(rows) == 4 and {"scene", "view", "psnr", "ssim", "lpips", "nearest_psnr"} <= set(rows[0])
    assert set(summary["nearest_view"]) == {"psnr", "ssim", "lpips"}
    images = sorted((root / "ev" / "images").rglob("*.png"))
    assert len(images) == 4 and iio2.imread(images[0]).shape == (32, 66, 3)  # GT | prediction, 2 px gap


def _protocol_runs(workspace, flag: str, value: str) -> dict[str, dict]:
    """Summaries of `nvs eval` without the robustness ``flag``, with it, and with it again."""
    root, ckpt = workspace
    runs = {}
    for name, extra in (("plain", []), ("changed", [flag, value]), ("again", [flag, value])):
        out_dir = root / f"ev{flag}-{name}"
        out = run_nvs("eval", "--checkpoint", ckpt, "--data", root / "data", "--views", "3", "--size", "32", "32",
                      "--no-images", *extra, "--out", out_dir)
        assert out.returncode == 0, out.stderr
        runs[name] = json.loads((out_dir / "summary.json").read_text())
    return runs


def test_eval_can_jitter_the_input_exposures_and_says_so(workspace):
    """The robustness protocol changes the inputs (so the nearest input view scores differently)
    and not the targets, the same way on every run."""
    runs = _protocol_runs(workspace, "--input-exposure-jitter", "0.3")
    assert runs["changed"]["protocol"]["input_exposure_jitter"] == 0.3 and "input_exposure_jitter" not in runs["plain"]["protocol"]
    assert runs["changed"]["nearest_view"]["psnr"] < runs["plain"]["nearest_view"]["psnr"] - 0.1
    assert runs["changed"]["nearest_view"] == runs["again"]["nearest_view"]


def test_eval_can_turn_the_input_cameras_and_says_so(workspace):
    """Pose noise moves the inputs' cameras, not their photos or centres (the nearest input view
    scores the same) and not the targets, the same way on every run."""
    runs = _protocol_runs(workspace, "--input-pose-noise", "3")
    assert runs["changed"]["protocol"]["input_pose_noise_deg"] == 3 and "input_pose_noise_deg" not in runs["plain"]["protocol"]
    assert runs["changed"]["nearest_view"] == runs["plain"]["nearest_view"]
    assert runs["changed"]["psnr"]["mean"] != runs["plain"]["psnr"]["mean"]
    assert runs["changed"]["psnr"] == runs["again"]["psnr"]


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ""])
def test_render_writes_video(workspace, suffix):
    root, ckpt = workspace
    target = root / f"video{suffix or '_frames'}"
    out = run_nvs("render", "--checkpoint", ckpt, "--scene", root / "data", "--views", "3", "--size", "32", "32",
                  "--frames", "7", "--fps", "5", "--out", target)
    assert out.returncode == 0, out.stderr
    if suffix == ".mp4":
        reader = iio2.get_reader(target)
        assert reader.count_frames() == 7 and reader.get_meta_data()["fps"] == 5 and reader.get_data(0).shape == (32, 32, 3)
    elif suffix == ".gif":
        frames = iio2.mimread(target)
        assert len(frames) == 7 and frames[0].shape[:2] == (32, 32)
    else:
        assert len(list(target.glob("*.png"))) == 7


def test_a_renderer_that_matches_exposure_says_what_it_did_to_the_photos(workspace):
    root, ckpt = workspace
    torch.manual_seed(0)
    matching = save_renderer(LaCTRenderer(tiny_config(match_exposure=True)), root / "matching.safetensors")
    for model, name in ((ckpt, "plain"), (matching, "matching")):
        out = run_nvs("render", "--checkpoint", model, "--scene", root / "data", "--views", "3", "--size", "32", "32",
                      "--frames", "2", "--out", root / f"{name}.mp4")
        assert out.returncode == 0, out.stderr
        summary = json.loads((root / f"{name}.mp4.json").read_text())
        if name == "plain":
            assert summary["exposure_gains"] is None and "exposures matched" not in out.stdout
        else:
            gains = torch.tensor(summary["exposure_gains"])
            assert gains.shape == (3, 3) and (gains > 0).all()
            # the note says what was done to the photos: nothing where every gain is 1
            assert ("input exposures matched" in out.stdout) == bool((gains != 1).any())


def test_a_renderer_that_frames_objects_says_how_far_it_zoomed_out_and_a_setting_turns_it_off(workspace):
    """A renderer whose config sets frame_extent (and frame_canvas) zooms a capture whose object
    reaches farther out (the procedural objects on white, against an extent of 0.3), reads it on a
    widened canvas too, and says so, in nvs render and in nvs eval; frame_extent=0 renders the
    cameras as given."""
    root, _ = workspace
    torch.manual_seed(0)
    framing = save_renderer(LaCTRenderer(tiny_config(frame_extent=0.3, frame_canvas=True)), root / "framing.safetensors")
    for settings, name in (([], "framed"), (["--setting", "frame_extent=0"], "as-given")):
        out = run_nvs("render", "--checkpoint", framing, "--scene", root / "data", "--views", "3", "--size", "32", "32",
                      "--frames", "2", *settings, "--out", root / f"{name}.mp4")
        assert out.returncode == 0, out.stderr
        summary = json.loads((root / f"{name}.mp4.json").read_text())
        scored = run_nvs("eval", "--checkpoint", framing, "--data", root / "data", "--views", "3", "--size", "32", "32",
                         "--no-images", *settings, "--out", root / f"eval-{name}")
        assert scored.returncode == 0, scored.stderr
        scores = json.loads((root / f"eval-{name}" / "summary.json").read_text())
        if name == "framed":
            assert 0.3 <= summary["framing_zoom"] < 1 and f"zoomed out to {summary['framing_zoom']:.2f}x" in out.stdout
            assert summary["framing_canvas"] and "canvas widened" in out.stdout
            assert 1 <= scores["framed_scenes"] <= scores["scenes"] and 0.3 <= scores["least_framing_zoom"] < 1
            assert f"zoomed {scores['framed_scenes']} of {scores['scenes']} scenes out" in scored.stdout
        else:
            assert summary["framing_zoom"] == 1.0 and "zoomed out" not in out.stdout and not summary["framing_canvas"]
            assert scores["framed_scenes"] == 0 and scores["least_framing_zoom"] == 1.0 and "framing" not in scored.stdout


def test_render_nerfstudio_path_file(workspace):
    root, ckpt = workspace
    cams = object_cameras(torch.Generator().manual_seed(0), 4, 32, 32)
    frames = [{"camera_to_world": opencv_to_opengl(c).reshape(-1).tolist(), "fov": 50.0} for c in cams.c2w]
    (root / "camera_path.json").write_text(json.dumps({"render_height": 32, "render_width": 32, "fps": 3, "camera_path": frames}))
    out = run_nvs("render", "--checkpoint", ckpt, "--scene", root / "data", "--views", "3", "--size", "32", "32",
                  "--path", root / "camera_path.json", "--out", root / "ns.mp4")
    assert out.returncode == 0, out.stderr
    assert iio2.get_reader(root / "ns.mp4").count_frames() == 4


def test_nerfstudio_path_is_converted_to_opencv(tmp_path):
    cams = object_cameras(torch.Generator().manual_seed(1), 3, 40, 40)
    frames = [{"camera_to_world": opencv_to_opengl(c).reshape(-1).tolist(), "fov": 50.0} for c in cams.c2w]
    (tmp_path / "p.json").write_text(json.dumps({"render_height": 40, "render_width": 40, "camera_path": frames}))
    read, fps = read_nerfstudio_path(tmp_path / "p.json")
    assert torch.allclose(read.c2w, cams.c2w, atol=1e-5) and fps == 24
    assert torch.allclose(read.intrinsics, cams.intrinsics, atol=1e-3)


def test_paths_geometry():
    cams = object_cameras(torch.Generator().manual_seed(2), 6, 32, 32)
    orbit = orbit_path(cams, 12)
    assert torch.allclose(orbit.centers.norm(dim=-1), torch.full((12,), 2.7), atol=1e-3)
    px, _ = orbit.project(torch.zeros(12, 1, 3))
    assert torch.allclose(px, torch.full((12, 1, 2), 16.0), atol=1e-3)  # the centre stays in the middle
    inter = interpolate_path(cams[:3], 9)
    assert torch.allclose(inter.c2w[0], cams.c2w[0], atol=1e-5) and torch.allclose(inter.c2w[-1], cams.c2w[2], atol=1e-5)
    rot = inter.c2w[:, :3, :3]
    assert torch.allclose(rot @ rot.mT, torch.eye(3).expand(9, 3, 3), atol=1e-5)
    assert spiral_path(cams, 10).shape == (10,)


def test_the_auto_path_orbits_an_object_and_follows_a_walk():
    ring = object_cameras(torch.Generator().manual_seed(2), 6, 32, 32)
    assert torch.equal(make_path("auto", ring, 12)[0].c2w, orbit_path(ring, 12).c2w)
    eye = torch.stack([torch.linspace(-1.0, 1.0, 4), torch.zeros(4), torch.full((4,), 1.5)], -1)
    walk = Cameras(torch.tensor([40.0, 40.0, 16.0, 16.0]).expand(4, 4),
                   look_at(eye, eye + torch.tensor([0.0, 3.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]).expand(4, 3)), 32, 32)
    path = make_path("auto", walk, 7)[0]
    assert torch.allclose(path.c2w, interpolate_path(walk, 7).c2w)
    assert torch.allclose(path.centers[[0, -1]], eye[[0, -1]], atol=1e-5)  # from the first input camera to the last
    assert make_path("auto", walk[:1], 5)[0].shape == (5,)  # one camera: nothing to follow, an orbit


@pytest.mark.slow
def test_bad_inputs_give_clear_errors(workspace, tmp_path):
    root, ckpt = workspace
    (tmp_path / "w.bin").write_bytes(b"x")
    (tmp_path / "bad_path.json").write_text('{"camera_path": [{"camera_to_world": [1, 2, 3]}]}')
    (tmp_path / "index.json").write_text(json.dumps({"nope": {"context": [0], "target": [1]}}))
    cases = [
        (("eval", "--checkpoint", tmp_path / "missing.safetensors", "--data", root / "data", "--out", tmp_path / "o"), "not found"),
        (("eval", "--checkpoint", tmp_path / "w.bin", "--data", root / "data", "--out", tmp_path / "o"), "not a readable torch checkpoint"),
        (("eval", "--checkpoint", ckpt, "--data", root / "data", "--views", "5", "--size", "32", "32", "--out", tmp_path / "o"), "need at least 6"),
        (("eval", "--checkpoint", ckpt, "--data", root / "data", "--index", tmp_path / "index.json", "--out", tmp_path / "o"), "nope"),
        (("render", "--checkpoint", ckpt, "--scene", root / "data", "--size", "32", "32", "--path", tmp_path / "bad_path.json",
          "--out", tmp_path / "v.mp4"), "not a valid nerfstudio camera path"),
        (("render", "--checkpoint", ckpt, "--scene", root / "data", "--path", "zigzag", "--size", "32", "32", "--out", tmp_path / "v.mp4"),
         "unknown camera path"),
        (("eval", "--checkpoint", ckpt, "--data", root / "data", "--device", "tpu", "--out", tmp_path / "o"), "not a device name"),
    ]
    if not torch.cuda.is_available():
        cases.append((("render", "--checkpoint", ckpt, "--scene", root / "data", "--device", "cuda", "--out", tmp_path / "v.mp4"),
                      "sees no CUDA GPU"))
    for args, message in cases:
        out = _run_process(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (message, out.stderr)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
def test_eval_and_render_on_the_gpu(workspace):
    root, ckpt = workspace
    scores = {}
    for device in ("cpu", "cuda"):
        out = run_nvs("eval", "--checkpoint", ckpt, "--data", root / "data", "--views", "3", "--size", "32", "32", "--no-images",
                      "--lpips-net", "alex", "--device", device, "--out", root / f"ev-{device}")
        assert out.returncode == 0, out.stderr
        summary = json.loads((root / f"ev-{device}" / "summary.json").read_text())
        assert summary["device"] == device
        scores[device] = summary["psnr"]["mean"]
    assert abs(scores["cpu"] - scores["cuda"]) < 0.05, scores
    out = run_nvs("render", "--checkpoint", ckpt, "--scene", root / "data", "--views", "3", "--size", "32", "32", "--frames", "3",
                  "--device", "cuda", "--out", root / "frames-gpu")
    assert out.returncode == 0, out.stderr
    assert len(list((root / "frames-gpu").glob("*.png"))) == 3
    assert json.loads((root / "frames-gpu.json").read_text())["device"] == "cuda"


def test_render_picks_the_shipped_renderer_of_the_capture(tmp_path):
    """`nvs render` without --checkpoint: a walk through a room goes to the scene renderer, a
    turntable on white to the object renderer, a turntable whose photos show a background to the
    scene renderer; --checkpoint names either whatever the capture."""
    from nvs.datasets.formats import write_dataset
    from nvs.datasets.procedural import object_scene, room_scene

    room, turntable = room_scene(5, 8, 64, 64), object_scene(5, 8, 64, 64)
    for kind, images, cams, renderer in (("room", room.images, room.cameras, "lact_scene"),
                                         ("object", turntable.images, turntable.cameras, "lact_object"),
                                         ("backdrop", room.images, turntable.cameras, "lact_scene")):
        write_dataset(tmp_path / kind, "lact", [(kind, images, cams)])
        out = tmp_path / f"{kind}.mp4"
        run = run_nvs("render", "--scene", tmp_path / kind, "--views", "4", "--frames", "3", "--size", "64", "64", "--out", out)
        assert run.returncode == 0, run.stderr
        summary = json.loads((tmp_path / f"{kind}.mp4.json").read_text())
        assert summary["checkpoint"].endswith(f"{renderer}.safetensors") and summary["renderer_choice"].startswith("auto")
        assert summary["warnings"] == [] and summary["normalize"] == ("object" if kind == "object" else "lvsm")
        assert summary["path"] == ("interpolate" if kind == "room" else "orbit")
    run = run_nvs("render", "--checkpoint", "object", "--scene", tmp_path / "room", "--views", "4", "--frames", "3",
                  "--size", "64", "64", "--out", tmp_path / "forced.mp4")
    assert run.returncode == 0, run.stderr
    forced = json.loads((tmp_path / "forced.mp4.json").read_text())
    assert forced["checkpoint"].endswith("lact_object.safetensors") and "--checkpoint scene" in forced["warnings"][0]


@pytest.mark.slow
def test_render_memorises_as_many_input_views_as_its_renderer_gains_from(tmp_path, monkeypatch):
    """--views auto (the default): every view of a turntable for the object renderer and of a walk
    for the scene renderer up to AUTO_VIEWS_PHOTOS, spread from a walk's first frame to its last,
    and what is memorised is what the summary lists; a number is taken as given, and the k-means
    protocol keeps its 8."""
    from nvs.datasets.formats import write_dataset
    from nvs.datasets.procedural import object_scene, room_scene
    from nvs.inference import AUTO_VIEWS_PHOTOS

    import nvs.commands.render as render_command

    frames = 20
    room, turntable = room_scene(5, AUTO_VIEWS_PHOTOS + 4, 64, 64), object_scene(5, frames, 64, 64)
    memorised = []
    memorize_views = render_command.memorize_views
    monkeypatch.setattr(render_command, "memorize_views",
                        lambda runner, images, cams: memorised.append(images.shape[-4]) or memorize_views(runner, images, cams))
    read, load_views = [], render_command.load_views
    monkeypatch.setattr(render_command, "load_views",
                        lambda record, chosen, *args, **kwargs: read.append(len(chosen)) or load_views(record, chosen, *args, **kwargs))
    chosen = {}
    for kind, scene, options in (("room", room, []), ("object", turntable, []), ("few", room, ["--views", "3"]),
                                 ("kmeans", turntable, ["--selection", "kmeans"])):
        write_dataset(tmp_path / kind, "lact", [(kind, scene.images, scene.cameras)])
        run = run_nvs("render", "--scene", tmp_path / kind, *options, "--frames", "2", "--size", "64", "64",
                      "--out", tmp_path / f"{kind}.mp4")
        assert run.returncode == 0, run.stderr
        chosen[kind] = json.loads((tmp_path / f"{kind}.mp4.json").read_text())["input_views"]
    assert sorted(chosen["object"]) == list(range(frames))
    assert len(set(chosen["room"])) == AUTO_VIEWS_PHOTOS and {0, AUTO_VIEWS_PHOTOS + 3} <= set(chosen["room"])
    assert len(chosen["few"]) == 3 and len(chosen["kmeans"]) == 8  # a protocol's selection keeps its count
    assert memorised == [len(chosen[kind]) for kind in ("room", "object", "few", "kmeans")]
    # --checkpoint auto judges the capture on the photos it memorises, read once
    assert read == memorised


@pytest.mark.slow
def test_the_object_renderer_scores_a_capture_alike_in_any_world_frame(tmp_path):
    """Its checkpoint names the object normalisation: the same turntable with the world turned
    y-up, shrunk and shifted (another convention for the same photos) scores as in the frame it
    was rendered in, and only collapses when the normalisation is switched off."""
    from nvs.datasets.formats import write_dataset
    from nvs.datasets.procedural import object_scene

    scene = object_scene(11, 10, 128, 128)
    y_up = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)
    c2w = scene.cameras.c2w.double().clone()
    c2w[:, :3, :3] = y_up @ c2w[:, :3, :3]
    c2w[:, :3, 3] = 0.55 * c2w[:, :3, 3] @ y_up.T + torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    moved = Cameras(scene.cameras.intrinsics, c2w.float(), 128, 128)
    psnr = {}
    for name, cams, normalize in (("as-made", scene.cameras, []), ("moved", moved, []),
                                  ("moved-raw", moved, ["--normalize", "none"])):
        write_dataset(tmp_path / name, "lact", [("s", scene.images, cams)])
        run = run_nvs("eval", "--checkpoint", "object", "--data", tmp_path / name, "--views", "8", "--size", "128", "128",
                      "--no-images", "--lpips-net", "alex", *normalize, "--out", tmp_path / f"ev-{name}")
        assert run.returncode == 0, run.stderr
        summary = json.loads((tmp_path / f"ev-{name}" / "summary.json").read_text())
        # auto: the shipped object renderer runs in two turns of its frame, each also mirrored
        assert summary["turns"] == 2 and summary["mirror"]
        psnr[name] = summary["psnr"]["mean"]
    # the frames agree to 1e-7, but the fast-weight update's bfloat16 Newton-Schulz (as published)
    # turns differences that small into ~0.1 dB
    assert abs(psnr["moved"] - psnr["as-made"]) < 0.5 and psnr["moved-raw"] < psnr["as-made"] - 3, psnr


def test_eval_scores_the_sweep_oracle_and_refuses_it_without_a_sweep(workspace, tmp_path):
    root, plain = workspace
    refused = run_nvs("eval", "--checkpoint", plain, "--data", root / "data", "--views", "3", "--size", "32", "32",
                      "--sweep-oracle", "--out", tmp_path / "refused")
    assert refused.returncode != 0 and "needs a renderer with a plane sweep" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "refused" / "summary.json").exists()
    torch.manual_seed(0)
    sweep = save_renderer(LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0)),
                          tmp_path / "sweep.safetensors")
    out = run_nvs("eval", "--checkpoint", sweep, "--data", root / "data", "--views", "3", "--size", "32", "32",
                  "--no-images", "--sweep-oracle", "--out", tmp_path / "ev")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "ev" / "per_view.csv")))
    oracle = [float(r["oracle_psnr"]) for r in rows]
    assert len(oracle) == 4 and all(5 < v < 60 for v in oracle)
    assert summary["oracle_psnr"] == pytest.approx(sum(oracle) / 4) and "ground truth" in out.stdout


def test_eval_and_render_read_with_the_settings_given_on_the_command_line(workspace, tmp_path):
    root, _ = workspace
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0))
    plain = save_renderer(model, tmp_path / "plain.safetensors")
    refined = save_renderer(model, tmp_path / "refined.safetensors",
                            config=dataclasses.replace(model.config, sweep_refine=3, sweep_zncc=2.0))
    common = ["--data", root / "data", "--views", "3", "--size", "32", "32", "--no-images"]
    runs = {}
    for name, checkpoint, extra in (("plain", plain, []), ("recorded", refined, []),
                                    ("set", plain, ["--setting", "sweep_refine=3", "--setting", "sweep_zncc=2"])):
        run = run_nvs("eval", "--checkpoint", checkpoint, *common, *extra, "--out", tmp_path / name)
        assert run.returncode == 0, run.stderr
        runs[name] = ([float(r["psnr"]) for r in csv.DictReader(open(tmp_path / name / "per_view.csv"))],
                      json.loads((tmp_path / name / "summary.json").read_text()))
    assert runs["set"][0] == runs["recorded"][0] and runs["set"][0] != runs["plain"][0]
    assert runs["set"][1]["reading_settings"] == {"sweep_refine": 3, "sweep_zncc": 2}
    assert "reading_settings" not in runs["plain"][1]
    video = tmp_path / "walk.mp4"
    out = run_nvs("render", "--checkpoint", plain, "--scene", root / "data", "--frames", "2", "--views", "3",
                  "--size", "32", "32", "--setting", "sweep_refine=3", "--out", video)
    assert out.returncode == 0, out.stderr
    assert json.loads(Path(str(video) + ".json").read_text())["reading_settings"] == {"sweep_refine": 3}


@pytest.mark.parametrize("setting, message", [
    ("sweep_refine=4", "'sweep_refine' must be 0 or an odd whole number"),
    ("sweep_depth_views=3", "'sweep_depth_views' must be 0 or a whole number from 2 to sweep_views (2)"),
    ("sweep_range=everywhere", "'sweep_range' must be one of"),
    ("match_exposure=1", "'match_exposure' must be true or false"),
    ("backdrop_white=true", "backdrop_white needs a plane sweep with silhouettes"),
])
def test_a_setting_the_renderer_refuses_is_named(workspace, tmp_path, setting, message):
    root, _ = workspace
    sweep = save_renderer(LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=8)), tmp_path / "sweep.safetensors")
    out = run_nvs("eval", "--checkpoint", sweep, "--data", root / "data", "--views", "3", "--size", "32", "32",
                  "--setting", setting, "--out", tmp_path / "ev")
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "ev" / "summary.json").exists()


@pytest.mark.parametrize("extra, message", [
    (["--setting", "sweep_refine"], "must be KEY=VALUE"),
    (["--setting", "patch_size=8"], "'patch_size' is not a reading setting"),
    (["--setting", "sweep_refine=3", "--setting", "sweep_refine=5"], "sweep_refine: given twice"),
    (["--setting", "sweep_refine=3"], "this renderer has no plane sweep"),
])
def test_settings_that_cannot_apply_are_refused(workspace, tmp_path, extra, message):
    root, plain = workspace
    out = run_nvs("eval", "--checkpoint", plain, "--data", root / "data", "--views", "3", "--size", "32", "32", *extra,
                  "--out", tmp_path / "ev")
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "ev" / "summary.json").exists()
