"""One sample interface over all data sources: (input views, target views) of one scene.

A sample is a dict of tensors (default-collatable):
  inputs [V, 3, H, W], input_intrinsics [V, 4], input_c2w [V, 4, 4],
  targets [T, 3, H, W], target_intrinsics [T, 4], target_c2w [T, 4, 4],
  and where depth is asked for, target_depth [T, 1, H, W] (z-depth, 0 = no surface).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from nvs.cameras import Cameras
from nvs.datasets.formats import list_scenes, load_depths, load_views, read_scene, scene_name
from nvs.datasets.procedural import generate_scene
from nvs.geometry.scene_normalization import fit_views


def make_sample(images: Tensor, cams: Cameras, n_inputs: int, normalize: bool | str,
                target_depths: Tensor | None = None) -> dict[str, Tensor]:
    """Split views [V] into the first n_inputs as inputs and the rest as targets. ``normalize``:
    a rule of :data:`~nvs.geometry.scene_normalization.NORMALIZATIONS` (True means ``lvsm``).
    ``target_depths`` [T, 1, H, W] (z-depth, 0 = no surface) become ``target_depth``, in the
    normalised frame's units."""
    rule = ("lvsm" if normalize else "none") if isinstance(normalize, bool) else normalize
    c2w = cams.c2w.float()
    norm = fit_views(rule, c2w[:n_inputs], c2w[n_inputs:])
    if norm is not None:
        c2w = torch.cat([norm.apply(c2w[:n_inputs]), norm.apply(c2w[n_inputs:])], dim=0)
    sample = {
        "inputs": images[:n_inputs], "input_intrinsics": cams.intrinsics[:n_inputs].float(), "input_c2w": c2w[:n_inputs],
        "targets": images[n_inputs:], "target_intrinsics": cams.intrinsics[n_inputs:].float(), "target_c2w": c2w[n_inputs:],
    }
    if target_depths is not None:
        depth = target_depths.float()
        sample["target_depth"] = depth if norm is None else depth * norm.scale.float()
    return sample


def known_depth(depth: Tensor) -> Tensor:
    """z-depth with inf or nan (no surface) as 0, the on-disk and in-sample convention."""
    return torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))


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

    def __init__(self, scene: str, num_scenes: int, input_views: int, target_views: int, height: int, width: int, seed: int = 0,
                 depth: bool = False):
        self.scene, self.num_scenes, self.seed, self.depth = scene, num_scenes, seed, depth
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
        order = spread_order(views, self.input_views) if self.scene == "room" else torch.arange(views)
        depths = known_depth(s.depth[order[self.input_views:]]) if self.depth else None
        return make_sample(s.images[order], s.cameras[order], self.input_views, normalize=self.scene == "room",
                           target_depths=depths)


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


SELECTIONS = ("random", "first", "spread", "gap", "official", "kmeans")
OFFICIAL_SEED = 95  # the official LaCT inference seeds Python's random and torch with it


class OfficialSampler:
    """The view choice of the official LaCT inference, one instance per evaluation run.

    Per scene, in data-set order: ``num_all = inputs + targets`` frames are drawn with Python's
    ``random.sample`` from a generator seeded at 95 once for the whole run (so a scene's frames
    depend on the scenes before it), sorted by frame index (scene mode), and a ``torch.randperm``
    of the ``num_all`` positions (a torch generator seeded at 95 once per run) puts the first
    ``inputs`` of them into the inputs, the others into the targets, in that permuted order.
    The official run draws its permutation from torch's global generator after initialising the
    model, so the split of a given scene can differ from the official run's; the sampled frames
    are the same when the scenes are visited in the same order.
    """

    def __init__(self, seed: int = OFFICIAL_SEED):
        self.frames_rng = random.Random(seed)
        self.split_rng = torch.Generator().manual_seed(seed)

    def select(self, num_views: int, n_inputs: int, n_targets: int, where: str = "scene") -> tuple[list[int], list[int]]:
        """(inputs, targets) frame indices; ``n_targets`` 0 samples every frame."""
        num_all = n_inputs + n_targets if n_targets else num_views
        if num_all > num_views or num_all <= n_inputs:
            raise ValueError(f"{where}: {num_views} views, the official sampling needs {n_inputs} inputs + "
                             f"{max(n_targets, 1)} targets")
        frames = sorted(self.frames_rng.sample(range(num_views), num_all))
        perm = torch.randperm(num_all, generator=self.split_rng).tolist()
        return [frames[j] for j in perm[:n_inputs]], [frames[j] for j in perm[n_inputs:]]


