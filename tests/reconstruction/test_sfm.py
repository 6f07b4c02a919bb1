"""Structure from motion: procedural scenes with known poses, the real Middlebury temple, bad input."""

import json
import zipfile

import numpy as np
import pytest
import torch

from nvs.datasets.formats import list_scenes, read_scene
from nvs.datasets.procedural import object_scene, room_scene, turntable_cameras
from nvs.io.media import save_image
from nvs.reconstruction.photos import load_photo
from nvs.reconstruction.pose_errors import aligned_pose_errors, relative_rotation_errors
from nvs.reconstruction.sfm import ReconstructOptions, reconstruct

from tests.helpers import shared_path


def _write(images, folder):
    for i, im in enumerate(images):
        save_image(im, folder / f"view_{i:03d}.png")
    return folder


def _check_poses(scene, truth):
    order = [int(n[5:8]) for n in scene.names]
    err = aligned_pose_errors(scene.cameras.c2w, truth.cameras.c2w[order])
    assert float(err["rotation_deg"].median()) < 0.5
    assert float(err["centre_fraction"].median()) < 0.01


def test_pose_errors_are_invariant_to_a_similarity():
    truth = turntable_cameras(12, 64).c2w.double()
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    q = q * torch.sign(torch.det(q))
    sim = torch.eye(4, dtype=torch.float64)
    sim[:3, :3], sim[:3, 3] = 2.5 * q, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    moved = sim @ truth
    moved[:, :3, :3] /= 2.5  # keep rotations orthonormal: the similarity scales positions only
    err = aligned_pose_errors(moved, truth)
    assert err["rotation_deg"].max() < 0.05 and err["centre_fraction"].max() < 1e-6  # acos near 1 of float32 poses
    assert relative_rotation_errors(moved, truth).max() < 0.05
    tilted = truth.clone()
    tilted[3, :3, :3] = tilted[3, :3, :3] @ torch.tensor([[1.0, 0, 0], [0, 0.0, -1], [0, 1, 0]], dtype=torch.float64)
    assert abs(float(aligned_pose_errors(tilted, truth)["rotation_deg"].max()) - 90) < 10


@pytest.mark.slow
def test_textured_object_ring_is_fully_registered(tmp_path):
    truth = object_scene(2, 30, 320, 320, cameras=turntable_cameras(30, 320), texture="detail")
    folder = _write(truth.images, tmp_path / "photos")
    # a corrupt file, a non-image and an exact duplicate among the good photos
    (folder / "broken.png").write_bytes((folder / "view_000.png").read_bytes()[:200])
    (folder / "notes.txt").write_text("not a photo")
    (folder / "view_000_copy.png").write_bytes((folder / "view_000.png").read_bytes())
    scene = reconstruct(folder, tmp_path / "scene")
    report = json.loads((tmp_path / "scene" / "report.json").read_text())
    assert report["images_registered"] == 30 and report["left_out"] == []
    reasons = {r["file"].split("/")[-1]: r["reason"] for r in report["skipped_inputs"]}
    assert set(reasons) == {"broken.png", "notes.txt", "view_000_copy.png"}
    assert "unreadable" in reasons["broken.png"] and "not an image" in reasons["notes.txt"]
    assert "duplicate of view_000.png" in reasons["view_000_copy.png"]
    assert set(report["reprojection_error_px"]) == set(scene.names) and report["mean_reprojection_error_px"] < 1.0
    _check_poses(scene, truth)
    assert abs(float(scene.cameras.intrinsics[0, 0]) / float(truth.cameras.intrinsics[0, 0]) - 1) < 0.01
    # the scene folder is a data set the renderer's readers load
    fmt, refs = list_scenes(tmp_path / "scene")
    record = read_scene(fmt, refs[0])
    assert fmt == "lact" and len(record.sources) == 30
    assert torch.allclose(record.cameras.c2w, scene.cameras.c2w, atol=1e-5)


