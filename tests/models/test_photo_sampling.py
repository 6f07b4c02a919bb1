import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nvs.cameras import Cameras
from nvs.models import LaCTRenderer, ModelConfig
from nvs.models.photo_sampling import catmull_rom_weights, sample_cubic, sample_photos
from nvs.models.view_blend import warp_views

from tests.helpers import plane_camera, ring_scene, textured_plane_view, tiny_config


def _keys_reference(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sixteen taps per pixel, each read with its index clamped to the image (border padding)."""
    n, c, height, width = images.shape
    ux = ((grid[..., 0] + 1) * width - 1) / 2
    uy = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = ux.floor(), uy.floor()
    wx, wy = catmull_rom_weights(ux - x0), catmull_rom_weights(uy - y0)
    flat = images.flatten(2)
    out = torch.zeros(n, c, *grid.shape[1:3], dtype=images.dtype)
    for j in range(4):
        rows = (y0.long() + j - 1).clamp(0, height - 1)
        for i in range(4):
            cols = (x0.long() + i - 1).clamp(0, width - 1)
            index = (rows * width + cols).flatten(1)[:, None].expand(n, c, -1)
            out += flat.gather(2, index).view_as(out) * (wy[j] * wx[i])[:, None]
    return out


def test_the_weights_sum_to_one_and_the_middle_two_are_not_negative():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)[:-1]
    w = torch.stack(catmull_rom_weights(t))
    assert torch.allclose(w.sum(0), torch.ones_like(t), atol=1e-15)
    assert (w[1:3] >= 0).all() and (w[[0, 3]] <= 0).all()
    assert torch.equal(torch.stack(catmull_rom_weights(torch.zeros(1, dtype=torch.float64)))[:, 0],
                       torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


def test_nine_bilinear_fetches_equal_the_sixteen_taps_of_the_cubic():
    """Inside, across the border and beyond it, non-square and batched."""
    torch.manual_seed(0)
    images = torch.rand(3, 2, 9, 13, dtype=torch.float64)
    grid = torch.rand(3, 7, 11, 2, dtype=torch.float64) * 2.6 - 1.3
    assert torch.allclose(sample_cubic(images, grid), _keys_reference(images, grid), atol=1e-12)


def test_the_cubic_passes_through_the_pixels_and_reproduces_quadratics():
    height, width = 10, 12
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    quadratic = (0.2 + 0.01 * x * x - 0.02 * x * y + 0.015 * y * y)[None, None]
    centres = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)[None]
    assert torch.allclose(sample_cubic(quadratic, centres), quadratic, atol=1e-13)
    torch.manual_seed(1)  # between the pixels, two or more pixels from the border
    u = torch.rand(1, 20, 20, 2, dtype=torch.float64) * torch.tensor([width - 5.0, height - 5.0], dtype=torch.float64) + 2
    grid = (2 * u + 1) / torch.tensor([width, height], dtype=torch.float64) - 1
    ux, uy = u[..., 0], u[..., 1]
    expected = (0.2 + 0.01 * ux * ux - 0.02 * ux * uy + 0.015 * uy * uy)[:, None]
    assert torch.allclose(sample_cubic(quadratic, grid), expected, atol=1e-12)
    bilinear = F.grid_sample(quadratic, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert (bilinear - expected).abs().max() > 1e-3  # which bilinear does not


def test_a_sample_at_the_photo_s_brightest_pixel_passes_its_whole_gradient():
    images = torch.tensor([[[[0.2, 0.9, 0.4], [0.1, 0.3, 0.5]]]], dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([[[[0.0, -0.5]]]], dtype=torch.float64)  # pixel (1, 0): the brightest, 0.9
    sample = sample_photos(images, centre, "cubic")
    sample.sum().backward()
    assert sample.item() == pytest.approx(0.9, abs=1e-12)
    expected = torch.zeros_like(images)
    expected[0, 0, 0, 1] = 1.0
    assert torch.allclose(images.grad, expected, atol=1e-12)


def test_the_cubic_is_differentiable_in_the_images_and_the_grid():
    torch.manual_seed(2)
    images = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    u = torch.rand(1, 3, 4, 2, dtype=torch.float64) * 0.8 + 0.1 + torch.randint(0, 5, (1, 3, 4, 2))  # off the pixel centres
    grid = ((2 * u + 1) / torch.tensor([7.0, 6.0], dtype=torch.float64) - 1).requires_grad_()
    assert torch.autograd.gradcheck(sample_cubic, (images, grid))


def test_sample_photos_clamps_the_overshoot_at_an_edge_and_reads_a_bad_grid():
    step = torch.zeros(1, 3, 4, 8, dtype=torch.float64)
    step[..., 4:] = 0.8
    u = torch.linspace(2.0, 5.0, 31, dtype=torch.float64)
    grid = torch.stack([(2 * u + 1) / 8 - 1, torch.zeros_like(u)], dim=-1).view(1, 1, -1, 2)
    raw = sample_cubic(step, grid)
    assert raw.min() < -0.01 and raw.max() > 0.81  # the spline rings on both sides of the edge
    clamped = sample_photos(step, grid, "cubic")
    assert clamped.min() == 0.0 and clamped.max() == 0.8
    assert torch.equal(sample_photos(step, grid, "bilinear"),
                       F.grid_sample(step, grid, mode="bilinear", padding_mode="border", align_corners=False))
    bad = torch.tensor([[[[float("nan"), 0.0], [float("inf"), -float("inf")]]]], dtype=torch.float64)
    assert torch.isfinite(sample_photos(step, bad, "cubic")).all()
    with pytest.raises(ValueError, match="interpolation must be one of .*'nearest'"):
        sample_photos(step, grid, "nearest")


def test_a_cubic_warp_reproduces_a_textured_view_more_closely_than_bilinear():
    target, source = plane_camera(0.0), plane_camera(0.4, yaw_deg=-5)
    target_image, depth = textured_plane_view(target, frequency=4.0)  # texture of a few pixels' period
    source_image, _ = textured_plane_view(source, frequency=4.0)
    view_cams = Cameras(source.intrinsics[None, None, None], source.c2w[None, None, None], 48, 48)
    errors = {}
    for interpolation in ("bilinear", "cubic"):
        samples, valid = warp_views(source_image[None, None, None], view_cams, target.unsqueeze(0).unsqueeze(0),
                                    depth[None, None], interpolation=interpolation)
        inner = valid[0, 0, 0, 0].clone()
        inner[:, :3], inner[:, -3:], inner[:3], inner[-3:] = False, False, False, False
        errors[interpolation] = (samples[0, 0, 0] - target_image).abs()[:, inner].mean()
    assert errors["cubic"] < 0.8 * errors["bilinear"], errors


def test_photo_interpolation_is_a_checked_reading_setting():
    from nvs.models.config import READING_SETTINGS

    assert "photo_interpolation" in READING_SETTINGS
    assert ModelConfig(photo_interpolation="cubic").photo_interpolation == "cubic"
    with pytest.raises(ValueError, match="'photo_interpolation' must be one of \\('bilinear', 'cubic'\\), got 'lanczos'"):
        ModelConfig(photo_interpolation="lanczos")


def test_a_renderer_samples_its_photos_as_its_setting_says():
    """The view-blending head and the sweep both read the setting; the depth found does not depend on it."""
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(view_blend=2, sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0)).eval()
    images, cams, targets = ring_scene()
    with torch.no_grad():
        bilinear, (samples, _, depth, _, _) = model(images, cams, targets, with_samples=True)
        head = model.render(model.memorize(images, cams), targets, sweep=False)
        model.use_reading_settings(dataclasses.replace(model.config, photo_interpolation="cubic"))
        assert model.sweep.interpolation == "cubic" and model.config.photo_interpolation == "cubic"
        cubic, (cubic_samples, _, cubic_depth, _, _) = model(images, cams, targets, with_samples=True)
        cubic_head = model.render(model.memorize(images, cams), targets, sweep=False)
    assert torch.equal(depth, cubic_depth)
    assert (cubic_samples - samples).abs().mean() > 1e-3 and (cubic_head - head).abs().mean() > 1e-4
    assert (cubic - bilinear).abs().mean() > 1e-4
    assert cubic_samples.min() >= 0 and cubic_samples.max() <= images.max()


def test_the_setting_is_taken_from_the_command_line_by_any_renderer_that_samples_photos():
    """A view-blending head without a sweep reads it; a renderer that samples no photo refuses it."""
    from nvs.commands.argtypes import reading_setting
    from nvs.inference import apply_reading_settings

    setting = reading_setting("photo_interpolation=cubic")
    assert setting == ("photo_interpolation", "cubic")
    torch.manual_seed(0)
    head_only = LaCTRenderer(tiny_config(view_blend=2)).eval()
    images, cams, targets = ring_scene()
    with torch.no_grad():
        before = head_only(images, cams, targets)
        assert apply_reading_settings(head_only, [setting]) == {"photo_interpolation": "cubic"}
        after = head_only(images, cams, targets)
    assert head_only.config.photo_interpolation == "cubic" and (after - before).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="photo_interpolation: this renderer samples no photos"):
        apply_reading_settings(LaCTRenderer(tiny_config()), [setting])
    with pytest.raises(ValueError, match="'photo_interpolation' must be one of"):
        apply_reading_settings(head_only, [reading_setting("photo_interpolation=lanczos")])
