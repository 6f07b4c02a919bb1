"""What every renderer shares: config, tokenizer, RGB head, input checks, init, checkpointing."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nvs.cameras import Cameras
from nvs.models.config import ModelConfig
from nvs.models.tokenizer import PatchTokenizer, RGBHead, check_cameras, check_images


class RendererBase(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = PatchTokenizer(config.patch_size, config.dim)
        self.head = RGBHead(config.patch_size, config.dim)
        self.grad_checkpointing = False

    def init_weights(self, modules_per_block: int) -> None:
        """GPT-2 style: Linear ~ N(0, 0.02), residual projections scaled by depth."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        depth = modules_per_block * self.config.layers
        for name, p in self.named_parameters():
            if name.startswith("blocks.") and name.endswith(".proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(depth))

    def run_block(self, block: nn.Module, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def tokens_per_view(self, cams: Cameras) -> int:
        return (cams.height // self.config.patch_size) * (cams.width // self.config.patch_size)

    def check_inputs(self, images: Tensor, cams: Cameras) -> None:
        check_images(images, cams, self.config.patch_size)

    def check_targets(self, target_cams: Cameras, batch: int) -> None:
        check_cameras(target_cams, batch, self.config.patch_size, "target cameras")

    def decode(self, tokens: Tensor, target_cams: Cameras) -> Tensor:
        return self.head(tokens, target_cams.shape[1], target_cams.height, target_cams.width)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
