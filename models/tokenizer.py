"""Posed images <-> patch tokens: the input embedding and the RGB output head shared by all renderers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.rays import lact_ray_embedding

RAY_CHANNELS = 9  # o, d, o x d
PIXEL_CHANNELS = RAY_CHANNELS + 3  # + RGB * 2 - 1


def patchify(x: Tensor, patch: int) -> Tensor:
    """[B, V, C, H, W] -> [B, V * (H/p) * (W/p), p * p * C], features ordered (row, col, channel)."""
    b, v, c, h, w = x.shape
    x = x.reshape(b, v, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # b v hh ww ph pw c
    return x.reshape(b, v * (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: Tensor, views: int, height: int, width: int, patch: int) -> Tensor:
    """Inverse of :func:`patchify`: [B, V * L, p * p * C] -> [B, V, C, H, W]."""
    b = tokens.shape[0]
    hh, ww = height // patch, width // patch
    c = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(b, views, hh, ww, patch, patch, c)
    x = x.permute(0, 1, 6, 2, 4, 3, 5)  # b v c hh ph ww pw
    return x.reshape(b, views, c, height, width)


def check_cameras(cams: Cameras, batch: int | None, patch: int, name: str) -> None:
    """ValueError unless cams has batch shape [B, V] and a patch-divisible image size."""
    if len(cams.shape) != 2:
        raise ValueError(f"{name} must have batch shape [B, V], got {tuple(cams.shape)}")
    if batch is not None and cams.shape[0] != batch:
        raise ValueError(f"{name} has batch size {cams.shape[0]}, the images have {batch}")
    if cams.shape[1] == 0:
        raise ValueError(f"{name} holds no views")
    if cams.height % patch or cams.width % patch:
        raise ValueError(
            f"{name}: image size {cams.height}x{cams.width} is not divisible by the patch size {patch}; "
            f"resize or crop to a multiple of {patch}"
        )
    cams.validate(name)


def check_images(images: Tensor, cams: Cameras, patch: int) -> None:
    if not isinstance(images, Tensor) or images.ndim != 5 or images.shape[2] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape [B, V, 3, H, W], got {shape}")
    if tuple(images.shape[:2]) != tuple(cams.shape):
        raise ValueError(f"images have batch/views {tuple(images.shape[:2])}, cameras {tuple(cams.shape)}")
    if tuple(images.shape[-2:]) != (cams.height, cams.width):
        raise ValueError(f"images are {tuple(images.shape[-2:])} pixels, cameras say {(cams.height, cams.width)}")
    check_cameras(cams, images.shape[0], patch, "input cameras")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")


class PatchTokenizer(nn.Module):
    """Rays (+ RGB for posed inputs, zeros for targets) -> tokens [B, V * L, dim]."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(PIXEL_CHANNELS * patch * patch, dim, bias=False)
        self.norm = nn.LayerNorm(dim, bias=False)

    def pixel_features(self, cams: Cameras, images: Tensor | None) -> Tensor:
        """[B, V, 12, H, W] float32: rays, then RGB in [-1, 1] (zeros without images)."""
        rays = lact_ray_embedding(cams)
        rgb = images.float() * 2.0 - 1.0 if images is not None else rays.new_zeros(*rays.shape[:-3], 3, *rays.shape[-2:])
        return torch.cat([rays, rgb], dim=-3)

    def forward(self, cams: Cameras, images: Tensor | None = None) -> Tensor:
        feats = patchify(self.pixel_features(cams, images), self.patch)
        return self.norm(self.embed(feats))


class RGBHead(nn.Module):
    """Target tokens [B, T * L, dim] -> images [B, T, 3, H, W] in [0, 1]."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.norm = nn.LayerNorm(dim, bias=False)
        self.proj = nn.Linear(dim, patch * patch * 3, bias=False)

    def forward(self, tokens: Tensor, views: int, height: int, width: int) -> Tensor:
        rgb = torch.sigmoid(self.proj(self.norm(tokens)))
        return unpatchify(rgb, views, height, width, self.patch)
