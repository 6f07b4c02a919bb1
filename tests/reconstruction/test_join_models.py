"""Joining models through shared photos, and finding photos whose pose is not pinned down."""

import numpy as np
import pycolmap
import pytest
import torch

from nvs.datasets.colmap import image_w2c
from nvs.reconstruction.join_models import join_into
from nvs.reconstruction.pose_errors import fit_similarity
from nvs.reconstruction.unpinned_photos import components, drop_weakly_posed, unpinned


def _moved(c2w: np.ndarray, scale: float, rot: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Cameras [N, 4, 4] carried by x -> scale rot x + shift."""
    out = c2w.copy()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + shift
    return out


def _random_poses(n: int, rng) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for p in poses:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        p[:3, :3] = q * np.sign(np.linalg.det(q))
        p[:3, 3] = rng.normal(size=3)
    return poses


@pytest.mark.parametrize("shared", [2, 5])
def test_fit_similarity_recovers_a_known_similarity(shared):
    rng = np.random.default_rng(shared)
    source = _random_poses(shared, rng)
    rot, scale, shift = _random_poses(1, rng)[0, :3, :3], 3.7, np.array([0.5, -2.0, 1.0])
    s, r, t = fit_similarity(torch.from_numpy(source), torch.from_numpy(_moved(source, scale, rot, shift)))
    assert abs(s - scale) < 1e-9 and np.allclose(r, rot, atol=1e-9) and np.allclose(t, shift, atol=1e-9)


def _posed_model(c2w: dict[int, np.ndarray]):
    """A pycolmap model with one camera and a photo "<id>.png" per camera-to-world pose."""
    recon = pycolmap.Reconstruction()
    recon.add_camera_with_trivial_rig(pycolmap.Camera(model="SIMPLE_PINHOLE", width=100, height=100,
                                                      params=[100, 50, 50], camera_id=1))
    for i, pose in c2w.items():
        w2c = np.linalg.inv(pose)
        image = pycolmap.Image(name=f"{i}.png", keypoints=np.zeros((10, 2)), camera_id=1, image_id=i)
        recon.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
    return recon


def test_a_model_is_joined_through_two_shared_photos():
    rng = np.random.default_rng(7)
    truth = dict(enumerate(_random_poses(6, rng), start=1))
    rot, scale, shift = _random_poses(1, rng)[0, :3, :3], 0.25, np.array([1.0, 2.0, 3.0])
    base = _posed_model({i: truth[i] for i in (1, 2, 3, 4)})
    other = {i: _moved(truth[i][None], scale, rot, shift)[0] for i in (3, 4, 5, 6)}  # the same photos, another frame
    assert join_into(base, _posed_model(other)) == {5, 6}
    for i in (5, 6):
        assert np.allclose(torch.linalg.inv(image_w2c(base.image(i))).numpy(), truth[i], atol=1e-6)
    # the shared photos disagree about their relative rotation by 10 degrees: no join
    c, s10 = np.cos(np.radians(10)), np.sin(np.radians(10))
    other[4] = other[4] @ np.array([[c, -s10, 0, 0], [s10, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    fresh = _posed_model({i: truth[i] for i in (1, 2, 3, 4)})
    assert join_into(fresh, _posed_model(other)) is None and fresh.num_reg_images() == 4
    assert join_into(fresh, _posed_model({i: other[i] for i in (4, 5)})) is None  # one shared photo is not enough
    assert join_into(fresh, _posed_model({i: truth[i] for i in (1, 2)})) == set()  # joinable, nothing new
    assert join_into(fresh, _posed_model({i: _moved(truth[i][None], scale, rot, shift)[0] for i in (2, 3, 5)})) == {5}


def test_groups_hanging_on_one_photo_are_found():
    ring = {0: {1, 5}, 1: {0, 2}, 2: {1, 3}, 3: {2, 4}, 4: {3, 5}, 5: {4, 0}}
    assert unpinned(ring) == {}
    pendant = {k: set(v) for k, v in ring.items()}
    pendant[2] |= {6, 7}
    pendant.update({6: {2, 7}, 7: {2, 6}, 8: {9}, 9: {8}})
    assert unpinned(pendant) == {6: 2, 7: 2, 8: None, 9: None}
    assert components(pendant, removed=2)[1:] == [{6, 7}, {8, 9}]


def _model(tracks: list[tuple[list[int], int]], images: int):
    """A pycolmap model of ``images`` posed photos and, per (image ids, n), n points seen by those photos."""
    recon = pycolmap.Reconstruction()
    recon.add_camera_with_trivial_rig(pycolmap.Camera(model="SIMPLE_PINHOLE", width=100, height=100,
                                                      params=[100, 50, 50], camera_id=1))
    for i in range(1, images + 1):
        image = pycolmap.Image(name=f"{i}.png", keypoints=np.zeros((500, 2)), camera_id=1, image_id=i)
        recon.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(), [float(i), 0.0, 0.0]))
    used = dict.fromkeys(range(1, images + 1), 0)
    for ids, n in tracks:
        for _ in range(n):
            track = pycolmap.Track()
            for i in ids:
                track.add_element(i, used[i])
                used[i] += 1
            recon.add_point3D(np.array([0.0, 0.0, 5.0]), track)
    return recon


def test_weakly_posed_photos_are_deregistered_with_a_reason():
    # photos 1-4 are tied by three-view tracks; 5 and 6 hang on photo 4; 7 sees 20 points only
    recon = _model([([1, 2, 3], 40), ([2, 3, 4], 40), ([4, 5], 20), ([5, 6], 20), ([4, 6], 20), ([1, 2, 7], 20)], 7)
    dropped = drop_weakly_posed(recon)
    assert set(dropped) == {"5.png", "6.png", "7.png"}
    assert "only 20 3D points" in dropped["7.png"]
    assert "through 4.png alone" in dropped["5.png"] and "through 4.png alone" in dropped["6.png"]
    assert sorted(im.name for im in recon.images.values() if im.has_pose) == ["1.png", "2.png", "3.png", "4.png"]
    # a model that is rigid throughout keeps every photo
    rigid = _model([([1, 2, 3], 40), ([2, 3, 4], 40), ([3, 4, 1], 40)], 4)
    assert drop_weakly_posed(rigid) == {} and rigid.num_reg_images() == 4
