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


RESIZE_RULES = ("bilinear", "official")


def official_resize_and_crop(images: Tensor, cams: Cameras, height: int, width: int) -> tuple[Tensor, Cameras]:
    """The official LaCT data rule: scale s = max(width / W, height / H); resize each 8-bit image
    to (round(W s), round(H s)) with PIL's Lanczos filter; centre-crop with the left/top offsets
    floor((new - target) / 2); fx, fy *= s and cx, cy = c * s - offset (the focal lengths follow s,
    not the rounded size). images [..., 3, H, W] in [0, 1] (8-bit values) -> [..., 3, height, width]."""
    import numpy as np
    from PIL import Image

    h, w = images.shape[-2:]
    scale = max(width / w, height / h)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    left, top = (new_w - width) // 2, (new_h - height) // 2
    flat = images.reshape(-1, *images.shape[-3:])
    out = []
    for img in flat:
        pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        resized = Image.fromarray(pixels).resize((new_w, new_h), Image.LANCZOS)
        cropped = np.asarray(resized.crop((left, top, left + width, top + height)))
        out.append(torch.from_numpy(cropped.copy()).permute(2, 0, 1).float() / 255.0)
    fx, fy, cx, cy = cams.intrinsics.double().unbind(-1)
    intrinsics = torch.stack([fx * scale, fy * scale, cx * scale - left, cy * scale - top], -1).to(cams.intrinsics.dtype)
    new_cams = Cameras(intrinsics, cams.c2w, height, width)
    return torch.stack(out).reshape(*images.shape[:-2], height, width).to(images.dtype), new_cams


def undistort_as_opencv(image: Tensor, intrinsics: Tensor, distortion: Tensor, new_intrinsics: Tensor) -> Tensor:
    """``cv2.undistort`` of the 8-bit image [3, H, W] from K (``intrinsics`` fx fy cx cy, used as
    OpenCV's matrix unchanged) with ``distortion`` (k1 k2 p1 p2 [k3]) to ``new_intrinsics``: the
    DL3DV converter's step, pixel for pixel. Returns [3, H, W] in [0, 1]."""
    import cv2
    import numpy as np

    def matrix(v: Tensor):
        fx, fy, cx, cy = (float(t) for t in v)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    out = cv2.undistort(pixels, matrix(intrinsics), distortion.double().numpy(), None, matrix(new_intrinsics))
    return torch.from_numpy(out).permute(2, 0, 1).float().div(255.0).to(image.dtype)
