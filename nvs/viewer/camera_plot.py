"""A 3D plot of camera frusta (matplotlib): inputs, held-out views and the virtual camera."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from nvs.cameras import Cameras


def frustum_lines(cams: Cameras, depth: float) -> torch.Tensor:
    """Line segments [N, 8, 2, 3] drawing each camera's pyramid to its image corners at ``depth``."""
    h, w = cams.height, cams.width
    fx, fy, cx, cy = cams.intrinsics.unbind(-1)
    corners = []
    for u, v in ((0, 0), (w, 0), (w, h), (0, h)):
        corners.append(torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(fx)], -1) * depth)
    local = torch.stack(corners, -2)  # [N, 4, 3]
    world = local @ cams.c2w[:, :3, :3].transpose(-1, -2) + cams.c2w[:, None, :3, 3]
    origin = cams.c2w[:, None, :3, 3].expand_as(world)
    sides = torch.stack([origin, world], -2)  # [N, 4, 2, 3]
    rim = torch.stack([world, world.roll(-1, dims=1)], -2)
    return torch.cat([sides, rim], 1)


def camera_figure(groups: list[tuple[str, Cameras, str]], title: str = ""):
    """A figure of labelled camera groups [(label, cams [N], colour)], equal axes, z up.

    A bare Figure, not pyplot's: nothing keeps it alive after the page has drawn it (the viewer
    makes one per rendered view)."""
    fig = Figure(figsize=(5, 5), dpi=80)
    ax = fig.add_subplot(projection="3d")
    points = [torch.zeros(1, 3)]
    extent = max(float(c.centers.norm(dim=-1).max()) for _, c, _ in groups if c.shape[0]) if groups else 1.0
    for label, cams, colour in groups:
        if cams.shape[0] == 0:
            continue
        lines = frustum_lines(cams.to(torch.float32), 0.15 * extent)
        for seg in lines.reshape(-1, 2, 3):
            ax.plot(*seg.T.numpy(), color=colour, linewidth=0.8)
        c = cams.centers.float()
        ax.scatter(*c.T.numpy(), color=colour, s=10, label=label)
        points.append(lines.reshape(-1, 3))
    ax.scatter([0], [0], [0], color="black", marker="+", s=40, label="scene centre")
    pts = torch.cat(points)
    mid, half = (pts.amax(0) + pts.amin(0)) / 2, float((pts.amax(0) - pts.amin(0)).max()) / 2 + 1e-6
    for setter, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid.tolist()):
        setter(m - half, m + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z (up)")
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
