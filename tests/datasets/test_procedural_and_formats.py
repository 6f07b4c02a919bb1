import json

import pytest
import torch

from nvs.cameras import Cameras
from nvs.datasets.formats import list_scenes, load_views, read_scene, write_dataset
from nvs.datasets.procedural import object_scene, room_scene
from nvs.datasets.views import FileViews, select_views
from nvs.cameras import pixel_rays


@pytest.fixture(scope="module")
def scene():
    return object_scene(seed=5, views=5, height=32, width=48)


@pytest.mark.parametrize("fmt", ["lact", "lvsm", "pixelsplat"])
def test_round_trip_and_projection(tmp_path, scene, fmt):
    write_dataset(tmp_path, fmt, [("s0", scene.images, scene.cameras)])
    kind, files = list_scenes(tmp_path)
    assert kind == fmt and len(files) == 1
    record = read_scene(kind, files[0])
    images, cams = load_views(record, list(range(5)))
    if fmt == "pixelsplat":  # JPEG: lossy
        assert (images - scene.images).abs().mean() < 0.02
    else:
        assert (images - scene.images).abs().max() <= 1 / 255 + 1e-6
    assert (cams.c2w - scene.cameras.c2w).abs().max() < 1e-6
    assert torch.allclose(cams.intrinsics, scene.cameras.intrinsics, atol=1e-4)
    # a 3D point lands on the same pixel through the written and re-read cameras
    point = torch.tensor([[0.1, -0.2, 0.3]]).expand(5, 1, 3)
    assert torch.allclose(cams.project(point)[0], scene.cameras.project(point)[0], atol=1e-4)


def test_depth_reprojects_onto_the_same_surface():
    import math

    from nvs.cameras import look_at

    az = torch.tensor([0.3, 0.3 + math.radians(20)])
    eye = 2.7 * torch.stack([az.cos() * math.cos(0.5), az.sin() * math.cos(0.5), torch.full_like(az, math.sin(0.5))], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    cams = Cameras(torch.tensor([[69.0, 69.0, 32.0, 32.0]]).expand(2, 4), c2w, 64, 64)
    s = object_scene(seed=11, views=2, height=64, width=64, cameras=cams)
    origins, dirs = pixel_rays(s.cameras)
    forward = s.cameras.c2w[:, :3, 2]
    ray_t = s.depth[:, 0] / (dirs * forward[:, :, None, None]).sum(1)  # z-depth -> distance along the ray
    pts = origins + dirs * ray_t[:, None]  # [2, 3, H, W]
    valid = torch.isfinite(s.depth[0, 0])
    p = pts[0].permute(1, 2, 0)[valid]  # points of view 0
    px, depth1 = s.cameras[1:2].project(p[None])
    u, v = px[0, :, 0].floor().long(), px[0, :, 1].floor().long()
    inside = (u >= 0) & (u < 64) & (v >= 0) & (v < 64)
    seen = inside.clone()
    seen[inside] = (s.depth[1, 0, v[inside], u[inside]] - depth1[0, inside]).abs() < 0.02  # not occluded in view 1
    assert seen.sum() > 50
    colour0 = s.images[0].permute(1, 2, 0)[valid][seen]
    colour1 = s.images[1][:, v[seen], u[seen]].T
    agree = ((colour0 - colour1).abs().max(-1).values < 0.15).float().mean()
    assert agree > 0.8  # shading is view-independent; texture edges and pixel snapping cause the rest


def test_room_scenes_move_forward_smoothly():
    s = room_scene(seed=2, views=8, height=36, width=64)
    steps = (s.cameras.centers[1:] - s.cameras.centers[:-1]).norm(dim=-1)
    assert (steps > 0).all() and steps.max() < 5 * steps.min() + 0.05
    assert torch.isfinite(s.depth).all()  # inside a closed room every ray hits something
    assert s.images.shape == (8, 3, 36, 64)


def test_generator_is_deterministic():
    a, b = object_scene(3, 2, 16, 16), object_scene(3, 2, 16, 16)
    assert torch.equal(a.images, b.images) and torch.equal(a.cameras.c2w, b.cameras.c2w)


def test_view_selection():
    assert select_views(6, 2, 0, "first") == ([0, 1], [2, 3, 4, 5])
    assert select_views(5, 3, 1, "spread") == ([0, 2, 4], [1])
    with pytest.raises(ValueError, match="need at least 4"):
        select_views(3, 3, 0, "first", where="scene 'x'")


def test_file_views_and_eval_index(tmp_path, scene):
    write_dataset(tmp_path, "lact", [("a", scene.images, scene.cameras), ("b", scene.images, scene.cameras)])
    (tmp_path / "eval.json").write_text(json.dumps({"a": {"context": [0, 4], "target": [2]}, "b": None}))
    data = FileViews(tmp_path, 2, 1, 32, 32, index=tmp_path / "eval.json")
    assert len(data) == 1
    item = data[0]
    assert item["inputs"].shape == (2, 3, 32, 32) and item["targets"].shape == (1, 3, 32, 32)
    assert torch.equal(item["input_c2w"][1], scene.cameras.c2w[4])
    rnd = FileViews(tmp_path, 2, 2, 32, 32, selection="random", seed=1)
    assert not torch.equal(rnd[0]["input_c2w"], rnd[2]["input_c2w"]) or not torch.equal(rnd[0]["input_c2w"], rnd[4]["input_c2w"])
    (tmp_path / "bad.json").write_text(json.dumps({"zzz": {"context": [0], "target": [1]}}))
    with pytest.raises(ValueError, match="zzz"):
        FileViews(tmp_path, 1, 1, 32, 32, index=tmp_path / "bad.json")


def test_file_views_read_several_data_sets_as_one(tmp_path, scene):
    """A list of data sets: their scenes in the order given, each read from its own folder; data
    sets of different formats, or none, are refused by name."""
    other = object_scene(seed=6, views=5, height=32, width=48)
    write_dataset(tmp_path / "one", "lact", [("a", scene.images, scene.cameras)])
    write_dataset(tmp_path / "two", "lact", [("b", other.images, other.cameras), ("c", scene.images, scene.cameras)])
    data = FileViews([tmp_path / "one", str(tmp_path / "two")], 2, 1, 32, 48, selection="first")
    assert len(data) == 3 and [data.name(i) for i in range(3)] == ["a", "b", "c"]
    assert torch.allclose(data[1]["input_c2w"], other.cameras.c2w[:2], atol=1e-6)
    assert (data[1]["inputs"] - other.images[:2]).abs().max() <= 1 / 255 + 1e-6
    write_dataset(tmp_path / "three", "lvsm", [("d", scene.images, scene.cameras)])
    with pytest.raises(ValueError, match=r"share a format.*one: lact.*three: lvsm"):
        FileViews([tmp_path / "one", tmp_path / "three"], 2, 1, 32, 48)
    with pytest.raises(ValueError, match="list of data sets is empty"):
        FileViews([], 2, 1, 32, 48)


def _corrupt(tmp_path, scene, fmt, edit):
    write_dataset(tmp_path, fmt, [("s0", scene.images, scene.cameras)])
    _, files = list_scenes(tmp_path)
    edit(files[0])
    return files[0]


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "fmt, edit, message",
    [
        ("lact", lambda f: (f.parent / "images/002.png").unlink(), "image file .* is missing"),
        ("lact", lambda f: _edit_json(f, lambda d: d[1].__setitem__("w2c", [[float("nan")] * 4] * 4)), "NaN"),
        ("lact", lambda f: _edit_json(f, lambda d: d[0].__setitem__("w", 64)), "mixed resolutions"),
        ("lvsm", lambda f: _edit_json(f, lambda d: d["frames"][3].__setitem__("fxfycxcy", [1.0, 2.0, 3.0])), "4 finite numbers"),
        ("lvsm", lambda f: (f.parent / "images/001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated"), "not a readable image"),
        ("pixelsplat", lambda ref: _edit_chunk(ref, "cameras", lambda c: c[:, :17]), "18 numbers"),
        ("pixelsplat", lambda ref: _edit_chunk(ref, "images", lambda im: [im[0][:40]] + im[1:]), "not a readable image"),
    ],
)
def test_bad_data_names_file_and_scene(tmp_path, scene, fmt, edit, message):
    ref = _corrupt(tmp_path, scene, fmt, edit)
    with pytest.raises(ValueError, match=message) as info:
        read_scene(fmt, ref)
    path = ref[0] if isinstance(ref, tuple) else ref
    assert str(path) in str(info.value) and "s0" in str(info.value)


