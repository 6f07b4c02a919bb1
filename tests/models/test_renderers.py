from pathlib import Path

import pytest
import torch

from nvs.cameras import Cameras
from nvs.models import (
    CheckpointError, FullAttentionRenderer, LaCTRenderer, ModelConfig, SceneState, TokenState,
    load_renderer, save_renderer,
)

from tests.helpers import ROOT, ring_cameras, tiny_config


def _scene(batch=1, views=3, size=32):
    return torch.rand(batch, views, 3, size, size), ring_cameras(batch, views, size)


def test_state_size_does_not_grow_with_views():
    model = LaCTRenderer(tiny_config()).eval()
    sizes = []
    with torch.no_grad():
        for views in (1, 2, 8):
            images, cams = _scene(views=views)
            state = model.memorize(images, cams)
            sizes.append((state.nbytes(), [tuple(w.w0.shape) for w in state.layers]))
    assert sizes[0] == sizes[1] == sizes[2]


def test_full_attention_state_grows_with_views():
    model = FullAttentionRenderer(tiny_config(arch="full_attention")).eval()
    with torch.no_grad():
        small = model.memorize(*_scene(views=2))
        big = model.memorize(*_scene(views=4))
    assert isinstance(small, TokenState) and big.nbytes() == 2 * small.nbytes()


@pytest.mark.parametrize("cls, arch", [(LaCTRenderer, "lact"), (FullAttentionRenderer, "full_attention")])
def test_forward_equals_memorize_then_render(cls, arch):
    model = cls(tiny_config(arch=arch)).eval()
    images, cams = _scene(batch=2, views=3)
    targets = ring_cameras(2, 5, offset=0.3)
    with torch.no_grad():
        joint = model(images, cams, targets)
        split = model.render(model.memorize(images, cams), targets)
        one_by_one = torch.cat([model.render(model.memorize(images, cams), targets[:, i : i + 1]) for i in range(5)], 1)
    assert joint.shape == (2, 5, 3, 32, 32)
    assert (joint - split).abs().max() < 1e-5 and (joint - one_by_one).abs().max() < 1e-5
    assert 0.0 <= joint.min() and joint.max() <= 1.0


def test_targets_may_have_another_resolution():
    model = LaCTRenderer(tiny_config()).eval()
    images, cams = _scene()
    with torch.no_grad():
        out = model(images, cams, ring_cameras(1, 2, size=32).resize(48, 64))
    assert out.shape == (1, 2, 3, 48, 64)


def test_batch_elements_are_independent():
    model = LaCTRenderer(tiny_config()).eval()
    images, cams = _scene(batch=2)
    targets = ring_cameras(2, 1, offset=0.5)
    with torch.no_grad():
        both = model(images, cams, targets)
        first = model(images[:1], cams[:1], targets[:1])
    assert (both[:1] - first).abs().max() < 1e-5


def test_gradients_flow_through_memorize_and_render():
    model = LaCTRenderer(tiny_config())
    images, cams = _scene()
    state = model.memorize(images, cams)
    out = model.render(state, ring_cameras(1, 1, offset=0.2))
    out.mean().backward()
    for name in ("tokenizer.embed.weight", "blocks.0.ttt.w0", "blocks.0.ttt.lr_proj.weight", "blocks.0.ttt.qkv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients():
    images, cams = _scene()
    targets = ring_cameras(1, 2, offset=0.4)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = LaCTRenderer(tiny_config())
        model.grad_checkpointing = ckpt
        model(images, cams, targets).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.slow
def test_tiny_model_fits_one_scene():
    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(dim=64, ttt_head_dim=32))
    views = 6
    cams = ring_cameras(1, views)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    # a smooth view-dependent pattern: each view is a shifted colour ramp
    images = torch.stack([torch.stack([(xx + i / views) % 1, yy, 0.5 + 0 * xx]) for i in range(views)])[None]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        out = model(images[:, :4], cams[:, :4], cams[:, 4:])
        loss = torch.nn.functional.mse_loss(out, images[:, 4:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.5 * losses[0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda im, c: (im[0], c), r"\[B, V, 3, H, W\]"),
        (lambda im, c: (im[:, :, :1], c), r"\[B, V, 3, H, W\]"),
        (lambda im, c: (im[:, :2], c), "batch/views"),
        (lambda im, c: (im.clone().fill_(float("nan")), c), "NaN"),
        (lambda im, c: (im, Cameras(c.intrinsics, c.c2w * float("nan"), 32, 32)), "NaN"),
        (lambda im, c: (im, Cameras(c.intrinsics, torch.zeros_like(c.c2w), 32, 32)), "not invertible"),
        (lambda im, c: (im[..., :30, :30], c.center_crop(30, 30)), "not divisible by the patch size"),
        (lambda im, c: (im[..., :24, :24], c), "pixels, cameras say"),
    ],
)
def test_bad_inputs_raise_value_errors(mutate, message):
    model = LaCTRenderer(tiny_config())
    images, cams = mutate(*_scene())
    with pytest.raises(ValueError, match=message):
        model.memorize(images, cams)


