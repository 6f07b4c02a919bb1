"""nerfstudio transforms.json and COLMAP scenes: round trips, distortion, conventions, bad input."""

import json
import math

import numpy as np
import pytest
import torch

from nvs.cameras import Cameras
from nvs.datasets.colmap import write_colmap_model
from nvs.datasets.formats import list_scenes, load_views, read_scene, scene_name, write_dataset
from nvs.datasets.procedural import object_scene, room_scene
from nvs.io.media import save_image


@pytest.fixture(scope="module")
def scene():
    return object_scene(seed=11, views=4, height=48, width=64)


@pytest.mark.parametrize("fmt", ["nerfstudio", "colmap"])
def test_round_trip_and_projection(tmp_path, scene, fmt):
    write_dataset(tmp_path, fmt, [("s0", scene.images, scene.cameras), ("s1", scene.images[:2], scene.cameras[:2])])
    kind, refs = list_scenes(tmp_path)
    assert kind == fmt and len(refs) == 2
    record = read_scene(kind, refs[0])
    assert record.name == "s0" and record.distortion is None
    images, cams = load_views(record, list(range(4)))
    assert (images - scene.images).abs().max() <= 1 / 255 + 1e-6
    assert (cams.c2w - scene.cameras.c2w).abs().max() < 1e-6
    assert torch.allclose(cams.intrinsics, scene.cameras.intrinsics, atol=1e-4)
    point = torch.tensor([[0.1, -0.2, 0.3]]).expand(4, 1, 3)
    assert torch.allclose(cams.project(point)[0], scene.cameras.project(point)[0], atol=1e-4)
    # a single scene folder is a data set of one scene too
    assert list_scenes(tmp_path / "scenes" / "s1")[1] == [refs[1]]


def test_nerf_blender_layout_with_camera_angle(tmp_path, scene):
    """The original NeRF synthetic layout: camera_angle_x, paths without extension, RGBA images."""
    rgba = torch.cat([scene.images[:2], torch.zeros(2, 1, 48, 64)], 1)
    rgba[:, 3, 10:30, 20:40] = 1
    frames = []
    c2w_gl = scene.cameras.c2w[:2].double() @ torch.diag(torch.tensor([1.0, -1, -1, 1], dtype=torch.float64))
    for i in range(2):
        save_image(rgba[i], tmp_path / "train" / f"r_{i}.png")
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w_gl[i].tolist()})
    fx = float(scene.cameras.intrinsics[0, 0])
    angle = 2 * math.atan(0.5 * 64 / fx)
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    kind, refs = list_scenes(tmp_path)
    record = read_scene(kind, refs[0])
    images, cams = load_views(record, [0, 1])
    assert torch.allclose(cams.intrinsics[0], torch.tensor([fx, fx, 32.0, 24.0]), atol=1e-3)
    assert (cams.c2w - scene.cameras.c2w[:2]).abs().max() < 1e-6
    assert images[:, :, 0, 0].min() == 1.0  # transparent -> white
    assert torch.allclose(images[:, :, 20, 30], scene.images[:2, :, 20, 30], atol=1 / 255)


def _distort(image: torch.Tensor, k: np.ndarray, dist: np.ndarray) -> torch.Tensor:
    """The image a distorted camera with the same K sees: for each distorted pixel, sample the
    pinhole image where OpenCV's undistortPoints sends it."""
    import cv2

    h, w = image.shape[-2:]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 1, 2).astype(np.float64)
    src = cv2.undistortPoints(grid, k, dist, P=k).reshape(h, w, 2).astype(np.float32)
    planes = image.permute(1, 2, 0).numpy().copy()
    out = cv2.remap(planes, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out).permute(2, 0, 1)


@pytest.mark.parametrize("fmt", ["nerfstudio", "colmap"])
def test_distorted_cameras_are_undistorted_on_load(tmp_path, fmt):
    import pycolmap

    truth = room_scene(seed=3, views=1, height=72, width=128)
    # a smooth pattern everywhere, so that resampling blur does not hide the geometry
    yy, xx = torch.meshgrid(torch.arange(72.0), torch.arange(128.0), indexing="ij")
    truth.images[0] = 0.5 + 0.5 * torch.stack([torch.sin(xx / 5), torch.cos(yy / 4), torch.sin((xx + yy) / 7)])
    fx, fy, cx, cy = (float(v) for v in truth.cameras.intrinsics[0])
    k = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])
    dist = np.array([-0.35, 0.08, 0.0, 0.0, 0.0]) if fmt == "colmap" else np.array([-0.3, 0.06, 0.004, -0.003, 0.0])
    distorted = _distort(truth.images[0], k, dist)
    save_image(distorted, tmp_path / "images" / "000.png")
    if fmt == "nerfstudio":
        c2w_gl = truth.cameras.c2w[0].double() @ torch.diag(torch.tensor([1.0, -1, -1, 1], dtype=torch.float64))
        meta = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": 128, "h": 72, "k1": dist[0], "k2": dist[1],
                "p1": dist[2], "p2": dist[3], "frames": [{"file_path": "images/000.png", "transform_matrix": c2w_gl.tolist()}]}
        (tmp_path / "transforms.json").write_text(json.dumps(meta))
    else:
        recon = pycolmap.Reconstruction()
        recon.add_camera_with_trivial_rig(pycolmap.Camera(model="RADIAL", width=128, height=72, params=[fx, cx, cy, dist[0], dist[1]], camera_id=1))
        w2c = truth.cameras.w2c[0].double().numpy()
        recon.add_image_with_trivial_frame(pycolmap.Image(name="000.png", camera_id=1, image_id=1), pycolmap.Rigid3d(w2c[:3]))
        (tmp_path / "sparse" / "0").mkdir(parents=True)
        recon.write_text(tmp_path / "sparse" / "0")
    kind, refs = list_scenes(tmp_path)
    record = read_scene(kind, refs[0])
    assert record.distortion is not None
    images, _ = load_views(record, [0])
    inner = (slice(None), slice(10, -10), slice(16, -16))  # away from the border the remaps cannot fill
    err_undistorted = (images[0][inner] - truth.images[0][inner]).abs().mean()
    err_raw = (distorted[inner] - truth.images[0][inner]).abs().mean()
    assert err_undistorted < err_raw / 5, (err_undistorted, err_raw)


