"""The ordinary transformer parts: attention with QK RMSNorm and a GELU MLP (no biases)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention over the token axis of [N, L, dim]; QK RMSNorm per head."""

    def __init__(self, dim: int, head_dim: int, qk_norm: bool = True):
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        # eps=None: torch's default (machine epsilon of the dtype), as the published model uses.
        self.q_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, dim // self.head_dim, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, inter_multi: float = 4.0):
        super().__init__()
        hidden = int(dim * inter_multi)
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))