def _edit_chunk(ref, key, change):
    from nvs.datasets.formats import _load_chunk

    chunk = torch.load(ref[0], weights_only=True)
    chunk[0][key] = change(chunk[0][key])
    torch.save(chunk, ref[0])
    _load_chunk.cache_clear()


def test_missing_data_set(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        list_scenes(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no data set found"):
        list_scenes(tmp_path)


def test_frame_gap_windows_for_video_data():
    g = torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(200):
        inputs, targets = select_views(300, 2, 6, "gap", g, frame_gap=(25, 192))
        lo, hi = min(inputs), max(inputs)
        gaps.append(hi - lo)
        assert 25 <= hi - lo <= 192 and len(targets) == 6
        assert all(lo < t < hi for t in targets) and not set(targets) & set(inputs)
    assert min(gaps) < 60 and max(gaps) > 150  # the whole range is used
    # a sequence shorter than the minimum gap uses the longest window it has
    inputs, targets = select_views(10, 2, 3, "gap", g, frame_gap=(25, 192))
    assert inputs == [0, 9] and len(targets) == 3
    with pytest.raises(ValueError, match="frame_gap"):
        select_views(100, 2, 3, "gap", g, frame_gap=(30, 20))


def test_mixed_views_draw_the_asked_share_of_procedural_scenes():
    from torch.utils.data import Dataset

    from nvs.datasets.views import MixedViews, ProceduralViews

    class Indexed(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return {"index": index}

    procedural = ProceduralViews("object", 1000, 2, 1, 16, 16, seed=3)
    mixed = MixedViews(Indexed(), procedural, 0.25)
    assert len(mixed) == 8  # 6 file items + 2 procedural: a quarter of uniformly drawn items
    assert mixed[5] == {"index": 5} and mixed[8 + 5] == {"index": 6 + 5}  # the files see their epoch
    first, next_epoch = mixed[6], mixed[8 + 6]
    assert first["inputs"].shape == (2, 3, 16, 16)
    assert not torch.equal(first["inputs"], next_epoch["inputs"])  # a new procedural scene each epoch
    with pytest.raises(ValueError, match="fraction"):
        MixedViews(Indexed(), procedural, 1.0)
