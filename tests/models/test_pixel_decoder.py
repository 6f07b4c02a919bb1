import pytest
import torch

from nvs.models import LaCTRenderer, ModelConfig, build_renderer, load_renderer, save_renderer
from nvs.models.checkpoint import CheckpointError, save_official_checkpoint
from nvs.models.lact import unpatchify
from nvs.models.pixel_decoder import PixelDecoder

from tests.helpers import ring_cameras, tiny_config


def _decoder_model(**overrides) -> LaCTRenderer:
    torch.manual_seed(0)
    return LaCTRenderer(tiny_config(pixel_decoder=4, **overrides)).eval()


def _wake(decoder: PixelDecoder) -> None:
    """Give the zero-initialised last convolution weights, as training would."""
    torch.manual_seed(1)
    torch.nn.init.normal_(decoder.convs[-1].weight, std=0.1)


def test_a_new_pixel_decoder_renders_what_the_renderer_rendered_without_it():
    model = _decoder_model()
    plain = LaCTRenderer(tiny_config()).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pixel_decoder.")})
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.3)
    with torch.no_grad():
        assert torch.equal(model(images, cams, targets), plain(images, cams, targets))
        _wake(model.pixel_decoder)
        assert (model(images, cams, targets) - plain(images, cams, targets)).abs().max() > 1e-3


def test_the_decoder_corrects_pixels_across_patch_borders():
    """One token's features change its own patch and the pixels next to it in the neighbour patch,
    which a per-patch head cannot."""
    patch, dim = 8, 16
    decoder = PixelDecoder(patch, dim, 4).double()
    _wake(decoder)
    torch.manual_seed(3)
    tokens = torch.randn(1, 4, dim, dtype=torch.float64)  # one view of 2x2 patches
    logits = torch.zeros(1, 1, 3, 16, 16, dtype=torch.float64)

    def correction(t):
        return decoder(unpatchify(decoder.spread(t), 1, 16, 16, patch), logits)

    bumped = tokens.clone()
    bumped[0, 0] += torch.randn(dim, dtype=torch.float64)  # the top-left patch (not a constant: LayerNorm drops it)
    change = (correction(bumped) - correction(tokens)).abs().sum(dim=2)[0, 0]
    assert change[:8, :8].amax() > 1e-3
    assert change[:8, 8].amax() > 1e-6 and change[8, :8].amax() > 1e-6  # first column/row of the neighbours
    assert change[:8, 11:].amax() == 0 and change[11:, :].amax() == 0  # beyond the 3-pixel reach


def test_pixel_decoder_memorize_render_chunks_and_gradients():
    model = _decoder_model()
    _wake(model.pixel_decoder)
    images, cams = torch.rand(2, 3, 3, 32, 32), ring_cameras(2, 3)
    targets = ring_cameras(2, 4, offset=0.3)
    with torch.no_grad():
        joint = model(images, cams, targets)
        split = model.render(model.memorize(images, cams), targets)
        model.set_memory_budget(2 * 4 * 16 * 32 * 4 + 200_000)
        plan = model.chunk_plan(2, 4, 16)
        assert plan is not None and plan.views < 4
        chunked = model.render(model.memorize(images, cams), targets)
        model.set_memory_budget(None)
    assert (joint - split).abs().max() < 1e-5 and (joint - chunked).abs().max() < 1e-4
    model.train()
    model(images, cams, targets).square().mean().backward()
    for name, p in model.pixel_decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.head.proj.weight.grad.abs().sum() > 0


def test_pixel_decoder_gradients_match_finite_differences():
    torch.manual_seed(2)
    decoder = PixelDecoder(4, 8, 2).double()
    _wake(decoder)

    def f(tokens, logits):
        return decoder(unpatchify(decoder.spread(tokens), 1, 8, 8, 4), logits)

    tokens = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(1, 1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (tokens, logits))


def test_pixel_decoder_survives_saving_and_is_checked(tmp_path):
    model = _decoder_model()
    _wake(model.pixel_decoder)
    save_renderer(model, tmp_path / "decoder.safetensors")
    loaded = load_renderer(tmp_path / "decoder.safetensors")
    assert loaded.config.pixel_decoder == 4
    assert torch.equal(loaded.pixel_decoder.convs[-1].weight, model.pixel_decoder.convs[-1].weight)
    with pytest.raises(CheckpointError, match="pixel_decoder"):
        save_official_checkpoint(model, tmp_path / "model.pt")
    for bad in (-1, True, 2.5, 5000):
        with pytest.raises(ValueError, match="pixel_decoder"):
            ModelConfig(pixel_decoder=bad)
    both = build_renderer(tiny_config(pixel_decoder=4, view_blend=2))
    images, cams, targets = torch.rand(1, 3, 3, 32, 32), ring_cameras(1, 3), ring_cameras(1, 2, offset=0.3)
    with torch.no_grad():
        assert both.eval()(images, cams, targets).shape == (1, 2, 3, 32, 32)
