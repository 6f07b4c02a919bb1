"""Triton kernels for the fast-weight SwiGLU (GPU; tested on the CPU in Triton's interpreter).

Both kernels fuse the products that share a row tile with the elementwise work that follows
them, so the [L, dh] intermediates (gate, up, their activations and derivatives) are never
written and re-read:
- ``_swiglu_hidden``: h = silu(x W0) * (x W2) from one pass over x (apply's first half);
- ``_update_rhs``: from k, v and the weights, the three per-token factors of the update's
  weight gradients (hidden * lr1, d_gate * lr0, d_up * lr2) in one pass over k and v.
The remaining products (h W1 and the [d, L] x [L, dh] weight gradients) are single large GEMMs
that cuBLAS already runs at peak. The reference math they are tested against is in :mod:`nvs.models.fast_weight`.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor


def _tile_configs() -> list[triton.Config]:
    """Tile shapes tried once per problem size (Hopper-sized tiles first); one small tile under
    Triton's CPU interpreter, where every config would be interpreted."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [triton.Config({"BL": 32, "BH": 32, "BD": 32})]
    return [triton.Config({"BL": bl, "BH": bh, "BD": bd}, num_warps=warps, num_stages=stages)
            for bl, bh, bd, warps, stages in ((128, 128, 32, 8, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3),
                                              (64, 64, 64, 4, 3), (64, 64, 32, 4, 4), (32, 32, 32, 4, 2))]


@triton.jit
def _tile(base, rows, cols, srow, scol, nrows, ncols):
    """A [len(rows), len(cols)] tile of a matrix at ``base`` with strides (srow, scol), zero outside it."""
    return tl.load(base + rows[:, None] * srow + cols[None, :] * scol,
                   mask=(rows[:, None] < nrows) & (cols[None, :] < ncols), other=0.0)


@triton.jit
def _program_tile(BL: tl.constexpr, BH: tl.constexpr):
    """This program's (batch index, token rows, hidden columns) of the [L, H] output grid."""
    return tl.program_id(2), tl.program_id(0) * BL + tl.arange(0, BL), tl.program_id(1) * BH + tl.arange(0, BH)


@triton.autotune(configs=_tile_configs(), key=["L", "D", "H"])
@triton.jit
def _swiglu_hidden(x_ptr, w0_ptr, w2_ptr, h_ptr, L, D, H,
                   sxn, sxl, sxd, swn, swd, swh, shn, shl, shh,
                   BL: tl.constexpr, BH: tl.constexpr, BD: tl.constexpr):
    n, rows, cols = _program_tile(BL, BH)
    gate = tl.zeros((BL, BH), dtype=tl.float32)
    up = tl.zeros((BL, BH), dtype=tl.float32)
    for d0 in range(0, D, BD):
        ds = d0 + tl.arange(0, BD)
        x = _tile(x_ptr + n * sxn, rows, ds, sxl, sxd, L, D)
        gate += tl.dot(x, _tile(w0_ptr + n * swn, ds, cols, swd, swh, D, H), input_precision="ieee")
        up += tl.dot(x, _tile(w2_ptr + n * swn, ds, cols, swd, swh, D, H), input_precision="ieee")
    h = gate * tl.sigmoid(gate) * up
    tl.store(h_ptr + n * shn + rows[:, None] * shl + cols[None, :] * shh, h,
             mask=(rows[:, None] < L) & (cols[None, :] < H))


@triton.autotune(configs=_tile_configs(), key=["L", "D", "H"])
@triton.jit
def _update_rhs(k_ptr, v_ptr, w0_ptr, w2_ptr, w1_ptr, lr0_ptr, lr1_ptr, lr2_ptr, hid_ptr, dg_ptr, du_ptr, L, D, H,
                skn, skl, skd, swn, swd, swh, s1n, s1h, s1d, srn, srl, son, sol, soh,
                BL: tl.constexpr, BH: tl.constexpr, BD: tl.constexpr):
    n, rows, cols = _program_tile(BL, BH)
    gate = tl.zeros((BL, BH), dtype=tl.float32)
    up = tl.zeros((BL, BH), dtype=tl.float32)
    d_hidden = tl.zeros((BL, BH), dtype=tl.float32)
    for d0 in range(0, D, BD):
        ds = d0 + tl.arange(0, BD)
        k = _tile(k_ptr + n * skn, rows, ds, skl, skd, L, D)
        v = _tile(v_ptr + n * skn, rows, ds, skl, skd, L, D)
        w1t = _tile(w1_ptr + n * s1n, ds, cols, s1d, s1h, D, H)  # a tile of W1^T
        gate += tl.dot(k, _tile(w0_ptr + n * swn, ds, cols, swd, swh, D, H), input_precision="ieee")
        up += tl.dot(k, _tile(w2_ptr + n * swn, ds, cols, swd, swh, D, H), input_precision="ieee")
        d_hidden += tl.dot(v, w1t, input_precision="ieee")
    rmask = rows < L
    lr0 = tl.load(lr0_ptr + n * srn + rows * srl, mask=rmask, other=0.0)[:, None]
    lr1 = tl.load(lr1_ptr + n * srn + rows * srl, mask=rmask, other=0.0)[:, None]
    lr2 = tl.load(lr2_ptr + n * srn + rows * srl, mask=rmask, other=0.0)[:, None]
    sig = tl.sigmoid(gate)
    act = gate * sig
    out = n * son + rows[:, None] * sol + cols[None, :] * soh
    omask = (rows[:, None] < L) & (cols[None, :] < H)
    tl.store(hid_ptr + out, act * up * lr1, mask=omask)
    tl.store(du_ptr + out, d_hidden * act * lr2, mask=omask)
    tl.store(dg_ptr + out, d_hidden * up * sig * (1 + gate * (1 - sig)) * lr0, mask=omask)


