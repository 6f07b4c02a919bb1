"""Run by tests/test_kernels.py with TRITON_INTERPRET=1: the Triton kernels on CPU tensors, in
Triton's interpreter, against the plain-torch reference. Odd sizes exercise every mask."""

import torch

from nvs.kernels import reference, triton_swiglu


def main() -> None:
    torch.manual_seed(0)
    n, length, d, dh = 2, 50, 40, 72
    k, v, x = (torch.randn(n, length, d) * d**-0.5 for _ in range(3))
    w0, w2 = (torch.randn(n, d, dh) * d**-0.5 for _ in range(2))
    w1 = torch.randn(n, dh, d) * dh**-0.5
    lrs = tuple(torch.rand(n, length, 1) * 0.1 for _ in range(3))

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
    print("triton kernels match the reference")


if __name__ == "__main__":
    main()
