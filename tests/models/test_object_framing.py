import dataclasses

import pytest
import torch
from kornia.filters import gaussian_blur2d

from nvs.cameras import Cameras
from nvs.inference import configure_inference, framing_canvas, framing_note, framing_zoom, memorize_views, renderer_state
from nvs.models import LaCTRenderer
from nvs.models.config import ModelConfig
from nvs.models.lact import SceneState
from nvs.models.object_framing import (ObjectFraming, canvas_size, framing_scale, pad_images, silhouette_extent, unzoom_images,
                                       zoom_images)
from nvs.models.plane_sweep import silhouettes
from nvs.models.turn_ensemble import TurnEnsemble
from nvs.models.wrapping import RendererWrapper

from tests.helpers import PhotoLookup, ring_cameras, tiny_config


def object_photos(half: int, size: int = 32, views: int = 3, backdrop: float = 1.0) -> torch.Tensor:
    """[1, V, 3, H, W]: a dark square reaching ``half`` pixels from the centre on a plain backdrop."""
    images = torch.full((1, views, 3, size, size), backdrop)
    c = size // 2
    images[..., c - half : c + half, c - half : c + half] = 0.2
    return images


def test_the_extent_is_how_far_the_object_reaches_from_the_centre_and_zero_without_a_plain_backdrop():
    torch.testing.assert_close(silhouette_extent(object_photos(8)), torch.tensor([0.5]))
    torch.testing.assert_close(silhouette_extent(object_photos(15)), torch.tensor([15 / 16]))
    specked = object_photos(8)
    specked[..., 1, 30] = 0.0  # a speck of dust near a corner reaches nowhere
    torch.testing.assert_close(silhouette_extent(specked), torch.tensor([0.5]))
    busy = torch.rand(1, 3, 3, 32, 32) * 0.5  # a dark, textured background: no view carves
    assert silhouette_extent(busy).tolist() == [0.0]


def test_the_scale_brings_a_large_object_to_the_extent_and_leaves_a_small_one():
    both = torch.cat([object_photos(8), object_photos(15, backdrop=0.8)])
    torch.testing.assert_close(framing_scale(both, 0.75), torch.tensor([1.0, 0.75 / (15 / 16)]))
    # zoomed by that scale, the large object reaches the extent
    zoomed = zoom_images(both, framing_scale(both, 0.75))
    assert abs(float(silhouette_extent(zoomed[1:])) - 0.75) <= 1.5 / 16  # within a pixel and a half of 16


def test_zoomed_cameras_see_a_ray_where_the_zoomed_photos_put_its_colour():
    """Cameras.zoom moves the pixel of every ray to centre + s (u - centre), the centre of the
    image, not its principal point; zoom_images moves the photo's colour at u to the same place
    (exact on a linear ramp, which bilinear sampling keeps). A 24 x 40 photo, principal point off centre."""
    height, width, scale = 24, 40, torch.tensor([0.8])
    intrinsics = torch.tensor([[[30.0, 28.0, 17.5, 13.0]]])
    cams = Cameras(intrinsics, torch.eye(4).expand(1, 1, 4, 4), height, width)
    zoomed = cams.zoom(scale)
    rays = torch.randn(50, 2) * 0.3  # x / z, y / z in the camera
    fx, fy, cx, cy = intrinsics[0, 0]
    zx, zy, zcx, zcy = zoomed.intrinsics[0, 0]
    u, v = fx * rays[:, 0] + cx, fy * rays[:, 1] + cy
    torch.testing.assert_close(zx * rays[:, 0] + zcx, width / 2 + 0.8 * (u - width / 2))
    torch.testing.assert_close(zy * rays[:, 1] + zcy, height / 2 + 0.8 * (v - height / 2))
    assert torch.equal(zoomed.c2w, cams.c2w) and (zoomed.height, zoomed.width) == (height, width)

    rows = torch.arange(height, dtype=torch.float32) + 0.5
    cols = torch.arange(width, dtype=torch.float32) + 0.5
    photo = (0.1 + 0.01 * cols[None, :] + 0.02 * rows[:, None]).expand(1, 1, 3, height, width)
    out = zoom_images(photo, scale)[0, 0, 0]
    from_row, from_col = height / 2 + (rows - height / 2) / 0.8, width / 2 + (cols - width / 2) / 0.8
    inside_rows = (from_row > 0.5) & (from_row < height - 0.5)
    inside_cols = (from_col > 0.5) & (from_col < width - 0.5)
    expected = 0.1 + 0.01 * from_col[inside_cols][None, :] + 0.02 * from_row[inside_rows][:, None]
    torch.testing.assert_close(out[inside_rows][:, inside_cols], expected, atol=1e-5, rtol=0)


