"""Mirror ensembles: a renderer run on a capture as given and on its mirror image, the two renders averaged.

The mirror image of a capture (every photo flipped left to right, the world reflected through the
plane y = 0 of the renderer's frame, which holds its up axis and its centre) is as plausible a
capture as the original: an object renderer trained on models at random orientations has seen
their mirror images as often. It is not equivariant to the reflection, though: its errors on the
mirror image differ from those on the capture, and the mean of the two renders (the mirrored one
flipped back) keeps what they agree on. Unlike another turn of a turn ensemble
(models/turn_ensemble.py), the mirror image also changes what the plane sweep sees (its windows
and its sampling run the other way), so each copy runs the renderer whole. Costs twice the compute
and the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.geometry.cameras import full_precision
from nvs.models.wrapping import RendererWrapper


def mirror_cameras(cams: Cameras) -> Cameras:
    """Cameras [...] of the world reflected through the plane y = 0 that see each image flipped left
    to right: c2w -> M c2w F with M = diag(1, -1, 1) in the world and F = diag(-1, 1, 1) in the
    camera (two reflections: still a rotation), the principal point's x -> width - x. A point p
    seen at pixel (u, v) is seen, reflected, at (width - u, v). Its own inverse."""
    reflect = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=cams.c2w.dtype, device=cams.device))
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=cams.c2w.dtype, device=cams.device))
    intrinsics = cams.intrinsics.clone()
    intrinsics[..., 2] = cams.width - intrinsics[..., 2]
    with full_precision(cams.device):
        return Cameras(intrinsics, reflect @ cams.c2w @ flip, cams.height, cams.width)


@dataclass
class MirroredStates:
    """A capture memorised as given and as its mirror image (:class:`MirrorEnsemble`)."""

    as_given: object
    mirrored: object


class MirrorEnsemble(RendererWrapper):
    """``renderer`` (or a turn ensemble of it) run on the capture as given and on its mirror image
    (:func:`mirror_cameras`, the photos flipped left to right); a rendered pixel is the mean of the
    two. Same memorize / render / forward interface, inference only."""

    def memorize(self, images: Tensor, cams: Cameras) -> MirroredStates:
        """images [B, V, 3, H, W], cams [B, V] -> the wrapped renderer's states of both copies."""
        return MirroredStates(self.renderer.memorize(images, cams),
                              self.renderer.memorize(images.flip(-1), mirror_cameras(cams)))

    def render(self, state: MirroredStates, target_cams: Cameras) -> Tensor:
        """target_cams [B, T] -> images [B, T, 3, H, W]."""
        if not isinstance(state, MirroredStates):
            raise ValueError("state must come from this mirror ensemble's memorize()")
        as_given = self.renderer.render(state.as_given, target_cams)
        mirrored = self.renderer.render(state.mirrored, mirror_cameras(target_cams)).flip(-1)
        return (as_given + mirrored) / 2
