import math

import pytest
import torch

from nvs.cameras import Cameras, look_at
from nvs.geometry.capture import axes_meeting_point, capture_kind, white_background

from tests.helpers import ring_cameras, shared_path


def _cameras(eye: torch.Tensor, target: torch.Tensor) -> Cameras:
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    return Cameras(torch.tensor([40.0, 40.0, 32.0, 32.0]).expand(len(eye), 4), c2w, 64, 64)


def test_a_ring_around_an_object_is_an_object_capture():
    cams = ring_cameras(1, 8)[0]
    assert capture_kind(cams) == "object"
    assert torch.allclose(axes_meeting_point(cams.c2w), torch.zeros(3, dtype=torch.float64), atol=1e-5)


def test_a_quarter_turn_around_an_object_is_an_object_capture():
    az = torch.linspace(0, math.pi / 2, 6)
    eye = torch.stack([2 * torch.cos(az), 2 * torch.sin(az), torch.full_like(az, 0.8)], -1)
    assert capture_kind(_cameras(eye, torch.zeros(6, 3))) == "object"


def test_a_forward_facing_capture_is_a_scene():
    eye = torch.stack([torch.linspace(-0.3, 0.3, 6), torch.zeros(6), torch.zeros(6)], -1)
    assert capture_kind(_cameras(eye, eye + torch.tensor([0.0, 3.0, 0.0]))) == "scene"


def test_a_walk_towards_a_gaze_target_is_a_scene():
    """Every axis meets the target, but the distance to it halves along the walk."""
    eye = torch.stack([torch.linspace(-1.0, 0.0, 6), torch.linspace(-3.0, -1.5, 6), torch.full((6,), 1.5)], -1)
    assert capture_kind(_cameras(eye, torch.zeros(6, 3))) == "scene"


def test_a_short_sideways_walk_is_a_scene():
    """The axes meet, the distances agree, but the arc around the gaze target is only ~20 deg."""
    az = torch.linspace(-0.17, 0.17, 6)
    eye = torch.stack([3 * torch.sin(az), -3 * torch.cos(az), torch.full_like(az, 1.5)], -1)
    assert capture_kind(_cameras(eye, torch.zeros(6, 3))) == "scene"


def test_cameras_looking_away_from_each_other_are_a_scene():
    """A panorama from one spot: the axes' closest point is behind every camera."""
    az = torch.linspace(0, 2 * math.pi, 9)[:-1]
    eye = 0.1 * torch.stack([torch.cos(az), torch.sin(az), torch.zeros_like(az)], -1)
    assert capture_kind(_cameras(eye, eye * 20)) == "scene"


def test_two_cameras_are_a_scene():
    assert axes_meeting_point(ring_cameras(1, 2)[0].c2w) is None
    assert capture_kind(ring_cameras(1, 2)[0]) == "scene"


def test_the_middlebury_temple_ring_is_an_object_capture():
    from nvs.datasets.formats import read_any_scene

    assert capture_kind(read_any_scene(shared_path("middlebury_templeSparseRing")).cameras) == "object"



def test_renders_on_white_have_a_white_background_and_photos_with_one_do_not():
    from nvs.datasets.procedural import object_scene, room_scene

    assert white_background(object_scene(seed=3, views=4, height=64, width=64).images)
    assert not white_background(room_scene(3, 4, 36, 64).images)
    photos = torch.ones(4, 3, 64, 64)
    photos[..., 10:54, 10:54] = 0.2  # an object filling most of the frame, still on white
    assert white_background(photos)
    photos[..., :2, :] = 0.0  # a dark frame along the top and bottom (a sixteenth of the height)
    photos[..., -2:, :] = 0.0
    assert white_background(photos)
    photos[..., :, :] = torch.tensor([0.9, 0.9, 0.5])[:, None, None]  # a warm backdrop is not white
    assert not white_background(photos)
    assert not white_background(torch.zeros(2, 3, 8, 8)) and white_background(torch.full((3, 8, 8), 0.8))


def test_the_middlebury_temple_is_not_on_white():
    from nvs.datasets.formats import load_views, read_any_scene

    record = read_any_scene(shared_path("middlebury_templeSparseRing"))
    assert not white_background(load_views(record, [0, 5], 120, 160)[0])  # a dark cloth behind the temple


def test_a_long_lens_is_told_by_the_field_of_view_across_the_photos_shorter_side():
    from nvs.datasets.procedural import turntable_cameras
    from nvs.geometry.capture import MIN_OBJECT_FOV_DEG, field_of_view_deg, long_lens

    square = turntable_cameras(8, 64)
    assert field_of_view_deg(square) == pytest.approx(50.0) and not long_lens(square)
    batched = Cameras(square.intrinsics.expand(2, 8, 4), square.c2w.expand(2, 8, 4, 4), 64, 64)
    assert field_of_view_deg(batched) == pytest.approx(50.0)
    pixels = torch.tensor([200.0, 100.0, 32.0, 24.0]).expand(8, 4)  # fx != fy: the shorter side's focal counts
    landscape, portrait = Cameras(pixels, square.c2w, 48, 64), Cameras(pixels, square.c2w, 64, 48)
    assert field_of_view_deg(landscape) == pytest.approx(math.degrees(2 * math.atan(24 / 100)))
    assert field_of_view_deg(portrait) == pytest.approx(math.degrees(2 * math.atan(24 / 200)))
    for fov, expected in ((MIN_OBJECT_FOV_DEG - 0.5, True), (MIN_OBJECT_FOV_DEG + 0.5, False), (100.0, False)):
        focal = 32 / math.tan(math.radians(fov) / 2)
        lens = Cameras(torch.tensor([focal, focal, 32.0, 32.0]).expand(8, 4), square.c2w, 64, 64)
        assert long_lens(lens) is expected, fov


def test_the_renderer_a_capture_suits_is_decided_by_one_test_at_a_time():
    from nvs.datasets.procedural import room_scene, turntable_cameras
    from nvs.geometry.capture import suited_renderer

    ring, white = turntable_cameras(8, 32), torch.ones(8, 3, 32, 32)
    table = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    telephoto = Cameras(ring.intrinsics * torch.tensor([4.0, 4.0, 1.0, 1.0]), ring.c2w, 32, 32)
    assert suited_renderer(room_scene(3, 8, 32, 32).cameras, white) == ("scene", "walk")
    assert suited_renderer(ring, table) == ("scene", "background")
    assert suited_renderer(telephoto, table) == ("scene", "background")  # the first test that fails names it
    assert suited_renderer(telephoto, white) == suited_renderer(telephoto) == ("scene", "long lens")
    assert suited_renderer(ring, white) == suited_renderer(ring) == ("object", "turntable")