def test_the_rim_the_zoom_uncovers_continues_the_photo_so_a_cut_object_stays_cut():
    """Beyond a photo's edge the zoomed photo repeats its edge pixels: backdrop where the photo
    shows backdrop there, object where the edge cuts the object, so its silhouette does not end
    the object where the photo stopped seeing it."""
    photos = object_photos(8, backdrop=0.8)
    photos[..., 12:20, 20:] = 0.3  # a bar the right edge cuts
    out = zoom_images(photos, torch.tensor([0.75]))
    rim = out[..., :, -3:]  # beyond the photo's right edge
    torch.testing.assert_close(rim[..., 14:18, :], torch.full_like(rim[..., 14:18, :], 0.3))
    torch.testing.assert_close(rim[..., :8, :], torch.full_like(rim[..., :8, :], 0.8))
    assert bool(silhouettes(out)[0, 0, 0, 14:18, -3:].all()) and not bool(silhouettes(out)[0, 0, 0, :8, -3:].any())


def test_unzooming_a_zoomed_photo_gives_it_back_inside():
    size = 32
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    photo = torch.stack([0.5 + 0.3 * torch.sin(3 * xs), 0.5 + 0.3 * torch.cos(2 * ys), 0.4 + 0.2 * xs * ys])[None, None]
    back = unzoom_images(zoom_images(photo, torch.tensor([0.85])), torch.tensor([0.85]))
    torch.testing.assert_close(back[..., 2:-2, 2:-2], photo[..., 2:-2, 2:-2], atol=5e-3, rtol=0)


def test_the_canvas_is_the_smallest_patch_multiple_on_which_the_photo_spans_the_scale():
    assert canvas_size(128, 128, 0.8, 16) == (160, 160)  # exactly 0.8: no patch more
    assert canvas_size(128, 128, 0.85, 16) == (160, 160)
    assert canvas_size(128, 224, 0.79, 16) == (176, 288)


def test_a_padded_photo_keeps_its_pixels_and_continues_its_edges():
    photos = object_photos(15, backdrop=0.8)
    photos[..., 12:20, 20:] = 0.3  # a bar the right edge cuts
    padded = pad_images(photos, 40, 48)  # 4 rows above, 8 columns left
    assert torch.equal(padded[..., 4:36, 8:40], photos)
    torch.testing.assert_close(padded[..., 16:24, 40:], torch.full_like(padded[..., 16:24, 40:], 0.3))
    torch.testing.assert_close(padded[..., :4, :], torch.full_like(padded[..., :4, :], 0.8))
    # on the canvas for the scale that frames it, the object reaches the extent
    scale = float(framing_scale(object_photos(15), 0.75))
    height, width = canvas_size(32, 32, scale, 8)
    assert float(silhouette_extent(pad_images(object_photos(15), height, width))) == pytest.approx(0.75)


def detailed_object() -> torch.Tensor:
    """[1, 3, 3, 64, 64]: a large object with detail inside, smooth enough to resample without loss."""
    images = object_photos(24, size=64)
    images[..., 24:40, 20:28] = 0.6
    return gaussian_blur2d(images[0], (7, 7), (1.5, 1.5), border_type="replicate")[None]


def test_framing_renders_an_input_camera_as_its_photo_through_zoomed_cameras():
    """Inputs and targets are zoomed alike (the stand-in finds each target among the inputs), and
    the render comes back to the cameras asked for: the photo itself, within the resampling's blur."""
    images = detailed_object()
    cams = ring_cameras(1, 3, size=64)
    framing = ObjectFraming(PhotoLookup(), 0.75)
    state = framing.memorize(images, cams)
    assert float(silhouette_extent(images)) > 0.8
    torch.testing.assert_close(state.scale, 0.75 / silhouette_extent(images))
    out = framing.render(state, Cameras(cams.intrinsics[:, 1:], cams.c2w[:, 1:], 64, 64))
    assert out.shape == (1, 2, 3, 64, 64)
    error = (out - images[:, 1:]).abs()
    assert float(error.max()) < 0.03, float(error.max())
    small = object_photos(16, size=64)
    assert framing.memorize(small, cams).scale.tolist() == [1.0]  # already at the extent: the photos as given
    assert torch.equal(framing.render(framing.memorize(small, cams), cams), small)
    # two scenes in one batch, one zoomed and one not: each comes back as its own photo
    both = framing.render(framing.memorize(torch.cat([small, images]), Cameras.cat([cams, cams])), Cameras.cat([cams, cams]))
    torch.testing.assert_close(both[0], small[0], atol=1e-5, rtol=0)
    assert float((both[1] - images[0]).abs().max()) < 0.03


