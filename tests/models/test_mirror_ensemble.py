import pytest
import torch

from nvs.cameras import Cameras
from nvs.inference import configure_inference, memorize_views, render_cameras, renderer_state, resolve_turns
from nvs.models import LaCTRenderer
from nvs.models.config import ModelConfig
from nvs.models.lact import SceneState
from nvs.models.mirror_ensemble import MirrorEnsemble, mirror_cameras
from nvs.models.turn_ensemble import TurnEnsemble

from tests.helpers import PhotoLookup, ring_cameras, tiny_config


def test_a_mirrored_camera_sees_the_reflected_point_at_the_mirrored_pixel():
    """A 24 x 40 image, principal point off centre: p at (u, v) -> (x, -y, z) at (40 - u, v)."""
    cams = ring_cameras(1, 3, size=40, offset=0.2)
    cams = Cameras(cams.intrinsics + torch.tensor([0.0, 0.0, 1.5, -2.0]), cams.c2w, 24, 40)
    points = torch.randn(1, 3, 20, 3) * 0.4
    mirrored = mirror_cameras(cams)
    pixels, depth = cams.project(points)
    pixels_m, depth_m = mirrored.project(points * torch.tensor([1.0, -1.0, 1.0]))
    torch.testing.assert_close(pixels_m[..., 0], 40 - pixels[..., 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(pixels_m[..., 1], pixels[..., 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(depth_m, depth, atol=1e-5, rtol=0)
    rotations = mirrored.c2w[..., :3, :3]
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(1, 3))  # still proper rotations
    twice = mirror_cameras(mirrored)
    torch.testing.assert_close(twice.intrinsics, cams.intrinsics)
    torch.testing.assert_close(twice.c2w, cams.c2w)


def test_the_mirror_image_renders_an_input_camera_as_its_photo():
    """The stand-in finds each mirrored target among the mirrored inputs and returns its flipped
    photo: flipped back and averaged with the capture as given, the photo itself."""
    images = torch.rand(1, 3, 3, 16, 24)  # no symmetry to hide a missing flip
    cams = Cameras(ring_cameras(1, 3, size=24).intrinsics, ring_cameras(1, 3).c2w, 16, 24)
    ensemble = MirrorEnsemble(PhotoLookup())
    state = ensemble.memorize(images, cams)
    assert torch.equal(state.mirrored[0], images.flip(-1))
    out = ensemble.render(state, Cameras(cams.intrinsics[:, 1:], cams.c2w[:, 1:], 16, 24))
    torch.testing.assert_close(out, images[:, 1:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="must come from this mirror ensemble"):
        ensemble.render(PhotoLookup().memorize(images, cams), cams)


def test_an_object_renderer_that_mirrors_runs_half_the_turns_inside_the_mirror_ensemble():
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(mirror=True)).eval()
    model.normalization = "object"
    assert resolve_turns(model) == 2 and resolve_turns(model, 3) == 3
    runner = configure_inference(model, None, "fp32", resolve_turns(model))
    assert isinstance(runner, MirrorEnsemble) and isinstance(runner.renderer, TurnEnsemble) and runner.renderer.turns == 2
    images, cams = torch.rand(3, 3, 32, 32), ring_cameras(1, 3)[0]
    state, _ = memorize_views(runner, images, cams)
    assert isinstance(renderer_state(state), SceneState)  # the capture as given, its first turn
    pred, _ = render_cameras(runner, state, ring_cameras(1, 2, offset=0.4)[0])
    as_given = runner.renderer.render(state.as_given, ring_cameras(1, 2, offset=0.4))
    assert pred.shape == (2, 3, 32, 32) and float((pred - as_given[0]).abs().max()) > 1e-4
    plain = LaCTRenderer(tiny_config()).eval()
    plain.normalization = "object"
    assert resolve_turns(plain) == 4 and not isinstance(configure_inference(plain, None, "fp32", 4), MirrorEnsemble)


@pytest.mark.parametrize("mirror", [1, "true", None])
def test_the_config_refuses_a_mirror_that_is_not_true_or_false(mirror):
    with pytest.raises(ValueError, match="mirror"):
        ModelConfig(mirror=mirror)
