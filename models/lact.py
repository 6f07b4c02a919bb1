"""LaCTRenderer: posed input views are written into fast weights; targets are read out from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.models.config import ModelConfig
from nvs.models.fast_weight import FastWeights, FastWeightSwiGLU, TTTOp
from nvs.models.layers import MLP, SelfAttention
from nvs.models.renderer_base import RendererBase


@dataclass
class SceneState:
    """A memorised scene: the fast weights of every LaCT layer. Its size does not depend on V.

    layers: one FastWeights per block, each w [B, H, d, dh]; num_views: how many views were read.
    """

    layers: list[FastWeights]
    num_views: int

    @property
    def batch_size(self) -> int:
        return self.layers[0].w0.shape[0]

    def to(self, *args, **kwargs) -> "SceneState":
        return SceneState([w.to(*args, **kwargs) for w in self.layers], self.num_views)

    def detach(self) -> "SceneState":
        return SceneState([w.detach() for w in self.layers], self.num_views)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for fw in self.layers for t in (fw.w0, fw.w1, fw.w2))


class LaCTBlock(nn.Module):
    """Pre-norm residual block: per-view attention -> LaCT fast-weight layer -> MLP."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.dim
        self.attn_norm = nn.LayerNorm(dim, bias=False)
        self.attn = SelfAttention(dim, config.attn_head_dim, config.qk_norm)
        self.ttt_norm = nn.LayerNorm(dim, bias=False)
        self.ttt = FastWeightSwiGLU(dim, config.ttt_head_dim, config.ttt_inter_multi, config.ttt_base_lr, config.muon_steps)
        self.mlp_norm = nn.LayerNorm(dim, bias=False)
        self.mlp = MLP(dim, config.mlp_inter_multi)

    def forward(
        self, x: Tensor, tokens_per_view: int, ops: list[TTTOp], state: FastWeights | None
    ) -> tuple[Tensor, FastWeights]:
        """x: [B, V * L, dim] -> (x, fast weights after ``ops``)."""
        b, n, d = x.shape
        per_view = self.attn_norm(x).reshape(b * (n // tokens_per_view), tokens_per_view, d)
        x = x + self.attn(per_view).reshape(b, n, d)
        out, state = self.ttt(self.ttt_norm(x), ops, state)
        if out.shape[1] != n:
            raise ValueError(f"the apply ops cover {out.shape[1]} tokens; the block needs all {n} (residual stream)")
        x = x + out
        x = x + self.mlp(self.mlp_norm(x))
        return x, state


class LaCTRenderer(RendererBase):
    """Large-Chunk Test-Time Training renderer (LaCT, Zhang et al. 2025), NVS variant on LVSM tokens.

    memorize(images [B, V, 3, H, W], cams [B, V]) -> SceneState
    render(state, target_cams [B, T]) -> [B, T, 3, H, W]
    forward(images, cams, target_cams) == render(memorize(images, cams), target_cams)
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList([LaCTBlock(config) for _ in range(config.layers)])
        self.init_weights(modules_per_block=3)

    def _run(self, x: Tensor, tokens_per_view: int, ops: list[TTTOp], states: list[FastWeights] | None):
        new_states = []
        for i, block in enumerate(self.blocks):
            x, st = self.run_block(block, x, tokens_per_view, ops, None if states is None else states[i])
            new_states.append(st)
        return x, new_states

    def memorize(self, images: Tensor, cams: Cameras) -> SceneState:
        self.check_inputs(images, cams)
        x = self.tokenizer(cams, images)
        n = x.shape[1]
        _, states = self._run(x, self.tokens_per_view(cams), [TTTOp(0, n, update=True, apply=True)], None)
        return SceneState(states, num_views=cams.shape[1])

    def render(self, state: SceneState, target_cams: Cameras) -> Tensor:
        if not isinstance(state, SceneState) or len(state.layers) != len(self.blocks):
            raise ValueError("state must be a SceneState produced by this renderer's memorize()")
        self.check_targets(target_cams, state.batch_size)
        x = self.tokenizer(target_cams)
        x, _ = self._run(x, self.tokens_per_view(target_cams), [TTTOp(0, x.shape[1], update=False, apply=True)], state.layers)
        return self.decode(x, target_cams)

    def forward(self, images: Tensor, cams: Cameras, target_cams: Cameras) -> Tensor:
        """Joint pass (training): inputs and targets in one sequence; the update sees inputs only."""
        self.check_inputs(images, cams)
        self.check_targets(target_cams, images.shape[0])
        if (target_cams.height, target_cams.width) != (cams.height, cams.width):
            return self.render(self.memorize(images, cams), target_cams)
        x = torch.cat([self.tokenizer(cams, images), self.tokenizer(target_cams)], dim=1)
        n_in = self.tokens_per_view(cams) * cams.shape[1]
        ops = [TTTOp(0, n_in, update=True, apply=False), TTTOp(0, x.shape[1], update=False, apply=True)]
        x, _ = self._run(x, self.tokens_per_view(cams), ops, None)
        return self.decode(x[:, n_in:], target_cams)
