"""Scenes rendered from the installed furniture package: determinism, the split, placement,
attribution, and data sets the training data path reads back."""

from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image
import pytest
import torch
import torch.nn.functional as F

from nvs.datasets import asset_scenes, furniture
from nvs.datasets.asset_dataset import write_asset_dataset
from nvs.datasets.views import FileViews
from nvs.geometry.capture import axes_meeting_point

pytestmark = pytest.mark.skipif(asset_scenes.unavailable_reason() is not None,
                                reason=str(asset_scenes.unavailable_reason()))


def test_furniture_scene_is_deterministic_white_backed_and_attributed():
    a = asset_scenes.generate_asset_scene("furniture", 3, 3, 32, 32)
    b = asset_scenes.generate_asset_scene("furniture", 3, 3, 32, 32)
    c = asset_scenes.generate_asset_scene("furniture", 4, 3, 32, 32)
    assert a.images.shape == (3, 3, 32, 32) and a.cameras.shape == (3,)
    assert torch.equal(a.images, b.images) and torch.equal(a.cameras.c2w, b.cameras.c2w)
    assert not torch.equal(a.images, c.images)
    assert float(a.images.min()) >= 0 and float(a.images.max()) <= 1
    assert torch.all(a.images[:, :, 0, 0] == 1.0)  # the corners are background: white
    assert (a.images < 0.9).any()  # and the model is there
    # cameras on the sphere of radius 2.7, looking at the centre
    assert torch.allclose(a.cameras.centers.norm(dim=-1), torch.full((3,), 2.7), atol=1e-4)
    forward = a.cameras.c2w[:, :3, 2]
    assert torch.allclose((forward * -a.cameras.centers).sum(-1) / 2.7, torch.ones(3), atol=1e-4)
    (entry,) = a.attribution
    assert entry["licence"] in ("CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US") and entry["creator"]


@pytest.mark.slow  # renders three rooms' worth of models
def test_validation_scenes_use_only_held_out_models():
    val_ids = {p.id for p in furniture.pieces_of_split("val")}
    for seed in range(3):
        scene = asset_scenes.generate_asset_scene("furniture", seed, 1, 16, 16, split="val")
        assert {a["id"] for a in scene.attribution} <= val_ids
    room = asset_scenes.generate_asset_scene("furnished-room", 0, 2, 18, 32, split="val")
    assert room.attribution and {a["id"] for a in room.attribution} <= val_ids


@pytest.mark.slow  # loads a dozen models twice
def test_furnished_room_is_deterministic_and_its_walk_is_smooth():
    a = asset_scenes.generate_asset_scene("furnished-room", 5, 6, 36, 64)
    b = asset_scenes.generate_asset_scene("furnished-room", 5, 6, 36, 64)
    assert a.images.shape == (6, 3, 36, 64) and torch.equal(a.images, b.images)
    assert len(a.attribution) >= 3
    centres = a.cameras.centers
    steps = (centres[1:] - centres[:-1]).norm(dim=-1)
    assert float(steps.max()) < 0.6 and float(centres[:, 2].min()) > 1.3  # eye height, small even steps
    assert torch.isfinite(a.depth).all()  # inside a closed room every pixel hits a surface


def test_orbit_cameras_circle_the_centre_and_look_at_it():
    from nvs.datasets.furnished_room import camera_orbit

    centre = np.array([0.4, -0.2, 0.5])
    fovs = []
    for seed in range(8):
        cams = camera_orbit(np.random.default_rng(seed), 12, 36, 64, centre, 1.5)
        fovs.append(math.degrees(2 * math.atan(32 / float(cams.intrinsics[0, 0]))))
        offset = cams.centers.double().numpy() - centre
        assert np.all(np.abs(np.hypot(offset[:, 0], offset[:, 1]) / 1.5 - 1) <= 0.06 + 1e-6)
        azimuth = np.unwrap(np.arctan2(offset[:, 1], offset[:, 0]))
        turns = np.diff(azimuth)
        assert np.all(np.sign(turns) == np.sign(turns[0]))  # one way round
        assert 2 * np.pi / 3 - 1e-6 <= abs(azimuth[-1] - azimuth[0]) <= 2 * np.pi
        px, depth = cams.project(torch.tensor(centre, dtype=torch.float32).expand(12, 1, 3))
        assert torch.all(depth > 0)
        # aimed within a few centimetres: under 0.08 rad off the optical axis
        assert torch.all((px[:, 0] - torch.tensor([32.0, 18.0])).abs() / cams.intrinsics[:, :1] < 0.08)
    assert all(15 <= f <= 70 for f in fovs)
    assert min(fovs) < 50 <= max(fovs)  # phone lenses and longer ones


