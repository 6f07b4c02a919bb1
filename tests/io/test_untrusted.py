"""Untrusted input as an attacker would craft it: scene files naming other files, zips that escape
or explode, images whose header lies, cameras with a wrong fourth row, checkpoints whose config
asks for an absurd size. Each must end in a ValueError naming the problem, before the damage."""

import json
import os
import time
import zipfile

import pytest
import torch

from nvs.geometry.camera_paths import read_nerfstudio_path
from nvs.cameras import Cameras
from nvs.datasets.formats import list_scenes, load_views, read_lact_scene, read_lvsm_scene, read_scene
from nvs.datasets.nerfstudio import read_nerfstudio_scene
from nvs.io.untrusted import (CLI_LIMITS, VIEWER_LIMITS, LimitExceeded, Limits, public_message, request,
                              scene_path, unpack_zip)
from nvs.models import load_renderer
from nvs.models.checkpoint import CheckpointError
from nvs.reconstruction.photos import load_photo, video_frames

from ..helpers import tiny_config
from .attacks import lying_png, random_image, small_scene, symlink_zip, write_frames, zeros_zip


# ----- paths named by scene files ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["../secret.png", "images/../../secret.png", "a/../../../etc/passwd",
                                  "..\\..\\secret.png", "images/./../../secret.png"])
def test_relative_paths_that_climb_out_are_refused_everywhere(tmp_path, name):
    scene = tmp_path / "scene"
    scene.mkdir()
    for confined in (False, True):
        with request(CLI_LIMITS, confined=confined), pytest.raises(ValueError, match="outside the scene's folder"):
            scene_path(scene, name, "frame 0", absolute_ok=True)


@pytest.mark.parametrize("name", ["/etc/passwd", "//server/share/x.png", "~/photo.png", "C:\\Users\\x.png", "c:/x.png"])
def test_absolute_paths_only_where_the_format_allows_and_never_in_uploads(tmp_path, name):
    with pytest.raises(ValueError, match="absolute"):
        scene_path(tmp_path, name, "frame 0")
    with request(VIEWER_LIMITS, confined=True), pytest.raises(ValueError, match="absolute"):
        scene_path(tmp_path, name, "frame 0", absolute_ok=True)


@pytest.mark.parametrize("name", [None, 3, "", "   ", ["a.png"], {"p": 1}, "a\x00.png", "x" * 5000])
def test_paths_that_are_not_strings_or_not_paths_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="path"):
        scene_path(tmp_path, name, "frame 0")


def test_a_symlink_inside_an_upload_may_not_lead_out(tmp_path):
    secret = random_image(tmp_path / "secret.png")
    scene = tmp_path / "upload"
    (scene / "images").mkdir(parents=True)
    os.symlink(secret, scene / "images" / "000.png")
    assert scene_path(scene, "images/000.png", "frame 0") == scene / "images" / "000.png"  # a local data set may link
    with request(VIEWER_LIMITS, confined=True), pytest.raises(ValueError, match="outside the scene's folder"):
        scene_path(scene, "images/000.png", "frame 0")


