"""Mirror ensembles: a renderer run on a capture as given and on its mirror image, the two renders averaged.

The mirror image of a capture (every photo flipped left to right, the world reflected through the
plane x = 0 of the renderer's frame, which holds its up axis and its centre: ``Cameras.mirror``)
is as plausible a capture as the original: an object renderer trained on models at random
orientations has seen their mirror images as often. It is not equivariant to the reflection,
though: its errors on the mirror image differ from those on the capture, and the mean of the two
renders (the mirrored one flipped back) keeps what they agree on. Unlike another turn of a turn
ensemble (models/turn_ensemble.py), the mirror image also changes what the plane sweep sees (its
windows and its sampling run the other way), so each copy runs the renderer whole. Costs twice the
compute and the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from nvs.cameras import Cameras
from nvs.models.wrapping import RendererWrapper


@dataclass
class MirroredStates:
    """A capture memorised as given and as its mirror image (:class:`MirrorEnsemble`)."""

    as_given: object
    mirrored: object


class MirrorEnsemble(RendererWrapper):
    """``renderer`` (or a turn ensemble of it) run on the capture as given and on its mirror image
    (``Cameras.mirror``, the photos flipped left to right); a rendered pixel is the mean of the
    two. Same memorize / render / forward interface, inference only."""

    def memorize(self, images: Tensor, cams: Cameras) -> MirroredStates:
        """images [B, V, 3, H, W], cams [B, V] -> the wrapped renderer's states of both copies."""
        return MirroredStates(self.renderer.memorize(images, cams), self.renderer.memorize(images.flip(-1), cams.mirror()))

    def render(self, state: MirroredStates, target_cams: Cameras) -> Tensor:
        """target_cams [B, T] -> images [B, T, 3, H, W]."""
        if not isinstance(state, MirroredStates):
            raise ValueError("state must come from this mirror ensemble's memorize()")
        as_given = self.renderer.render(state.as_given, target_cams)
        mirrored = self.renderer.render(state.mirrored, target_cams.mirror()).flip(-1)
        return (as_given + mirrored) / 2
