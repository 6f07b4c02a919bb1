import math

import numpy as np
import pytest
import torch

from nvs.cameras import (
    Cameras, fov_to_focal, invert_rigid, look_at, normalized_to_pixel_intrinsics,
    opencv_to_opengl, opengl_to_opencv, pixel_rays, pixel_to_normalized_intrinsics,
)
from nvs.geometry.scene_normalization import SceneNormalization, mean_camera

INTR = torch.tensor([100.0, 120.0, 50.0, 40.0])


def rot_y(deg):
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def camera_turned_90():
    """A camera at (10, 0, 0) turned -90 deg about y, so its +z axis points along world -x."""
    c2w = torch.eye(4)
    c2w[:3, :3] = rot_y(-90)
    c2w[:3, 3] = torch.tensor([10.0, 0.0, 0.0])
    return Cameras(INTR[None], c2w[None], 80, 100)


def test_identity_camera_projects_by_hand():
    cams = Cameras(INTR[None], torch.eye(4)[None], 80, 100)
    px, depth = cams.project(torch.tensor([[[1.0, 2.0, 10.0]]]))
    # u = fx x / z + cx = 100 * 0.1 + 50 ; v = 120 * 0.2 + 40
    assert torch.allclose(px, torch.tensor([[[60.0, 64.0]]]))
    assert torch.allclose(depth, torch.tensor([[10.0]]))


def test_rotated_camera_projects_by_hand():
    cams = camera_turned_90()
    px, depth = cams.project(torch.tensor([[[0.0, 1.0, 2.0]]]))
    # forward = -x so depth = 10; right = R[:,0] = (0,0,1) -> x_c = 2; down = (0,1,0) -> y_c = 1
    assert torch.allclose(depth, torch.tensor([[10.0]]))
    assert torch.allclose(px, torch.tensor([[[100 * 0.2 + 50, 120 * 0.1 + 40]]]))


def test_every_conversion_keeps_the_projection():
    cams = camera_turned_90()
    point = torch.tensor([[[0.0, 1.0, 2.0]]])
    expected, _ = cams.project(point)
    via_w2c = Cameras.from_w2c(cams.intrinsics, cams.w2c, 80, 100)
    via_gl = Cameras.from_opengl(cams.intrinsics, opencv_to_opengl(cams.c2w), 80, 100)
    norm = pixel_to_normalized_intrinsics(cams.intrinsics, 80, 100)
    via_norm = Cameras(normalized_to_pixel_intrinsics(norm, 80, 100), cams.c2w, 80, 100)
    for other in (via_w2c, via_gl, via_norm):
        assert torch.allclose(other.project(point)[0], expected, atol=1e-5)


def test_opengl_round_trip_is_exact():
    c2w = torch.randn(5, 4, 4)
    assert torch.equal(opencv_to_opengl(opengl_to_opencv(c2w)), c2w)


def test_opengl_camera_looks_down_minus_z():
    gl = torch.eye(4)[None]  # OpenGL camera at the origin sees points with negative z
    cams = Cameras.from_opengl(INTR[None], gl, 80, 100)
    px, depth = cams.project(torch.tensor([[[0.0, 0.0, -5.0]]]))
    assert depth.item() == pytest.approx(5.0) and torch.allclose(px, torch.tensor([[[50.0, 40.0]]]))


def test_invert_rigid_matches_inverse():
    c2w = camera_turned_90().c2w
    assert torch.allclose(invert_rigid(c2w), torch.linalg.inv(c2w), atol=1e-6)


def test_camera_geometry_keeps_its_precision_under_bfloat16_autocast():
    """--dtype bf16 renders inside autocast; poses, rays and projections stay float32 there."""
    cams = camera_turned_90()
    cams = Cameras(cams.intrinsics, cams.c2w.clone(), 80, 100)
    cams.c2w[0, :3, 3] = torch.tensor([10.123, -3.217, 0.731])
    points = torch.randn(1, 50, 3) * 3.0
    exact = (invert_rigid(cams.c2w), cams.project(points), pixel_rays(cams))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = (invert_rigid(cams.c2w), cams.project(points), pixel_rays(cams))
    for a, b in zip(exact, mixed):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert y.dtype == torch.float32 and torch.equal(x, y)


@pytest.mark.parametrize("size", [(40, 50), (160, 200), (57, 31)])
def test_resize_keeps_projection_in_relative_coordinates(size):
    cams = camera_turned_90()
    point = torch.tensor([[[0.3, -0.4, 1.0]]])
    px, _ = cams.project(point)
    small = cams.resize(*size)
    px2, _ = small.project(point)
    assert torch.allclose(px2[..., 0] / size[1], px[..., 0] / 100, atol=1e-6)
    assert torch.allclose(px2[..., 1] / size[0], px[..., 1] / 80, atol=1e-6)


