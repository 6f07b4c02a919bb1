"""The DL3DV reader on tiny synthetic scenes in the raw benchmark layout, and the official resize rule."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from nvs.cameras import Cameras, look_at
from nvs.datasets.formats import list_scenes, load_views, read_any_scene
from nvs.datasets.dl3dv import read_dl3dv_scene
from nvs.geometry.image_ops import official_resize_and_crop

APPLIED = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
DISTORTION = {"k1": 0.05, "k2": -0.02, "p1": 0.001, "p2": -0.0005}


def _opencv_poses(views):
    eyes = torch.tensor([[2.0 * np.cos(a), 0.3, 2.0 * np.sin(a)] for a in np.linspace(0, 1, views)], dtype=torch.float64)
    return look_at(eyes, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))


def _write_scene(folder, views=3, w=64, h=36, file_w=1920, file_h=1080, distortion=DISTORTION):
    """Images at w x h in nerfstudio/images_4, transforms.json for file_w x file_h, poses stored as
    nerfstudio stores DL3DV's: OpenGL axes, then the applied transform."""
    rng = np.random.default_rng(0)
    (folder / "nerfstudio" / "images_4").mkdir(parents=True)
    c2w_cv = _opencv_poses(views)
    frames = []
    for i in range(views):
        pixels = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "nerfstudio" / "images_4" / f"frame_{i:05d}.png")
        stored = APPLIED @ c2w_cv[i].numpy() @ GL_FLIP
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": stored.tolist()})
    meta = {"w": file_w, "h": file_h, "fl_x": 1600.0, "fl_y": 1500.0, "cx": 950.0, "cy": 545.0, **distortion,
            "camera_model": "OPENCV", "frames": frames, "applied_transform": APPLIED[:3].tolist()}
    (folder / "nerfstudio" / "transforms.json").write_text(json.dumps(meta))
    return c2w_cv


def test_cameras_and_pixels_are_the_converters(tmp_path):
    c2w_cv = _write_scene(tmp_path / "scene")
    record = read_dl3dv_scene(tmp_path / "scene")
    torch.testing.assert_close(record.cameras.c2w.double(), c2w_cv, atol=1e-6, rtol=0)
    assert (record.cameras.height, record.cameras.width) == (36, 64)
    # the converter's intrinsics: the file's, scaled to the image (64 / 1920, 36 / 1080), then alpha = 0
    k = np.array([[1600.0 / 30, 0.0, 950.0 / 30], [0.0, 1500.0 / 30, 545.0 / 30], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(record.distorted_intrinsics[0], torch.tensor([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=torch.float64))
    dist = np.array([0.05, -0.02, 0.001, -0.0005])
    new_k, _ = cv2.getOptimalNewCameraMatrix(k, dist, (64, 36), 0, (64, 36))
    expected = torch.tensor([new_k[0, 0], new_k[1, 1], new_k[0, 2], new_k[1, 2]], dtype=torch.float32)
    assert torch.equal(record.cameras.intrinsics[1], expected)
    assert expected[0] > k[0, 0]  # barrel distortion, alpha 0: zoomed in so that no pixel is invalid
    images, cams = load_views(record, [1])
    source = np.asarray(Image.open(tmp_path / "scene" / "nerfstudio" / "images_4" / "frame_00001.png"))
    undistorted = cv2.undistort(source, k, dist, None, new_k)
    assert torch.equal((images[0] * 255).round().to(torch.uint8), torch.from_numpy(undistorted).permute(2, 0, 1))
    assert torch.equal(cams.intrinsics[0], expected)


def test_without_distortion_the_pixels_are_the_files(tmp_path):
    _write_scene(tmp_path / "scene", distortion={"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0})
    record = read_any_scene(tmp_path / "scene" / "nerfstudio" / "transforms.json")
    images, _ = load_views(record, [0])
    source = np.array(Image.open(tmp_path / "scene" / "nerfstudio" / "images_4" / "frame_00000.png"))
    assert torch.equal((images[0] * 255).round().to(torch.uint8), torch.from_numpy(source).permute(2, 0, 1))


def test_portrait_scenes_are_skipped_and_refused_by_name(tmp_path):
    _write_scene(tmp_path / "data" / "landscape")
    _write_scene(tmp_path / "data" / "portrait", w=36, h=64, file_w=1080, file_h=1920)
    fmt, scenes = list_scenes(tmp_path / "data")
    assert fmt == "dl3dv" and [p.name for p in scenes] == ["landscape"]
    with pytest.raises(ValueError, match="portrait"):
        read_dl3dv_scene(tmp_path / "data" / "portrait")


def test_a_missing_image_is_named(tmp_path):
    _write_scene(tmp_path / "scene")
    (tmp_path / "scene" / "nerfstudio" / "images_4" / "frame_00002.png").unlink()
    with pytest.raises(ValueError, match="frame 2"):
        read_dl3dv_scene(tmp_path / "scene")


def test_official_resize_covers_with_lanczos_then_centre_crops():
    rng = np.random.default_rng(1)
    pixels = (rng.random((36, 64, 3)) * 255).astype(np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    cams = Cameras(torch.tensor([[40.0, 41.0, 32.0, 18.0]]), torch.eye(4)[None], 36, 64)
    out, new = official_resize_and_crop(image, cams, 16, 16)
    # s = max(16/64, 16/36) = 4/9; resized to (round(64 s), round(36 s)) = (28, 16); crop left (28 - 16) // 2 = 6
    s = 4 / 9
    torch.testing.assert_close(new.intrinsics, torch.tensor([[40 * s, 41 * s, 32 * s - 6, 18 * s]]))
    expected = np.asarray(Image.fromarray(pixels).resize((28, 16), Image.LANCZOS))[:, 6:22]
    assert torch.equal((out[0] * 255).round().to(torch.uint8), torch.from_numpy(expected.copy()).permute(2, 0, 1))
    assert (new.height, new.width) == (16, 16)
