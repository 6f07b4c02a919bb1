"""The LaCT fast-weight layer: a multi-head SwiGLU whose weights are trained at test time.

One large chunk of tokens (all input views of a scene) updates the fast weights in a single
step; any tokens can then be read out by applying the updated weights. Which tokens update and
which apply is an explicit list of :class:`TTTOp` over token ranges, so the same layer serves
joint training (update on inputs, apply on inputs + targets) and split inference (memorise, then
render from the stored weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs import kernels


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


def run_fast_weight_ops(
    weights: tuple[Tensor, Tensor, Tensor],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lrs: tuple[Tensor, Tensor, Tensor],
    ops: Sequence[TTTOp],
    muon_steps: int,
) -> tuple[Tensor | None, tuple[Tensor, Tensor, Tensor]]:
    """Execute ``ops`` in order.

    weights: (w0, w1, w2) [N, d, dh] / [N, dh, d] / [N, d, dh]; q, k, v: [N, L, d]; lrs: 3 x [N, L, 1].
    Returns (outputs of the apply ops concatenated over tokens [N, L_apply, d] or None, new weights).
    Each update adds the Newton-Schulz-orthogonalised descent direction to every weight, then
    restores each weight's column norms to what they were when this call began.
    """
    w0, w1, w2 = weights
    norms = [w.detach().norm(dim=-2, keepdim=True) for w in weights]
    outputs = []
    for op in ops:
        if op.update:
            sl = slice(op.start, op.end)
            g0, g1, g2 = kernels.swiglu_update_grads(w0, w1, w2, k[:, sl], v[:, sl], *(lr[:, sl] for lr in lrs))
            w1 = w1 + kernels.newton_schulz(g1, muon_steps)
            w0 = w0 + kernels.newton_schulz(g0, muon_steps)
            w2 = w2 + kernels.newton_schulz(g2, muon_steps)
            w0, w1, w2 = (kernels.renormalize_columns(w, n) for w, n in zip((w0, w1, w2), norms))
        if op.apply:
            outputs.append(kernels.swiglu_apply(w0, w1, w2, q[:, op.start : op.end]))
    out = torch.cat(outputs, dim=1) if outputs else None
    return out, (w0, w1, w2)


class FastWeightSwiGLU(nn.Module):
    """LaCT layer over [B, L, dim] tokens with ``heads`` fast-weight SwiGLU heads."""

    def __init__(self, dim: int, head_dim: int, inter_multi: float = 2.0, base_lr: float = 0.01, muon_steps: int = 5):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} not divisible by fast-weight head_dim {head_dim}")
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.muon_steps = muon_steps
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

    def forward(self, x: Tensor, ops: Sequence[TTTOp], state: FastWeights | None = None) -> tuple[Tensor, FastWeights]:
        """x: [B, L, dim] -> (outputs for the apply ranges [B, L_apply, dim], updated FastWeights)."""
        b = x.shape[0]
        q, k, v = (self._split_heads(t) for t in F.silu(self.qkv(x)).chunk(3, dim=-1))
        q = q / (q.norm(dim=-1, keepdim=True) + 1e-5)
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-5)
        with torch.autocast(device_type=x.device.type, enabled=False):
            lr = F.softplus(self.lr_proj(x.float()) + self.lr_offset)  # [B, L, 3H], float32
        lrs = tuple(self._split_heads(t) for t in lr.chunk(3, dim=-1))  # 3 x [B*H, L, 1]

        state = state if state is not None else self.initial_weights(b)
        out, (w0, w1, w2) = run_fast_weight_ops(state.flat(), q, k, v, lrs, ops, self.muon_steps)
        new_state = FastWeights(*(w.view(b, self.heads, *w.shape[1:]) for w in (w0, w1, w2)))
        if out is None:
            return x.new_zeros(b, 0, x.shape[-1]), new_state
        out = self.out_norm(out)
        out = out.view(b, self.heads, out.shape[1], self.head_dim).transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)
        return self.proj(out), new_state
