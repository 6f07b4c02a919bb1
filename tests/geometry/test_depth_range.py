import math

import numpy as np
import torch

from nvs.geometry.depth_range import MARGIN, confirmed, depth_range, distances_seen, sparse_points
from tests.helpers import PLANE_Z, line_of_cameras, noise_plane_views


def test_the_points_of_a_textured_plane_lie_on_it_and_its_range_holds_its_distances():
    cams = line_of_cameras()
    images, distance = noise_plane_views(cams, [(PLANE_Z, math.inf)])
    points = sparse_points(images, cams)
    assert len(points) >= 50
    error = (points[:, 2] - PLANE_Z).abs() / PLANE_Z
    assert torch.quantile(error, 0.95) < 0.01 and error.max() < 0.1  # a stray match or two, no more
    near, far = depth_range(points, cams)
    true_near, true_far = float(distance.min()), float(distance.max())
    assert near < true_near * 1.02 and far > true_far * 0.98  # the margin covers the photos' corners
    assert near > true_near / (1 + MARGIN) ** 2 and far < true_far * (1 + MARGIN) ** 2  # and little more


def test_two_planes_at_different_depths_are_both_in_the_range():
    cams = line_of_cameras()
    images, distance = noise_plane_views(cams, [(2.0, 0.0), (6.0, math.inf)])
    points = sparse_points(images, cams)
    depths = points[:, 2]
    assert ((depths - 2.0).abs() < 0.06).sum() >= 10 and ((depths - 6.0).abs() < 0.18).sum() >= 10
    near, far = depth_range(points, cams)
    assert near < 2.0 and far > 6.0 * 1.05


def test_photos_without_texture_give_no_range():
    cams = line_of_cameras()
    images = torch.full((5, 3, 96, 96), 0.5)
    points = sparse_points(images, cams)
    assert points.shape == (0, 3)
    assert depth_range(points, cams) is None


def test_the_range_only_counts_points_a_camera_sees():
    cams = line_of_cameras(2)
    ahead, behind = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -3.0]])
    assert distances_seen(torch.cat([ahead, behind]).double(), cams).shape == (2,)
    assert depth_range(ahead.double().expand(20, 3), cams) is not None
    assert depth_range(behind.double().expand(20, 3), cams) is None


def test_a_keypoint_whose_pairs_disagree_is_dropped():
    centers = np.zeros((3, 3))
    agreeing = [(0, 7, 1, 3, np.array([0.0, 0.0, 3.0])), (0, 7, 2, 5, np.array([0.0, 0.0, 3.02]))]
    lone = [(1, 9, 2, 4, np.array([1.0, 0.0, 5.0]))]
    disagreeing = [(0, 8, 1, 2, np.array([0.0, 1.0, 2.0])), (0, 8, 2, 6, np.array([0.0, 1.0, 4.0]))]
    kept = confirmed(agreeing + lone + disagreeing, centers)
    assert kept.shape == (2, 3) and np.allclose(kept[:, 2], [3.0, 3.02])


def test_a_dense_capture_finds_the_range_its_spread_views_find():
    """40 frames along a line 1 unit long, looking at planes 2 and 4.5 away: neighbouring frames see
    them at under 1 degree of parallax, so the range comes from frames as far apart as 8 spread
    views would be, and holds both planes."""
    cams = line_of_cameras(40)
    images, distance = noise_plane_views(cams, [(2.0, 0.0), (4.5, math.inf)])
    near, far = depth_range(sparse_points(images, cams), cams)
    assert near < 2.0 and far > 4.5 * 1.05
    spread = torch.linspace(0, 39, 8).round().long()
    few_near, few_far = depth_range(sparse_points(images[spread], cams[spread]), cams[spread])
    assert abs(math.log(near / few_near)) < 0.1 and abs(math.log(far / few_far)) < 0.1
