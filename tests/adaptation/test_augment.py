"""Augmentations are exact: a ray-cast render of the augmented world at the augmented cameras,
mapped back, is the render of the original world; each map's inverse undoes it."""

import copy
import math

import torch

from nvs.adaptation.augment import Augmentation, random_augmentation
from nvs.datasets.procedural import _rng, object_cameras, object_primitives, render_primitives


def _world(seed: int):
    g = _rng(seed)
    prims = object_primitives(g)
    light = torch.nn.functional.normalize(torch.randn(3, generator=g) + torch.tensor([0.0, 0.0, 1.5]), dim=0)
    return prims, light, object_cameras(_rng(seed + 1), 3, 48, 64)


def _world_map(aug: Augmentation) -> torch.Tensor:
    """The augmentation's map of the world [3, 3], written out here: a turn about z by its angle,
    then, if it mirrors, the reflection through x = 0."""
    c, s = math.cos(aug.angle), math.sin(aug.angle)
    turn = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return torch.diag(torch.tensor([-1.0, 1.0, 1.0])) @ turn if aug.mirror else turn


def _augmented_world(prims, light, aug: Augmentation):
    """The primitives moved by the augmentation's world map, their colours permuted as it permutes channels."""
    world = _world_map(aug)
    out = []
    for prim in prims:
        p = copy.deepcopy(prim)
        p.center, p.rotation = world @ prim.center, world @ prim.rotation
        p.color_a, p.color_b = prim.color_a[list(aug.channels)], prim.color_b[list(aug.channels)]
        out.append(p)
    return out, world @ light


def _mismatch(a, b, tol=2e-3):
    """Share of pixels that differ by more than tol (rays grazing an edge can fall either side)."""
    return float(((a - b).abs().amax(0 if a.ndim == 3 else 1) > tol).float().mean())


def test_augmented_world_renders_the_augmented_images_and_back():
    prims, light, cams = _world(900_000_123)
    images, _ = render_primitives(prims, cams, light, torch.ones(3))
    for aug in (Augmentation(mirror=True), Augmentation(angle=1.1), Augmentation(channels=(2, 0, 1)),
                Augmentation(mirror=True, angle=-2.3, channels=(1, 2, 0))):
        aug_prims, aug_light = _augmented_world(prims, light, aug)
        rendered, _ = render_primitives(aug_prims, aug.cameras(cams), aug_light, torch.ones(3))
        assert _mismatch(rendered, aug.images(images)) < 0.003, aug
        assert _mismatch(aug.invert_output(rendered), images) < 0.003, aug
        # and the wrong camera map is caught: without cx -> W - cx a mirrored render is off
        if aug.mirror:
            wrong = aug.cameras(cams)
            wrong.intrinsics[..., 2] = cams.intrinsics[..., 2] + 3.0
            bad, _ = render_primitives(aug_prims, wrong, aug_light, torch.ones(3))
            assert _mismatch(bad, aug.images(images)) > 0.01


def test_inverse_of_every_map_is_exact():
    prims, light, cams = _world(900_000_124)
    images = torch.rand(3, 3, 48, 64)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        aug = random_augmentation(("mirror", "rotate", "colour", "reorder"), g, 3)
        assert torch.equal(aug.invert_output(aug.images(images)), images)
        back = aug.cameras(aug.cameras(cams)) if aug.mirror and aug.angle == 0 else None
        if back is not None:  # a reflection is its own inverse
            assert torch.allclose(back.c2w, cams.c2w, atol=1e-6) and torch.allclose(back.intrinsics, cams.intrinsics)
        moved = aug.cameras(cams)
        moved.validate("augmented cameras")  # proper rotations, also after a mirror
        # ray geometry: camera distances to each other are kept by a rigid world map
        assert torch.allclose(torch.cdist(moved.centers, moved.centers), torch.cdist(cams.centers, cams.centers), atol=1e-5)


def test_rotation_and_order_keep_images():
    aug = Augmentation(angle=math.pi / 3, order=(2, 0, 1))
    images = torch.rand(3, 3, 8, 8)
    _, _, cams = _world(1)
    out, out_cams = aug.inputs(images, cams)
    assert torch.equal(out, images[[2, 0, 1]])
    assert torch.allclose(out_cams.c2w[0], aug.cameras(cams).c2w[2])


def test_reordering_views_changes_nothing_for_lact():
    """Why ``reorder`` is not in the default augmentation sets: the renderer is invariant to the
    order of its input views (per-view attention, one update summed over all tokens)."""
    from nvs.models import build_renderer
    from tests.helpers import ring_cameras, tiny_config

    torch.manual_seed(0)
    model = build_renderer(tiny_config(newton_schulz_dtype="float32")).eval()
    cams = ring_cameras(1, 5, 32)[0]
    images = torch.rand(5, 3, 32, 32)
    aug = Augmentation(order=(3, 1, 4, 0, 2))
    moved, moved_cams = aug.inputs(images, cams)
    with torch.no_grad():
        a = model(images[None, :4], cams[:4].unsqueeze(0), cams[4:].unsqueeze(0))
        b = model(images[None, [3, 1, 0, 2]], cams[torch.tensor([3, 1, 0, 2])].unsqueeze(0), cams[4:].unsqueeze(0))
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(moved, images[[3, 1, 4, 0, 2]]) and torch.equal(moved_cams.c2w, cams.c2w[[3, 1, 4, 0, 2]])