def test_bad_targets_raise():
    model = LaCTRenderer(tiny_config())
    images, cams = _scene()
    state = model.memorize(images, cams)
    with pytest.raises(ValueError, match="batch size"):
        model.render(state, ring_cameras(2, 1))
    with pytest.raises(ValueError, match="SceneState"):
        model.render(object(), ring_cameras(1, 1))
    with pytest.raises(ValueError, match="not divisible"):
        model.render(state, ring_cameras(1, 1).resize(36, 36))


def test_save_and_load_round_trip(tmp_path):
    for arch in ("lact", "full_attention"):
        model = LaCTRenderer(tiny_config()) if arch == "lact" else FullAttentionRenderer(tiny_config(arch=arch))
        path = save_renderer(model, tmp_path / f"{arch}.safetensors", {"step": 7})
        loaded = load_renderer(path)
        assert type(loaded) is type(model) and loaded.config == model.config
        for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k


def test_a_checkpoint_names_the_scene_normalisation_its_renderer_expects(tmp_path):
    from nvs.commands.eval import protocol_defaults

    model = LaCTRenderer(tiny_config())
    plain = load_renderer(save_renderer(model, tmp_path / "plain.safetensors"))
    scene = load_renderer(save_renderer(model, tmp_path / "scene.safetensors", {"normalize": "lvsm"}))
    assert plain.normalization is None and scene.normalization == "lvsm"
    assert load_renderer(save_renderer(scene, tmp_path / "again.safetensors")).normalization == "lvsm"  # kept on re-saving
    assert protocol_defaults(plain, None, None) == ("none", "bilinear")
    assert protocol_defaults(scene, None, None) == ("lvsm", "bilinear")
    assert protocol_defaults(scene, "none", None) == ("none", "bilinear")  # what the user asks wins
    save_renderer(model, tmp_path / "bad.safetensors", {"normalize": "sideways"})
    with pytest.raises(CheckpointError, match="unknown scene normalisation 'sideways'"):
        load_renderer(tmp_path / "bad.safetensors")


def test_load_official_pt_with_wrapper_prefixes(tmp_path):
    from safetensors.torch import load_file

    from tests.helpers import FIXTURES

    tensors = load_file(FIXTURES / "one_head.safetensors")
    state = {"module." + k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    torch.save({"model": state, "step": 3}, tmp_path / "official.pt")
    model = load_renderer(tmp_path / "official.pt")
    assert model.config.dim == 64 and model.config.ttt_heads == 1


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_renderer(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.safetensors"):
        load_renderer(corrupt)
    unknown = tmp_path / "weights.npz"
    unknown.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_renderer(unknown)
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"blocks.0.something.weight": torch.zeros(1)}}, odd)
    with pytest.raises(CheckpointError, match="blocks.0.something.weight"):
        load_renderer(odd)


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights only"):
        load_renderer(path)
    assert not (tmp_path / "pwned").exists()


def test_mismatched_config_is_named(tmp_path):
    import json

    from safetensors.torch import save_file

    model = LaCTRenderer(tiny_config())
    wrong = json.dumps(tiny_config(layers=3).to_dict())
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), path, metadata={"format": "lact-nvs", "config": wrong})
    with pytest.raises(CheckpointError, match="missing.*blocks.2"):
        load_renderer(path)


def test_state_is_a_dataclass_with_layers():
    model = LaCTRenderer(tiny_config())
    state = model.memorize(*_scene())
    assert isinstance(state, SceneState) and len(state.layers) == 2 and state.num_views == 3
    assert state.detach().layers[0].w0.requires_grad is False


def test_config_rejects_unknown_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  dim: 64\n  layerz: 2\n")
    with pytest.raises(ValueError, match="layerz"):
        ModelConfig.from_yaml(cfg)


