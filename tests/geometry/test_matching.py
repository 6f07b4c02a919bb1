import numpy as np
import torch

from nvs.cameras import Cameras
from nvs.geometry.matching import (PAIR_SPACING, SPREAD_VIEWS, _gray_uint8, epipolar_matches, fundamental_matrix,
                                   neighbour_pairs, sampson_distance, scene_matches, sift_features, spread_spacing)
from tests.helpers import PLANE_Z, line_of_cameras, noise_plane_views


def test_pixels_of_one_point_satisfy_the_known_epipolar_geometry():
    cams = line_of_cameras(2)
    points = torch.tensor([[0.3, -0.2, 2.5], [-0.4, 0.5, 4.0], [0.1, 0.1, 7.0]], dtype=torch.float64)
    pixels, _ = cams.project(points[None].expand(2, -1, -1))
    k, w2c = cams.K.double().numpy(), cams.w2c.double().numpy()
    f = fundamental_matrix(k[0], w2c[0], k[1], w2c[1])
    x_i, x_j = pixels[0].numpy(), pixels[1].numpy()
    assert sampson_distance(f, x_i, x_j).max() < 1e-6
    assert sampson_distance(f, x_i, x_j + np.array([0.0, 3.0])).min() > 1.0  # off the line: the cameras lie along x


def test_each_view_is_paired_with_its_nearest_views():
    cams = line_of_cameras(5)  # centres evenly spaced along x
    assert neighbour_pairs(cams, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert (0, 2) in neighbour_pairs(cams, 2) and (0, 3) not in neighbour_pairs(cams, 2)


def test_a_dense_capture_pairs_views_as_far_apart_as_spread_inputs_would_be():
    """40 frames along a line: each is paired with the nearest frames at least PAIR_SPACING x the
    spacing of 8 spread views away, not with its immediate neighbours; 8 views keep the nearest."""
    centres = np.stack([np.linspace(-0.5, 0.5, 40), np.zeros(40), np.zeros(40)], axis=1)
    spacing = spread_spacing(centres)
    assert 1 / 8 - 1e-9 <= spacing <= 1 / 4 + 1e-9  # 8 of them over a line of length 1
    assert spread_spacing(centres[:: 5]) == 0.0  # 8 views: nothing to spread
    cams = line_of_cameras(40, size=16)
    pairs = neighbour_pairs(cams)
    x = cams.centers[:, 0].double().numpy()
    gaps = np.array([abs(x[j] - x[i]) for i, j in pairs])
    assert gaps.min() >= PAIR_SPACING * spacing - 1e-9 and gaps.max() < PAIR_SPACING * spacing + 3 / 39
    assert gaps.min() > 3 / 39  # 4 frames apart at least, never the neighbouring frames
    assert all(sum(v in p for p in pairs) >= 3 for v in range(40))
    # up to SPREAD_VIEWS views: each with its three nearest, however close (a cluster and two far views)
    rng = np.random.default_rng(0)
    centres = np.concatenate([rng.normal(0, 0.01, (SPREAD_VIEWS - 2, 3)), [[1.0, 0, 0], [-1.3, 0.2, 0]]])
    c2w = torch.eye(4, dtype=torch.float64).repeat(SPREAD_VIEWS, 1, 1)
    c2w[:, :3, 3] = torch.from_numpy(centres)
    few = Cameras(cams.intrinsics[:SPREAD_VIEWS].double(), c2w, 16, 16)
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(SPREAD_VIEWS) * 1e9
    nearest = {tuple(sorted((v, int(u)))) for v in range(SPREAD_VIEWS) for u in np.argsort(distance[v])[:3]}
    assert neighbour_pairs(few) == sorted(nearest) and (0, SPREAD_VIEWS - 1) not in nearest


def test_views_with_too_few_far_enough_pair_with_the_farthest_of_the_closer(monkeypatch):
    import nvs.geometry.matching as matching

    monkeypatch.setattr(matching, "PAIR_SPACING", 1e9)  # no view is far enough from any other
    pairs = neighbour_pairs(line_of_cameras(12, size=16))
    for v, farthest in ((0, (9, 10, 11)), (5, (0, 10, 11)), (6, (0, 1, 11)), (11, (0, 1, 2))):
        assert {tuple(sorted((v, u))) for u in farthest} <= set(pairs), v
    assert (0, 1) not in pairs and (10, 11) not in pairs


def test_matches_on_a_textured_plane_are_the_plane_s_true_correspondences():
    """Cameras side by side facing a plane at depth Z: a point moves by -f dx / Z along x between two
    views and not at all along y."""
    cams = line_of_cameras()
    images, _ = noise_plane_views(cams, [(PLANE_Z, float("inf"))])
    found = epipolar_matches(images, cams)
    assert {(p.i, p.j) for p in found} == set(neighbour_pairs(cams))
    focal, centres = float(cams.K[0, 0, 0]), cams.centers[:, 0].double().numpy()
    for pair in found:
        assert len(pair) >= 20 and pair.pixels_i.shape == pair.pixels_j.shape == (len(pair), 2)
        shift = pair.pixels_j - pair.pixels_i
        expected = -focal * (centres[pair.j] - centres[pair.i]) / PLANE_Z
        assert np.quantile(np.abs(shift[:, 0] - expected), 0.95) < 1.0 and np.abs(shift[:, 1]).max() < 1.5
        assert len(set(pair.keypoints_i.tolist())) == len(pair)  # one match per keypoint


def test_photos_without_texture_have_no_matches_and_a_batch_is_matched_scene_by_scene():
    cams = line_of_cameras(3)
    textured, _ = noise_plane_views(cams, [(PLANE_Z, float("inf"))])
    flat = torch.full_like(textured, 0.5)
    assert epipolar_matches(flat, cams) == []
    batch_cams = Cameras(cams.intrinsics.expand(2, 3, 4), cams.c2w.expand(2, 3, 4, 4), cams.height, cams.width)
    batch = scene_matches(torch.stack([flat, textured]), batch_cams)
    assert batch[0] == [] and len(batch[1]) == len(neighbour_pairs(cams))


def test_sift_features_are_the_same_however_many_images_are_detected_at_once():
    cams = line_of_cameras(3)
    images, _ = noise_plane_views(cams, [(PLANE_Z, float("inf"))])
    grays = [_gray_uint8(image, 2.0) for image in images]
    one, three = sift_features(grays, workers=1), sift_features(grays, workers=3)
    assert all(len(keypoints) > 20 for keypoints, _ in one)
    for (kp_a, desc_a), (kp_b, desc_b) in zip(one, three, strict=True):
        assert [k.pt for k in kp_a] == [k.pt for k in kp_b] and np.array_equal(desc_a, desc_b)
