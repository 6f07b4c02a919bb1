import math

import pytest
import torch

from nvs.cameras import Cameras
from nvs.evaluation.metrics import psnr
from nvs.models.plane_sweep import inverse_depth_planes
from nvs.evaluation.sweep_oracle import oracle_plane_images

from tests.helpers import PLANE_Z, plane_camera, textured_plane_view


def _plane_scene(size: int = 48):
    """Three input views of the textured plane z = PLANE_Z and two targets between them."""
    def cameras(xs):
        cams = [plane_camera(x, size, yaw_deg=-math.degrees(math.atan2(x, PLANE_Z))) for x in xs]
        return Cameras(torch.stack([c.intrinsics for c in cams]), torch.stack([c.c2w for c in cams]), size, size)

    input_cams, target_cams = cameras([-1.0, 0.0, 1.0]), cameras([-0.4, 0.5])
    return textured_plane_view(input_cams)[0], input_cams, textured_plane_view(target_cams)[0], target_cams


def test_the_oracle_finds_the_plane_the_photos_agree_on():
    """Planes that bracket the surface finely: the oracle's images match the targets where the
    inputs see them; planes far from the surface only, and the images are far off."""
    images, cams, targets, target_cams = _plane_scene()
    near = oracle_plane_images(images, cams, targets, target_cams, inverse_depth_planes(2.5, 4.5, 64).double(), views=3)
    wrong = oracle_plane_images(images, cams, targets, target_cams, inverse_depth_planes(0.5, 0.8, 4).double(), views=3)
    assert near.shape == targets.shape
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # seen by every input
    assert psnr(near[inner], targets[inner]).min() > 30
    assert psnr(wrong[inner], targets[inner]).max() < psnr(near[inner], targets[inner]).min() - 10


def test_each_pixel_keeps_the_best_of_the_planes_given():
    """Adding planes never makes a pixel's window error worse, so the oracle's PSNR cannot fall."""
    images, cams, targets, target_cams = _plane_scene()
    coarse = inverse_depth_planes(1.0, 10.0, 4).double()
    finer = torch.cat([coarse, inverse_depth_planes(2.0, 5.0, 16).double()])
    a = psnr(oracle_plane_images(images, cams, targets, target_cams, coarse, views=2, window=1), targets)
    b = psnr(oracle_plane_images(images, cams, targets, target_cams, finer, views=2, window=1), targets)
    assert (b >= a - 1e-9).all() and (b > a + 1).any()


@pytest.mark.parametrize("window", [0, 4])
def test_the_window_must_be_odd_and_positive(window):
    images, cams, targets, target_cams = _plane_scene(16)
    with pytest.raises(ValueError, match="odd number of pixels"):
        oracle_plane_images(images, cams, targets, target_cams, inverse_depth_planes(1.0, 5.0, 4).double(), window=window)