def test_fast_weight_sizes_are_checked_only_where_they_exist():
    with pytest.raises(ValueError, match="ttt_head_dim"):
        ModelConfig(dim=128, ttt_head_dim=96)
    assert ModelConfig(arch="full_attention", dim=128, attn_head_dim=32).arch == "full_attention"  # ttt sizes unused
    assert ModelConfig.from_yaml(ROOT / "configs" / "full-attention-small-64.yaml").dim == 128


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is present)")
@pytest.mark.parametrize("kernels", ["torch", "triton"])
def test_the_renderer_on_cuda_computes_what_it_computes_on_the_cpu(kernels, monkeypatch):
    """Memorise / render and the training gradients on CUDA, with either kernel choice, against
    the CPU reference. Newton-Schulz is off: its bf16 rounding differs between CPU and GPU GEMMs
    and the update amplifies that (see the official-parity tests), which would hide a wrong kernel."""
    torch.manual_seed(0)
    images, cams = _scene(batch=2, views=4)
    targets = ring_cameras(2, 2, offset=0.3)
    results = {}
    for device in ("cpu", "cuda"):
        if device == "cuda":
            monkeypatch.setenv("NVS_KERNELS", kernels)  # the CPU side always runs the reference
        torch.manual_seed(0)
        model = LaCTRenderer(tiny_config(muon_steps=0)).to(device)
        ins, in_cams, tg_cams = images.to(device), cams.to(device), targets.to(device)
        with torch.no_grad():
            rendered = model.render(model.memorize(ins, in_cams), tg_cams)
        assert rendered.device.type == device
        model(ins, in_cams, tg_cams).square().mean().backward()
        results[device] = rendered.cpu(), {name: p.grad.cpu() for name, p in model.named_parameters()}
    (want, want_grads), (got, got_grads) = results["cpu"], results["cuda"]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-3, msg=name)


def _exposed_plane_scene(size: int = 48):
    """Four photos of a textured plane at exposures GAINS (per view and channel), batched: (images
    [1, 4, 3, S, S], cams [1, 4], the gains [4, 3])."""
    from tests.helpers import PLANE_Z, line_of_cameras, noise_plane_views

    line = line_of_cameras(4, size)
    images, _ = noise_plane_views(line, [(PLANE_Z, float("inf"))])
    gains = torch.tensor([[1.0, 1.0, 1.0], [1.2, 1.1, 0.9], [0.85, 0.95, 1.1], [1.1, 0.9, 1.15]])
    cams = Cameras(line.intrinsics.float()[None], line.c2w.float()[None], size, size)
    return ((0.8 * images + 0.1) * gains[..., None, None])[None], cams, gains


def test_a_renderer_that_matches_exposure_memorises_its_photos_at_their_common_exposure(tmp_path):
    from nvs.geometry.exposure import apply_gains

    torch.manual_seed(0)
    model = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=4, match_exposure=True)).eval()
    plain = LaCTRenderer(tiny_config(sweep_views=2, sweep_planes=4)).eval()
    plain.load_state_dict(model.state_dict())
    images, cams, gains = _exposed_plane_scene()
    targets = Cameras(cams.intrinsics[:, 1:3], cams.c2w[:, 1:3].clone(), 48, 48)
    targets.c2w[..., 1, 3] += 0.1  # between the inputs, a little above them
    with torch.no_grad():
        state = model.memorize(images, cams)
        out = model.render(state, targets)
        joint = model(images, cams, targets)
        unmatched = plain.memorize(images, cams)
        plain_out = plain.render(unmatched, targets)
    relative = gains / gains.log().mean(dim=0).exp()
    torch.testing.assert_close(state.exposure_gains[0], relative, atol=0.015, rtol=0.0)
    torch.testing.assert_close(state.sources[0], apply_gains(images, state.exposure_gains))
    assert unmatched.exposure_gains is None and torch.equal(unmatched.sources[0], images)
    assert (out - plain_out).abs().mean() > 1e-3  # what it reads changes what it draws
    assert (joint - out).abs().max() < 1e-5  # training reads the photos as inference does
    path = save_renderer(model, tmp_path / "matched.safetensors")
    assert load_renderer(path).config.match_exposure is True


@pytest.mark.parametrize("overrides, message", [
    ({"match_exposure": "yes"}, "'match_exposure' must be true or false"),
    ({"match_exposure": 1}, "'match_exposure' must be true or false"),
    ({"match_exposure": True, "arch": "full_attention"}, "match_exposure needs arch 'lact'"),
])
def test_bad_exposure_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
