"""Image resizing and cropping that keep cameras consistent with the pixels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nvs.cameras import Cameras


def resize_and_center_crop(images: Tensor, cams: Cameras, height: int, width: int) -> tuple[Tensor, Cameras]:
    """Scale images [..., 3, H, W] to cover height x width (aspect kept), then centre-crop.
    Returns the new images and cameras [...] (intrinsics scaled and shifted accordingly)."""
    h, w = images.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    flat = images.reshape(-1, *images.shape[-3:])
    if (new_h, new_w) != (h, w):
        flat = F.interpolate(flat, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    flat = flat[..., top : top + height, left : left + width]
    cams = cams.resize(new_h, new_w).crop(top, left, height, width)
    return flat.reshape(*images.shape[:-2], height, width), cams
