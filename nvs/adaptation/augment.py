"""Invertible augmentations of a posed scene that keep its geometry consistent.

Each augmentation maps (images [V, 3, H, W], cameras [V]) to a scene that a perfect renderer would
render exactly as the augmented images, and maps a rendering back (``invert_output``):

- ``mirror``: every image flipped left-right, the world reflected in the plane x = 0 and each
  camera reflected with it (``Cameras.mirror``): the ray through the flipped pixel W - 1 - u is
  the reflection of the ray through pixel u. The output is flipped back.
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
from nvs.models.turn_ensemble import turn_about_z

AUGMENTATION_KINDS = ("mirror", "rotate", "reorder", "colour")


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

    def cameras(self, cams: Cameras) -> Cameras:
        """Cameras [N] of the augmented world, turned about z and then mirrored (no re-ordering:
        targets use this too)."""
        turned = turn_about_z(cams, self.angle)
        return turned.mirror() if self.mirror else turned

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
