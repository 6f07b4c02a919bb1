"""Carry a renderer's weights to a coarser patch grid (e.g. 8x8 patches at 64 px -> 16x16 at 128 px).

Only the tokenizer's input projection and the RGB head see pixels; everything between them works
on tokens. When the new patch is ``f`` times the old one and images are ``f`` times larger, each
new patch covers what an old patch covered, so the converted model starts where the old one was:
- the embedding averages each ``f x f`` block of fine pixels into the coarse pixel the old weights
  expected (weights repeated over the block, divided by ``f * f``);
- the head paints each coarse output pixel onto its ``f x f`` block (rows repeated).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from nvs.models.checkpoint import Renderer, build_renderer
from nvs.models.lact import PIXEL_CHANNELS


def _upsample_pixels(weight: Tensor, patch: int, factor: int, channels: int, dim: int) -> Tensor:
    """Along ``dim``, features ordered (row, col, channel) on a ``patch`` grid -> a ``patch*factor`` grid."""
    moved = weight.movedim(dim, -1)
    lead = moved.shape[:-1]
    grid = moved.reshape(*lead, patch, 1, patch, 1, channels)
    grid = grid.expand(*lead, patch, factor, patch, factor, channels)
    return grid.reshape(*lead, patch * factor * patch * factor * channels).movedim(-1, dim).contiguous()


def resize_patches(model: Renderer, new_patch: int) -> Renderer:
    """A new renderer with patch size ``new_patch`` (a multiple of the old one), all other weights shared copies."""
    old_patch = model.config.patch_size
    if new_patch % old_patch:
        raise ValueError(f"new patch size {new_patch} is not a multiple of the checkpoint's {old_patch}")
    if model.config.view_blend or model.config.pixel_decoder:
        raise ValueError("only a renderer with the plain RGB head can move to larger patches; this one has a "
                         "view-blending head or a pixel decoder (model config view_blend, pixel_decoder)")
    factor = new_patch // old_patch
    config = dataclasses.replace(model.config, patch_size=new_patch)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    embed = state["tokenizer.embed.weight"]  # [dim, p*p*12]
    state["tokenizer.embed.weight"] = _upsample_pixels(embed, old_patch, factor, PIXEL_CHANNELS, 1) / factor**2
    proj = state["head.proj.weight"]  # [p*p*3, dim]
    state["head.proj.weight"] = _upsample_pixels(proj, old_patch, factor, 3, 0)
    resized = build_renderer(config)
    resized.load_state_dict(state)
    return resized
