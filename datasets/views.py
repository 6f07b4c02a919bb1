"""One sample interface over all data sources: (input views, target views) of one scene.

A sample is a dict of tensors (default-collatable):
  inputs [V, 3, H, W], input_intrinsics [V, 4], input_c2w [V, 4, 4],
  targets [T, 3, H, W], target_intrinsics [T, 4], target_c2w [T, 4, 4].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from nvs.cameras import Cameras
from nvs.datasets.procedural import generate_scene
from nvs.scene_normalization import SceneNormalization


def make_sample(images: Tensor, cams: Cameras, n_inputs: int, normalize: bool) -> dict[str, Tensor]:
    """Split views [V] into the first n_inputs as inputs and the rest as targets."""
    c2w = cams.c2w.float()
    if normalize:
        c2w = SceneNormalization.fit(c2w[:n_inputs]).apply(c2w)
    return {
        "inputs": images[:n_inputs], "input_intrinsics": cams.intrinsics[:n_inputs].float(), "input_c2w": c2w[:n_inputs],
        "targets": images[n_inputs:], "target_intrinsics": cams.intrinsics[n_inputs:].float(), "target_c2w": c2w[n_inputs:],
    }


def spread_order(views: int, n_inputs: int) -> Tensor:
    """A view order whose first n_inputs are evenly spaced over a clip (both ends included),
    followed by the remaining frames (the targets lie between inputs, as in RealEstate10K)."""
    inputs = torch.linspace(0, views - 1, n_inputs).round().long().unique()
    rest = torch.tensor([i for i in range(views) if i not in set(inputs.tolist())], dtype=torch.long)
    return torch.cat([inputs, rest])


def batch_cameras(batch: dict[str, Tensor], prefix: str) -> Cameras:
    """Cameras [B, V] of a collated batch (``prefix`` is 'input' or 'target')."""
    images = batch["inputs" if prefix == "input" else "targets"]
    return Cameras(batch[f"{prefix}_intrinsics"], batch[f"{prefix}_c2w"], images.shape[-2], images.shape[-1])


class ProceduralViews(Dataset):
    """Procedural scenes: item i is the scene with seed ``seed + i``; rooms are normalised
    (LVSM convention), objects stay in their canonical frame (radius 2.7, like the LaCT data)."""

    def __init__(self, scene: str, num_scenes: int, input_views: int, target_views: int, height: int, width: int, seed: int = 0):
        self.scene, self.num_scenes, self.seed = scene, num_scenes, seed
        self.input_views, self.target_views, self.height, self.width = input_views, target_views, height, width

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.num_scenes:
            raise IndexError(index)
        views = self.input_views + self.target_views
        s = generate_scene(self.scene, self.seed + index, views, self.height, self.width)
        if self.scene == "room":
            order = spread_order(views, self.input_views)
            return make_sample(s.images[order], s.cameras[order], self.input_views, normalize=True)
        return make_sample(s.images, s.cameras, self.input_views, normalize=False)
