"""Join COLMAP models that share registered photos into one.

Incremental mapping splits a photo set where the photos that link two parts of it turn more than
they move (a walk around a room corner): both parts register those photos, but with too little
parallax between them to triangulate the region they share, so the mapper cannot grow one part
into the other. Their poses, known in both models, still fix the similarity between the models.
We place the second model's photos with it, triangulate every verified match again with the joined
poses, and keep the join only when tracks now run across the two parts; the final bundle
adjustment then settles the result.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

MAX_ROTATION_DISAGREEMENT_DEG = 3.0  # shared photos' relative rotations must agree this well across models
MIN_CROSS_TRACKS = 30  # 3D points seen from both sides of a join after triangulating again


def _c2w(image) -> np.ndarray:
    """Camera-to-world [4, 4] of a registered pycolmap image."""
    w2c = np.eye(4)
    w2c[:3, :4] = image.cam_from_world().matrix()
    return np.linalg.inv(w2c)


def similarity_from_shared_poses(c2w_target: np.ndarray, c2w_source: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, float]:
    """The similarity x_t = s R x_s + t that carries source-model cameras onto target-model ones.

    c2w_* [N, 4, 4] (N >= 2) are the same photos in the two models. R is the chordal mean of
    R_t R_s^T; s and t fit the camera centres in least squares. Returns (s, R [3, 3], t [3], the
    largest angle in degrees by which a photo's rotation disagrees with R).
    """
    rt, rs = c2w_target[:, :3, :3], c2w_source[:, :3, :3]
    u, _, vt = np.linalg.svd((rt @ rs.transpose(0, 2, 1)).sum(0))
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    residual = rt.transpose(0, 2, 1) @ rot @ rs
    cos = np.clip((np.trace(residual, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    ct, cs = c2w_target[:, :3, 3], c2w_source[:, :3, 3]
    dt, ds = ct - ct.mean(0), (cs - cs.mean(0)) @ rot.T
    scale = float((dt * ds).sum() / max(float((ds**2).sum()), 1e-300))
    shift = ct.mean(0) - scale * rot @ cs.mean(0)
    return scale, rot, shift, float(np.degrees(np.arccos(cos)).max())


def join_into(base, other) -> set[int]:
    """Add to ``base`` (in place) the photos of ``other`` it lacks, posed through the photos both
    have registered (at least two, agreeing in rotation). Returns the image ids added."""
    import pycolmap

    shared = base.find_common_reg_image_ids(other)
    if len(shared) < 2:
        return set()
    scale, rot, shift, disagreement = similarity_from_shared_poses(
        np.stack([_c2w(base.image(a)) for a, _ in shared]), np.stack([_c2w(other.image(b)) for _, b in shared]))
    if disagreement > MAX_ROTATION_DISAGREEMENT_DEG or not 1e-6 < scale < 1e6:
        return set()
    moved = pycolmap.Reconstruction(other)
    moved.transform(pycolmap.Sim3d(scale, pycolmap.Rotation3d(rot), shift))
    added = set()
    for image in moved.images.values():
        if not image.has_pose or base.exists_image(image.image_id):
            continue
        if not base.exists_camera(image.camera_id):
            base.add_camera_with_trivial_rig(moved.camera(image.camera_id))
        keypoints = np.array([p.xy for p in image.points2D], dtype=np.float64).reshape(-1, 2)
        fresh = pycolmap.Image(name=image.name, keypoints=keypoints, camera_id=image.camera_id, image_id=image.image_id)
        base.add_image_with_trivial_frame(fresh, image.cam_from_world())
        added.add(image.image_id)
    return added


def cross_tracks(recon, side: set[int]) -> int:
    """3D points observed both from photos in ``side`` and from photos outside it."""
    count = 0
    for point in recon.points3D.values():
        ids = {el.image_id for el in point.track.elements}
        count += bool(ids & side) and bool(ids - side)
    return count


def triangulate_joined(joined, groups: list[set[int]], database: Path, image_dir: Path, out: Path):
    """Triangulate every verified match in ``database`` again with the poses of ``joined``.

    Returns the new model, or None when some joined group of photos shares fewer than
    MIN_CROSS_TRACKS points with the rest (its placement is then not confirmed by the images).
    """
    import pycolmap

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    recon = pycolmap.triangulate_points(joined, database, image_dir, out, clear_points=True)
    if any(cross_tracks(recon, group) < MIN_CROSS_TRACKS for group in groups):
        return None
    return recon