def test_a_canvas_renders_an_input_camera_as_its_photo_pixel_for_pixel_and_halves_the_zooms_error():
    """On the canvas, inputs and targets are padded alike and the photo comes back exactly, so the
    average with the zoomed render misses the photo by half of what the zoomed render alone does."""
    images, cams = detailed_object(), ring_cameras(1, 3, size=64)
    targets = Cameras(cams.intrinsics[:, 1:], cams.c2w[:, 1:], 64, 64)
    zoomed = ObjectFraming(PhotoLookup(), 0.75)
    both = ObjectFraming(PhotoLookup(), 0.75, canvas=True)
    state = both.memorize(images, cams)
    (canvas,) = state.canvases
    photos, canvas_cams = canvas.inner  # what the stand-in memorised: the photos on the canvas
    assert canvas.scale == pytest.approx(float(state.scale[0]))
    assert (canvas_cams.height, canvas_cams.width) == canvas_size(64, 64, canvas.scale, 8) and canvas_cams.height > 64
    # a point lands on the same content through the canvas's cameras as through the photos'
    point = torch.tensor([[[0.3, -0.2, 0.25]]])
    (u, v), (cu, cv) = cams[:, :1].project(point)[0][0, 0, 0], canvas_cams[:, :1].project(point)[0][0, 0, 0]
    assert torch.equal(photos[0, 0, :, int(cv), int(cu)], images[0, 0, :, int(v), int(u)])
    alone = zoomed.render(zoomed.memorize(images, cams), targets) - images[:, 1:]
    assert float(alone.abs().max()) > 0.01  # the zoom's resampling loses something to halve
    torch.testing.assert_close(both.render(state, targets) - images[:, 1:], alone / 2, atol=1e-6, rtol=0)
    # a scene not framed gets no canvas and comes back as it was, beside one that does
    small = object_photos(16, size=64)
    pair = both.memorize(torch.cat([small, images]), Cameras.cat([cams, cams]))
    assert pair.canvases[0] is None and pair.canvases[1] is not None
    out = both.render(pair, Cameras.cat([targets, targets]))
    torch.testing.assert_close(out[0], small[0, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1] - images[0, 1:], alone[0] / 2, atol=1e-6, rtol=0)


def test_a_lact_renderer_frames_on_a_canvas_in_a_batch_of_two_through_its_turns():
    """Non-square photos, one scene framed and one not, targets larger than the inputs: each
    scene's renders come back at the targets' size, the framed one averaged with its canvas's."""
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(frame_extent=0.85, frame_canvas=True)).eval()
    runner = configure_inference(model, turns=2)
    images = torch.ones(2, 3, 3, 24, 32)  # 24 x 32 photos on white
    images[0, ..., 4:20, 1:31] = 0.2  # reaches 15 / 16 of the half-width: framed
    images[1, ..., 8:16, 10:22] = 0.2  # within the extent: as given
    cams = Cameras.cat([ring_cameras(1, 3)] * 2).center_crop(24, 32)
    targets = Cameras.cat([ring_cameras(1, 2, offset=0.3)] * 2).center_pad(40, 48)
    with torch.no_grad():
        state = runner.memorize(images, cams)
        assert state.canvases[0] is not None and state.canvases[1] is None
        out = runner.render(state, targets)
        zoomed = runner.render(dataclasses.replace(state, canvases=[]), targets)  # the same state, its canvas unread
    assert out.shape == (2, 2, 3, 40, 48) and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[1], zoomed[1])
    assert float((out[0] - zoomed[0]).abs().max()) > 1e-4


def test_configure_inference_frames_renderers_whose_config_sets_an_extent_outside_their_turns():
    torch.manual_seed(0)
    plain = LaCTRenderer(tiny_config()).eval()
    framed = LaCTRenderer(tiny_config(frame_extent=0.85)).eval()
    assert configure_inference(plain) is plain
    runner = configure_inference(framed, turns=2)
    assert isinstance(runner, ObjectFraming) and isinstance(runner.renderer, TurnEnsemble) and not runner.canvas
    assert configure_inference(LaCTRenderer(tiny_config(frame_extent=0.85, frame_canvas=True))).canvas
    assert isinstance(runner, RendererWrapper) and runner.config is framed.config
    state, _ = memorize_views(runner, object_photos(15)[0], ring_cameras(1, 3)[0])
    assert framing_zoom(state) == pytest.approx(0.85 / (15 / 16), abs=1e-6)
    assert isinstance(renderer_state(state), SceneState)  # through the framing and the turns
    assert "zoomed out to 0.91x" in framing_note(framing_zoom(state)) and framing_note(1.0) is None
    assert not framing_canvas(state) and "canvas" not in framing_note(framing_zoom(state))
    assert "canvas widened" in framing_note(0.9, canvas=True)


@pytest.mark.parametrize("extent", [1.0, -0.1, True, "0.8"])
def test_the_config_refuses_an_extent_outside_0_to_1(extent):
    with pytest.raises(ValueError, match="frame_extent"):
        ModelConfig(frame_extent=extent)


@pytest.mark.parametrize("canvas", [1, "true", None])
def test_the_config_refuses_a_canvas_that_is_not_true_or_false(canvas):
    with pytest.raises(ValueError, match="frame_canvas"):
        ModelConfig(frame_canvas=canvas)
