"""Analytic ray casting of textured primitives, batched over every ray of every view.

Each intersector takes rays in the primitive's local frame, o and d [R, 3] (d unit), and returns
(t [R], local normal [R, 3]); misses have t = inf. Only hits with t > EPS count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-4
INF = float("inf")
KINDS = ("sphere", "box", "cylinder", "cone", "torus", "room")
TEXTURES = ("solid", "checker", "stripes", "noise", "gradient")


def _nearest(*candidates: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Per ray, the candidate with the smallest valid t. Each candidate: (t [R], valid [R])."""
    ts = torch.stack([torch.where(valid & (t > EPS), t, torch.full_like(t, INF)) for t, valid in candidates])
    best, idx = ts.min(0)
    return best, idx


def _quadratic_roots(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Roots of a t^2 + b t + c (smaller first) and whether they are real."""
    disc = b * b - 4 * a * c
    real = (disc >= 0) & (a.abs() > 1e-12)
    sq = disc.clamp_min(0).sqrt()
    a_safe = torch.where(a.abs() > 1e-12, a, torch.ones_like(a))
    r1, r2 = (-b - sq) / (2 * a_safe), (-b + sq) / (2 * a_safe)
    return torch.minimum(r1, r2), torch.maximum(r1, r2), real


def intersect_sphere(o: Tensor, d: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Sphere of radius size[0] at the origin."""
    r = size[0]
    t0, t1, real = _quadratic_roots(torch.ones_like(o[:, 0]), 2 * (o * d).sum(-1), (o * o).sum(-1) - r * r)
    t, _ = _nearest((t0, real), (t1, real))
    p = o + t.clamp_max(1e6)[:, None] * d
    return t, p / r


def intersect_box(o: Tensor, d: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Axis-aligned box with half extents size[:3] (seen from outside)."""
    ext = size[:3]
    inv = 1.0 / torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
    t1, t2 = (-ext - o) * inv, (ext - o) * inv
    tmin = torch.minimum(t1, t2).amax(-1)
    tmax = torch.maximum(t1, t2).amin(-1)
    t, _ = _nearest((tmin, tmax >= tmin))
    p = o + t.clamp_max(1e6)[:, None] * d
    axis = (p.abs() / ext).argmax(-1)
    normal = torch.nn.functional.one_hot(axis, 3).to(o.dtype) * torch.sign(p)
    return t, normal


def intersect_room(o: Tensor, d: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """The inside of a box (walls, floor, ceiling) with half extents size[:3]; normals point inwards."""
    ext = size[:3]
    inv = 1.0 / torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
    t1, t2 = (-ext - o) * inv, (ext - o) * inv
    tmax = torch.maximum(t1, t2).amin(-1)
    t, _ = _nearest((tmax, torch.ones_like(tmax, dtype=torch.bool)))
    p = o + t.clamp_max(1e6)[:, None] * d
    axis = (p.abs() / ext).argmax(-1)
    normal = -torch.nn.functional.one_hot(axis, 3).to(o.dtype) * torch.sign(p)
    return t, normal


def intersect_cylinder(o: Tensor, d: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Capped cylinder along z: radius size[0], half height size[1]."""
    r, h = size[0], size[1]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - r * r
    s0, s1, real = _quadratic_roots(a, b, c)
    z0, z1 = o[:, 2] + s0 * d[:, 2], o[:, 2] + s1 * d[:, 2]
    dz = torch.where(d[:, 2].abs() > 1e-12, d[:, 2], torch.full_like(d[:, 2], 1e-12))
    caps = []
    for zc in (h, -h):
        tc = (zc - o[:, 2]) / dz
        pc = o[:, :2] + tc[:, None] * d[:, :2]
        caps.append((tc, (pc * pc).sum(-1) <= r * r))
    t, which = _nearest((s0, real & (z0.abs() <= h)), (s1, real & (z1.abs() <= h)), *caps)
    p = o + t.clamp_max(1e6)[:, None] * d
    side = torch.stack([p[:, 0], p[:, 1], torch.zeros_like(p[:, 0])], -1) / r
    cap = torch.zeros_like(p)
    cap[:, 2] = torch.where(which == 2, 1.0, -1.0)
    return t, torch.where((which >= 2)[:, None], cap, side)


def intersect_cone(o: Tensor, d: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Cone along z: base radius size[0] at z = -h, apex at z = +h, h = size[1]."""
    r, h = size[0], size[1]
    k2 = (r / (2 * h)) ** 2
    hz_o = h - o[:, 2]
    a = d[:, 0] ** 2 + d[:, 1] ** 2 - k2 * d[:, 2] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1] + k2 * hz_o * d[:, 2])
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - k2 * hz_o**2
    s0, s1, real = _quadratic_roots(a, b, c)
    z0, z1 = o[:, 2] + s0 * d[:, 2], o[:, 2] + s1 * d[:, 2]
    dz = torch.where(d[:, 2].abs() > 1e-12, d[:, 2], torch.full_like(d[:, 2], 1e-12))
    tc = (-h - o[:, 2]) / dz
    pc = o[:, :2] + tc[:, None] * d[:, :2]
    t, which = _nearest(
        (s0, real & (z0.abs() <= h)), (s1, real & (z1.abs() <= h)), (tc, (pc * pc).sum(-1) <= r * r)
    )
    p = o + t.clamp_max(1e6)[:, None] * d
    side = torch.nn.functional.normalize(torch.stack([p[:, 0], p[:, 1], k2 * (h - p[:, 2])], -1), dim=-1)
    cap = torch.zeros_like(p)
    cap[:, 2] = -1.0
    return t, torch.where((which == 2)[:, None], cap, side)


def intersect_torus(o: Tensor, d: Tensor, size: Tensor, steps: int = 48) -> tuple[Tensor, Tensor]:
    """Torus in the xy-plane: major radius size[0], minor radius size[1]. Sphere tracing from
    the bounding sphere (the quartic has no cheap closed form)."""
    big, small = size[0], size[1]
    t_enter, t_exit, real = _quadratic_roots(torch.ones_like(o[:, 0]), 2 * (o * d).sum(-1), (o * o).sum(-1) - (big + small) ** 2)
    t = t_enter.clamp_min(0)
    active = real & (t_exit > EPS)
    for _ in range(steps):
        p = o + t[:, None] * d
        dist = torch.hypot(torch.hypot(p[:, 0], p[:, 1]) - big, p[:, 2]) - small
        t = torch.where(active, t + dist, t)
    p = o + t[:, None] * d
    ring = torch.hypot(p[:, 0], p[:, 1]).clamp_min(1e-9)
    q = torch.stack([ring - big, p[:, 2]], -1)
    hit = active & ((torch.hypot(q[:, 0], q[:, 1]) - small).abs() < 1e-3) & (t < t_exit + EPS)
    normal = torch.nn.functional.normalize(
        torch.stack([p[:, 0] / ring * q[:, 0], p[:, 1] / ring * q[:, 0], q[:, 1]], -1), dim=-1
    )
    return torch.where(hit, t, torch.full_like(t, INF)), normal


INTERSECTORS = {
    "sphere": intersect_sphere, "box": intersect_box, "cylinder": intersect_cylinder,
    "cone": intersect_cone, "torus": intersect_torus, "room": intersect_room,
}


@dataclass
class Primitive:
    """A textured primitive. rotation [3, 3] maps local to world; size [3] per kind (see intersectors)."""

    kind: str
    center: Tensor
    rotation: Tensor
    size: Tensor
    color_a: Tensor
    color_b: Tensor
    texture: str
    frequency: float
    phases: Tensor  # [4, 4]: random directions + phase for the noise texture
    detail: Tensor | None = None  # [3, K, 6] for the detail texture: per channel K waves (unit direction, frequency, phase, amplitude)


def texture_color(prim: Primitive, p_local: Tensor) -> Tensor:
    """Albedo [R, 3] at local hit points [R, 3]."""
    f = prim.frequency
    if prim.texture == "solid":
        mix = torch.zeros_like(p_local[:, 0])
    elif prim.texture == "checker":
        mix = (torch.floor(p_local * f).sum(-1) % 2).abs()
    elif prim.texture == "stripes":
        mix = (torch.sin(p_local[:, 2] * f * math.pi) > 0).to(p_local.dtype)
    elif prim.texture == "detail":  # dense non-repeating colour noise: sums of random plane waves per channel
        d = prim.detail
        waves = torch.sin(torch.einsum("rx,ckx->rck", p_local, d[..., :3]) * d[..., 3] + d[..., 4])  # [R, 3, K]
        return 0.5 + 0.45 * torch.tanh(2 * (waves * d[..., 5]).sum(-1))
    elif prim.texture == "noise":
        waves = torch.sin(p_local @ prim.phases[:, :3].T * f + prim.phases[:, 3])  # [R, 4]
        mix = (waves.mean(-1) * 1.5 + 0.5).clamp(0, 1)
    else:  # gradient along local z
        extent = prim.size.max().clamp_min(1e-6)
        mix = (p_local[:, 2] / extent * 0.5 + 0.5).clamp(0, 1)
    return prim.color_a * (1 - mix[:, None]) + prim.color_b * mix[:, None]


def bounding_radius(prim: Primitive) -> float:
    """Radius of a sphere around the primitive's centre that contains it."""
    s = prim.size
    return float({
        "sphere": s[0], "box": s[:3].norm(), "cylinder": torch.hypot(s[0], s[1]),
        "cone": torch.hypot(s[0], s[1]), "torus": s[0] + s[1], "room": s[:3].norm(),
    }[prim.kind]) * 1.01


def cast(prims: list[Primitive], origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest hit over primitives for world rays [R, 3] (d unit).

    Returns (t [R] inf on miss, world normal [R, 3], albedo [R, 3]). Rays that miss a primitive's
    bounding sphere skip its exact intersection.
    """
    best_t = torch.full_like(origins[:, 0], INF)
    normal = torch.zeros_like(origins)
    albedo = torch.ones_like(origins)
    for prim in prims:
        rel = origins - prim.center
        b = (rel * dirs).sum(-1)
        near = b * b - ((rel * rel).sum(-1) - bounding_radius(prim) ** 2) >= 0
        idx = near.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        o_local = rel[idx] @ prim.rotation
        d_local = dirs[idx] @ prim.rotation
        t, n_local = INTERSECTORS[prim.kind](o_local, d_local, prim.size)
        closer = t < best_t[idx]
        if not closer.any():
            continue
        hit = idx[closer]
        best_t[hit] = t[closer]
        normal[hit] = n_local[closer] @ prim.rotation.T
        albedo[hit] = texture_color(prim, o_local[closer] + t[closer, None] * d_local[closer])
    return best_t, normal, albedo
