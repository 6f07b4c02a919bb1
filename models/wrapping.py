"""The base of the inference wrappers (turn ensembles, object framing): a module that runs a
renderer and answers for it what callers read off a renderer."""

from __future__ import annotations

from torch import nn


class RendererWrapper(nn.Module):
    """Runs ``renderer`` (a renderer or another wrapper); subclasses give memorize and render."""

    def __init__(self, renderer: nn.Module):
        super().__init__()
        self.renderer = renderer

    @property
    def config(self):
        return self.renderer.config

    @property
    def normalization(self):
        return getattr(self.renderer, "normalization", None)

    @property
    def source_format(self):
        return getattr(self.renderer, "source_format", "")

    def set_memory_budget(self, budget) -> None:
        if hasattr(self.renderer, "set_memory_budget"):
            self.renderer.set_memory_budget(budget)

    def forward(self, images, cams, target_cams):
        """images [B, V, 3, H, W], cams [B, V], target_cams [B, T] -> [B, T, 3, H, W]."""
        return self.render(self.memorize(images, cams), target_cams)
