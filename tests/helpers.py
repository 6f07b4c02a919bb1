"""Small builders shared by tests."""

import contextlib
import io
import math
import socket
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nvs.cameras import Cameras, look_at, pixel_rays
from nvs.models import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (outside data from ../shared is not in this checkout)")
    return path


def run_nvs(*args) -> subprocess.CompletedProcess:
    """``nvs ARGS`` run in this process: its exit status and what it printed, as a subprocess's.

    Saves the 2-3 s a fresh interpreter spends importing torch; the command as a separate process
    (exit codes, no traceback) is tested in tests/commands/test_cli_failures.py. An exception the
    command does not turn into an error message propagates and fails the test. The allocator
    settings the command makes, tests/conftest.py makes for every test.
    """
    from nvs.commands.cli import main

    argv, out, err = [str(a) for a in args], io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["nvs", *argv], code or 0, out.getvalue(), err.getvalue())


def tiny_config(**overrides) -> ModelConfig:
    base = dict(patch_size=8, dim=32, layers=2, attn_head_dim=16, ttt_head_dim=16, ttt_inter_multi=2.0)
    base.update(overrides)
    return ModelConfig(**base)


def ring_cameras(batch: int, views: int, size: int = 32, radius: float = 2.0, offset: float = 0.0) -> Cameras:
    """Cameras on a circle at 30 deg elevation looking at the origin. Batch shape [B, V]."""
    az = torch.arange(views) * (2 * math.pi / views) + offset
    el = math.radians(30)
    eye = torch.stack([radius * math.cos(el) * torch.cos(az), radius * math.cos(el) * torch.sin(az),
                       torch.full_like(az, radius * math.sin(el))], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]).expand_as(eye))
    focal = size / (2 * math.tan(math.radians(25)))
    intr = torch.tensor([focal, focal, size / 2, size / 2]).expand(views, 4)
    return Cameras(intr.expand(batch, views, 4).clone(), c2w.expand(batch, views, 4, 4).clone(), size, size)


PLANE_Z = 3.0  # the textured plane of textured_plane_view


def plane_camera(x: float, size: int = 48, yaw_deg: float = 0.0) -> Cameras:
    """A camera at (x, 0, 0) looking along +z (turned by yaw about y), 60 deg field of view (float64)."""
    yaw = math.radians(yaw_deg)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    c2w[0, 3] = x
    focal = size / (2 * math.tan(math.radians(30)))
    return Cameras(torch.tensor([focal, focal, size / 2, size / 2], dtype=torch.float64), c2w, size, size)


def textured_plane_view(cams: Cameras, frequency: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """What cams see of a smoothly textured plane z = PLANE_Z: (image [..., 3, H, W], depth along
    each ray [..., 1, H, W]); ``frequency`` scales the texture's."""
    origins, dirs = pixel_rays(cams, torch.float64)
    depth = (PLANE_Z - origins[..., 2:3, :, :]) / dirs[..., 2:3, :, :]
    hit = (origins + depth * dirs) * frequency
    x, y = hit[..., 0, :, :], hit[..., 1, :, :]
    image = torch.stack([0.5 + 0.4 * torch.sin(2 * x), 0.5 + 0.4 * torch.cos(3 * y), 0.5 + 0.2 * torch.sin(x + y)], -3)
    return image, depth


def noise_texture(seed: int = 0, size: int = 256) -> torch.Tensor:
    """[1, 3, size, size] smooth random colour: what SIFT finds corners in, without repeats."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 4, size // 4, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def noise_plane_views(cams: Cameras, planes: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """What cams [V] see of textured planes z = depth covering x < x_max each (nearest first, drawn
    over the farther ones): (images [V, 3, H, W], distance along each ray [V, 1, H, W])."""
    origins, dirs = pixel_rays(cams, torch.float64)
    texture = noise_texture()
    image = torch.zeros(cams.shape[0], 3, cams.height, cams.width, dtype=torch.float64)
    distance = torch.full((cams.shape[0], 1, cams.height, cams.width), math.inf, dtype=torch.float64)
    for depth, x_max in reversed(planes):
        t = (depth - origins[:, 2:3]) / dirs[:, 2:3]
        hit = origins + t * dirs
        covered = hit[:, :1] < x_max
        grid = (hit[:, :2] / 4.0).permute(0, 2, 3, 1)  # the texture spans [-4, 4]^2 of the plane
        colour = F.grid_sample(texture.double().expand(cams.shape[0], -1, -1, -1), grid, align_corners=False)
        image = torch.where(covered, colour, image)
        distance = torch.where(covered, t, distance)
    return image.float(), distance


def line_of_cameras(views: int = 5, size: int = 96) -> Cameras:
    """[V] plane_camera's evenly spaced along x from -0.5 to 0.5."""
    cams = [plane_camera(x, size) for x in torch.linspace(-0.5, 0.5, views).tolist()]
    return Cameras(torch.stack([c.intrinsics for c in cams]), torch.stack([c.c2w for c in cams]), size, size)


def ring_scene(batch: int = 1, inputs: int = 3, targets: int = 2, size: int = 32):
    """Random input images on a ring of cameras, and target cameras between them:
    (images [B, V, 3, S, S], cams [B, V], target cams [B, T])."""
    return torch.rand(batch, inputs, 3, size, size), ring_cameras(batch, inputs, size), \
        ring_cameras(batch, targets, size, offset=0.3)


def without_head(model: torch.nn.Module, head: str, config: ModelConfig) -> torch.nn.Module:
    """A renderer of ``config`` with ``model``'s weights, all but those of its module ``head``, in eval mode."""
    from nvs.models import build_renderer

    plain = build_renderer(config)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")})
    return plain.eval()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PhotoLookup(torch.nn.Module):
    """A stand-in renderer that renders a target at an input's camera as that input's photo: what a
    perfect image-based renderer would draw there. Fails on a target whose camera no input has."""

    config = ModelConfig(patch_size=8)

    def memorize(self, images, cams):
        return images, cams

    def render(self, state, target_cams):
        images, cams = state
        same = (target_cams.intrinsics[0, :, None] - cams.intrinsics[0, None]).abs().amax(-1) < 1e-5
        same &= (target_cams.c2w[0, :, None] - cams.c2w[0, None]).flatten(2).abs().amax(-1) < 1e-5
        assert same.any(dim=1).all(), "a target camera that no input has"
        return images[:, same.int().argmax(dim=1)]