def test_crop_shifts_projection():
    cams = camera_turned_90()
    point = torch.tensor([[[0.3, -0.4, 1.0]]])
    px, _ = cams.project(point)
    cropped = cams.crop(10, 20, 40, 60)
    assert torch.allclose(cropped.project(point)[0], px - torch.tensor([20.0, 10.0]), atol=1e-5)
    assert torch.allclose(cams.center_crop(60, 60).intrinsics[..., 2:], torch.tensor([[30.0, 30.0]]))
    with pytest.raises(ValueError, match="outside"):
        cams.crop(50, 0, 40, 10)


def test_center_pad_is_the_inverse_of_center_crop():
    cams = camera_turned_90()  # 80 x 100
    point = torch.tensor([[[0.3, -0.4, 1.0]]])
    padded = cams.center_pad(97, 132)
    assert (padded.height, padded.width) == (97, 132)
    assert torch.allclose(padded.project(point)[0], cams.project(point)[0] + torch.tensor([16.0, 8.0]), atol=1e-5)
    back = padded.center_crop(80, 100)
    assert torch.allclose(back.intrinsics, cams.intrinsics) and torch.equal(back.c2w, cams.c2w)
    with pytest.raises(ValueError, match="cannot hold"):
        cams.center_pad(79, 120)


