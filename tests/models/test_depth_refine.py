import pytest
import torch
import torch.nn.functional as F

from nvs.cameras import Cameras
from nvs.models.depth_refine import (UNSEEN_COST, median_filter, median_taps, neighbour_candidates, photo_spread,
                                     refine_depth)

from tests.helpers import noise_plane_views, plane_camera


def test_each_pixel_s_candidates_are_the_3x3_low_resolution_values_around_it():
    inverse = torch.arange(6.0).reshape(1, 1, 2, 3)
    candidates = neighbour_candidates(inverse, (4, 6))
    assert candidates.shape == (1, 9, 4, 6)
    torch.testing.assert_close(candidates[:, 4:5], F.interpolate(inverse, size=(4, 6), mode="nearest"))
    # pixel (3, 5) lies in low-resolution pixel (1, 2): its neighbours, the border repeated
    assert candidates[0, :, 3, 5].tolist() == [1.0, 2.0, 2.0, 4.0, 5.0, 5.0, 4.0, 5.0, 5.0]
    assert candidates[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 4.0]


def test_photo_spread_is_the_colour_variance_over_the_views_that_see_the_point():
    samples = torch.rand(2, 4, 3, 5, 6)
    valid = torch.rand(2, 4, 1, 5, 6) > 0.3
    spread = photo_spread(samples, valid)
    assert spread.shape == (2, 1, 5, 6)
    for b, y, x in [(0, 0, 0), (1, 4, 5), (0, 2, 3), (1, 1, 2)]:
        seen = valid[b, :, 0, y, x]
        if seen.sum() >= 2:
            colours = samples[b, seen, :, y, x]
            expected = colours.var(dim=0, unbiased=False).sum()
        else:
            expected = torch.tensor(UNSEEN_COST)
        torch.testing.assert_close(spread[b, 0, y, x], expected)
    one_view = valid.clone()
    one_view[:, 1:] = False
    assert torch.equal(photo_spread(samples, one_view), torch.full_like(spread, UNSEEN_COST))


def test_the_median_filter_removes_small_patches_and_keeps_a_step():
    x = torch.zeros(1, 1, 9, 12)
    x[..., 6:] = 1.0
    torch.testing.assert_close(median_filter(x, 5), x)
    speckled = x.clone()
    speckled[0, 0, 4, 2] = 7.0
    speckled[0, 0, 1:3, 7:12] = -3.0  # 2 rows tall: at most 5 // 2
    torch.testing.assert_close(median_filter(speckled, 5), x)
    values = torch.rand(6, 7)

    def clamp(i: int, n: int) -> int:  # edges repeated
        return min(max(i, 0), n - 1)

    rows = torch.tensor([[sorted(values[y, clamp(x + d, 7)] for d in (-1, 0, 1))[1] for x in range(7)] for y in range(6)])
    expected = torch.tensor([[sorted(rows[clamp(y + d, 6), x] for d in (-1, 0, 1))[1] for x in range(7)] for y in range(6)])
    torch.testing.assert_close(median_filter(values[None, None], 3)[0, 0], expected)
    many = torch.rand(2, 1, 40, 50)
    padded = F.pad(many, (8, 8, 0, 0), mode="replicate").unfold(-1, 17, 1).median(dim=-1).values
    assert torch.equal(median_filter(many, 17), F.pad(padded, (0, 0, 8, 8), mode="replicate").unfold(-2, 17, 1).median(dim=-1).values)
    with pytest.raises(ValueError, match="odd number of taps"):
        median_filter(many, 4)


def test_the_median_reaches_one_cost_volume_pixel_each_way():
    assert [median_taps(octave) // 2 for octave in range(4)] == [2, 4, 8, 16]


def _step_scene(size: int = 96):
    """Three photos and a target between them of a near textured plane (x < 0) in front of a far one:
    (photos [1, 1, 3, 3, H, W], their cameras [1, 1, 3], the target camera [1, 1], the target's true
    distance along each ray [1, 1, 1, H, W])."""
    views = [plane_camera(x, size) for x in (-0.3, 0.15, 0.4)] + [plane_camera(0.0, size)]
    cams = Cameras(torch.stack([c.intrinsics for c in views]), torch.stack([c.c2w for c in views]), size, size)
    images, distance = noise_plane_views(cams, [(2.0, 0.0), (4.0, 10.0)])
    photos = images[:3][None, None]
    sources = Cameras(cams.intrinsics[:3][None, None].float(), cams.c2w[:3][None, None].float(), size, size)
    target = Cameras(cams.intrinsics[3:][None].float(), cams.c2w[3:][None].float(), size, size)
    return photos, sources, target, distance[3:][None].float()


def test_at_a_step_in_depth_the_photos_pick_each_pixel_s_side_of_the_edge():
    """The sweep's depth at a quarter of the resolution, upsampled bilinearly, blurs the step from
    the near plane to the far one (at the middle column) over several pixels; refined, most of them
    take the depth of their own side. The few left wrong lie on the far side within a few pixels of
    the edge, where some views see the near plane instead (no view is left out of the agreement).
    The gradient reaches the low-resolution depth through the chosen values."""
    photos, sources, target, truth = _step_scene()
    inverse = F.avg_pool2d((1.0 / truth).flatten(0, 1), 4).unflatten(0, (1, 1)).requires_grad_()
    upsampled = 1.0 / F.interpolate(inverse.flatten(0, 1), size=truth.shape[-2:], mode="bilinear",
                                    align_corners=False).unflatten(0, (1, 1))
    refined = refine_depth(upsampled, inverse, photos, sources, target, window=5, octave=1)
    assert refined.shape == truth.shape

    def wrong(depth: torch.Tensor) -> torch.Tensor:
        return ((depth - truth).abs() / truth > 0.05)[0, 0, 0]

    rows, middle = truth.shape[-2], truth.shape[-1] // 2
    assert wrong(upsampled).sum() >= 4 * rows  # a band of blurred pixels along the edge
    assert wrong(refined).sum() <= wrong(upsampled).sum() // 3
    columns = wrong(refined).any(dim=0).nonzero().flatten()
    assert middle - 2 <= columns.min() and columns.max() <= middle + 3
    refined.sum().backward()
    assert inverse.grad is not None and inverse.grad.abs().sum() > 0


def test_where_fewer_than_two_views_take_part_the_upsampled_depth_stays():
    """With one view taking part there is no agreement to measure: every candidate costs the same
    and the upsampled value, the first, is kept (without the median)."""
    photos, sources, target, truth = _step_scene()
    inverse = F.avg_pool2d((1.0 / truth).flatten(0, 1), 4).unflatten(0, (1, 1))
    upsampled = 1.0 / F.interpolate(inverse.flatten(0, 1), size=truth.shape[-2:], mode="bilinear",
                                    align_corners=False).unflatten(0, (1, 1))
    present = torch.tensor([[[True, False, False]]])
    torch.testing.assert_close(refine_depth(upsampled, inverse, photos, sources, target, 5, present, median=False), upsampled)
    assert not torch.allclose(refine_depth(upsampled, inverse, photos, sources, target, 5, median=False), upsampled)
