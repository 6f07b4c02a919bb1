"""Invertible augmentations of a posed scene that keep its geometry consistent.

Each augmentation maps (images [V, 3, H, W], cameras [V]) to a scene that a perfect renderer would
render exactly as the augmented images, and maps a rendering back (``invert_output``):

- ``mirror``: every image flipped left-right, the world reflected in the plane x = 0 and each
  camera reflected with it. For a reflection M (world) and F = diag(-1, 1, 1) (camera x axis),
  c2w' = M c2w F is again a rotation, and with cx' = W - cx the ray through the flipped pixel
  W - 1 - u is exactly M applied to the ray through pixel u. The output is flipped back.
- ``rotate``: the whole world turned about its z axis by an angle; images unchanged.
- ``reorder``: the input views permuted (the renderer sums over views, so this checks invariance).
- ``colour``: the colour channels permuted; the output is permuted back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nvs.cameras import Cameras

AUGMENTATION_KINDS = ("mirror", "rotate", "reorder", "colour")
_CAMERA_FLIP = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
_WORLD_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))


def rotation_about_z(angle: float) -> Tensor:
    """A 4x4 world rotation about +z by ``angle`` radians (float64)."""
    c, s = math.cos(angle), math.sin(angle)
    out = torch.eye(4, dtype=torch.float64)
    out[0, 0], out[0, 1], out[1, 0], out[1, 1] = c, -s, s, c
    return out


def _transform_c2w(c2w: Tensor, world: Tensor, camera: Tensor | None = None) -> Tensor:
    out = world.to(c2w.device) @ c2w.double()
    if camera is not None:
        out = out @ camera.to(c2w.device)
    return out.to(c2w.dtype)


@dataclass(frozen=True)
class Augmentation:
    """One invertible augmentation. ``mirror``: bool; ``angle``: world rotation about z in radians;
    ``channels``: a permutation of (0, 1, 2); ``order``: a permutation of the input views or None."""

    mirror: bool = False
    angle: float = 0.0
    channels: tuple[int, int, int] = (0, 1, 2)
    order: tuple[int, ...] | None = None

    @property
    def is_identity(self) -> bool:
        return not self.mirror and self.angle == 0.0 and self.channels == (0, 1, 2) and self.order is None

    def world(self) -> Tensor:
        """The 4x4 world map (rotation, then reflection), float64."""
        rot = rotation_about_z(self.angle)
        return _WORLD_MIRROR @ rot if self.mirror else rot

    def cameras(self, cams: Cameras) -> Cameras:
        """Cameras [N] of the augmented world (no re-ordering: targets use this too)."""
        c2w = _transform_c2w(cams.c2w, self.world(), _CAMERA_FLIP if self.mirror else None)
        intr = cams.intrinsics
        if self.mirror:
            intr = intr.clone()
            intr[..., 2] = cams.width - intr[..., 2]
        return Cameras(intr, c2w, cams.height, cams.width)

    def images(self, images: Tensor) -> Tensor:
        """Images [..., 3, H, W] as the augmented world shows them."""
        out = images[..., list(self.channels), :, :]
        return out.flip(-1) if self.mirror else out

    def invert_output(self, images: Tensor) -> Tensor:
        """A rendering [..., 3, H, W] of the augmented world -> the same rendering of the original."""
        out = images.flip(-1) if self.mirror else images
        inverse = [self.channels.index(c) for c in range(3)]
        return out[..., inverse, :, :]

    def inputs(self, images: Tensor, cams: Cameras) -> tuple[Tensor, Cameras]:
        """Input views [V, 3, H, W] and cameras [V] of the augmented scene, re-ordered if asked."""
        images, cams = self.images(images), self.cameras(cams)
        if self.order is not None:
            idx = torch.tensor(self.order)
            images, cams = images[idx], cams[idx]
        return images, cams


def random_augmentation(kinds: tuple[str, ...], generator: torch.Generator, views: int) -> Augmentation:
    """A random augmentation using the named ``kinds`` (a subset of AUGMENTATION_KINDS)."""
    unknown = sorted(set(kinds) - set(AUGMENTATION_KINDS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; choose from {AUGMENTATION_KINDS}")
    draw = torch.rand(4, generator=generator)
    mirror = "mirror" in kinds and bool(draw[0] < 0.5)
    angle = float(draw[1]) * 2 * math.pi if "rotate" in kinds else 0.0
    channels = (0, 1, 2)
    if "colour" in kinds:
        channels = tuple(int(c) for c in torch.randperm(3, generator=generator))
    order = tuple(int(i) for i in torch.randperm(views, generator=generator)) if "reorder" in kinds else None
    return Augmentation(mirror, angle, channels, order)  # type: ignore[arg-type]