def test_a_mirrored_camera_sees_the_reflected_point_at_the_mirrored_pixel():
    """Principal point off centre: p at (u, v) -> (-x, y, z) at (width - u, v)."""
    cams = camera_turned_90()  # 80 x 100
    cams = Cameras(cams.intrinsics + torch.tensor([0.0, 0.0, 1.5, -2.0]), cams.c2w, 80, 100)
    points = torch.randn(1, 20, 3) * 0.4
    mirrored = cams.mirror()
    pixels, depth = cams.project(points)
    pixels_m, depth_m = mirrored.project(points * torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(pixels_m[..., 0], 100 - pixels[..., 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(pixels_m[..., 1], pixels[..., 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(depth_m, depth, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(mirrored.c2w[..., :3, :3]), torch.ones(1))  # still a rotation
    twice = mirrored.mirror()
    assert torch.equal(twice.intrinsics, cams.intrinsics) and torch.equal(twice.c2w, cams.c2w)


def test_rays_pass_through_projected_points():
    cams = camera_turned_90()
    origins, dirs = pixel_rays(cams)  # [1, 3, 80, 100]
    assert torch.allclose(dirs.norm(dim=1), torch.ones(1, 80, 100), atol=1e-6)
    # pixel (row 12, col 33): its centre (33.5, 12.5) at depth 7 back-projects to a point the
    # camera projects onto that same centre
    d = dirs[0, :, 12, 33]
    point = origins[0, :, 12, 33] + d * 7.0
    px, _ = cams.project(point[None, None])
    assert torch.allclose(px, torch.tensor([[[33.5, 12.5]]]), atol=1e-4)


def test_rays_without_exact_norm_agree_to_float_rounding():
    """The sweep's and warps' rays (exact_norm=False) against the embedding's (torch's norm)."""
    cams = camera_turned_90()
    exact_origins, exact = pixel_rays(cams)
    origins, fast = pixel_rays(cams, exact_norm=False)
    assert torch.equal(origins, exact_origins)
    assert (fast - exact).abs().max() <= 2 * torch.finfo(torch.float32).eps
    assert torch.allclose(fast.norm(dim=1), torch.ones(1, 80, 100), atol=1e-6)
    _, fast64 = pixel_rays(cams, torch.float64, exact_norm=False)
    assert fast64.dtype == torch.float64 and (fast64 - exact.double()).abs().max() < 1e-6


def test_exact_rays_divide_by_the_correctly_rounded_length():
    """exact_norm: float32 directions over the correctly rounded root of their squares added in
    order (numpy's float32 root is IEEE's), what torch's norm gives on a CPU (tests/geometry/test_vectors.py)."""
    intr = torch.tensor([[97.3, 101.9, 49.7, 41.2]])
    cams = Cameras(intr, torch.eye(4)[None], 80, 100)  # an identity rotation leaves the directions as computed
    u = torch.arange(100.0).repeat(80)
    v = torch.arange(80.0).repeat_interleave(100)
    raw = torch.stack([(u + 0.5 - intr[0, 2]) / intr[0, 0], (v + 0.5 - intr[0, 3]) / intr[0, 1], torch.ones(8000)])
    length = torch.from_numpy(np.sqrt((raw.numpy() * raw.numpy()).sum(axis=0)))
    _, exact = pixel_rays(cams)
    assert torch.equal(exact.flatten(-2)[0], raw / length)


def test_look_at_faces_target():
    eye = torch.tensor([[2.0, 0.0, 0.0]])
    c2w = look_at(eye, torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
    cams = Cameras(INTR[None], c2w, 80, 100)
    px, depth = cams.project(torch.zeros(1, 1, 3))
    assert torch.allclose(px, torch.tensor([[[50.0, 40.0]]]), atol=1e-5) and depth.item() == pytest.approx(2.0)
    # world up (+z) appears upwards in the image (smaller v)
    up_px, _ = cams.project(torch.tensor([[[0.0, 0.0, 0.5]]]))
    assert up_px[0, 0, 1] < 40.0
    assert fov_to_focal(math.radians(90), 100) == pytest.approx(50.0)


def test_scene_normalization_keeps_projections_and_scales():
    torch.manual_seed(1)
    eyes = torch.randn(6, 3) * 4 + 10
    c2w = look_at(eyes, torch.zeros(6, 3) + 10, torch.tensor([0.0, 0.0, 1.0]).expand(6, 3))
    cams = Cameras(INTR.expand(6, 4), c2w, 80, 100)
    points = torch.randn(6, 20, 3) + 10
    px, _ = cams.project(points)
    norm = SceneNormalization.fit(c2w)
    moved = Cameras(cams.intrinsics, norm.apply(c2w), 80, 100)
    px2, _ = moved.project(norm.apply_points(points))
    assert torch.allclose(px, px2, atol=1e-3)
    assert moved.centers.norm(dim=-1).max() == pytest.approx(1 / 1.35, rel=1e-5)
    assert torch.allclose(mean_camera(moved.c2w)[:3, :3], torch.eye(3), atol=1e-5)


def _ring(views: int, turn: float) -> torch.Tensor:
    """c2w [views, 4, 4]: a full ring of radius 2 at 25 deg elevation around (1, 2, 0.5), turned by ``turn``."""
    az = torch.arange(views) * 2 * math.pi / views + turn
    el = math.radians(25)
    eyes = torch.stack([2 * torch.cos(az) * math.cos(el) + 1, 2 * torch.sin(az) * math.cos(el) + 2,
                        torch.full_like(az, 2 * math.sin(el) + 0.5)], -1)
    return look_at(eyes, torch.tensor([1.0, 2.0, 0.5]).expand(views, 3), torch.tensor([0.0, 0.0, 1.0]).expand(views, 3))


def test_lvsm_frame_of_a_ring_takes_the_first_cameras_heading():
    ring = _ring(8, 0.0)
    frame = mean_camera(ring, level_rings=True)
    rot = frame[:3, :3]
    assert torch.allclose(rot.T @ rot, torch.eye(3), atol=1e-5) and torch.det(rot) == pytest.approx(1.0, abs=1e-5)
    # the frame's forward is the first camera's heading, level; its down is world down
    assert torch.allclose(frame[:3, 1], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5)
    first = ring[0, :3, 2].clone()
    first[2] = 0
    assert torch.allclose(frame[:3, 2], first / first.norm(), atol=1e-5)
    # so the normalised ring does not depend on where around it the capture started
    a = SceneNormalization.fit(ring).apply(ring)
    b = SceneNormalization.fit(_ring(8, 1.0)).apply(_ring(8, 1.0))
    assert torch.allclose(a, b, atol=1e-4)
    # cameras that do not form a ring keep the plain mean frame
    walk = look_at(torch.tensor([[0.0, 0.0, 1.5], [0.5, 0.1, 1.5], [1.0, 0.3, 1.6]]),
                   torch.tensor([[3.0, 4.0, 1.0]]).expand(3, 3), torch.tensor([0.0, 0.0, 1.0]).expand(3, 3))
    assert torch.equal(mean_camera(walk, level_rings=True), mean_camera(walk))


def test_cameras_indexing_and_batching():
    cams = Cameras(INTR.expand(2, 3, 4), torch.eye(4).expand(2, 3, 4, 4), 80, 100)
    assert cams.shape == (2, 3) and cams[1].shape == (3,) and cams[:, :2].shape == (2, 2)
    assert Cameras.cat([cams, cams], dim=1).shape == (2, 6)
    assert cams.reshape(6).shape == (6,) and cams.unsqueeze(0).shape == (1, 2, 3)
    assert cams.to(torch.float64).c2w.dtype == torch.float64


@pytest.mark.parametrize(
    "intr, c2w, message",
    [
        (INTR[None], torch.full((1, 4, 4), float("nan")), "NaN"),
        (torch.tensor([[float("inf"), 1.0, 1.0, 1.0]]), torch.eye(4)[None], "NaN or inf"),
        (INTR[None], torch.zeros(1, 4, 4), "not invertible"),
        (torch.tensor([[-1.0, 1.0, 1.0, 1.0]]), torch.eye(4)[None], "focal"),
        (INTR[None], torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0]))[None], "proper rotation"),
    ],
)
def test_validate_rejects_bad_cameras(intr, c2w, message):
    with pytest.raises(ValueError, match=message):
        Cameras(intr, c2w, 80, 100).validate()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        Cameras(torch.zeros(1, 3), torch.eye(4)[None], 8, 8)
    with pytest.raises(ValueError, match="batch shape"):
        Cameras(torch.zeros(2, 4), torch.eye(4)[None], 8, 8)
    with pytest.raises(ValueError, match="4, 4"):
        Cameras(torch.zeros(1, 4), torch.eye(3)[None], 8, 8)