def _colmap_scene(tmp_path, scene, model="PINHOLE"):
    names = [f"{i:03d}.png" for i in range(len(scene.cameras))]
    for image, name in zip(scene.images, names):
        save_image(image, tmp_path / "images" / name)
    write_colmap_model(tmp_path / "sparse" / "0", names, scene.cameras)
    return tmp_path


def test_bad_folders_name_the_file_and_scene(tmp_path, scene):
    import pycolmap

    ns = tmp_path / "ns"
    write_dataset(ns, "nerfstudio", [("s0", scene.images, scene.cameras)])
    path = ns / "scenes" / "s0" / "transforms.json"
    meta = json.loads(path.read_text())
    meta["frames"][1]["transform_matrix"][0][0] = float("nan")
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="transform_matrix contains NaN") as info:
        read_scene("nerfstudio", path)
    assert str(path) in str(info.value) and "s0" in str(info.value)
    meta["frames"][1]["transform_matrix"][0][0] = 1.0
    meta["camera_model"] = "OPENCV_FISHEYE"
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="fisheye"):
        read_scene("nerfstudio", path)
    del meta["camera_model"], meta["frames"][0]["fl_x"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no focal length"):
        read_scene("nerfstudio", path)

    cm = _colmap_scene(tmp_path / "cm", scene)
    (cm / "images" / "002.png").unlink()
    with pytest.raises(ValueError, match="image file .*002.png is missing") as info:
        read_scene("colmap", cm)
    assert "cm" in str(info.value)
    recon = pycolmap.Reconstruction(cm / "sparse" / "0")
    recon.cameras[1].model = pycolmap.CameraModelId.OPENCV_FISHEYE
    recon.cameras[1].params = [50.0, 50.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0]
    recon.write(cm / "sparse" / "0")
    with pytest.raises(ValueError, match="OPENCV_FISHEYE is not supported"):
        read_scene("colmap", cm)
    (cm / "sparse" / "0" / "cameras.bin").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="not a readable COLMAP model"):
        read_scene("colmap", cm)


def test_synth_cli_writes_every_format(tmp_path):
    from nvs.commands.cli import main

    for fmt in ("nerfstudio", "colmap"):
        out = tmp_path / fmt
        assert main(["data", "synth", "--kind", "room", "--scenes", "2", "--views", "3", "--size", "36", "64",
                     "--format", fmt, "--out", str(out)]) in (0, None)
        kind, refs = list_scenes(out)
        assert kind == fmt and len(refs) == 2
        cams: Cameras = read_scene(kind, refs[1]).cameras
        assert (cams.height, cams.width) == (36, 64) and len(cams) == 3


def _middlebury_scene(folder, scene, name="temple"):
    """A Middlebury set: ``{name}_par.txt`` (count, then name + K, R, t row by row) beside PNGs."""
    folder.mkdir(parents=True)
    w2c = torch.linalg.inv(scene.cameras.c2w.double())
    lines = [str(len(scene.images))]
    for i, image in enumerate(scene.images):
        save_image(image, folder / f"{name}{i:04d}.png")
        fx, fy, cx, cy = scene.cameras.intrinsics[i].tolist()
        k = [fx, 0, cx, 0, fy, cy, 0, 0, 1]
        numbers = k + w2c[i, :3, :3].flatten().tolist() + w2c[i, :3, 3].tolist()
        lines.append(f"{name}{i:04d}.png " + " ".join(f"{x:.9f}" for x in numbers))
    (folder / f"{name}_par.txt").write_text("\n".join(lines) + "\n")
    return folder / f"{name}_par.txt"


def test_middlebury_folders_are_a_data_set(tmp_path, scene):
    par = _middlebury_scene(tmp_path / "sets" / "temple", scene)
    _middlebury_scene(tmp_path / "sets" / "dino", scene, name="dino")
    for root, names in ((tmp_path / "sets" / "temple", ["temple"]), (tmp_path / "sets", ["dino", "temple"])):
        kind, refs = list_scenes(root)
        assert kind == "middlebury" and [scene_name(kind, r) for r in refs] == names
    record = read_scene("middlebury", par)
    images, cams = load_views(record, [0, 3])
    assert (images - scene.images[[0, 3]]).abs().max() <= 1 / 255 + 1e-6
    assert (cams.c2w - scene.cameras.c2w[[0, 3]]).abs().max() < 1e-5

    lines = par.read_text().splitlines()
    lines[2] = "../../outside.png" + lines[2][len("temple0001.png"):]
    par.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="outside.png' leads outside the scene's folder"):
        read_scene("middlebury", par)
