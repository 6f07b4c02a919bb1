"""Implausible intrinsics from SfM on weak geometry (the sparse ring gave k1 = -1.3 and a focal
length 26% off): warned about in plain words, and a less distorted attempt preferred when it
poses as many photos."""

import pycolmap

from nvs.reconstruction.intrinsics_check import camera_warnings, radial_strength, reconstruction_warnings
from nvs.reconstruction.sfm import _better, _Mapped


def _recon(params: list[float], model: str = "SIMPLE_RADIAL", width: int = 640, height: int = 480):
    recon = pycolmap.Reconstruction()
    recon.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=width, height=height, params=params, camera_id=1))
    return recon


def test_the_sparse_ring_camera_is_warned_about():
    warnings = camera_warnings("SIMPLE_RADIAL", [760.0 * 0.74, 320, 240, -1.3], 640, 480, exif_focal=760.0)
    assert len(warnings) == 2
    assert "k1 = -1.30" in warnings[0] and "implausibly strong" in warnings[0]
    assert "-26% off" in warnings[1] and "EXIF" in warnings[1]


def test_a_plausible_camera_gets_no_warning():
    assert camera_warnings("SIMPLE_RADIAL", [770.0, 320, 240, -0.08], 640, 480, exif_focal=760.0) == []
    assert camera_warnings("PINHOLE", [700.0, 705.0, 320, 240], 640, 480, exif_focal=None) == []
    assert camera_warnings("OPENCV", [700.0, 702.0, 320, 240, 0.1, -0.05, 0.001, 0.0], 640, 480, None) == []


def test_without_exif_only_a_focal_length_no_lens_has_is_flagged():
    assert camera_warnings("SIMPLE_PINHOLE", [500.0, 320, 240], 640, 480, None) == []  # a wide lens
    far = camera_warnings("SIMPLE_PINHOLE", [5000.0, 320, 240], 640, 480, None)
    assert len(far) == 1 and "far from any usual lens" in far[0]
    assert "differ" in camera_warnings("PINHOLE", [700.0, 800.0, 320, 240], 640, 480, None)[0]


def test_reconstruction_warnings_and_distortion_strength_read_real_models():
    distorted, mild = _recon([560.0, 320, 240, -1.3]), _recon([770.0, 320, 240, -0.05])
    assert reconstruction_warnings(distorted, 760.0) and not reconstruction_warnings(mild, 760.0)
    assert abs(radial_strength(distorted) - 1.3) < 1e-9 and abs(radial_strength(mild) - 0.05) < 1e-9
    assert "the shared camera" in reconstruction_warnings(distorted, 760.0)[0]


def test_a_less_distorted_attempt_that_poses_as_many_photos_is_preferred():
    distorted, mild = _recon([560.0, 320, 240, -1.3]), _recon([770.0, 320, 240, -0.05])
    worse = _recon([560.0, 320, 240, -1.6])

    def attempt(recon):
        return _Mapped(recon, [], 0, 0, {})

    best = (12, attempt(distorted), None, reconstruction_warnings(distorted, 760.0))
    assert _better(12, [], attempt(mild), best)  # as many photos, plausible: preferred
    assert not _better(11, [], attempt(mild), best)  # fewer photos: more photos still win
    assert _better(13, ["w"], attempt(worse), best)
    assert not _better(12, reconstruction_warnings(worse, 760.0), attempt(worse), best)  # more distorted: not preferred
    plausible_best = (12, attempt(mild), None, [])
    assert not _better(12, [], attempt(_recon([771.0, 320, 240, -0.04])), plausible_best)  # a tie keeps the first
