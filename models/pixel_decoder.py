"""A per-pixel convolutional decoder after the RGB head.

The published head maps each target token linearly to its p x p patch of colour logits, so with
dim 128 and 16x16 patches every patch lies in a 128-dimensional subspace of its 768 values: edges
inside a patch come out soft and seams show between patches. A renderer with ``pixel_decoder = c``
spreads each token's features over its patch's pixels (c channels each), stacks them with the RGB
head's logits, and runs three 3x3 convolutions across patch borders; their output is added to the
logits before the sigmoid. The last convolution starts at zero, so a new decoder renders exactly
what the renderer did without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PixelDecoder(nn.Module):
    """Per-pixel features of the target tokens plus the RGB logits -> a correction to the logits."""

    def __init__(self, patch: int, dim: int, channels: int):
        super().__init__()
        self.patch, self.channels = patch, channels
        self.norm = nn.LayerNorm(dim, bias=False)
        self.expand = nn.Linear(dim, patch * patch * channels)
        hidden = 2 * channels
        self.convs = nn.ModuleList([
            nn.Conv2d(channels + 3, hidden, 3, padding=1, padding_mode="replicate"),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"),
            nn.Conv2d(hidden, 3, 3, padding=1, padding_mode="replicate"),
        ])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The last convolution at zero: a new decoder adds nothing."""
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def spread(self, tokens: Tensor) -> Tensor:
        """Target tokens [B, T * L, dim] -> [B, T * L, p * p * c] (unpatchified by the caller)."""
        return self.expand(self.norm(tokens))

    def forward(self, features: Tensor, logits: Tensor) -> Tensor:
        """features [B, T, c, H, W] (:meth:`spread`, unpatchified), logits [B, T, 3, H, W] -> [B, T, 3, H, W]."""
        b, t, _, height, width = logits.shape
        x = torch.cat([features, logits.to(features.dtype)], dim=2).flatten(0, 1)
        for conv in self.convs[:-1]:
            x = F.gelu(conv(x))
        return self.convs[-1](x).reshape(b, t, 3, height, width)
