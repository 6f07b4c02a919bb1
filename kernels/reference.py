"""Plain-torch reference for the LaCT fast-weight math. Every fused kernel is tested against it.

Fast weights per head form a SwiGLU MLP  f(x) = (silu(x W0) * (x W2)) W1  with
W0, W2: [N, d, dh] and W1: [N, dh, d], N = batch x heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Quintic Newton-Schulz coefficients of Muon (Keller Jordan et al.), as LaCT uses them.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def swiglu_apply(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """f(x) for x [N, L, d] -> [N, L, d]."""
    return (F.silu(x @ w0) * (x @ w2)) @ w1


def swiglu_update_grads(
    w0: Tensor, w1: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Descent directions of the loss  -sum_i lr_i * f(k_i) . v_i  for each fast weight.

    k, v: [N, L, d]; lr0, lr1, lr2: [N, L, 1] (one learning rate per token and weight).
    Returns (g0 [N, d, dh], g1 [N, dh, d], g2 [N, d, dh]): the negative gradients, written out by
    hand so the whole chunk becomes three large matrix products.
    """
    gate = k @ w0  # [N, L, dh]
    up = k @ w2
    gate_act = F.silu(gate)
    hidden = gate_act * up
    d_hidden = v @ w1.transpose(-1, -2)  # [N, L, dh]
    d_up = d_hidden * gate_act
    sig = torch.sigmoid(gate)
    d_gate = d_hidden * up * sig * (1 + gate * (1 - sig))  # through silu
    g1 = (hidden * lr1).transpose(-1, -2) @ v
    g0 = (k * lr0).transpose(-1, -2) @ d_gate
    g2 = (k * lr2).transpose(-1, -2) @ d_up
    return g0, g1, g2


def _bf16_matmul(a: Tensor, b: Tensor) -> Tensor:
    """bfloat16 matrix product with float32 accumulation. On CPUs without native bf16 (torch's
    kernel is ~16x slower than float32 there) the product is taken in float32 and rounded once:
    the same rounding model as a bf16 GEMM, though the last bit can differ from torch's CPU
    kernel, as it can between any two GEMMs. The official-parity tests bound the effect."""
    if a.device.type == "cpu":
        return (a.float() @ b.float()).bfloat16()
    return a @ b


def newton_schulz(g: Tensor, steps: int) -> Tensor:
    """Approximate orthogonalisation U V^T of g [N, m, n] by quintic Newton-Schulz steps.

    Runs in bfloat16 like the published model (the exact cast matters for matching it) and
    returns bfloat16; callers add it to float32 weights. ``steps == 0`` returns g unchanged.
    """
    if steps == 0:
        return g
    a, b, c = NS_COEFFS
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.transpose(-1, -2)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = _bf16_matmul(x, x.transpose(-1, -2))
        poly = b * gram + _bf16_matmul(c * gram, gram)
        x = a * x + _bf16_matmul(poly, x)
    return x.transpose(-1, -2) if tall else x


def renormalize_columns(w: Tensor, target_norm: Tensor, eps: float = 1e-5) -> Tensor:
    """Rescale w [N, r, c] so each column (norm over dim -2) has ``target_norm`` [N, 1, c]."""
    return w / (w.norm(dim=-2, keepdim=True) + eps) * target_norm
