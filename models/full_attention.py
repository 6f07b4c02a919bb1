"""FullAttentionRenderer: the LVSM decoder-only baseline.

Every layer attends over all input tokens plus the tokens of one target view; each target is
rendered separately. Its "state" is the input tokens themselves, so memory and render cost grow
with the number of input views, which is what LaCT is compared against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.models.config import ModelConfig
from nvs.models.lact import MLP, SelfAttention
from nvs.models.lact import RendererBase


@dataclass
class TokenState:
    """Input tokens [B, V * L, dim] of a memorised scene (grows with V)."""

    tokens: Tensor
    num_views: int

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def to(self, *args, **kwargs) -> "TokenState":
        return TokenState(self.tokens.to(*args, **kwargs), self.num_views)

    def detach(self) -> "TokenState":
        return TokenState(self.tokens.detach(), self.num_views)

    def nbytes(self) -> int:
        return self.tokens.numel() * self.tokens.element_size()


class FullAttentionBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.dim, bias=False)
        self.attn = SelfAttention(config.dim, config.attn_head_dim, config.qk_norm)
        self.mlp_norm = nn.LayerNorm(config.dim, bias=False)
        self.mlp = MLP(config.dim, config.mlp_inter_multi)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class FullAttentionRenderer(RendererBase):
    """memorize / render / forward with the same signatures as LaCTRenderer.

    ``target_chunk`` bounds how many target views are decoded in one batched pass.
    """

    def __init__(self, config: ModelConfig, target_chunk: int = 4):
        super().__init__(config)
        self.blocks = nn.ModuleList([FullAttentionBlock(config) for _ in range(config.layers)])
        self.target_chunk = target_chunk
        self.init_weights(modules_per_block=2)

    def memorize(self, images: Tensor, cams: Cameras) -> TokenState:
        self.check_inputs(images, cams)
        return TokenState(self.tokenizer(cams, images), cams.shape[1])

    def render(self, state: TokenState, target_cams: Cameras) -> Tensor:
        if not isinstance(state, TokenState):
            raise ValueError("state must be a TokenState produced by this renderer's memorize()")
        b = state.batch_size
        self.check_targets(target_cams, b)
        targets = self.tokenizer(target_cams)  # [B, T * L, dim]
        t, per_view = target_cams.shape[1], self.tokens_per_view(target_cams)
        targets = targets.view(b, t, per_view, -1)
        n_in = state.tokens.shape[1]
        outputs = []
        for start in range(0, t, self.target_chunk):
            chunk = targets[:, start : start + self.target_chunk]  # [B, t', L, dim]
            tc = chunk.shape[1]
            ctx = state.tokens[:, None].expand(b, tc, n_in, -1)
            x = torch.cat([ctx, chunk], dim=2).flatten(0, 1)  # [B * t', n_in + L, dim]
            for block in self.blocks:
                x = self.run_block(block, x)
            outputs.append(x[:, n_in:].reshape(b, tc * per_view, -1))
        return self.decode(torch.cat(outputs, dim=1), target_cams)

    def forward(self, images: Tensor, cams: Cameras, target_cams: Cameras) -> Tensor:
        return self.render(self.memorize(images, cams), target_cams)
