"""Scene-frame candidates: similarity transforms (centre, up, scale) tried before adapting.

A renderer trained on one kind of capture expects its cameras in one frame (the object model:
looking at the origin, +z up, at radius 2.7). A new scene's frame is a guess; the candidates here
are scored by leave-one-out PSNR (:mod:`nvs.adaptation.search`) and the best is kept. Moving the
world by a similarity changes no ray's image, so a frame applies to input and target cameras alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.geometry.scene_normalization import OBJECT_CAMERA_RADIUS, SceneNormalization

GIVEN_FRAME = "as given"  # the name of the identity frame: the cameras as the scene came


@dataclass(frozen=True)
class SceneFrame:
    """world' = scale * rotation @ (world - centre). rotation [3, 3], centre [3] (float64 tensors)."""

    name: str
    rotation: Tensor
    centre: Tensor
    scale: float

    @classmethod
    def identity(cls) -> "SceneFrame":
        return cls(GIVEN_FRAME, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 1.0)

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and bool((self.rotation == torch.eye(3, dtype=torch.float64)).all()) \
            and bool((self.centre == 0).all())

    def apply(self, cams: Cameras) -> Cameras:
        """Cameras [...] in this frame (same dtype and device)."""
        if self.is_identity:
            return cams
        c2w = cams.c2w.double().clone()
        rot, centre = self.rotation.to(c2w.device), self.centre.to(c2w.device)
        c2w[..., :3, :3] = rot @ c2w[..., :3, :3]
        c2w[..., :3, 3] = self.scale * (c2w[..., :3, 3] - centre) @ rot.T
        return Cameras(cams.intrinsics, c2w.to(cams.c2w.dtype), cams.height, cams.width)

    def to_tensor(self) -> Tensor:
        """[4, 4] float64 packing: rotation in [:3, :3], centre in [:3, 3], scale in [3, 3]."""
        out = torch.zeros(4, 4, dtype=torch.float64)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.centre
        out[3, 3] = self.scale
        return out

    @classmethod
    def from_tensor(cls, name: str, t: Tensor) -> "SceneFrame":
        t = t.double()
        rot = t[:3, :3]
        if not torch.isfinite(t).all() or float(t[3, 3]) <= 0 or (rot.T @ rot - torch.eye(3, dtype=t.dtype)).abs().max() > 1e-6:
            raise ValueError("scene frame: not a rotation with a positive scale")
        return cls(name, rot.clone(), t[:3, 3].clone(), float(t[3, 3]))


def frame_candidates(cams: Cameras, target_radius: float = OBJECT_CAMERA_RADIUS) -> list[SceneFrame]:
    """The frames to try for input cameras [V]: as given; centred on the point the cameras look at,
    up to +z, at ``target_radius``; and that frame nearer and farther (x 0.8, x 1.25)."""
    out = [SceneFrame.identity()]
    if cams.shape[0] < 2:
        return out
    fitted = SceneNormalization.fit_object(cams.c2w.double(), target_radius)  # world' = scale R^T (world - t)
    rot, centre, base = fitted.frame[:3, :3].T, fitted.frame[:3, 3], float(fitted.scale)
    for name, factor in (("object frame", 1.0), ("object frame, nearer", 0.8), ("object frame, farther", 1.25)):
        out.append(SceneFrame(name, rot, centre, base * factor))
    return out