def test_every_reader_refuses_a_scene_file_that_points_outside(tmp_path):
    secret = random_image(tmp_path / "secret.png")
    frames = small_scene(tmp_path / "lact")
    frames[1]["file_path"] = str(secret)
    write_frames(tmp_path / "lact", frames)
    with pytest.raises(ValueError, match="absolute"):
        read_lact_scene(tmp_path / "lact" / "opencv_cameras.json")
    frames[1]["file_path"] = "../secret.png"
    write_frames(tmp_path / "lact", frames)
    with pytest.raises(ValueError, match="outside the scene's folder"):
        read_lact_scene(tmp_path / "lact" / "opencv_cameras.json")

    nerf = tmp_path / "nerf"
    nerf.mkdir()
    eye = torch.eye(4).tolist()
    (nerf / "transforms.json").write_text(json.dumps({"fl_x": 30, "w": 32, "h": 32, "frames": [
        {"file_path": "../secret.png", "transform_matrix": eye}]}))
    with pytest.raises(ValueError, match="outside the scene's folder"):
        read_nerfstudio_scene(nerf / "transforms.json")
    # nerfstudio defines absolute paths: allowed for a local data set, never in an upload
    (nerf / "transforms.json").write_text(json.dumps({"fl_x": 30, "w": 32, "h": 32, "frames": [
        {"file_path": str(secret), "transform_matrix": eye}, {"file_path": str(secret), "transform_matrix": eye}]}))
    assert read_nerfstudio_scene(nerf / "transforms.json").sources[0] == secret
    with request(VIEWER_LIMITS, confined=True), pytest.raises(ValueError, match="absolute"):
        read_nerfstudio_scene(nerf / "transforms.json")

    lvsm = tmp_path / "lvsm"
    lvsm.mkdir()
    (lvsm / "s.json").write_text(json.dumps({"scene_name": "s", "frames": [
        {"image_path": "../secret.png", "fxfycxcy": [30, 30, 16, 16], "w2c": eye}]}))
    with pytest.raises(ValueError, match="outside the scene's folder"):
        read_lvsm_scene(lvsm / "s.json")

    index = tmp_path / "index_set"
    index.mkdir()
    (index / "index.json").write_text(json.dumps(["../lact/opencv_cameras.json"]))
    with pytest.raises(ValueError, match="outside the scene's folder"):
        list_scenes(index)


def test_colmap_image_names_stay_inside_the_images_folder(tmp_path):
    from nvs.datasets.colmap import write_colmap_model

    scene = tmp_path / "colmap_scene"
    random_image(tmp_path / "outside.png")
    (scene / "images").mkdir(parents=True)
    cams = Cameras(torch.tensor([[30.0, 30, 16, 16]] * 2), torch.eye(4).expand(2, 4, 4).clone(), 32, 32)
    write_colmap_model(scene / "sparse" / "0", ["../../outside.png", "../../outside.png"], cams)
    fmt, refs = list_scenes(scene)
    assert fmt == "colmap"
    with pytest.raises(ValueError, match="outside the scene's folder"):
        read_scene(fmt, refs[0])


