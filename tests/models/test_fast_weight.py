"""The fast-weight math in float64: hand-written gradients against autograd, Newton-Schulz properties."""

import pytest
import torch
import torch.nn.functional as F

from nvs.models.fast_weight import NS_COEFFS, newton_schulz, swiglu_update_grads


def _swiglu(w0, w1, w2, x):
    return (F.silu(x @ w0) * (x @ w2)) @ w1


def test_update_directions_are_the_negative_autograd_gradients():
    torch.manual_seed(0)
    n, length, d, dh = 3, 20, 8, 12
    w0, w2 = torch.randn(n, d, dh, dtype=torch.float64), torch.randn(n, d, dh, dtype=torch.float64)
    w1 = torch.randn(n, dh, d, dtype=torch.float64)
    k, v = torch.randn(n, length, d, dtype=torch.float64), torch.randn(n, length, d, dtype=torch.float64)
    lrs = [torch.rand(n, length, 1, dtype=torch.float64) for _ in range(3)]
    ours = swiglu_update_grads(w0, w1, w2, k, v, *lrs)
    for index in range(3):  # each weight has its own per-token learning rates
        weights = [w.clone().requires_grad_(True) for w in (w0, w1, w2)]
        loss = -(lrs[index] * (_swiglu(*weights, k) * v).sum(-1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(loss, weights[index])
        torch.testing.assert_close(ours[index], -grad, rtol=1e-12, atol=1e-12)


def _scalar_map(s: torch.Tensor, steps: int) -> torch.Tensor:
    a, b, c = NS_COEFFS
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize("shape", [(4, 12, 20), (4, 20, 12), (4, 16, 16)])
def test_newton_schulz_keeps_singular_vectors_and_maps_singular_values(shape):
    """Output = U p(S / (||G||_F + 1e-7)) V^T, p the quintic applied 5 times: the iteration acts on
    singular values alone (exact up to float64 rounding)."""
    torch.manual_seed(1)
    g = torch.randn(*shape, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    scale = g.norm(dim=(-2, -1), keepdim=True).squeeze(-1) + 1e-7
    expected = u @ torch.diag_embed(_scalar_map(s / scale, 5)) @ vh
    out = newton_schulz(g, 5, "float64")
    assert out.dtype == torch.float64 and out.shape == g.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_newton_schulz_pushes_singular_values_into_the_quintic_band():
    """For rectangular Gaussian gradients (no tiny singular values) 5 steps land every singular
    value in [0.68, 1.14], the band of the published coefficients; not UV^T exactly (that would be 1)."""
    torch.manual_seed(2)
    for shape in [(8, 64, 128), (8, 128, 64), (8, 32, 256)]:
        sv = torch.linalg.svdvals(newton_schulz(torch.randn(*shape, dtype=torch.float64), 5, "float64"))
        assert sv.min() > 0.68 and sv.max() < 1.14, (shape, float(sv.min()), float(sv.max()))
        assert (sv - 1).abs().max() > 0.1


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16_emulated"])
def test_newton_schulz_of_the_transpose_is_the_transpose(dtype):
    torch.manual_seed(3)
    g = torch.randn(2, 24, 10, dtype=torch.float64)
    assert torch.equal(newton_schulz(g, 5, dtype), newton_schulz(g.transpose(-1, -2), 5, dtype).transpose(-1, -2))


@pytest.mark.parametrize("dtype, torch_dtype", [("float64", torch.float64), ("float32", torch.float32),
                                                ("bfloat16", torch.bfloat16)])
def test_zero_steps_return_the_normalised_gradient_as_published(dtype, torch_dtype):
    torch.manual_seed(4)
    g = torch.randn(3, 6, 9, dtype=torch.float64)
    x = g.to(torch_dtype)
    expected = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    out = newton_schulz(g, 0, dtype)
    assert out.dtype == torch_dtype and torch.equal(out, expected)
    assert not torch.equal(out.double(), g)  # not the raw gradient


def test_unknown_newton_schulz_dtype_is_named():
    with pytest.raises(ValueError, match="newton_schulz_dtype must be one of"):
        newton_schulz(torch.randn(1, 2, 2), 1, "half")


def test_a_wider_newton_schulz_dtype_keeps_the_weights_dtype():
    from nvs.models.fast_weight import TTTOp, run_fast_weight_ops

    torch.manual_seed(5)
    w = (torch.randn(1, 8, 12), torch.randn(1, 12, 8), torch.randn(1, 8, 12))
    q, k, v = (torch.randn(1, 10, 8) for _ in range(3))
    lrs = tuple(torch.full((1, 10, 1), 0.01) for _ in range(3))
    out, new = run_fast_weight_ops(w, q, k, v, lrs, [TTTOp(0, 10, True, True)], 5, "float64")
    assert out.dtype == torch.float32 and all(t.dtype == torch.float32 for t in new)