def kmeans(points: Tensor, k: int, seed: int = 0, iterations: int = 300) -> Tensor:
    """Lloyd's k-means with k-means++ seeding from ``torch.Generator().manual_seed(seed)``:
    points [N, D] -> centroids [k, D] (float64). Deterministic; an emptied cluster takes the point
    farthest from its centroid."""
    x = points.double()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} points, got k={k}")
    g = torch.Generator().manual_seed(seed)
    centroids = [x[int(torch.randint(n, (1,), generator=g))]]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centroids)).square().amin(1)
        if float(d2.sum()) == 0.0:  # all remaining points coincide with a centroid
            idx = int(torch.randint(n, (1,), generator=g))
        else:
            idx = int(torch.multinomial(d2 / d2.sum(), 1, generator=g))
        centroids.append(x[idx])
    c = torch.stack(centroids)
    assign = None
    for _ in range(iterations):
        dist = torch.cdist(x, c)
        new_assign = dist.argmin(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
            else:
                far = int(dist.gather(1, assign[:, None]).squeeze(1).argmax())
                c[j], assign[far] = x[far], j
    return c


def kmeans_views(c2w: Tensor, n_inputs: int, target_every: int = 8, seed: int = 0) -> tuple[list[int], list[int]]:
    """The Long-LRM evaluation protocol (LaCT's DL3DV numbers): targets are every ``target_every``-th
    frame (0, 8, 16, ...); the inputs are, for each centroid of a k-means (k = n_inputs, seed 0)
    over [camera centre, forward axis] of the other frames, the frame nearest to it (each frame
    at most once). c2w [N, 4, 4] -> (sorted inputs, targets)."""
    num_views = c2w.shape[0]
    targets = list(range(0, num_views, target_every))
    rest = [i for i in range(num_views) if i % target_every]
    if len(rest) < n_inputs:
        raise ValueError(f"{num_views} views leave {len(rest)} non-target frames, fewer than {n_inputs} inputs")
    features = torch.cat([c2w[rest, :3, 3], c2w[rest, :3, 2]], dim=-1).double()
    dist = torch.cdist(kmeans(features, n_inputs, seed), features)
    chosen: list[int] = []
    for row in dist:
        order = row.argsort().tolist()
        chosen.append(next(j for j in order if j not in chosen))
    return sorted(rest[j] for j in chosen), targets


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
    if selection in ("official", "kmeans"):
        raise ValueError(f"view selection {selection!r} needs the scene's cameras or a run-wide sampler: "
                         "use OfficialSampler / kmeans_views (FileViews does)")
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
        views = entry["context"] + entry["target"]
        if not entry["context"] or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in views):
            raise ValueError(f"{path}: scene '{scene}' needs at least one context view, and views as whole numbers "
                             f">= 0, got {entry!r}"[:300])
        out[scene] = {"context": list(entry["context"]), "target": list(entry["target"])}
    return out


def _list_data_sets(root) -> tuple[str, list]:
    """(format, scene references) of one data set, or of several (a list or tuple) read as one:
    their scenes in the order given; they must share a format."""
    if isinstance(root, (str, Path)):
        return list_scenes(root)
    if not root:
        raise ValueError("no data set given: the list of data sets is empty")
    listed = [(path, *list_scenes(path)) for path in root]
    formats = {fmt for _, fmt, _ in listed}
    if len(formats) > 1:
        raise ValueError("data sets read as one must share a format; these hold "
                         + ", ".join(f"{path}: {fmt}" for path, fmt, _ in listed))
    return listed[0][1], [ref for _, _, refs in listed for ref in refs]


class FileViews(Dataset):
    """Scenes of a data set on disk (formats of nvs.datasets.formats) as samples; ``root`` may also
    be a list of data sets of one format, read as one.

    Items are addressed as epoch * len + item (see nvs.training.sampling); random selection is
    seeded by (seed, item, epoch): deterministic, and other views each epoch. ``index``
    (pixelSplat evaluation JSON) fixes inputs and targets per scene.
    ``normalize`` re-expresses cameras by a named rule (``lact``, ``lvsm``, ``none``; True means
    ``lvsm``); ``selection="gap"`` samples windows of ``frame_gap`` frames (video data);
    ``"official"`` is the seeded sampling of the official LaCT inference (run-wide, in scene order:
    reading item i first samples the scenes before it); ``"kmeans"`` the Long-LRM protocol. ``resize``: ``bilinear``
    (antialiased) or ``official`` (PIL Lanczos, the official rule). ``depth``: samples also hold
    ``target_depth`` (the lact layout's depth maps, see :func:`~nvs.datasets.formats.load_depths`).
    ``chosen`` records the views each read item used, in the evaluation-index layout.
    """

    def __init__(self, root, input_views: int, target_views: int, height: int, width: int, selection: str = "random",
                 seed: int = 0, index=None, normalize: bool | str = False, frame_gap: tuple[int, int] = (25, 192),
                 resize: str = "bilinear", depth: bool = False):
        self.format, self.scene_files = _list_data_sets(root)
        self.depth = depth
        self.frame_gap = tuple(frame_gap)
        self.input_views, self.target_views, self.height, self.width = input_views, target_views, height, width
        if selection not in SELECTIONS:
            raise ValueError(f"unknown view selection {selection!r}; choose one of {SELECTIONS}")
        self.selection, self.seed, self.normalize, self.resize = selection, seed, normalize, resize
        self.chosen: dict[str, dict[str, list[int]]] = {}
        self._official: list[tuple[list[int], list[int]]] = []
        self._official_sampler = OfficialSampler()
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
        if self.selection == "kmeans":
            inputs, targets = kmeans_views(rec.cameras.c2w, self.input_views)
            return inputs, targets[: self.target_views] if self.target_views else targets
        if self.selection == "official":
            while len(self._official) <= i:  # the run-wide generator visits scenes in order
                j = len(self._official)
                count = n if j == i else self.record(j).cameras.shape[0]
                self._official.append(self._official_sampler.select(count, self.input_views, self.target_views,
                                                                    f"scene '{self.name(j)}'"))
            return self._official[i]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i * 7919 + epoch)
        return select_views(n, self.input_views, self.target_views, self.selection, g, f"scene '{rec.name}'", self.frame_gap)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        epoch, i = divmod(index, len(self))
        rec = self.record(i)
        inputs, targets = self.views(i, rec, epoch)
        self.chosen[self.name(i)] = {"context": list(inputs), "target": list(targets)}
        images, cams = load_views(rec, inputs + targets, self.height, self.width, resize=self.resize)
        depths = load_depths(rec, targets, self.height, self.width) if self.depth else None
        return make_sample(images, cams, len(inputs), self.normalize, target_depths=depths)
