import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvs.geometry.exposure import (BRIGHTEST, MAX_GAIN, apply_gains, exposure_gains, point_colours, robust_log_gains,
                                   window_means)
from nvs.geometry.matching import PairMatches, epipolar_matches
from tests.helpers import PLANE_Z, line_of_cameras, noise_plane_views

GAINS = torch.tensor([[1.0, 1.0, 1.0], [1.25, 1.1, 0.9], [0.8, 0.95, 1.05], [1.1, 0.85, 1.2], [0.9, 1.15, 1.0]])


def plane_photos():
    cams = line_of_cameras()
    images, _ = noise_plane_views(cams, [(PLANE_Z, float("inf"))])
    return 0.8 * images + 0.1, cams  # within (0.1, 0.9): no gain below clips


def relative(gains: torch.Tensor) -> torch.Tensor:
    """gains [V, 3] over their geometric mean per channel."""
    return gains / gains.log().mean(dim=0).exp()


def test_the_gains_of_photos_taken_at_different_exposures_are_found_and_undone():
    images, cams = plane_photos()
    exposed = images * GAINS[..., None, None]
    found = exposure_gains(exposed, epipolar_matches(exposed, cams))
    torch.testing.assert_close(found, relative(GAINS), atol=0.01, rtol=0.0)
    assert found.log().mean(dim=0).abs().max() < 1e-6  # the common exposure is the geometric mean
    matched = apply_gains(exposed, found)
    common = GAINS.log().mean(dim=0).exp()[:, None, None]
    assert (matched - images * common).abs().mean() < 0.005
    assert (exposed - images * common).abs().mean() > 0.04  # what there was to undo


def test_photos_of_one_exposure_keep_it():
    images, cams = plane_photos()
    torch.testing.assert_close(exposure_gains(images, epipolar_matches(images, cams)), torch.ones(5, 3), atol=0.005, rtol=0.0)


def test_without_matches_every_gain_is_one():
    flat = torch.full((3, 3, 48, 48), 0.5)
    assert torch.equal(exposure_gains(flat, []), torch.ones(3, 3))


def blocky_photo(seed: int) -> torch.Tensor:
    """[3, 128, 128] of 4x4-pixel blocks of random colour in (0.05, 0.95)."""
    coarse = 0.05 + 0.9 * torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, scale_factor=4, mode="nearest")[0]


def block_matches(i: int, j: int) -> PairMatches:
    """Every block matched to itself: pixel (4 bx + 1.5, 4 by + 1.5), whose 3x3 window lies inside its block."""
    centres = np.stack(np.meshgrid(np.arange(32), np.arange(32)), axis=-1).reshape(-1, 2) * 4 + 1.5
    ids = np.arange(len(centres))
    return PairMatches(i, j, ids, ids, centres, centres)


def test_clipped_points_are_left_out_of_a_pair_s_ratio():
    photo = blocky_photo(0)
    brighter = (photo * 2.5).clamp(max=1.0)  # most blocks clip in each channel: their ratios fall short of 2.5
    assert (point_colours(window_means(brighter[None])[0], block_matches(0, 1).pixels_j) >= BRIGHTEST).mean(axis=0).min() > 0.5
    found = exposure_gains(torch.stack([photo, brighter]), [block_matches(0, 1)])
    torch.testing.assert_close(found[1] / found[0], torch.full((3,), 2.5, dtype=found.dtype), atol=0.01, rtol=0.0)


def test_a_photo_no_pair_reaches_keeps_its_exposure_and_gains_stay_bounded():
    photos = torch.stack([blocky_photo(0), 0.45 * blocky_photo(0), blocky_photo(1)])
    found = exposure_gains(photos, [block_matches(0, 1)])
    torch.testing.assert_close(found[2], torch.ones(3))
    torch.testing.assert_close(found[0] / found[1], torch.full((3,), 1 / 0.45), atol=0.01, rtol=0.0)
    dark = torch.stack([blocky_photo(0), 0.1 * blocky_photo(0) + 0.04])  # no single gain explains this pair
    gains = exposure_gains(dark, [block_matches(0, 1)])
    assert (gains <= MAX_GAIN + 1e-6).all() and (gains >= 1 / MAX_GAIN - 1e-6).all()


@pytest.mark.parametrize("shape", [(5, 3), (2, 5, 3)])
def test_applying_gains_divides_each_view_s_channels_and_clips(shape):
    images = torch.full((*shape[:-1], 3, 4, 4), 0.6)
    gains = torch.full(shape, 0.5)
    gains[..., 0, 1] = 2.0
    out = apply_gains(images, gains)
    assert out.shape == images.shape and out[..., 0, 1, :, :].eq(0.3).all() and out[..., 0, 0, :, :].eq(1.0).all()


def test_a_pair_the_others_contradict_is_outvoted():
    """Four views, every pair measured; one pair's ratio is off by 0.2 (a highlight, a repeated
    pattern). Least squares would spread that error over the views; the robust fit ignores it."""
    true = np.log(np.array([[1.0, 1.0, 1.0], [1.2, 0.9, 1.1], [0.8, 1.0, 0.95], [1.05, 1.1, 0.9]]))
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    rows = np.zeros((len(pairs), 4))
    for p, (i, j) in enumerate(pairs):
        rows[p, i], rows[p, j] = 1.0, -1.0
    ratios = rows @ true
    ratios[1] += 0.2
    found = robust_log_gains(rows, ratios, np.full(len(pairs), 40.0))
    found -= found.mean(axis=0)
    np.testing.assert_allclose(found, true - true.mean(axis=0), atol=0.003)
    least_squares = np.linalg.lstsq(rows, ratios, rcond=None)[0]
    assert np.abs(least_squares - least_squares.mean(axis=0) - (true - true.mean(axis=0))).max() > 0.03
