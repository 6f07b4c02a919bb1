"""The LaCT fast-weight layer and its math: a multi-head SwiGLU whose weights are trained at test time.

Fast weights per head form a SwiGLU MLP  f(x) = (silu(x W0) * (x W2)) W1  with W0, W2 [N, d, dh]
and W1 [N, dh, d], N = batch x heads. One large chunk of tokens (all input views of a scene)
updates them in a single step: the gradient of  -sum_i lr_i f(k_i) . v_i  for each weight,
orthogonalised by Newton-Schulz, added, and the columns renormalised. Any tokens can then be
read out by applying the updated weights. Which tokens update and which apply is an explicit list
of :class:`TTTOp` over token ranges, so the same layer serves joint training (update on inputs,
apply on inputs + targets) and split inference (memorise, then render from stored weights).

The functions here are the reference math; on CUDA, ``NVS_KERNELS=triton`` routes the apply and
the update's gradients to the fused kernels of :mod:`nvs.kernels`, which are tested against them.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs import kernels

# Quintic Newton-Schulz coefficients of Muon (Keller Jordan et al.), as LaCT uses them.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
# "bfloat16" is the published model; "bfloat16_emulated" takes float32 products rounded to bfloat16
# (fast on CPUs without native bfloat16, not bit-equal to the published outputs); the others are
# well-conditioned references.
NEWTON_SCHULZ_DTYPES = ("bfloat16", "bfloat16_emulated", "float32", "float64")


class TTTOp(NamedTuple):
    """One step over tokens [start, end): update the fast weights with them and/or apply them."""

    start: int
    end: int
    update: bool
    apply: bool


@dataclass
class FastWeights:
    """The fast weights of one layer for a batch. w0, w2: [B, H, d, dh]; w1: [B, H, dh, d]."""

    w0: Tensor
    w1: Tensor
    w2: Tensor

    def flat(self) -> tuple[Tensor, Tensor, Tensor]:
        """[B, H, ...] -> [B*H, ...]."""
        return tuple(w.flatten(0, 1) for w in (self.w0, self.w1, self.w2))  # type: ignore[return-value]

    def to(self, *args, **kwargs) -> "FastWeights":
        return FastWeights(*(w.to(*args, **kwargs) for w in (self.w0, self.w1, self.w2)))

    def detach(self) -> "FastWeights":
        return FastWeights(self.w0.detach(), self.w1.detach(), self.w2.detach())


def inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


# ----------------------------------------------------------------------------- the reference math

def swiglu_apply(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    """f(x) for x [N, L, d] -> [N, L, d]."""
    if kernels.use_triton(w0, w1, w2, x):
        return kernels.triton_swiglu_apply(w0, w1, w2, x)
    return (F.silu(x @ w0) * (x @ w2)) @ w1


def swiglu_update_grads(
    w0: Tensor, w1: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor,
    accumulate: Sequence[Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Descent directions of the loss  -sum_i lr_i * f(k_i) . v_i  for each fast weight.

    k, v: [N, L, d]; lr0, lr1, lr2: [N, L, 1] (one learning rate per token and weight).
    Returns (g0 [N, d, dh], g1 [N, dh, d], g2 [N, d, dh]): the negative gradients, written out by
    hand so the whole chunk becomes three large matrix products (tested against autograd).
    ``accumulate``: three tensors of those shapes that the directions are added to, in place and
    returned (the sum over token ranges of a chunk, without a second copy of the weights' size).
    """
    tensors = (w0, w1, w2, k, v, lr0, lr1, lr2)
    if kernels.use_triton(*tensors) and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        grads = kernels.triton_swiglu_update_grads(*tensors)
        if accumulate is None:
            return grads
        for total, g in zip(accumulate, grads):
            total += g
        return tuple(accumulate)  # type: ignore[return-value]
    gate = k @ w0  # [N, L, dh]
    up = k @ w2
    gate_act = F.silu(gate)
    hidden = gate_act * up
    d_hidden = v @ w1.transpose(-1, -2)  # [N, L, dh]
    d_up = d_hidden * gate_act
    sig = torch.sigmoid(gate)
    d_gate = d_hidden * up * sig * (1 + gate * (1 - sig))  # through silu
    if accumulate is not None:
        s0, s1, s2 = accumulate
        _add_product(s1, (hidden * lr1).transpose(-1, -2), v)
        _add_product(s0, (k * lr0).transpose(-1, -2), d_gate)
        _add_product(s2, (k * lr2).transpose(-1, -2), d_up)
        return s0, s1, s2
    g1 = (hidden * lr1).transpose(-1, -2) @ v
    g0 = (k * lr0).transpose(-1, -2) @ d_gate
    g2 = (k * lr2).transpose(-1, -2) @ d_up
    return g0, g1, g2


