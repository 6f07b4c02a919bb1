"""Adapters: saved and reloaded to identical outputs, applied only to their own base, the verifier's
fallback, determinism, and adaptation seeing nothing but the input views."""

import math

import pytest
import torch

from nvs.adaptation.adapter import Adapter, TrainableCopy, apply_adapter
from nvs.models.checkpoint import param_checksum
from nvs.adaptation.frames import SceneFrame, frame_candidates
from nvs.adaptation.search import AdaptOptions, adapt, unkept_frame_note
from nvs.adaptation.tasks import sample_task, split_held_out
from nvs.models import build_renderer
from tests.helpers import ring_cameras, tiny_config


def _model(seed=0):
    torch.manual_seed(seed)
    return build_renderer(tiny_config(patch_size=8, newton_schulz_dtype="float32")).eval()


def _scene(views=6, size=16):
    cams = ring_cameras(1, views, size)[0]
    images = torch.rand(views, 3, size, size, generator=torch.Generator().manual_seed(3))
    return images, cams


def _adapter_with_values(model, parts=("lora", "norms", "fast_init", "head")):
    trainable = TrainableCopy(model, parts, rank=2, seed=1)
    with torch.no_grad():
        for p in trainable.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frame = SceneFrame("test", torch.eye(3, dtype=torch.float64), torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64), 1.3)
    return trainable, trainable.adapter(param_checksum(model), frame)


def test_saved_adapter_reloads_to_identical_outputs(tmp_path):
    model = _model()
    images, cams = _scene()
    trainable, adapter = _adapter_with_values(model)
    path = adapter.save(tmp_path / "a.safetensors", base_name="tiny")
    first = apply_adapter(model, adapter)(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
    again = apply_adapter(model, Adapter.load(path))(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
    assert torch.equal(first, again)
    base_out = model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
    assert not torch.allclose(first, base_out, atol=1e-4)
    # the merged adapter computes what the trainable copy computed (frame applied to the cameras)
    moved_in, moved_out = adapter.frame.apply(cams[:4]), adapter.frame.apply(cams[4:])
    trained = trainable.model(images[None, :4], moved_in.unsqueeze(0), moved_out.unsqueeze(0))
    assert torch.allclose(first, trained, atol=1e-4)  # float32 Newton-Schulz: bf16 rounding would be chaotic
    assert adapter.num_values() < 0.5 * sum(p.numel() for p in model.parameters()) + 10_000


def test_adapter_refuses_another_base_and_bad_files(tmp_path):
    model = _model()
    _, adapter = _adapter_with_values(model, ("norms",))
    with pytest.raises(ValueError, match="checksum"):
        apply_adapter(_model(seed=1), adapter)
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable"):
        Adapter.load(tmp_path / "x.safetensors")


def test_frame_moves_the_world_rigidly_and_scales():
    _, cams = _scene(8)
    frames = frame_candidates(cams)
    assert frames[0].is_identity and len(frames) == 4
    moved = frames[1].apply(cams)
    moved.validate()
    # ring cameras look at the origin: the object frame puts them at the object radius, up +z
    assert torch.allclose(moved.centers.norm(dim=-1), torch.full((8,), 2.7), atol=1e-3)
    d = torch.cdist(cams.centers, cams.centers) * frames[1].scale
    assert torch.allclose(torch.cdist(moved.centers, moved.centers), d, atol=1e-4)


def test_tasks_never_use_verifier_views():
    walk = ring_cameras(1, 8)[0]
    walk.c2w[:, 0, 3], walk.c2w[:, 1, 3] = torch.arange(8.0), 0.0  # centres along x: the middle views are 3 and 4
    train, verify, confirm = split_held_out(walk, 2, 0)
    assert verify == [3, 4] and confirm == [] and train == [0, 1, 2, 5, 6, 7]
    train, verify, confirm = split_held_out(walk, 1, 1)
    assert verify == [3] and confirm == [4] and train == [0, 1, 2, 5, 6, 7]
    images, cams = _scene(5)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        task = sample_task(images, cams, g, ("mirror", "colour"))
        assert 1 <= task.context.shape[0] <= 4 and task.answer.shape[0] == 1


def test_a_large_capture_trains_on_tasks_of_a_small_one(monkeypatch):
    """Training tasks take at most max_task_context views whatever the capture holds (a step of a
    48-view capture costs what one of 8 does); 8 inputs leave 6 to train on, below the cap."""
    import nvs.adaptation.search as search

    sizes = []

    def recording(*args, **kwargs):
        task = sample_task(*args, **kwargs)
        sizes.append(task.context.shape[0])
        return task

    monkeypatch.setattr(search, "sample_task", recording)
    model = _model()
    images, cams = _scene(16)
    adapt(model, images, cams, AdaptOptions(max_steps=12, budget_s=600, verify_every=4, search_frames=False,
                                            max_task_context=3))
    assert len(sizes) == 12 and max(sizes) == 3
    with pytest.raises(ValueError, match="at least 1 context view"):
        AdaptOptions(max_task_context=0)


class _Untouchable(torch.Tensor):
    """A tensor that fails on any use while ``armed``: stands in for an evaluation's target views."""

    armed = False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if cls.armed:
            raise AssertionError(f"adaptation touched a target view ({func})")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def test_eval_adapts_on_inputs_only(tmp_path):
    from nvs.evaluation.evaluate import EvalScene, evaluate

    model = _model()
    images, cams = _scene(8, size=32)  # LPIPS needs 32 pixels
    targets = images[6:].clone().as_subclass(_Untouchable)
    seen = []

    def adapt_scene(inputs, input_cams):
        seen.append((inputs.shape[0], input_cams.shape[0]))
        _Untouchable.armed = True  # from here until adaptation returns, any use of a target raises
        try:
            return adapt(model, inputs, input_cams, AdaptOptions(max_steps=2, budget_s=600, verify_every=1)).model
        finally:
            _Untouchable.armed = False

    scene = EvalScene("s", images[:6], cams[:6], targets, cams[6:])
    summary = evaluate(model, iter([scene]), tmp_path, {}, save_images=False, adapt=adapt_scene, lpips_net="alex")
    assert seen == [(6, 6)] and summary["adapt_seconds_per_scene"] > 0
    # the poison works: touching a target while armed fails
    _Untouchable.armed = True
    try:
        with pytest.raises(AssertionError, match="touched a target"):
            targets.sum()
    finally:
        _Untouchable.armed = False


def test_fallback_returns_base_when_verifier_does_not_improve():
    model = _model()
    images, cams = _scene(6)
    result = adapt(model, images, cams, AdaptOptions(max_steps=2, budget_s=600, verify_every=1, min_gain_db=1e9))
    assert result.fallback and result.adapter.is_empty
    out = result.model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
    assert torch.equal(out, model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0)))
    assert [c["phase"] for c in result.curve][0] == "base" and len(result.curve) >= 3