@pytest.mark.slow  # loads a dozen models twice
def test_furnished_orbit_is_deterministic_and_circles_a_held_out_piece():
    a = asset_scenes.generate_asset_scene("furnished-orbit", 3, 6, 36, 64, split="val")
    b = asset_scenes.generate_asset_scene("furnished-orbit", 3, 6, 36, 64, split="val")
    assert a.images.shape == (6, 3, 36, 64) and torch.equal(a.images, b.images)
    assert {x["id"] for x in a.attribution} <= {p.id for p in furniture.pieces_of_split("val")}
    assert torch.isfinite(a.depth).all()
    # the piece being circled fills the middle of every frame, around the point the views aim at
    aim = axes_meeting_point(a.cameras.c2w.double(), min_views=2)
    distance = (a.cameras.centers.double() - aim).norm(dim=-1)
    middle = a.depth[:, 0, 15:21, 28:36].flatten(1).min(1).values
    assert torch.all(middle < distance + 1.0)
    assert torch.all(middle < a.depth[:, 0].flatten(1).max(1).values)  # and nearer than the walls


@pytest.mark.slow  # loads a dozen models
def test_runs_of_two_kinds_share_a_data_set_folder(tmp_path):
    write_asset_dataset(tmp_path, "furnished-room", "val", 1, 2, 18, 32, log=lambda m: None)
    summary = write_asset_dataset(tmp_path, "furnished-orbit", "val", 2, 2, 18, 32, log=lambda m: None)
    assert summary["scenes_written"] == 3 and summary["scenes_by_kind"] == {"furnished-orbit": 2, "furnished-room": 1}
    assert len(json.loads((tmp_path / "index.json").read_text())) == 3
    assert len(FileViews(tmp_path, 1, 1, 18, 32)) == 3


def test_placed_pieces_never_intersect_and_keep_clear_of_the_camera_path():
    from nvs.datasets.furnished_room import CAMERA_CLEARANCE, place_pieces, room_candidates

    furnish, openings = room_candidates("train")
    ext = np.array([2.0, 1.8])
    cams = np.array([[0.0, 0.0], [0.3, 0.2]])
    for seed in range(5):
        placed = place_pieces(np.random.default_rng(seed), furnish, openings, 12, ext, 2.6, cams)
        assert len(placed) >= 4
        boxes = []
        for piece, pose in placed:
            w, d, h = piece.size
            corners = np.array([[x, y] for x in (-w / 2, w / 2) for y in (-d / 2, d / 2)]) @ pose[:2, :2].T + pose[:2, 3]
            boxes.append((corners.min(0), corners.max(0), pose[2, 3], pose[2, 3] + h, piece))
        for i, (lo, hi, z0, z1, piece) in enumerate(boxes):
            if not piece.door_or_window:
                assert np.all(lo >= -ext - 1e-6) and np.all(hi <= ext + 1e-6)
            if z0 < 2.0:
                assert not np.any(np.all((cams > lo - CAMERA_CLEARANCE + 1e-6) & (cams < hi + CAMERA_CLEARANCE - 1e-6), axis=1))
            for lo2, hi2, z02, z12, _ in boxes[i + 1:]:
                assert not (np.all(lo < hi2) and np.all(lo2 < hi) and z0 < z12 and z02 < z1)


def test_written_data_set_resumes_and_trains(tmp_path):
    root = tmp_path / "furniture"
    first = write_asset_dataset(root, "furniture", "train", 2, 4, 16, 16, seed=7, log=lambda m: None)
    assert first["scenes_written"] == 2
    stamp = (root / "scenes" / "furniture_train_0000007" / "opencv_cameras.json").stat().st_mtime_ns
    again = write_asset_dataset(root, "furniture", "train", 3, 4, 16, 16, seed=7, log=lambda m: None)
    assert again["scenes_written"] == 3
    assert (root / "scenes" / "furniture_train_0000007" / "opencv_cameras.json").stat().st_mtime_ns == stamp
    credits = json.loads((root / "attribution.json").read_text())
    assert credits["models"] and all(m["licence"] and m["scenes"] for m in credits["models"])
    views = FileViews(root, 2, 2, 16, 16)
    assert views.format == "lact" and len(views) == 3
    sample = views[0]
    assert sample["inputs"].shape == (2, 3, 16, 16) and sample["targets"].shape == (2, 3, 16, 16)
    # the renders' depth maps are written beside their images, for depth-supervised training
    with_depth = FileViews(root, 2, 2, 16, 16, selection="first", depth=True)
    truth = asset_scenes.generate_asset_scene("furniture", 7, 4, 16, 16, "train").depth[2:]
    truth = torch.where(torch.isfinite(truth), truth, torch.zeros_like(truth))
    assert (with_depth[0]["target_depth"] - truth).abs().max() <= 6e-4 and (truth > 0).any()


