"""Joining models through shared photos, and finding photos whose pose is not pinned down."""

import numpy as np
import pycolmap
import pytest

from nvs.model_merging import similarity_from_shared_poses
from nvs.weak_poses import components, drop_weakly_posed, unpinned


def _random_poses(n: int, rng) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for p in poses:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        p[:3, :3] = q * np.sign(np.linalg.det(q))
        p[:3, 3] = rng.normal(size=3)
    return poses


@pytest.mark.parametrize("shared", [2, 5])
def test_similarity_from_shared_poses_recovers_a_known_similarity(shared):
    rng = np.random.default_rng(shared)
    source = _random_poses(shared, rng)
    rot = _random_poses(1, rng)[0, :3, :3]
    scale, shift = 3.7, np.array([0.5, -2.0, 1.0])
    target = source.copy()
    target[:, :3, :3] = rot @ source[:, :3, :3]
    target[:, :3, 3] = scale * source[:, :3, 3] @ rot.T + shift
    s, r, t, disagreement = similarity_from_shared_poses(target, source)
    assert abs(s - scale) < 1e-9 and np.allclose(r, rot, atol=1e-9) and np.allclose(t, shift, atol=1e-9)
    assert disagreement < 1e-4
    # a photo whose rotation differs between the models by 10 degrees is reported
    c, s10 = np.cos(np.radians(10)), np.sin(np.radians(10))
    target[0, :3, :3] = target[0, :3, :3] @ np.array([[c, -s10, 0], [s10, c, 0], [0, 0, 1]])
    assert similarity_from_shared_poses(target, source)[3] > 4


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
