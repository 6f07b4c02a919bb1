"""Join COLMAP models that share registered photos into one.

Incremental mapping splits a photo set where the photos that link two parts of it turn more than
they move (a walk that turns on the spot): both parts register those photos, but with too little
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
import torch

from nvs.datasets.colmap import image_w2c
from nvs.reconstruction.pose_errors import fit_similarity, rotation_angle_deg

MAX_ROTATION_DISAGREEMENT_DEG = 3.0  # shared photos' relative rotations must agree this well across models
MIN_CROSS_TRACKS = 30  # 3D points seen from both sides of a join after triangulating again


def _similarity(base, other, shared: list[tuple[int, int]]) -> tuple[float, np.ndarray, np.ndarray, float]:
    """fit_similarity from ``other``'s cameras to ``base``'s over the shared photos, and the largest
    angle (deg) by which a shared photo's rotation disagrees with it."""
    dst = torch.linalg.inv(torch.stack([image_w2c(base.image(a)) for a, _ in shared]))
    src = torch.linalg.inv(torch.stack([image_w2c(other.image(b)) for _, b in shared]))
    scale, rot, shift = fit_similarity(src, dst)
    disagreement = rotation_angle_deg(dst[:, :3, :3].transpose(-1, -2) @ rot @ src[:, :3, :3]).max()
    return scale, rot.numpy(), shift.numpy(), float(disagreement)


def join_into(base, other) -> set[int] | None:
    """Add to ``base`` (in place) the photos of ``other`` it lacks, posed through the photos both
    have registered (at least two, agreeing in rotation). Returns the image ids added, or None
    when the two models cannot be joined."""
    import pycolmap

    shared = base.find_common_reg_image_ids(other)
    if len(shared) < 2:
        return None
    scale, rot, shift, disagreement = _similarity(base, other, shared)
    if disagreement > MAX_ROTATION_DISAGREEMENT_DEG or not 1e-6 < scale < 1e6:
        return None
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


def triangulate_joined(joined, groups: list[set[int]], database: Path, image_dir: Path, out: Path, options):
    """Triangulate every verified match in ``database`` again with the poses of ``joined``.

    Returns the new model, or None when some joined group of photos shares fewer than
    MIN_CROSS_TRACKS points with the rest (its placement is then not confirmed by the images).
    ``options``: the mapper's pycolmap.IncrementalPipelineOptions (triangulation and threads).
    """
    import pycolmap

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    recon = pycolmap.triangulate_points(joined, database, image_dir, out, clear_points=True, options=options)
    if any(cross_tracks(recon, group) < MIN_CROSS_TRACKS for group in groups):
        return None
    return recon
