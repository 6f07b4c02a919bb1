"""Image resizing and cropping that keep cameras consistent with the pixels."""

from __future__ import annotations

import torch
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


def undistort_image(image: Tensor, intrinsics: Tensor, distortion: Tensor) -> Tensor:
    """Remove OpenCV radial/tangential distortion (k1 k2 p1 p2 k3) from one image [3, H, W];
    the result is the pinhole image of the same intrinsics [4] (fx fy cx cy, pixel centres at +0.5).
    Pixels that fall outside the distorted image repeat its border."""
    import cv2
    import numpy as np

    h, w = image.shape[-2:]
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    k = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])  # OpenCV: centres at integers
    map_x, map_y = cv2.initUndistortRectifyMap(k, distortion.double().numpy(), None, k, (w, h), cv2.CV_32FC1)
    planes = image.permute(1, 2, 0).contiguous().float().numpy()
    out = cv2.remap(planes, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out).reshape(h, w, -1).permute(2, 0, 1).to(image.dtype).clamp(0, 1)
