import pytest
import torch

from nvs.cameras import Cameras
from nvs.inference import configure_inference, memorize_views, render_cameras, renderer_state, resolve_turns
from nvs.models import LaCTRenderer
from nvs.models.config import ModelConfig
from nvs.models.lact import SceneState
from nvs.models.mirror_ensemble import MirrorEnsemble
from nvs.models.turn_ensemble import TurnEnsemble

from tests.helpers import PhotoLookup, ring_cameras, tiny_config


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
    targets = ring_cameras(1, 2, offset=0.4)
    pred, _ = render_cameras(runner, state, targets[0])
    with torch.no_grad():
        as_given = runner.renderer.render(state.as_given, targets)
        mirrored = runner.renderer.render(state.mirrored, targets.mirror()).flip(-1)
    assert pred.shape == (2, 3, 32, 32) and float((pred - as_given[0]).abs().max()) > 1e-4
    torch.testing.assert_close(pred, (as_given[0] + mirrored[0]) / 2, atol=1e-5, rtol=0)
    plain = LaCTRenderer(tiny_config()).eval()
    plain.normalization = "object"
    assert resolve_turns(plain) == 4 and not isinstance(configure_inference(plain, None, "fp32", 4), MirrorEnsemble)


@pytest.mark.parametrize("mirror", [1, "true", None])
def test_the_config_refuses_a_mirror_that_is_not_true_or_false(mirror):
    with pytest.raises(ValueError, match="mirror"):
        ModelConfig(mirror=mirror)
