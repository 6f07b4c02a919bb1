"""The public camera API (``from nvs.cameras import Cameras``); the code lives in nvs.geometry.cameras."""

from nvs.geometry.cameras import (
    Cameras,
    fov_to_focal,
    intrinsics_matrix,
    invert_rigid,
    look_at,
    normalized_to_pixel_intrinsics,
    opencv_to_opengl,
    opengl_to_opencv,
    pixel_rays,
    pixel_to_normalized_intrinsics,
    to_homogeneous,
)

__all__ = [
    "Cameras", "fov_to_focal", "intrinsics_matrix", "invert_rigid", "look_at", "normalized_to_pixel_intrinsics",
    "opencv_to_opengl", "opengl_to_opencv", "pixel_rays", "pixel_to_normalized_intrinsics", "to_homogeneous",
]
