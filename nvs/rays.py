"""Per-pixel rays and the ray embeddings the renderers consume.

All ray math runs in float32 with autocast disabled: the model is sensitive to pose precision,
and bf16 ray directions would quantise the scene.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nvs.cameras import Cameras


def pixel_directions_camera(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """Unnormalised camera-space directions through pixel centres.

    intrinsics: [..., 4] -> [..., 3, H * W] with z = 1 (pixels in row-major order).
    """
    u = torch.arange(width, device=intrinsics.device).repeat(height)
    v = torch.arange(height, device=intrinsics.device).repeat_interleave(width)
    fx, fy, cx, cy = (t[..., None] for t in intrinsics.unbind(-1))
    x = (u + 0.5 - cx) / fx
    y = (v + 0.5 - cy) / fy
    return torch.stack([x, y, torch.ones_like(x)], dim=-2)


def ray_bundle(cams: Cameras) -> tuple[Tensor, Tensor]:
    """World-space ray origins and unit directions for every pixel.

    Returns (origins, directions), each [..., 3, H, W] (channels first, like images).
    """
    with torch.autocast(device_type=cams.device.type, enabled=False):
        intr = cams.intrinsics.float()
        c2w = cams.c2w.float()
        dirs = c2w[..., :3, :3] @ pixel_directions_camera(intr, cams.height, cams.width)  # [..., 3, HW]
        dirs = dirs / dirs.norm(dim=-2, keepdim=True)
        origins = c2w[..., :3, 3:4].expand_as(dirs)
        shape = (*dirs.shape[:-1], cams.height, cams.width)
        return origins.reshape(shape), dirs.reshape(shape)


def lact_ray_embedding(cams: Cameras) -> Tensor:
    """The 9-channel pose embedding of LaCT/LVSM: [o, d, o x d]. Returns [..., 9, H, W]."""
    origins, dirs = ray_bundle(cams)
    return torch.cat([origins, dirs, torch.linalg.cross(origins, dirs, dim=-3)], dim=-3)


def plucker_embedding(cams: Cameras) -> Tensor:
    """The 6-channel Pluecker coordinates [o x d, d] (moment, direction). Returns [..., 6, H, W]."""
    origins, dirs = ray_bundle(cams)
    return torch.cat([torch.linalg.cross(origins, dirs, dim=-3), dirs], dim=-3)
