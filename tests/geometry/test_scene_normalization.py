"""The two named scene normalisation rules against hand-computed cameras."""

import math

import pytest
import torch

from nvs.geometry.scene_normalization import SceneNormalization, normalize_views

# cameras turned 90 degrees about z: camera x = world y, camera y = world -x, camera z = world z
QUARTER_TURN = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _poses(centres, rotation=None):
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(centres), 1, 1)
    c2w[:, :3, 3] = torch.tensor(centres, dtype=torch.float64)
    if rotation is not None:
        c2w[:, :3, :3] = rotation
    return c2w


def test_lact_rule_fits_inputs_and_targets_and_divides_by_the_largest_coordinate():
    # mean centre of all three: (2, 2/3, 0); offsets (-1, -2/3, 0), (1, -2/3, 0), (0, 4/3, 0); max |t| = 4/3
    inputs, targets = _poses([[1, 0, 0], [3, 0, 0]]), _poses([[2, 2, 0]])
    new_in, new_tg = normalize_views("lact", inputs, targets)
    torch.testing.assert_close(new_in[:, :3, 3], torch.tensor([[-0.75, -0.5, 0.0], [0.75, -0.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(new_tg[:, :3, 3], torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(new_in[:, :3, :3], torch.eye(3, dtype=torch.float64).expand(2, 3, 3))


def test_lact_rule_rotates_into_the_mean_camera():
    # same centres, every camera turned a quarter about z: local offsets are R^T (t - c)
    inputs, targets = _poses([[1, 0, 0], [3, 0, 0]], QUARTER_TURN), _poses([[2, 2, 0]], QUARTER_TURN)
    new_in, new_tg = normalize_views("lact", inputs, targets)
    torch.testing.assert_close(new_in[:, :3, 3], torch.tensor([[-0.5, 0.75, 0.0], [-0.5, -0.75, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(new_tg[:, :3, 3], torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(new_tg[0, :3, :3], torch.eye(3, dtype=torch.float64))


def test_lact_mean_axes_are_reorthonormalised():
    # two cameras looking 90 degrees apart (z = +z and z = +x); mean forward (1, 0, 1)/sqrt 2,
    # mean y = (0, 1, 0); right = normalize(y x forward) = (1, 0, -1)/sqrt 2; y = forward x right
    a = torch.eye(3, dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)  # columns x, y, z
    poses = _poses([[0, 0, 0], [0, 0, 0]])
    poses[0, :3, :3], poses[1, :3, :3] = a, b
    frame = SceneNormalization.fit_lact(poses).frame
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[s, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, s]], dtype=torch.float64)  # columns right, y, forward
    torch.testing.assert_close(frame[:3, :3], expected)


def test_lvsm_rule_fits_the_inputs_only_with_a_margin():
    # inputs centred at (2, 0, 0), farthest input at distance 1: scale 1 / 1.35; the target does not count
    inputs, targets = _poses([[1, 0, 0], [3, 0, 0]]), _poses([[2, 2, 0]])
    new_in, new_tg = normalize_views("lvsm", inputs, targets)
    torch.testing.assert_close(new_in[:, :3, 3], torch.tensor([[-1 / 1.35, 0, 0], [1 / 1.35, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(new_tg[:, :3, 3], torch.tensor([[0, 2 / 1.35, 0]], dtype=torch.float64))


def test_object_rule_leaves_the_object_frame_and_recovers_it_from_another():
    """Cameras around an object in the frame object data is rendered in stay put; the same cameras
    in a y-up world, at another scale and off the origin come back to it."""
    from nvs.datasets.procedural import object_cameras

    cams = object_cameras(torch.Generator().manual_seed(3), 10, 32, 32).c2w.double()
    same_in, same_tg = normalize_views("object", cams[:6], cams[6:])
    torch.testing.assert_close(torch.cat([same_in, same_tg]), cams, atol=1e-6, rtol=0)
    y_up = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)
    moved = cams.clone()
    moved[:, :3, :3] = y_up @ cams[:, :3, :3]
    moved[:, :3, 3] = 0.3 * cams[:, :3, 3] @ y_up.T + torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)
    back_in, back_tg = normalize_views("object", moved[:6], moved[6:])
    torch.testing.assert_close(torch.cat([back_in, back_tg]), cams, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="one sample's cameras"):
        normalize_views("object", moved[None, :6], moved[None, 6:])


def test_none_and_unknown_rules():
    inputs, targets = _poses([[1, 0, 0], [3, 0, 0]]), _poses([[2, 2, 0]])
    assert all(torch.equal(a, b) for a, b in zip(normalize_views("none", inputs, targets), (inputs, targets)))
    with pytest.raises(ValueError, match="choose one of"):
        normalize_views("colmap", inputs, targets)