def test_synth_cli_writes_furniture_in_every_format(tmp_path):
    from nvs.commands.cli import main
    from nvs.datasets.formats import FORMATS, list_scenes, load_views, read_scene

    for fmt in FORMATS:
        out = tmp_path / fmt
        assert main(["data", "synth", "--kind", "furniture", "--split", "val", "--scenes", "2", "--views", "3",
                     "--size", "16", "16", "--format", fmt, "--workers", "1", "--out", str(out)]) in (0, None)
        kind, refs = list_scenes(out)
        assert kind == fmt and len(refs) == 2
        record = read_scene(kind, refs[0])
        images, cams = load_views(record, [0, 1, 2])
        assert images.shape == (3, 3, 16, 16) and torch.allclose(cams.centers.norm(dim=-1), torch.full((3,), 2.7), atol=1e-3)
        credits = json.loads((out / "attribution.json").read_text())
        assert {m["id"] for m in credits["models"]} <= {p.id for p in furniture.pieces_of_split("val")}


def test_throughput_rows_count_views_and_time():
    (row,) = asset_scenes.asset_throughput(("furniture",), views=2, size=16, scenes=1)
    assert row["views"] == 2 and row["width"] == 16 and row["seconds"] > 0 and row["workers"] == 1
    assert row["views_per_second"] == pytest.approx(2 / row["seconds"], rel=0.05)


@pytest.mark.slow
def test_worker_processes_write_the_same_data_set(tmp_path):
    # fitted into the cube: the fit travels with each worker's job (a sphere-fitted twin would differ)
    one = write_asset_dataset(tmp_path / "one", "furniture", "val", 3, 3, 16, 16, seed=4, log=lambda m: None, fit="cube")
    two = write_asset_dataset(tmp_path / "two", "furniture", "val", 3, 3, 16, 16, seed=4, log=lambda m: None, workers=2,
                              fit="cube")
    assert one["scenes_written"] == two["scenes_written"] == 3 and one["fit"] == two["fit"] == "cube"
    for scene in sorted((tmp_path / "one" / "scenes").iterdir()):
        twin = tmp_path / "two" / "scenes" / scene.name
        for name in ("opencv_cameras.json", "attribution.json"):
            assert (scene / name).read_text() == (twin / name).read_text()
        for image in sorted((scene / "images").iterdir()):
            a, b = (np.asarray(Image.open(p)).astype(int) for p in (image, twin / "images" / image.name))
            assert np.array_equal(a, b)
    assert (tmp_path / "one" / "index.json").read_text() == (tmp_path / "two" / "index.json").read_text()


def test_furniture_seen_from_below_the_horizon_when_the_elevations_say_so(tmp_path):
    """`--elevations -40 -10`: every camera below the model's centre; the data set records the range."""
    scene = asset_scenes.generate_asset_scene("furniture", 3, 4, 32, 32, "val", (-40.0, -10.0))
    height = scene.cameras.centers[:, 2] / 2.7
    assert torch.all(height < math.sin(math.radians(-10)) + 1e-4) and torch.all(height > math.sin(math.radians(-40)) - 1e-4)
    summary = write_asset_dataset(tmp_path, "furniture", "val", 1, 2, 32, 32, seed=3, elevation_deg=(-40.0, -10.0),
                                  log=lambda m: None)
    assert summary["elevations"] == [-40.0, -10.0]
    written = json.loads(next((tmp_path / "scenes").glob("*/opencv_cameras.json")).read_text())
    assert all(np.linalg.inv(np.array(f["w2c"]))[2, 3] < 0 for f in written)


