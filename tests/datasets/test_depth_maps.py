"""Depth maps on disk (16-bit PNG z-depth), in the lact layout, and in training samples."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nvs.datasets.depth_maps import DEPTH_SCALE, read_depth_png, write_depth_png
from nvs.datasets.formats import list_scenes, load_depths, read_scene, write_lact_frames, write_lact_scene
from nvs.datasets.procedural import object_scene, room_scene
from nvs.datasets.views import FileViews, ProceduralViews, known_depth
from nvs.geometry.scene_normalization import SceneNormalization


def _write(root, name, scene, depth=True):
    """One lact-layout scene with its index.json; returns its opencv_cameras.json."""
    cameras = write_lact_scene(root, name, scene.images, scene.cameras, scene.depth if depth else None)
    (root / "index.json").write_text(json.dumps([str(cameras.relative_to(root))]))
    return cameras


def _record(root):
    fmt, files = list_scenes(root)
    return read_scene(fmt, files[0])


@pytest.fixture(scope="module")
def scene():
    return object_scene(seed=4, views=6, height=32, width=32)


def test_png_round_trip_keeps_millimetres_and_marks_no_surface(tmp_path):
    depth = torch.tensor([[1.2344, float("inf"), 0.0], [70.0, float("nan"), 2.5]])
    path = write_depth_png(tmp_path / "d.png", depth)
    assert iio.imread(path).dtype == np.uint16
    back = read_depth_png(path, DEPTH_SCALE, (2, 3), "test")
    assert back.shape == (1, 2, 3)
    assert torch.allclose(back[0], torch.tensor([[1.234, 0.0, 0.0], [0.0, 0.0, 2.5]]), atol=1e-6)


def test_lact_scene_with_depth_reads_back_as_its_targets_depth(tmp_path, scene):
    record = _record(_write(tmp_path, "s0", scene).parents[2])
    truth = known_depth(scene.depth)
    assert (load_depths(record, [0, 3], 32, 32) - truth[[0, 3]]).abs().max() <= DEPTH_SCALE / 2 + 1e-6
    data = FileViews(tmp_path, 4, 2, 32, 32, selection="first", depth=True)
    sample = data[0]
    assert sample["target_depth"].shape == (2, 1, 32, 32)
    assert (sample["target_depth"] - truth[4:]).abs().max() <= DEPTH_SCALE / 2 + 1e-6
    assert "target_depth" not in FileViews(tmp_path, 4, 2, 32, 32, selection="first")[0]
    with pytest.raises(ValueError, match="not resized"):
        FileViews(tmp_path, 4, 2, 16, 16, selection="first", depth=True)[0]


def test_normalised_samples_carry_depth_in_the_new_units(tmp_path):
    room = room_scene(seed=3, views=6, height=32, width=48)
    _write(tmp_path, "r0", room)
    sample = FileViews(tmp_path, 4, 2, 32, 48, selection="first", normalize="lvsm", depth=True)[0]
    norm = SceneNormalization.fit(room.cameras.c2w[:4].float())
    expected = known_depth(room.depth[4:]) * norm.scale
    assert (sample["target_depth"] - expected).abs().max() <= DEPTH_SCALE * float(norm.scale) + 1e-6
    assert float(norm.scale) != pytest.approx(1.0, abs=1e-3)


def test_procedural_samples_carry_their_targets_depth():
    sample = ProceduralViews("object", 2, 3, 2, 32, 32, seed=9, depth=True)[0]
    truth = known_depth(object_scene(9, 5, 32, 32).depth[3:])
    assert torch.equal(sample["target_depth"], truth) and (truth > 0).any() and (truth == 0).any()
    room = ProceduralViews("room", 2, 3, 2, 32, 48, seed=9, depth=True)[0]
    assert room["target_depth"].shape == (2, 1, 32, 48) and (room["target_depth"] > 0).all()


@pytest.mark.parametrize("edit, message", [
    (lambda frames: frames[1].pop("depth_path"), "have no 'depth_path' while others do"),
    (lambda frames: frames[0].update(depth_scale=0), r"'depth_scale' must be in \(0, 1000\]"),
    (lambda frames: frames[0].update(depth_scale=1e300), r"'depth_scale' must be in \(0, 1000\]"),
    (lambda frames: frames[0].update(depth_scale="mm"), "'depth_scale' must be a finite number"),
    (lambda frames: frames[0].update(depth_path="../../outside.png"), "outside"),
])
def test_bad_depth_entries_are_named(tmp_path, scene, edit, message):
    cameras = _write(tmp_path, "s0", scene)
    frames = json.loads(cameras.read_text())
    edit(frames)
    cameras.write_text(json.dumps(frames))
    with pytest.raises(ValueError, match=message):
        _record(tmp_path)


def test_a_scene_whose_depth_maps_are_gone_still_renders_and_names_them_when_asked(tmp_path, scene):
    cameras = _write(tmp_path, "s0", scene)
    (cameras.parent / "depth" / "002.png").unlink()
    sample = FileViews(tmp_path, 4, 2, 32, 32, selection="first")[0]
    assert sample["targets"].shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="depth map .*002.png is missing"):
        load_depths(_record(tmp_path), [1, 2], 32, 32)


def test_two_frames_with_one_depth_map_name_are_refused(tmp_path, scene):
    with pytest.raises(ValueError, match="would share the depth map depth/x.png"):
        write_lact_frames(tmp_path, scene.images[:2], scene.cameras[:2], file_names=["x.png", "x.jpg"], depths=scene.depth[:2])


def test_a_depth_map_of_the_wrong_kind_or_a_scene_without_depth_is_refused(tmp_path, scene):
    cameras = _write(tmp_path / "a", "s0", scene)
    iio.imwrite(cameras.parent / "depth" / "000.png", np.zeros((32, 32, 3), np.uint8))
    record = _record(tmp_path / "a")
    with pytest.raises(ValueError, match="must be one 16-bit channel"):
        load_depths(record, [0], 32, 32)
    iio.imwrite(cameras.parent / "depth" / "000.png", np.zeros((16, 32), np.uint16))
    with pytest.raises(ValueError, match=r"is \(16, 32\) pixels"):
        load_depths(record, [0], 32, 32)
    _write(tmp_path / "b", "s1", scene, depth=False)
    with pytest.raises(ValueError, match="has no depth maps"):
        FileViews(tmp_path / "b", 4, 2, 32, 32, selection="first", depth=True)[0]