def _add_product(total: Tensor, a: Tensor, b: Tensor) -> None:
    """total += a @ b in place; products of another dtype (bfloat16 under autocast) are summed in total's."""
    if a.dtype == b.dtype == total.dtype:
        total.baddbmm_(a, b)
    else:
        total += a @ b


def _read_cpu_bf16_flag() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# read once at import: a file read inside the update would break torch.compile's graph there
_CPU_NATIVE_BF16 = _read_cpu_bf16_flag()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX); ~100x faster then."""
    return _CPU_NATIVE_BF16


@functools.cache
def _warn_emulated_bf16() -> None:
    warnings.warn(
        "this CPU has no native bfloat16 matrix products: Newton-Schulz emulates them (float32 products "
        "rounded to bfloat16), so outputs differ slightly from the published model's; set "
        "newton_schulz_dtype='bfloat16_emulated' to silence this, or 'float32' for a well-conditioned run",
        stacklevel=3,
    )


def _matmul_in(dtype: str, device: torch.device):
    """The matrix product Newton-Schulz takes for ``dtype`` on ``device``."""
    emulate = dtype == "bfloat16_emulated" or (dtype == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16())
    if not emulate:
        return torch.matmul
    if dtype == "bfloat16":
        _warn_emulated_bf16()
    return lambda a, b: (a.float() @ b.float()).bfloat16()


def newton_schulz(g: Tensor, steps: int, dtype: str = "bfloat16") -> Tensor:
    """Approximate orthogonalisation U V^T of g [N, m, n] by quintic Newton-Schulz steps.

    The input is cast to ``dtype`` (bfloat16 as published), transposed when it has more rows than
    columns, divided by its Frobenius norm + 1e-7, then iterated; the result stays in that dtype
    (callers add it to their weights). With ``steps == 0`` it is the normalised g, as published.
    """
    if dtype not in NEWTON_SCHULZ_DTYPES:
        raise ValueError(f"newton_schulz_dtype must be one of {NEWTON_SCHULZ_DTYPES}, got {dtype!r}")
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, torch.bfloat16)
    matmul = _matmul_in(dtype, g.device)
    a, b, c = NS_COEFFS
    x = g.to(torch_dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.transpose(-1, -2)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = matmul(x, x.transpose(-1, -2))
        poly = b * gram + matmul(c * gram, gram)
        x = a * x + matmul(poly, x)
    return x.transpose(-1, -2) if tall else x


def renormalize_columns(w: Tensor, target_norm: Tensor, eps: float = 1e-5) -> Tensor:
    """Rescale w [N, r, c] so each column (norm over dim -2) has ``target_norm`` [N, 1, c]."""
    return w / (w.norm(dim=-2, keepdim=True) + eps) * target_norm


def column_norms(weights: Sequence[Tensor]) -> list[Tensor]:
    """The column norms [N, 1, c] each weight is restored to after an update."""
    return [w.detach().norm(dim=-2, keepdim=True) for w in weights]


def apply_update(
    weights: tuple[Tensor, Tensor, Tensor], grads: Sequence[Tensor], norms: Sequence[Tensor], muon_steps: int,
    ns_dtype: str = "bfloat16",
) -> tuple[Tensor, Tensor, Tensor]:
    """One update step: add each descent direction (g0, g1, g2 of :func:`swiglu_update_grads`, summed
    over the chunk's tokens) after Newton-Schulz, then restore the column ``norms``."""
    w0, w1, w2 = weights
    g0, g1, g2 = grads
    # bfloat16 -> the weights' dtype is exact, so this is the published promotion; a float64
    # Newton-Schulz in a float32 model rounds once here instead of widening the weights.
    w1 = w1 + newton_schulz(g1, muon_steps, ns_dtype).to(w1.dtype)
    w0 = w0 + newton_schulz(g0, muon_steps, ns_dtype).to(w0.dtype)
    w2 = w2 + newton_schulz(g2, muon_steps, ns_dtype).to(w2.dtype)
    return tuple(renormalize_columns(w, n) for w, n in zip((w0, w1, w2), norms))  # type: ignore[return-value]


def apply_update_into(
    sums: Sequence[Tensor], weights: Sequence[Tensor], norms: Sequence[Tensor], muon_steps: int, ns_dtype: str = "bfloat16",
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`apply_update` with the new weights written over ``sums`` (the descent directions, in
    the weights' dtype): the same values, without a second set of weight-sized tensors."""
    for total, w, norm in zip(sums, weights, norms):
        direction = newton_schulz(total, muon_steps, ns_dtype)
        torch.add(w, direction, out=total)
        del direction
        total.div_(total.norm(dim=-2, keepdim=True) + 1e-5).mul_(norm)
    return tuple(sums)  # type: ignore[return-value]


def run_fast_weight_ops(
    weights: tuple[Tensor, Tensor, Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lrs: tuple[Tensor, Tensor, Tensor],
    ops: Sequence[TTTOp],
    muon_steps: int,
    ns_dtype: str = "bfloat16",
) -> tuple[Tensor | None, tuple[Tensor, Tensor, Tensor]]:
    """Execute ``ops`` in order.

    weights: (w0, w1, w2) [N, d, dh] / [N, dh, d] / [N, d, dh]; q, k, v: [N, L, d]; lrs: 3 x [N, L, 1].
    Returns (outputs of the apply ops concatenated over tokens [N, L_apply, d] or None, new weights).
    Each update adds the Newton-Schulz-orthogonalised descent direction to every weight, then
    restores each weight's column norms to what they were when this call began.
    """
    w0, w1, w2 = weights
    norms = column_norms(weights)
    outputs = []
    for op in ops:
        if op.update:
            sl = slice(op.start, op.end)
            grads = swiglu_update_grads(w0, w1, w2, k[:, sl], v[:, sl], *(lr[:, sl] for lr in lrs))
            w0, w1, w2 = apply_update((w0, w1, w2), grads, norms, muon_steps, ns_dtype)
        if op.apply:
            outputs.append(swiglu_apply(w0, w1, w2, q[:, op.start : op.end]))
    out = torch.cat(outputs, dim=1) if outputs else None
    return out, (w0, w1, w2)


# ----------------------------------------------------------------------------- the layer

class FastWeightSwiGLU(nn.Module):
    """LaCT layer over [B, L, dim] tokens with ``heads`` fast-weight SwiGLU heads."""

    def __init__(self, dim: int, head_dim: int, inter_multi: float = 2.0, base_lr: float = 0.01, muon_steps: int = 5,
                 ns_dtype: str = "bfloat16"):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} not divisible by fast-weight head_dim {head_dim}")
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.muon_steps = muon_steps
        self.ns_dtype = ns_dtype
        hidden = int(head_dim * inter_multi)
        gain = math.sqrt(2.0)
        # Learned initial fast weights, shared by every scene.
        self.w0 = nn.Parameter(torch.randn(self.heads, head_dim, hidden) * gain / math.sqrt(head_dim))
        self.w1 = nn.Parameter(torch.randn(self.heads, hidden, head_dim) * gain / math.sqrt(hidden))
        self.w2 = nn.Parameter(torch.randn(self.heads, head_dim, hidden) * gain / math.sqrt(head_dim))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.lr_proj = nn.Linear(dim, 3 * self.heads, bias=True)
        self.lr_offset = inverse_softplus(base_lr)
        self.out_norm = nn.RMSNorm(head_dim, eps=1e-5, elementwise_affine=True)

    def initial_weights(self, batch: int) -> FastWeights:
        return FastWeights(*(w.unsqueeze(0).expand(batch, -1, -1, -1) for w in (self.w0, self.w1, self.w2)))

    def _split_heads(self, t: Tensor) -> Tensor:
        """[B, L, H*dh] -> [B*H, L, dh]."""
        b, length, _ = t.shape
        return t.view(b, length, self.heads, -1).transpose(1, 2).reshape(b * self.heads, length, -1)

    def learning_rates(self, x: Tensor) -> Tensor:
        """Per-token learning rates [B, L, 3H], always float32 (as published, whatever the model dtype)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            weight, bias = self.lr_proj.weight.float(), self.lr_proj.bias.float()
            return F.softplus(F.linear(x.float(), weight, bias) + self.lr_offset)

    def forward(self, x: Tensor, ops: Sequence[TTTOp], state: FastWeights | None = None) -> tuple[Tensor, FastWeights]:
        """x: [B, L, dim] -> (outputs for the apply ranges [B, L_apply, dim], updated FastWeights)."""
        b = x.shape[0]
        q, k, v = (self._split_heads(t) for t in F.silu(self.qkv(x)).chunk(3, dim=-1))
        q = q / (q.norm(dim=-1, keepdim=True) + 1e-5)
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
        lrs = tuple(self._split_heads(t) for t in self.learning_rates(x).chunk(3, dim=-1))  # 3 x [B*H, L, 1]

        state = state if state is not None else self.initial_weights(b)
        out, (w0, w1, w2) = run_fast_weight_ops(state.flat(), q, k, v, lrs, ops, self.muon_steps, self.ns_dtype)
        new_state = self.unflatten(b, (w0, w1, w2))
        if out is None:
            return x.new_zeros(b, 0, x.shape[-1]), new_state
        return self.read_out(out, b), new_state

    def unflatten(self, batch: int, weights: Sequence[Tensor]) -> FastWeights:
        """[B*H, ...] x 3 -> FastWeights [B, H, ...]."""
        return FastWeights(*(w.view(batch, self.heads, *w.shape[1:]) for w in weights))

    def read_out(self, out: Tensor, batch: int) -> Tensor:
        """Fast-weight outputs [B*H, L, dh] -> the layer's output [B, L, dim] (norm, merge heads, project)."""
        out = self.out_norm(out)
        out = out.view(batch, self.heads, out.shape[1], self.head_dim).transpose(1, 2).reshape(batch, -1, self.heads * self.head_dim)
        return self.proj(out)

    def queries(self, x: Tensor) -> Tensor:
        """The normalised queries alone, [B, L, dim] -> [B*H, L, dh] (the same values as in :meth:`forward`)."""
        dim = self.heads * self.head_dim
        q = self._split_heads(F.silu(F.linear(x, self.qkv.weight[:dim])))
        return q / (q.norm(dim=-1, keepdim=True) + 1e-5)

    def keys_values_rates(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """What an update reads, without the queries: [B, L, dim] -> k, v [B*H, L, dh], 3 x lr [B*H, L, 1]."""
        dim = self.heads * self.head_dim
        k, v = (self._split_heads(t) for t in F.silu(F.linear(x, self.qkv.weight[dim:])).chunk(2, dim=-1))
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
        lrs = tuple(self._split_heads(t) for t in self.learning_rates(x).chunk(3, dim=-1))
        return k, v, lrs  # type: ignore[return-value]