def test_a_grey_backdrop_shows_where_the_model_does_not_and_the_data_set_records_it(tmp_path):
    """`--backdrop 0.8`: the pixels no surface covers are that grey, the others as on white; a
    folder written on white is not resumed on grey."""
    white = asset_scenes.generate_asset_scene("furniture", 3, 2, 32, 32, "val")
    grey = asset_scenes.generate_asset_scene("furniture", 3, 2, 32, 32, "val", backdrop=0.8)
    empty = torch.isinf(grey.depth).float().flatten(0, 1)
    assert torch.equal(white.depth, grey.depth) and 0 < empty.mean() < 1
    # away from the outline, whose antialiased pixels mix the two
    background = (-F.max_pool2d(-empty, 3, 1, 1)).bool().unflatten(0, grey.depth.shape[:2]).expand_as(grey.images)
    covered = (F.max_pool2d(empty, 3, 1, 1) == 0).unflatten(0, grey.depth.shape[:2]).expand_as(grey.images)
    assert background.any() and covered.any()
    assert torch.allclose(grey.images[background], torch.full_like(grey.images[background], 0.8), atol=1 / 255)
    assert torch.equal(grey.images[covered], white.images[covered])
    summary = write_asset_dataset(tmp_path, "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None)
    assert summary["backdrop"] == 1.0
    with pytest.raises(ValueError, match="backdrop"):
        write_asset_dataset(tmp_path, "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None, backdrop=0.8)


def test_a_longer_lens_stands_back_and_sees_the_model_as_large_and_the_data_set_records_it(tmp_path):
    """`--fov 20`: the focal length of a 20 deg lens, the cameras as much farther away as keeps the
    model's size in the frame (about the share of pixels it covers at 50 deg), the depth scaled
    with them; a folder written at 50 deg is not resumed at 20."""
    usual = asset_scenes.generate_asset_scene("furniture", 3, 4, 64, 64, "val")
    narrow = asset_scenes.generate_asset_scene("furniture", 3, 4, 64, 64, "val", fov_deg=20.0)
    scale = math.tan(math.radians(25)) / math.tan(math.radians(10))
    assert narrow.cameras.K[:, 0, 0] == pytest.approx(32 / math.tan(math.radians(10)))
    assert narrow.cameras.centers.norm(dim=-1) == pytest.approx(2.7 * scale, rel=1e-5)
    assert usual.cameras.centers.norm(dim=-1) == pytest.approx(2.7, rel=1e-6)
    covered = [float(torch.isfinite(s.depth).float().mean()) for s in (usual, narrow)]
    assert covered[0] > 0.05 and covered[1] == pytest.approx(covered[0], rel=0.15)  # a near-orthographic view of it
    near = torch.isfinite(narrow.depth)
    assert narrow.depth[near].min() > 2.7 * scale - 1.0 and narrow.depth[near].max() < 2.7 * scale + 1.0
    summary = write_asset_dataset(tmp_path / "usual", "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None)
    assert summary["fov"] == 50.0
    with pytest.raises(ValueError, match="fov: 50.0 -> 20.0"):
        write_asset_dataset(tmp_path / "usual", "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None, fov_deg=20.0)
    written = json.loads((tmp_path / "usual" / "synth.json").read_text())
    del written["fov"]  # as a data set written before the lens could be chosen
    (tmp_path / "usual" / "synth.json").write_text(json.dumps(written))
    with pytest.raises(ValueError, match="fov: 50.0 -> 20.0"):
        write_asset_dataset(tmp_path / "usual", "furniture", "val", 2, 2, 32, 32, seed=3, log=lambda m: None, fov_deg=20.0)
    assert write_asset_dataset(tmp_path / "usual", "furniture", "val", 2, 2, 32, 32, seed=3, log=lambda m: None)["fov"] == 50.0
    write_asset_dataset(tmp_path / "narrow", "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None, fov_deg=20.0)
    frames = json.loads(next((tmp_path / "narrow" / "scenes").glob("*/opencv_cameras.json")).read_text())
    for f in frames:  # the lens reaches the files written
        assert f["fx"] == pytest.approx(16 / math.tan(math.radians(10)), rel=1e-5)
        assert np.linalg.norm(np.linalg.inv(np.array(f["w2c"]))[:3, 3]) == pytest.approx(2.7 * scale, rel=1e-5)


def test_a_furniture_model_fitted_into_the_cube_is_drawn_larger_and_the_data_set_records_it(tmp_path):
    sphere = asset_scenes.generate_asset_scene("furniture", 3, 4, 32, 32, "val")
    cube = asset_scenes.generate_asset_scene("furniture", 3, 4, 32, 32, "val", fit="cube")
    assert torch.equal(sphere.cameras.c2w, cube.cameras.c2w)  # the same cameras, a larger model
    covered = [float(torch.isfinite(s.depth).float().mean()) for s in (sphere, cube)]
    assert covered[1] > 1.1 * covered[0]
    summary = write_asset_dataset(tmp_path, "furniture", "val", 1, 2, 32, 32, seed=3, log=lambda m: None, fit="cube")
    assert summary["fit"] == "cube" and json.loads((tmp_path / "synth.json").read_text())["fit"] == "cube"
    with pytest.raises(ValueError, match="fit: 'cube' -> 'sphere'"):
        write_asset_dataset(tmp_path, "furniture", "val", 2, 2, 32, 32, seed=3, log=lambda m: None)
    with pytest.raises(ValueError, match="furnished-room scenes take no fov, fit: those set furniture scenes"):
        write_asset_dataset(tmp_path / "room", "furnished-room", "val", 1, 2, 18, 32, log=lambda m: None, fov_deg=20.0,
                            fit="cube")
    assert not (tmp_path / "room").exists()
    with pytest.raises(ValueError, match="unknown object fit 'box'"):
        write_asset_dataset(tmp_path / "box", "furniture", "val", 1, 2, 32, 32, log=lambda m: None, fit="box")
