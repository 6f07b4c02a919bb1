"""Leave-one-out tasks built from a scene's own input views.

A task memorises a subset of the training views and renders one other training view, whose
photo is the answer; subsets vary in size, and each task may be seen through a random invertible
augmentation (:mod:`nvs.adaptation.augment`). Views held out to verify or confirm never enter a task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nvs.adaptation.augment import Augmentation, random_augmentation
from nvs.cameras import Cameras


@dataclass
class Task:
    """context images [C, 3, H, W] and cameras [C]; answer image [1, 3, H, W] and camera [1];
    the augmentation they are seen through (the answer is already augmented)."""

    context: Tensor
    context_cams: Cameras
    answer: Tensor
    answer_cams: Cameras
    augmentation: Augmentation


def split_held_out(cams: Cameras, verifier_views: int, confirm_views: int = 0) -> tuple[list[int], list[int], list[int]]:
    """(training, verifier, confirmation) view indices of input cameras [K]. The held-out views are
    those whose centres lie nearest the mean centre, so that they sit between the training views (as
    the views asked of a renderer usually do) rather than at an end of the capture: the nearest
    ``verifier_views`` verify, the next ``confirm_views`` confirm. At least 2 views stay to train on."""
    views = cams.shape[0]
    needed = 2 + 1 + confirm_views
    if views < needed:
        confirm = f", {confirm_views} to confirm" if confirm_views else ""
        raise ValueError(f"adaptation needs at least {needed} input views (2 to learn from, 1 to verify{confirm}), got {views}")
    verifier_views = max(1, min(verifier_views, views - 2 - confirm_views))
    centres = cams.centers.double()
    distance = (centres - centres.mean(0)).norm(dim=-1)
    order = sorted(range(views), key=lambda i: (round(float(distance[i]), 9), i))
    verify = sorted(order[:verifier_views])
    confirm = sorted(order[verifier_views : verifier_views + confirm_views])
    return [i for i in range(views) if i not in verify and i not in confirm], verify, confirm


def sample_task(images: Tensor, cams: Cameras, generator: torch.Generator, augmentations: tuple[str, ...] = (),
                min_context: int = 2, max_context: int | None = None) -> Task:
    """One task from training views images [N, 3, H, W], cams [N]: a random answer view and a
    random context of min_context .. max_context of the others (at most N - 1)."""
    n = images.shape[0]
    if n < 2:
        raise ValueError("a leave-one-out task needs at least 2 training views")
    top = n - 1 if max_context is None else max(1, min(max_context, n - 1))
    low = max(1, min(min_context, top))
    order = torch.randperm(n, generator=generator).tolist()
    size = int(torch.randint(low, top + 1, (1,), generator=generator))
    answer, context = order[0], sorted(order[1 : 1 + size])
    aug = random_augmentation(augmentations, generator, size)
    ctx_images, ctx_cams = aug.inputs(images[context], cams[torch.tensor(context)])
    answer_idx = torch.tensor([answer])
    return Task(ctx_images, ctx_cams, aug.images(images[answer_idx]), aug.cameras(cams[answer_idx]), aug)
