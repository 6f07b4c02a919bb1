"""Turn ensembles: one renderer run in several copies of its world turned about +z, merged per pixel.

An object renderer is trained at random azimuths in a frame whose up axis is +z through the
object's centre (the ``object`` normalisation), but it is not exactly equivariant to turns about
that axis: its errors change from one turn of the world to the next while the object does not.
Memorising and rendering a capture in ``turns`` equally spaced turns and taking each pixel's
median keeps what the copies agree on. Costs ``turns`` times the compute and the state. A plane
sweep (models/plane_sweep.py), which matches the photos and does not depend on the frame, runs
once, on the median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.geometry.cameras import full_precision


def turn_about_z(cams: Cameras, angle: float) -> Cameras:
    """Cameras [...] of the world turned by ``angle`` radians about the z axis through the origin,
    in the cameras' dtype also under autocast (a bfloat16 product is no longer a rotation)."""
    turn = torch.eye(4, dtype=cams.c2w.dtype, device=cams.c2w.device)
    c, s = math.cos(angle), math.sin(angle)
    turn[0, 0], turn[0, 1], turn[1, 0], turn[1, 1] = c, -s, s, c
    with full_precision(cams.device):
        return Cameras(cams.intrinsics, turn @ cams.c2w, cams.height, cams.width)


@dataclass
class TurnedStates:
    """One memorised state per turn of the world (see :class:`TurnEnsemble`)."""

    states: list


class TurnEnsemble(nn.Module):
    """``renderer`` run in ``turns`` copies of the world turned about +z by multiples of 360 / turns
    degrees; a rendered pixel is the (lower) median of its copies. Same memorize / render /
    forward interface as the renderer, inference only."""

    def __init__(self, renderer: nn.Module, turns: int):
        super().__init__()
        if turns < 2:
            raise ValueError(f"a turn ensemble needs at least 2 turns, got {turns}")
        self.renderer, self.turns = renderer, turns

    @property
    def angles(self) -> list[float]:
        return [2 * math.pi * k / self.turns for k in range(self.turns)]

    # what callers read off a renderer
    @property
    def config(self):
        return self.renderer.config

    @property
    def normalization(self):
        return getattr(self.renderer, "normalization", None)

    @property
    def source_format(self):
        return getattr(self.renderer, "source_format", "")

    def set_memory_budget(self, budget) -> None:
        if hasattr(self.renderer, "set_memory_budget"):
            self.renderer.set_memory_budget(budget)

    def memorize(self, images: Tensor, cams: Cameras) -> TurnedStates:
        """images [B, V, 3, H, W], cams [B, V] -> one state per turn (the first turn's sweep ranges,
        exposure gains and sweep features serve them all: they depend on the photos, not on the frame)."""
        first = self.renderer.memorize(images, cams)
        found = {key: getattr(first, key) for key in ("sweep_ranges", "exposure_gains", "sweep_features")
                 if getattr(first, key, None) is not None}
        return TurnedStates([first] + [self.renderer.memorize(images, turn_about_z(cams, a), **found) for a in self.angles[1:]])

    def render(self, state: TurnedStates, target_cams: Cameras) -> Tensor:
        """target_cams [B, T] -> images [B, T, 3, H, W], each pixel the median over the turns."""
        if not isinstance(state, TurnedStates) or len(state.states) != self.turns:
            raise ValueError("state must come from this turn ensemble's memorize()")
        sweep = getattr(self.renderer, "sweep", None)
        options = {} if sweep is None else {"sweep": False}
        renders = [self.renderer.render(s, turn_about_z(target_cams, a), **options)
                   for s, a in zip(state.states, self.angles)]
        median = torch.stack(renders).median(dim=0).values
        if sweep is None:
            return median
        first = state.states[0]  # the world as given (angle 0)
        return sweep(median, target_cams, *first.sources, first.sweep_ranges, features=first.sweep_features)

    def forward(self, images: Tensor, cams: Cameras, target_cams: Cameras) -> Tensor:
        return self.render(self.memorize(images, cams), target_cams)
