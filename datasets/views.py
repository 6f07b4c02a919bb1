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
from nvs.datasets.formats import list_scenes, load_views, read_scene, scene_name
from nvs.datasets.procedural import generate_scene
from nvs.geometry.scene_normalization import SceneNormalization


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
        """index = epoch * len + item (see nvs.training.sampling); the scene depends on the item only."""
        if index < 0:
            raise IndexError(index)
        index %= self.num_scenes
        views = self.input_views + self.target_views
        s = generate_scene(self.scene, self.seed + index, views, self.height, self.width)
        if self.scene == "room":
            order = spread_order(views, self.input_views)
            return make_sample(s.images[order], s.cameras[order], self.input_views, normalize=True)
        return make_sample(s.images, s.cameras, self.input_views, normalize=False)


class MixedViews(Dataset):
    """A file data set with procedural scenes mixed in: items [0, len(files)) are the files' scenes,
    the rest procedural ones, sized so that ``fraction`` of uniformly drawn items are procedural.

    Both parts must give samples of the same size and layout (views, height, width).
    """

    def __init__(self, files: Dataset, procedural: ProceduralViews, fraction: float):
        if not 0 < fraction < 1:
            raise ValueError(f"the procedural fraction must be in (0, 1), got {fraction}")
        self.files, self.procedural = files, procedural
        self.procedural_items = max(1, round(len(files) * fraction / (1 - fraction)))

    def __len__(self) -> int:
        return len(self.files) + self.procedural_items

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        """index = epoch * len + item, as for the other data sets."""
        if index < 0:
            raise IndexError(index)
        epoch, item = divmod(index, len(self))
        if item < len(self.files):
            return self.files[epoch * len(self.files) + item]
        # a new procedural scene every epoch: the procedural set is far larger than one epoch's share
        return self.procedural[epoch * self.procedural_items + item - len(self.files)]


SELECTIONS = ("random", "first", "spread", "gap")


def _gap_window(num_views: int, n_inputs: int, n_targets: int, frame_gap: tuple[int, int], generator) -> tuple[list[int], list[int]]:
    """Video data (LVSM's RealEstate10K sampling): a window of ``gap`` frames, gap drawn from
    frame_gap (clamped to the sequence); the first and last frames of the window are inputs, the
    other inputs and the targets are drawn from inside it."""
    lo, hi = frame_gap
    if not 1 <= lo <= hi:
        raise ValueError(f"frame_gap must be 1 <= min <= max, got {frame_gap}")
    hi = min(hi, num_views - 1)
    lo = min(max(lo, n_inputs + (n_targets or 1) - 1), hi)
    gap = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    start = int(torch.randint(0, num_views - gap, (1,), generator=generator))
    inner = (start + 1 + torch.randperm(gap - 1, generator=generator)).tolist()
    inputs = sorted([start, start + gap] + inner[: n_inputs - 2]) if n_inputs >= 2 else [start]
    rest = [i for i in inner if i not in inputs] if n_inputs >= 2 else [start + gap] + inner
    return inputs, rest


def select_views(num_views: int, n_inputs: int, n_targets: int, selection: str, generator: torch.Generator | None = None,
                 where: str = "scene", frame_gap: tuple[int, int] = (25, 192)) -> tuple[list[int], list[int]]:
    """Input and target view indices. random: a random subset; first: the first n_inputs as inputs,
    the rest as targets; spread: inputs evenly spaced over the views, the others targets; gap: a
    window of frame_gap frames of a video (see _gap_window). n_targets = 0 means all remaining views."""
    if num_views < n_inputs + 1:
        raise ValueError(f"{where}: {num_views} views, need at least {n_inputs + 1} ({n_inputs} inputs + 1 target)")
    if selection == "gap":
        inputs, rest = _gap_window(num_views, n_inputs, n_targets, frame_gap, generator)
    elif selection == "random":
        perm = torch.randperm(num_views, generator=generator).tolist()
        inputs, rest = perm[:n_inputs], perm[n_inputs:]
    elif selection == "first":
        inputs, rest = list(range(n_inputs)), list(range(n_inputs, num_views))
    elif selection == "spread":
        order = spread_order(num_views, n_inputs).tolist()
        inputs, rest = order[:n_inputs], order[n_inputs:]
    else:
        raise ValueError(f"unknown view selection {selection!r}; choose one of {SELECTIONS}")
    return inputs, rest[:n_targets] if n_targets else rest


def read_eval_index(path) -> dict[str, dict[str, list[int]]]:
    """The pixelSplat evaluation index: {scene: {"context": [i, j], "target": [...]}} (null = skip)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable evaluation index ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an evaluation index maps scene names to {{context, target}}")
    out = {}
    for scene, entry in data.items():
        if entry is None:
            continue
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), list) for k in ("context", "target")):
            raise ValueError(f"{path}: scene '{scene}' needs 'context' and 'target' lists")
        out[scene] = {"context": [int(i) for i in entry["context"]], "target": [int(i) for i in entry["target"]]}
    return out


class FileViews(Dataset):
    """Scenes of a data set on disk (formats of nvs.datasets.formats) as samples.

    Items are addressed as epoch * len + item (see nvs.training.sampling); random selection is
    seeded by (seed, item, epoch): deterministic, and other views each epoch. ``index``
    (pixelSplat evaluation JSON) fixes inputs and targets per scene.
    ``normalize`` re-expresses cameras in the mean input camera's frame (scene-level data);
    ``selection="gap"`` samples windows of ``frame_gap`` frames (video data).
    """

    def __init__(self, root, input_views: int, target_views: int, height: int, width: int, selection: str = "random",
                 seed: int = 0, index=None, normalize: bool = False, frame_gap: tuple[int, int] = (25, 192)):
        self.format, self.scene_files = list_scenes(root)
        self.frame_gap = tuple(frame_gap)
        self.input_views, self.target_views, self.height, self.width = input_views, target_views, height, width
        self.selection, self.seed, self.normalize = selection, seed, normalize
        self.index = read_eval_index(index) if index is not None else None
        if self.index is not None:
            names = {scene_name(self.format, p): p for p in self.scene_files}
            missing = sorted(set(self.index) - set(names))
            if missing:
                raise ValueError(f"{index}: names scenes that are not in {root}: {missing[:10]}")
            self.scene_files = [names[n] for n in self.index]

    def __len__(self) -> int:
        return len(self.scene_files)

    def record(self, i: int):
        return read_scene(self.format, self.scene_files[i])

    def name(self, i: int) -> str:
        """Scene name of item i, from its file reference (no reading)."""
        return scene_name(self.format, self.scene_files[i])

    def views(self, i: int, rec, epoch: int = 0) -> tuple[list[int], list[int]]:
        """(input, target) view indices of item i, whose record is ``rec``."""
        n = rec.cameras.shape[0]
        if self.index is not None:
            entry = self.index[self.name(i)]
            bad = [v for v in entry["context"] + entry["target"] if not 0 <= v < n]
            if bad:
                raise ValueError(f"scene '{rec.name}': index names views {bad} but the scene has {n}")
            return entry["context"], entry["target"]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i * 7919 + epoch)
        return select_views(n, self.input_views, self.target_views, self.selection, g, f"scene '{rec.name}'", self.frame_gap)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        epoch, i = divmod(index, len(self))
        rec = self.record(i)
        inputs, targets = self.views(i, rec, epoch)
        images, cams = load_views(rec, inputs + targets, self.height, self.width)
        return make_sample(images, cams, len(inputs), self.normalize)