# ----- archives ----------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt", "C:\\evil.txt", "..\\evil.txt"])
def test_zip_entries_that_escape_are_refused_before_anything_is_written(tmp_path, entry):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fine.txt", "ok")
        z.writestr(entry, "evil")
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="points outside the archive"):
        unpack_zip(archive, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlinks_are_refused(tmp_path):
    archive = symlink_zip(tmp_path / "link.zip", "images/000.png", "/etc/passwd")
    with pytest.raises(ValueError, match="a link"):
        unpack_zip(archive, tmp_path / "out", keep_folders=True)


def test_unpacked_bytes_are_budgeted_over_all_archives_of_a_request(tmp_path):
    a = zeros_zip(tmp_path / "a.zip", 3 << 20)
    b = zeros_zip(tmp_path / "b.zip", 3 << 20)
    assert a.stat().st_size < 20_000  # tiny uploads
    limits = Limits(unpacked_bytes=5 << 20)
    with request(limits):
        unpack_zip(a, tmp_path / "a")  # each alone is under the limit
    with request(limits):
        unpack_zip(b, tmp_path / "b")
    with request(limits), pytest.raises(LimitExceeded, match="5.0 MiB"):
        unpack_zip(a, tmp_path / "a2")
        unpack_zip(b, tmp_path / "b2")  # together they are not
    assert not (tmp_path / "b2" / "0000_zeros.bin").exists()


def test_unpacked_files_are_counted(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(30):
            z.writestr(f"f{i}.txt", "x")
    with request(Limits(unpacked_files=20)), pytest.raises(LimitExceeded, match="more than 20 files"):
        unpack_zip(archive, tmp_path / "out")


def test_a_corrupt_zip_is_a_message(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="bad.zip: not a readable zip archive"):
        unpack_zip(bad, tmp_path / "out")


# ----- frames and pixels -------------------------------------------------------------------------
def test_many_frames_reusing_one_image_are_refused_before_any_decoding(tmp_path):
    """The 11 KB zip that drove the server to 13 GB: a JSON listing hundreds of frames."""
    frames = small_scene(tmp_path / "s", views=1)
    write_frames(tmp_path / "s", frames * 300)
    with request(VIEWER_LIMITS), pytest.raises(LimitExceeded, match="300 frames in one scene; the limit is 128"):
        read_lact_scene(tmp_path / "s" / "opencv_cameras.json")
    assert len(read_lact_scene(tmp_path / "s" / "opencv_cameras.json").sources) == 300  # the command line's limit is higher


def test_pixels_are_budgeted_per_request(tmp_path):
    small_scene(tmp_path / "s", views=6, size=64)
    record = read_lact_scene(tmp_path / "s" / "opencv_cameras.json")
    with request(Limits(pixels=5 * 64 * 64)), pytest.raises(LimitExceeded, match="add up to more than"):
        load_views(record, list(range(6)), 32, 32)
    with request(Limits(pixels=6 * 64 * 64)):
        assert load_views(record, list(range(6)), 32, 32)[0].shape == (6, 3, 32, 32)


def test_an_image_whose_header_claims_a_huge_size_is_not_decoded(tmp_path):
    frames = small_scene(tmp_path / "s", views=2)
    lying_png(tmp_path / "s" / "images" / "001.png", 60_000, 60_000)
    record = read_lact_scene(tmp_path / "s" / "opencv_cameras.json")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="(MP limit per image|not a readable image)"):
        load_views(record, [1])
    photo, reason = load_photo(tmp_path / "s" / "images" / "001.png", 256)
    assert photo is None and ("MP limit" in reason or "unreadable" in reason or "not an image" in reason)
    assert time.perf_counter() - t0 < 5
    assert frames  # the scene itself was real


def test_an_image_of_another_size_than_its_camera_is_refused(tmp_path):
    frames = small_scene(tmp_path / "s", views=2, size=32)
    random_image(tmp_path / "s" / "images" / "001.png", size=48)
    record = read_lact_scene(tmp_path / "s" / "opencv_cameras.json")
    with pytest.raises(ValueError, match=r"image is \(48, 48\) pixels, its camera says \(32, 32\)"):
        load_views(record, [0, 1], 16, 16)
    assert frames


# ----- cameras -----------------------------------------------------------------------------------
def test_a_fourth_row_other_than_0001_is_refused(tmp_path):
    frames = small_scene(tmp_path / "s", views=2)
    frames[0]["w2c"][3] = [0.0, 0.0, 1.0, 1.0]
    write_frames(tmp_path / "s", frames)
    with pytest.raises(ValueError, match=r"fourth row of w2c must be \[0, 0, 0, 1\]"):
        read_lact_scene(tmp_path / "s" / "opencv_cameras.json")
    c2w = torch.eye(4)[None].clone()
    c2w[0, 3, 2] = 0.5
    with pytest.raises(ValueError, match="fourth row"):
        Cameras(torch.tensor([[30.0, 30, 16, 16]]), c2w, 32, 32).validate()


def _camera_path(tmp_path, **changes):
    data = {"render_height": 32, "render_width": 32, "fps": 24,
            "camera_path": [{"camera_to_world": torch.eye(4).flatten().tolist(), "fov": 50}] * 3}
    data.update(changes)
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"render_height": 10**9}, "render_height"), ({"render_width": 0}, "render_width"), ({"fps": -5}, "fps"),
    ({"fps": float("nan")}, "fps"), ({"camera_path": [{"camera_to_world": [1, 0, 0, 0] * 4, "fov": 0}]}, "fov"),
    ({"camera_path": [{"camera_to_world": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1], "fov": 50}]}, "fourth row"),
    ({"camera_path": [{"camera_to_world": [1, 2, 3], "fov": 50}] * 2}, "16 numbers"),
    ({"camera_path": "everything"}, "list"), ({"render_height": "tall"}, "render_height"),
])
def test_camera_path_files_with_absurd_values_are_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        read_nerfstudio_path(_camera_path(tmp_path, **changes))


def test_a_camera_path_with_too_many_frames_is_refused(tmp_path):
    path = _camera_path(tmp_path, camera_path=[{"camera_to_world": torch.eye(4).flatten().tolist()}] * 200)
    with request(VIEWER_LIMITS), pytest.raises(LimitExceeded, match="200 frames"):
        read_nerfstudio_path(path)


