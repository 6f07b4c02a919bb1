"""Small builders shared by tests."""

import math
import socket
from pathlib import Path

import pytest
import torch

from nvs.cameras import Cameras, look_at
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