@pytest.mark.slow
def test_room_video_is_posed_with_sequential_matching(tmp_path):
    import imageio.v3 as iio

    truth = room_scene(1, 24, 192, 336, texture="detail")
    frames = (truth.images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    video = tmp_path / "walk.mp4"
    iio.imwrite(video, frames, fps=12, codec="libx264", quality=9, macro_block_size=8)
    scene = reconstruct(video, tmp_path / "scene", ReconstructOptions(frames=24))
    report = scene.report
    assert report["video"] and report["photos_loaded"] == 24 and report["images_registered"] == 24
    order = [int(n.split("_")[1].split(".")[0]) for n in scene.names]
    err = aligned_pose_errors(scene.cameras.c2w, truth.cameras.c2w[order])
    assert float(err["rotation_deg"].median()) < 0.5 and float(err["centre_fraction"].median()) < 0.01
    # one COLMAP thread (the default): the same frames and seed give the same poses, photo for photo
    again = reconstruct(video, tmp_path / "again", ReconstructOptions(frames=24))
    settings = [(a["settings"], a["registered"], a["first_model"], a["weakly_posed"]) for a in report["attempts"]]
    assert settings == [(a["settings"], a["registered"], a["first_model"], a["weakly_posed"]) for a in again.report["attempts"]]
    assert again.names == scene.names and torch.equal(again.cameras.c2w, scene.cameras.c2w)


@pytest.mark.slow
def test_room_walk_that_spins_in_place_is_joined_into_one_model(tmp_path):
    # frames 6-11 turn ~120 degrees on the spot: COLMAP's mapper poses the walk around them but
    # cannot grow into the spin, whose photos link to it through two photos seen at little parallax
    truth = room_scene(1, 20, 270, 480, texture="detail")
    scene = reconstruct(_write(truth.images, tmp_path / "photos"), tmp_path / "scene")
    first = scene.report["attempts"][0]
    assert first["first_model"] < 20 and first["models_joined"] >= 1 and first["registered"] == 20
    assert len(scene.report["attempts"]) == 1 and scene.report["images_registered"] == 20
    _check_poses(scene, truth)


def _temple_truth(root):
    truth = {}
    for line in (root / "templeSR_par.txt").read_text().splitlines()[1:]:
        v = line.split()
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = torch.tensor([float(x) for x in v[10:19]], dtype=torch.float64).reshape(3, 3)
        w2c[:3, 3] = torch.tensor([float(x) for x in v[19:22]], dtype=torch.float64)
        truth[v[0]] = (float(v[1]), torch.linalg.inv(w2c))
    return truth


@pytest.mark.slow
def test_middlebury_temple_against_ground_truth(tmp_path):
    root = shared_path("middlebury_templeSparseRing")
    truth = _temple_truth(root)
    scene = reconstruct(sorted(root.glob("*.png")), tmp_path / "temple")
    assert len(scene.names) >= 13
    gt = torch.stack([truth[n][1] for n in scene.names])
    rel = relative_rotation_errors(scene.cameras.c2w, gt)
    assert float(rel.median()) <= 1.0
    focal = scene.report["camera"]["params"][0]
    assert abs(focal / truth["templeSR0001.png"][0] - 1) < 0.01


def test_too_few_or_unrelated_photos_fail_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="need at least 2 readable photos.*found 0"):
        reconstruct(empty, tmp_path / "out0")
    one = _write(object_scene(1, 1, 96, 96, texture="detail").images, tmp_path / "one")
    with pytest.raises(ValueError, match="found 1"):
        reconstruct(one, tmp_path / "out1")
    unrelated = torch.cat([object_scene(s, 1, 160, 160, texture="detail").images for s in range(4)])
    with pytest.raises(ValueError, match="no two of them overlap"):
        reconstruct(_write(unrelated, tmp_path / "unrelated"), tmp_path / "out2", ReconstructOptions(retry=False))
    with pytest.raises(ValueError, match="camera model 'FISHEYE'"):
        reconstruct(one, tmp_path / "out3", ReconstructOptions(camera_model="FISHEYE"))
    with pytest.raises(ValueError, match="threads must be"):
        reconstruct(one, tmp_path / "out4", ReconstructOptions(threads=0))


def test_zip_escaping_its_folder_is_refused_and_nothing_is_written_outside(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.png", b"x")
        z.writestr("../../evil.png", b"x")
    with pytest.raises(ValueError, match="'../../evil.png' points outside"):
        reconstruct(archive, tmp_path / "deep" / "scene")
    assert sorted(p.name for p in tmp_path.rglob("*png")) == []
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a readable zip"):
        reconstruct(tmp_path / "bad.zip", tmp_path / "scene2")


def test_photo_loading_converts_and_downscales(tmp_path):
    from PIL import Image

    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5800, 8660, 3), dtype=np.uint8))  # 50 MP
    big.save(tmp_path / "big.jpg", quality=50)
    photo, reason = load_photo(tmp_path / "big.jpg", 1024)
    assert reason == "" and photo.pixels.shape == (686, 1024, 3) and photo.original_size == (5800, 8660)
    gray16 = Image.fromarray((np.arange(64 * 32).reshape(32, 64) * 30).astype(np.uint16))
    gray16.save(tmp_path / "gray16.png")
    photo, _ = load_photo(tmp_path / "gray16.png", 1024)
    assert photo.pixels.shape == (32, 64, 3) and photo.pixels.dtype == np.uint8 and photo.pixels.max() == 255
    rgba = np.zeros((8, 8, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert load_photo(tmp_path / "clear.png", 1024)[0].pixels.min() == 255  # transparent -> white
    exif_img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    exif_img.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_photo(tmp_path / "rotated.jpg", 1024)[0].pixels.shape == (40, 20, 3)


@pytest.mark.slow
def test_cli_reconstruct_then_render(tmp_path, capsys):
    from nvs.commands.cli import main

    truth = object_scene(2, 24, 256, 256, cameras=turntable_cameras(24, 256), texture="detail")
    folder = _write(truth.images, tmp_path / "photos")
    assert main(["reconstruct", str(folder), "--out", str(tmp_path / "scene"), "--max-size", "256",
                 "--threads", "-1"]) == 0
    assert "registered 24 of 24 photos" in capsys.readouterr().out
    from nvs.assets import OBJECT_CHECKPOINT

    assert main(["render", "--checkpoint", str(OBJECT_CHECKPOINT), "--scene", str(tmp_path / "scene"), "--frames", "4",
                 "--size", "64", "64", "--views", "4", "--out", str(tmp_path / "orbit.mp4")]) == 0
    assert (tmp_path / "orbit.mp4").stat().st_size > 1000
    assert main(["reconstruct", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_reconstruct_writes_stage_times_and_pose_errors(tmp_path):
    from nvs.commands.cli import main

    assert main(["bench", "reconstruct", "--scene", "object", "--views", "12", "--width", "640", "--threads", "-1",
                 "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "reconstruct.json").read_text())
    assert row["scene"] == "object" and row["views"] == 12 and row["colmap_threads"] == -1 and row["registered"] == 12
    assert row["rotation_err_deg"] < 0.5 and row["centre_err_pct"] < 1 and row["total_s"] >= row["features_s"] > 0
