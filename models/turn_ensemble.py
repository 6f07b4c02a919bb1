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

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvs.cameras import Cameras
from nvs.geometry.cameras import full_precision
from nvs.models.fast_weight import FastWeights
from nvs.models.wrapping import RendererWrapper


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
    """One memorised state per turn of the world (see :class:`TurnEnsemble`), and, for a LaCT
    renderer, ``joined``: the turns' fast weights stacked turn-major on the batch axis (turns x B),
    of which each turn's own are views, so that the turns render in one batched call."""

    states: list
    joined: object | None = None


class TurnEnsemble(RendererWrapper):
    """``renderer`` run in ``turns`` copies of the world turned about +z by multiples of 360 / turns
    degrees; a rendered pixel is the (lower) median of its copies. Same memorize / render /
    forward interface as the renderer, inference only."""

    def __init__(self, renderer: nn.Module, turns: int):
        super().__init__(renderer)
        if turns < 2:
            raise ValueError(f"a turn ensemble needs at least 2 turns, got {turns}")
        self.turns = turns

    @property
    def angles(self) -> list[float]:
        return [2 * math.pi * k / self.turns for k in range(self.turns)]

    def memorize(self, images: Tensor, cams: Cameras) -> TurnedStates:
        """images [B, V, 3, H, W], cams [B, V] -> one state per turn (the first turn's sweep ranges,
        exposure gains and sweep features serve them all: they depend on the photos, not on the frame).

        A LaCT renderer's fast weights are copied turn by turn into one stack (``joined``), and
        each turn keeps views of its part: the same memory as separate states."""
        first = self.renderer.memorize(images, cams)
        found = {key: getattr(first, key) for key in ("sweep_ranges", "exposure_gains", "sweep_features")
                 if getattr(first, key, None) is not None}
        # a view-blending head samples each turn's own inputs when it decodes: those turns render one by one
        joinable = hasattr(first, "layers") and getattr(self.renderer, "view_blend", None) is None
        batch = cams.shape[0]
        stack = [FastWeights(*(w.new_empty(self.turns * batch, *w.shape[1:]) for w in (fw.w0, fw.w1, fw.w2)))
                 for fw in first.layers] if joinable else None
        states = []
        for k, angle in enumerate(self.angles):
            state = first if k == 0 else self.renderer.memorize(images, turn_about_z(cams, angle), **found)
            if stack is not None:
                part = slice(k * batch, (k + 1) * batch)
                for own, joined in zip(state.layers, stack):
                    for w, into in zip((own.w0, own.w1, own.w2), (joined.w0, joined.w1, joined.w2)):
                        into[part] = w
                state = dataclasses.replace(state, layers=[FastWeights(j.w0[part], j.w1[part], j.w2[part]) for j in stack])
            states.append(state)
        joined = None if stack is None else dataclasses.replace(first, layers=stack, sources=None, sweep_ranges=None,
                                                                exposure_gains=None, sweep_features=None)
        return TurnedStates(states, joined)

    def render(self, state: TurnedStates, target_cams: Cameras) -> Tensor:
        """target_cams [B, T] -> images [B, T, 3, H, W], each pixel the median over the turns."""
        if not isinstance(state, TurnedStates) or len(state.states) != self.turns:
            raise ValueError("state must come from this turn ensemble's memorize()")
        sweep = getattr(self.renderer, "sweep", None)
        options = {} if sweep is None else {"sweep": False}
        turned = [turn_about_z(target_cams, a) for a in self.angles]
        if state.joined is not None:  # one call for every turn: [turns * B, T, 3, H, W]
            renders = self.renderer.render(state.joined, Cameras.cat(turned), **options)
            renders = renders.unflatten(0, (self.turns, target_cams.shape[0]))
        else:
            renders = torch.stack([self.renderer.render(s, t, **options) for s, t in zip(state.states, turned)])
        median = renders.median(dim=0).values
        if sweep is None:
            return median
        first = state.states[0]  # the world as given (angle 0)
        prior = median[:, :, 3:] if median.shape[2] > 3 else None  # distances along a ray: unchanged by a turn
        out = sweep(median[:, :, :3], target_cams, *first.sources, first.sweep_ranges, features=first.sweep_features,
                    prior_depth=prior)
        return self.renderer.on_backdrop(out, first.exposure_gains)
