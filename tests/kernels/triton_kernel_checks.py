"""The Triton kernels against the plain-torch reference, forward and backward. tests/kernels/test_kernels.py
runs this module with TRITON_INTERPRET=1 on CPU tensors (Triton's interpreter, in every CI run)
and, where a CUDA GPU is present, calls ``check(device="cuda", ...)`` at the published size too.
Odd sizes exercise every mask."""

import torch

from nvs.kernels import triton_swiglu
from nvs.models import fast_weight as reference


def check(device: str = "cpu", n: int = 2, length: int = 50, d: int = 40, dh: int = 72) -> None:
    torch.manual_seed(0)

    def randn(*shape, scale):
        return (torch.randn(*shape) * scale).to(device)

    k, v, x = (randn(n, length, d, scale=d**-0.5) for _ in range(3))
    w0, w2 = (randn(n, d, dh, scale=d**-0.5) for _ in range(2))
    w1 = randn(n, dh, d, scale=dh**-0.5)
    lrs = tuple((torch.rand(n, length, 1) * 0.1).to(device) for _ in range(3))

    gate, up = x @ w0, x @ w2
    torch.testing.assert_close(triton_swiglu.swiglu_hidden(w0, w2, x), torch.nn.functional.silu(gate) * up, atol=1e-5, rtol=1e-5)

    for got, want in zip(triton_swiglu.swiglu_update_grads(w0, w1, w2, k, v, *lrs),
                         reference.swiglu_update_grads(w0, w1, w2, k, v, *lrs)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)

    # apply: forward and backward (training backpropagates through it)
    leaves = [t.clone().requires_grad_(True) for t in (w0, w1, w2, x)]
    ref_leaves = [t.clone().requires_grad_(True) for t in (w0, w1, w2, x)]
    out = triton_swiglu.swiglu_apply(*leaves)
    ref = reference.swiglu_apply(*ref_leaves)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(ref)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)



def check_bf16(device: str = "cuda", n: int = 1, length: int = 4096, d: int = 768, dh: int = 1536) -> None:
    """bf16 operands take tensor-core products with float32 accumulation, where the reference
    rounds every intermediate to bf16: the two agree to bf16 precision, compared as a whole."""
    torch.manual_seed(0)

    def randn(*shape, scale):
        return (torch.randn(*shape) * scale).to(device, torch.bfloat16)

    k, v, x = (randn(n, length, d, scale=d**-0.5) for _ in range(3))
    w0, w2 = (randn(n, d, dh, scale=d**-0.5) for _ in range(2))
    w1 = randn(n, dh, d, scale=dh**-0.5)
    lrs = tuple(torch.full((n, length, 1), 0.01, device=device, dtype=torch.bfloat16) for _ in range(3))
    pairs = [(triton_swiglu.swiglu_apply(w0, w1, w2, x), reference.swiglu_apply(w0, w1, w2, x))]
    pairs += zip(triton_swiglu.swiglu_update_grads(w0, w1, w2, k, v, *lrs), reference.swiglu_update_grads(w0, w1, w2, k, v, *lrs))
    for got, want in pairs:
        assert got.dtype == torch.bfloat16
        error = (got.float() - want.float()).norm() / want.float().norm()
        assert error < 1e-2, f"relative error {error:.2e}"


if __name__ == "__main__":
    check()
    print("triton kernels match the reference")
