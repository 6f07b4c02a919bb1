import math

import pytest
import torch

from nvs.inference import configure_inference, memorize_views, render_cameras, resolve_turns
from nvs.models import LaCTRenderer
from nvs.models.turn_ensemble import TurnEnsemble, turn_about_z

from tests.helpers import ring_cameras, tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # float32 Newton-Schulz: bfloat16 rounding would turn the 1e-7 differences of composed turns into noise
    return LaCTRenderer(tiny_config(newton_schulz_dtype="float32")).eval()


def test_turn_about_z_moves_cameras_round_the_up_axis():
    cams = ring_cameras(1, 4)
    turned = turn_about_z(cams, math.pi / 2)
    torch.testing.assert_close(turned.centers[0, 0], cams.centers[0, 1], atol=1e-6, rtol=0)  # 90 deg: the next camera
    torch.testing.assert_close(turned.c2w[0, 0], cams.c2w[0, 1], atol=1e-6, rtol=0)
    assert torch.equal(turned.intrinsics, cams.intrinsics)


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm, as inference_autocast
def test_turns_under_bfloat16_autocast_are_rotations_and_the_ensemble_renders(model):
    """--dtype bf16 runs the ensemble under autocast: the turned cameras stay float32 rotations
    (a bfloat16 product of them was refused as not rigid)."""
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        turned = turn_about_z(cams, 0.7)
        with torch.no_grad():
            out = TurnEnsemble(model, 4)(images, cams, targets)
    assert turned.c2w.dtype == torch.float32
    assert torch.equal(turned.c2w, turn_about_z(cams, 0.7).c2w)
    turned.validate()
    assert out.shape == (1, 2, 3, 32, 32) and torch.isfinite(out).all()


def test_the_ensemble_is_the_median_of_the_turned_copies(model):
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.4)
    ensemble = TurnEnsemble(model, 3)
    with torch.no_grad():
        out = ensemble(images, cams, targets)
        copies = torch.stack([model(images, turn_about_z(cams, a), turn_about_z(targets, a)) for a in ensemble.angles])
    torch.testing.assert_close(out, copies.median(0).values)
    assert (copies[0] - copies[1]).abs().max() > 1e-3  # the renderer is not turn-equivariant: the copies differ


def test_the_turns_of_a_lact_renderer_render_in_one_batched_call_from_one_stack_of_fast_weights(model, monkeypatch):
    """Each turn's fast weights are views of one stack (no second copy); rendering decodes every
    turn in one call, as the turns rendered one by one do; two scenes in the batch stay apart."""
    images, cams, targets = torch.rand(2, 3, 3, 32, 32), ring_cameras(2, 3), ring_cameras(2, 2, offset=0.4)
    ensemble = TurnEnsemble(model, 4)
    with torch.no_grad():
        state = ensemble.memorize(images, cams)
        for k, turn in enumerate(state.states):
            for own, joined in zip(turn.layers, state.joined.layers, strict=True):
                assert own.w0.shape[0] == 2 and joined.w0.shape[0] == 8
                assert own.w0.data_ptr() == joined.w0[2 * k].data_ptr() and torch.equal(own.w2, joined.w2[2 * k : 2 * k + 2])
        alone = model.memorize(images[1:], turn_about_z(cams[1:], ensemble.angles[2]))
        torch.testing.assert_close(state.states[2].layers[0].w1[1:], alone.layers[0].w1, atol=1e-6, rtol=0)
        calls = []
        render = model.render
        monkeypatch.setattr(model, "render", lambda *args, **kwargs: calls.append(args[1].shape) or render(*args, **kwargs))
        out = ensemble.render(state, targets)
        assert calls == [(8, 2)]
        one_by_one = torch.stack([render(s, turn_about_z(targets, a)) for s, a in zip(state.states, ensemble.angles)])
    torch.testing.assert_close(out, one_by_one.median(0).values, atol=1e-6, rtol=0)