# ----- checkpoint metadata -----------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"dim": 16384, "attn_head_dim": 64, "ttt_head_dim": 16384}, "asks for"),  # ~500 GB if it were built
    ({"layers": 1000}, "missing"), ({"layers": 10**9}, "outside"), ({"dim": -32}, "outside"),
    ({"mlp_inter_multi": 1e12}, "mlp_inter_multi"), ({"ttt_inter_multi": float("nan")}, "ttt_inter_multi"),
    ({"patch_size": 0}, "outside"), ({"muon_steps": 10**8}, "outside"),
])
def test_a_stored_config_asking_for_an_absurd_size_is_refused_before_allocating(tmp_path, change, message):
    from safetensors.torch import save_file

    from nvs.models import LaCTRenderer

    model = LaCTRenderer(tiny_config())
    stored = {**tiny_config().to_dict(), **change}
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), path, metadata={"format": "lact-nvs", "config": json.dumps(stored)})
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        load_renderer(path)
    assert time.perf_counter() - t0 < 10


def test_a_stored_config_that_is_not_an_object_is_refused(tmp_path):
    from safetensors.torch import save_file

    from nvs.models import LaCTRenderer

    path = tmp_path / "m.safetensors"
    save_file(LaCTRenderer(tiny_config()).state_dict(), path, metadata={"format": "lact-nvs", "config": "[1, 2]"})
    with pytest.raises(CheckpointError, match="JSON object"):
        load_renderer(path)



@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_whose_weights_hold_nan_or_infinity_is_refused(tmp_path, value):
    from nvs.models import LaCTRenderer, save_renderer

    model = LaCTRenderer(tiny_config())
    with torch.no_grad():
        model.head.proj.weight[0, 0] = value
    path = save_renderer(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"1 tensors hold NaN or infinite values .*head\.proj\.weight"):
        load_renderer(path)

# ----- messages ----------------------------------------------------------------------------------
def test_public_messages_hold_no_server_paths():
    text = ("/tmp/nvs-app-x1/tmpab/posed/scene/images/003.png is missing; see /etc/passwd, "
            "'/home/user/.cache/gradio/9f/photo.jpg' and PosixPath('/srv/data/a b.png')")
    shown = public_message(text, [("/tmp/nvs-app-x1/tmpab/posed", "upload.zip")])
    assert "upload.zip/scene/images/003.png" in shown and "photo.jpg" in shown and "passwd" in shown
    assert "/tmp" not in shown and "/etc" not in shown and "/home" not in shown and "/srv" not in shown
    assert public_message("PSNR 12.3 dB over 4/8 views at http://127.0.0.1:7860/") == "PSNR 12.3 dB over 4/8 views at http://127.0.0.1:7860/"


def test_a_broken_video_error_carries_no_ffmpeg_banner(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all" * 10)
    with pytest.raises(ValueError) as info:
        video_frames(fake, 4, tmp_path / "frames")
    message = str(info.value)
    assert "clip.mp4" in message and "not a readable video" in message
    for banner in ("ffmpeg version", "configuration:", "built with", "libavutil", "Copyright"):
        assert banner not in message
    assert len(message) < 500


@pytest.mark.parametrize("entry", [{"context": [-1, 2], "target": [1]}, {"context": ["a"], "target": [1]},
                                   {"context": [0.5], "target": []}, {"context": [], "target": [1]},
                                   {"context": [True], "target": [1]}, {"context": 3, "target": [1]}])
def test_an_evaluation_index_with_impossible_views_is_refused(tmp_path, entry):
    from nvs.datasets.views import read_eval_index

    path = tmp_path / "index.json"
    path.write_text(json.dumps({"scene": entry}))
    with pytest.raises(ValueError, match="index.json: scene 'scene'"):
        read_eval_index(path)


def test_scene_files_too_large_or_too_deeply_nested_are_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "opencv_cameras.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_lact_scene(folder / "opencv_cameras.json")
    (folder / "opencv_cameras.json").write_text(json.dumps([{"pad": "x" * (2 << 20)}]))
    with request(Limits(text_bytes=1 << 20)), pytest.raises(LimitExceeded, match="scene file may be"):
        read_lact_scene(folder / "opencv_cameras.json")