def _grid(n: int, length: int, hidden: int):
    return lambda meta: (triton.cdiv(length, meta["BL"]), triton.cdiv(hidden, meta["BH"]), n)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """bfloat16 when every operand is (tensor-core products, float32 accumulation, as cuBLAS does
    for the reference), else float32 with exact ("ieee") float32 products."""
    return torch.bfloat16 if all(t.dtype == torch.bfloat16 for t in tensors) else torch.float32


def swiglu_hidden(w0: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """silu(x W0) * (x W2): x [N, L, d], W0/W2 [N, d, dh] -> [N, L, dh] in the compute dtype."""
    n, length, d = x.shape
    hidden = w0.shape[-1]
    dtype = _compute_dtype(w0, w2, x)
    x, w0, w2 = (t.to(dtype).contiguous() for t in (x, w0, w2))
    h = torch.empty(n, length, hidden, device=x.device, dtype=dtype)
    _swiglu_hidden[_grid(n, length, hidden)](x, w0, w2, h, length, d, hidden, *x.stride(), *w0.stride(), *h.stride())
    return h


class _SwiGLUApply(torch.autograd.Function):
    """Forward fused; backward recomputes gate and up with plain products (training runs through it)."""

    @staticmethod
    def forward(ctx, w0, w1, w2, x):
        ctx.save_for_backward(w0, w1, w2, x)
        h = swiglu_hidden(w0, w2, x)
        return h @ w1.to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        w0, w1, w2, x = ctx.saved_tensors
        gate, up = x @ w0, x @ w2
        sig = torch.sigmoid(gate)
        act = gate * sig
        d_hidden = grad @ w1.transpose(-1, -2)
        d_gate = d_hidden * up * sig * (1 + gate * (1 - sig))
        d_up = d_hidden * act
        xt = x.transpose(-1, -2)
        return (xt @ d_gate, (act * up).transpose(-1, -2) @ grad, xt @ d_up,
                d_gate @ w0.transpose(-1, -2) + d_up @ w2.transpose(-1, -2))


def swiglu_apply(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """f(x) = (silu(x W0) * (x W2)) W1 for x [N, L, d] -> [N, L, d], differentiable."""
    return _SwiGLUApply.apply(w0, w1, w2, x)


def update_factors(w0: Tensor, w1: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor,
                   lr2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(hidden * lr1, d_gate * lr0, d_up * lr2), each [N, L, dh] in the compute dtype, in one fused pass."""
    n, length, d = k.shape
    hidden = w0.shape[-1]
    dtype = _compute_dtype(w0, w1, w2, k, v)
    k, v, w0, w1, w2 = (t.to(dtype).contiguous() for t in (k, v, w0, w1, w2))
    lr0, lr1, lr2 = (lr.float().reshape(n, length).contiguous() for lr in (lr0, lr1, lr2))
    hid, d_gate, d_up = (torch.empty(n, length, hidden, device=k.device, dtype=dtype) for _ in range(3))
    _update_rhs[_grid(n, length, hidden)](k, v, w0, w2, w1, lr0, lr1, lr2, hid, d_gate, d_up, length, d, hidden,
                                          *k.stride(), *w0.stride(), *w1.stride(), *lr0.stride(), *hid.stride())
    return hid, d_gate, d_up


def swiglu_update_grads(w0: Tensor, w1: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor,
                        lr2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as the reference; used where no gradient flows through the update (memorising
    for rendering), since the fused pass has no backward."""
    hid, d_gate, d_up = update_factors(w0, w1, w2, k, v, lr0, lr1, lr2)
    kt = k.to(hid.dtype).transpose(-1, -2)
    return kt @ d_gate, hid.transpose(-1, -2) @ v.to(hid.dtype), kt @ d_up