def test_renderers_whose_decoding_samples_each_turns_inputs_render_the_turns_one_by_one():
    from nvs.models import FullAttentionRenderer

    torch.manual_seed(0)
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.4)
    for renderer in (LaCTRenderer(tiny_config(view_blend=2)).eval(), FullAttentionRenderer(tiny_config(arch="full_attention")).eval()):
        ensemble = TurnEnsemble(renderer, 3)
        with torch.no_grad():
            state = ensemble.memorize(images, cams)
            copies = torch.stack([renderer(images, turn_about_z(cams, a), turn_about_z(targets, a)) for a in ensemble.angles])
            assert state.joined is None
            torch.testing.assert_close(ensemble.render(state, targets), copies.median(0).values)


def test_a_plane_sweep_runs_once_on_the_median_of_the_turns():
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=8, sweep_near=1.0, sweep_far=4.0)).eval()
    with torch.no_grad():
        model.sweep.blender[-1].weight.normal_(std=0.1)
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.4)
    ensemble = TurnEnsemble(model, 3)
    with torch.no_grad():
        out = ensemble(images, cams, targets)
        copies = torch.stack([model.render(model.memorize(images, turn_about_z(cams, a)), turn_about_z(targets, a),
                                           sweep=False) for a in ensemble.angles])
        once = model.sweep(copies.median(0).values, targets, images, cams)
        swept = model(images, cams, targets)
    torch.testing.assert_close(out, once)
    assert (swept - model.render(model.memorize(images, cams), targets, sweep=False)).abs().max() > 1e-3


def test_turning_the_world_by_one_step_leaves_the_ensemble_as_it_was(model):
    """A turn by 360 / N degrees permutes the N copies, and the median does not see the order."""
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.4)
    ensemble = TurnEnsemble(model, 4)
    with torch.no_grad():
        out = ensemble(images, cams, targets)
        turned = ensemble(images, turn_about_z(cams, math.pi / 2), turn_about_z(targets, math.pi / 2))
        single = model(images, turn_about_z(cams, math.pi / 2), turn_about_z(targets, math.pi / 2))
    torch.testing.assert_close(turned, out, atol=1e-4, rtol=0)
    assert (single - model(images, cams, targets)).abs().max() > 1e-3


def test_inference_runs_object_renderers_in_four_turns_unless_told(model):
    assert resolve_turns(model) == 1  # no normalisation named
    model.normalization = "object"
    try:
        assert resolve_turns(model) == 4 and resolve_turns(model, 1) == 1
        runner = configure_inference(model, None, "fp32", "auto")
        assert isinstance(runner, TurnEnsemble) and runner.turns == 4 and runner.normalization == "object"
        images, cams = torch.rand(3, 3, 32, 32), ring_cameras(1, 3)[0]
        state, _ = memorize_views(runner, images, cams)
        pred, _ = render_cameras(runner, state, ring_cameras(1, 2, offset=0.4)[0])
        assert pred.shape == (2, 3, 32, 32)
        with pytest.raises(ValueError, match="must come from this turn ensemble"):
            runner.render(memorize_views(model, images, cams)[0], ring_cameras(1, 2)[0].unsqueeze(0))
    finally:
        model.normalization = None
    assert configure_inference(model, None, "fp32", "auto") is model
    for bad in (0, 37, "four", True):
        with pytest.raises(ValueError, match="--turns must be auto or 1-36"):
            resolve_turns(model, bad)


def test_a_sweep_over_the_inputs_range_finds_it_once_for_every_turn(monkeypatch):
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=8, sweep_range="inputs")).eval()
    calls = []
    found = torch.tensor([[1.5, 3.0]])
    monkeypatch.setattr(model.sweep, "ranges_from_inputs", lambda images, cams, matches: calls.append(1) or found)
    images, cams = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3)
    with torch.no_grad():
        state = TurnEnsemble(model, 4).memorize(images, cams)
    assert len(calls) == 1 and all(s.sweep_ranges is found for s in state.states)


def test_exposure_gains_are_found_once_for_every_turn(monkeypatch):
    import nvs.models.lact as lact

    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(match_exposure=True)).eval()
    calls = []
    real = lact.scene_matches
    monkeypatch.setattr(lact, "scene_matches", lambda images, cams: calls.append(1) or real(images, cams))
    images, cams = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3)
    with torch.no_grad():
        state = TurnEnsemble(model, 3).memorize(images, cams)
    first = state.states[0].exposure_gains
    assert len(calls) == 1 and first.shape == (1, 3, 3) and all(s.exposure_gains is first for s in state.states)
