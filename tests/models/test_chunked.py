import pytest
import torch

from nvs.models import LaCTRenderer
from nvs.models.fast_weight import FastWeightSwiGLU, apply_update, apply_update_into, column_norms
from nvs.models.chunked import ChunkPlan, memorize_chunked, parse_memory_size, plan_chunks, render_chunked

from tests.helpers import ring_cameras, tiny_config

# 24 x 40 pixels in 8-pixel patches: 15 tokens per view, an odd count; 5 views do not divide by 2.
HEIGHT, WIDTH = 24, 40


def _cams(batch, views, offset=0.0):
    cams = ring_cameras(batch, views, HEIGHT, offset=offset)
    return type(cams)(cams.intrinsics, cams.c2w, HEIGHT, WIDTH)


def _model(dtype=torch.float32, **overrides):
    torch.manual_seed(0)
    ns = "float64" if dtype == torch.float64 else "float32"
    return LaCTRenderer(tiny_config(newton_schulz_dtype=ns, **overrides)).to(dtype).eval()


def _scene(batch, views, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, views, 3, HEIGHT, WIDTH, generator=g, dtype=dtype), _cams(batch, views).to(dtype)


def _max_diff(a, b):
    return (a - b).abs().max().item()


def _state_diff(a, b):
    return max(_max_diff(x, y) for fa, fb in zip(a.layers, b.layers) for x, y in zip(fa.flat(), fb.flat()))


@pytest.mark.parametrize("plan", [ChunkPlan(views=2, tokens=7), ChunkPlan(views=1, tokens=1), ChunkPlan(views=3, tokens=16)])
def test_chunked_memorize_and_render_match_one_pass_float32(plan):
    model = _model()
    images, cams = _scene(batch=2, views=5)
    targets = _cams(2, 3, offset=0.4)
    with torch.no_grad():
        state = model.memorize(images, cams)
        chunked = type(state)(memorize_chunked(model, images, cams, plan), num_views=5)
        rendered = model.render(state, targets)
        rendered_chunked = render_chunked(model, chunked, targets, plan)
    assert _state_diff(state, chunked) < 1e-5
    assert rendered_chunked.shape == rendered.shape == (2, 3, 3, HEIGHT, WIDTH)
    assert _max_diff(rendered, rendered_chunked) < 1e-5
    # the chunks change the result by rounding only: a wrong sum over ranges moves it far more
    assert _max_diff(rendered, model.render(model.memorize(images[:, :4], cams[:, :4]), targets)) > 1e-3


def _float64_learning_rates(layer, x):
    return torch.nn.functional.softplus(torch.nn.functional.linear(x, layer.lr_proj.weight, layer.lr_proj.bias) + layer.lr_offset)


@pytest.mark.parametrize("float64_rates", [False, True])
def test_chunked_float64_matches_to_rounding(float64_rates, monkeypatch):
    """In float64 the chunks differ by float64 rounding only. The published learning rates are
    computed in float32 whatever the model's dtype, so a range rounds them differently from the
    whole chunk (1e-8 here); with float64 rates the difference is 1e-14."""
    if float64_rates:
        monkeypatch.setattr(FastWeightSwiGLU, "learning_rates", _float64_learning_rates)
    model = _model(torch.float64)
    images, cams = _scene(batch=2, views=5, dtype=torch.float64)
    targets = _cams(2, 2, offset=0.4).to(torch.float64)
    many_chunks_tol = 1e-12 if float64_rates else 1e-7
    with torch.no_grad():
        state = model.memorize(images, cams)
        rendered = model.render(state, targets)
        for plan, tol in ((ChunkPlan(views=5, tokens=75), 1e-13), (ChunkPlan(views=2, tokens=7), many_chunks_tol),
                          (ChunkPlan(views=1, tokens=1), many_chunks_tol)):
            chunked = type(state)(memorize_chunked(model, images, cams, plan), num_views=5)
            assert _state_diff(state, chunked) < tol, plan
            assert _max_diff(rendered, render_chunked(model, chunked, targets, plan)) < tol, plan


def test_memory_budget_chooses_chunks_and_keeps_results():
    model = _model()
    images, cams = _scene(batch=2, views=5)
    targets = _cams(2, 3, offset=0.4)
    with torch.no_grad():
        state = model.memorize(images, cams)
        rendered = model.render(state, targets)
        residual = 2 * 5 * 15 * model.config.dim * 4
        model.set_memory_budget(residual + 200_000)
        plan = model.chunk_plan(2, 5, 15)
        assert plan is not None and plan.views < 5 and plan.tokens < 75
        budgeted = model.memorize(images, cams)
        assert _state_diff(state, budgeted) < 1e-5
        assert _max_diff(rendered, model.render(budgeted, targets)) < 1e-5
        model.set_memory_budget("64G")  # everything fits: the one-pass path, bit for bit
        assert model.chunk_plan(2, 5, 15) is None
        assert torch.equal(model.render(model.memorize(images, cams), targets), rendered)


def test_training_never_chunks():
    model = _model().train()
    model.set_memory_budget(1)
    assert model.chunk_plan(1, 5, 15) is None  # gradients needed: one pass, whatever the budget
    with torch.no_grad():
        with pytest.raises(ValueError, match="residual stream"):
            model.chunk_plan(1, 5, 15)


def test_plan_grows_with_budget():
    model = _model()
    small = plan_chunks(model, 1, 64, 16, budget=64 * 16 * 32 * 4 + 100_000)
    large = plan_chunks(model, 1, 64, 16, budget=64 * 16 * 32 * 4 + 10_000_000)
    assert small.tokens < large.tokens and small.views <= large.views


@pytest.mark.parametrize("text, expected", [("512M", 512 * 2**20), ("8G", 8 * 2**30), ("1.5k", 1536), ("4096", 4096),
                                            ("8GB", 8 * 2**30), ("none", None), (None, None)])
def test_parse_memory_size(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_parse_memory_size_refuses_nonsense(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_memory_size(text)


def test_update_in_place_equals_update():
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(3, 8, 16, generator=g), torch.randn(3, 16, 8, generator=g), torch.randn(3, 8, 16, generator=g)]
    grads = [torch.randn(w.shape, generator=g) for w in weights]
    norms = column_norms(weights)
    for ns_dtype in ("float32", "bfloat16"):
        expected = apply_update(weights, grads, norms, 5, ns_dtype)
        got = apply_update_into([t.clone() for t in grads], weights, norms, 5, ns_dtype)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))
