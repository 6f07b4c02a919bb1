"""Renderers: LaCT (fast weights) and the full-attention baseline, plus checkpoint I/O."""

from nvs.models.checkpoint import CheckpointError, build_renderer, load_renderer, save_renderer
from nvs.models.config import ModelConfig
from nvs.models.fast_weight import FastWeights, FastWeightSwiGLU, TTTOp
from nvs.models.full_attention import FullAttentionRenderer, TokenState
from nvs.models.lact import LaCTRenderer, SceneState

__all__ = [
    "CheckpointError", "FastWeights", "FastWeightSwiGLU", "FullAttentionRenderer", "LaCTRenderer",
    "ModelConfig", "SceneState", "TTTOp", "TokenState", "build_renderer", "load_renderer", "save_renderer",
]