def test_a_fallback_renders_as_given_and_reports_the_frame_its_search_chose():
    model = _model()
    images, cams = _scene(6)
    # a margin of -1e9: every candidate frame displaces the one before, so the search ends on the last
    result = adapt(model, images, cams, AdaptOptions(max_steps=2, budget_s=600, verify_every=1, min_gain_db=1e9,
                                                     frame_margin_db=-1e9))
    searched = result.frames[-1]["frame"]
    assert len(result.frames) == len(frame_candidates(cams)) > 1 and searched != "as given"
    assert result.fallback and result.adapter.frame.is_identity and result.searched_frame == searched
    summary = result.summary()
    assert (summary["frame"], summary["searched_frame"]) == ("as given", searched)
    assert unkept_frame_note(summary["frame"], summary["searched_frame"]) == f" (the search chose frame '{searched}', not kept)"
    unsearched = adapt(model, images, cams, AdaptOptions(max_steps=2, budget_s=600, verify_every=1, min_gain_db=1e9,
                                                         search_frames=False))
    assert unsearched.fallback and unsearched.searched_frame == "as given" and unkept_frame_note(unsearched.adapter.frame.name, unsearched.searched_frame) == ""


def test_confirmation_view_overrules_a_verifier_gain():
    """The verifier's best state must also gain on a view it never saw, or the base model is kept."""
    model = _model()
    images, cams = _scene(6)
    images = 0.7 + 0.05 * (images - 0.5)  # near-flat photos: the adapter learns their colour fast
    train, verify, confirm = split_held_out(cams, 1, 1)
    assert len(confirm) == 1 and not set(confirm) & set(train + verify)
    opts = dict(max_steps=8, budget_s=600, verify_every=2, lr=3e-2, min_gain_db=0.3, search_frames=False)
    trusted = adapt(model, images, cams, AdaptOptions(**opts))
    assert not trusted.fallback and trusted.confirm_psnr >= trusted.base_confirm_psnr + 0.3
    # the same scene with the confirmation photo set to what the base model renders there from the
    # other inputs: no change of the model can gain on it, whatever the verifier says
    context = torch.tensor(train + verify)
    with torch.no_grad():
        images[confirm] = model(images[None, context], cams[context].unsqueeze(0), cams[confirm].unsqueeze(0))[0].clamp(0, 1)
    checked = adapt(model, images, cams, AdaptOptions(**opts))
    assert checked.best_verifier_psnr > checked.base_verifier_psnr + 0.3  # the verifier alone would keep it
    assert checked.fallback and checked.adapter.is_empty and "confirmation" in checked.fallback_reason
    assert checked.confirm_psnr < checked.base_confirm_psnr and checked.curve[-1]["phase"] == "confirm"
    out = checked.model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
    assert torch.equal(out, model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0)))
    with pytest.raises(ValueError, match="at least 4 input views"):
        adapt(model, images[:3], cams[:3], AdaptOptions(**opts))


def test_adaptation_is_deterministic_for_a_seed_and_improves_the_verifier():
    model = _model()
    images, cams = _scene(6)
    opts = dict(max_steps=8, budget_s=600, verify_every=2, lr=3e-2, min_gain_db=-1e9, search_frames=False)
    a = adapt(model, images, cams, AdaptOptions(**opts))
    b = adapt(model, images, cams, AdaptOptions(**opts))
    assert a.steps == 8 and not a.fallback
    assert a.adapter.tensors.keys() == b.adapter.tensors.keys()
    assert all(torch.equal(a.adapter.tensors[k], b.adapter.tensors[k]) for k in a.adapter.tensors)
    assert a.best_verifier_psnr >= a.base_verifier_psnr and math.isfinite(a.best_verifier_psnr)
