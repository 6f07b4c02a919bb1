"""The Middlebury multi-view stereo sets (Seitz et al. 2006): ``*_par.txt`` cameras beside PNG images.

The par file's first line is the image count; each further line is
``name k11 .. k33 r11 .. r33 t1 t2 t3`` with the projection K [R | t] mapping world points to
pixels (origin top-left): R, t are world-to-camera in OpenCV axes, K in pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nvs.cameras import Cameras
from nvs.datasets.records import SceneRecord
from nvs.io.untrusted import scene_path


def read_middlebury_scene(par_file: str | Path) -> SceneRecord:
    """A scene from a Middlebury ``*_par.txt`` (images next to it), cameras at the stored image size."""
    from nvs.io.media import read_image

    par_file = Path(par_file)
    try:
        lines = [line.split() for line in par_file.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ValueError(f"{par_file}: cannot read the camera file: {exc}") from exc
    if not lines or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise ValueError(f"{par_file}: the first line must be the image count")
    rows = lines[1:]
    if len(rows) != int(lines[0][0]) or any(len(r) != 22 for r in rows):
        raise ValueError(f"{par_file}: expected {lines[0][0]} lines of 'name' + 21 numbers")
    try:
        values = torch.tensor([[float(x) for x in r[1:]] for r in rows], dtype=torch.float64)
    except ValueError as exc:
        raise ValueError(f"{par_file}: a camera value is not a number: {exc}") from exc
    if not torch.isfinite(values).all():
        raise ValueError(f"{par_file}: camera values contain NaN or inf")
    k, rot, t = values[:, :9].view(-1, 3, 3), values[:, 9:18].view(-1, 3, 3), values[:, 18:21]
    w2c = torch.eye(4, dtype=torch.float64).repeat(len(rows), 1, 1)
    w2c[:, :3, :3], w2c[:, :3, 3] = rot, t
    sources = [scene_path(par_file.parent, r[0], f"{par_file} (line {i + 2})") for i, r in enumerate(rows)]
    missing = [s.name for s in sources if not s.is_file()]
    if missing:
        raise ValueError(f"{par_file}: images not found: {missing[:5]}")
    _, height, width = read_image(sources[0]).shape
    intrinsics = torch.stack([k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]], -1)
    cams = Cameras.from_w2c(intrinsics.float(), w2c.float(), height, width).validate(str(par_file))
    return SceneRecord(name=par_file.stem.removesuffix("_par"), cameras=cams, sources=sources, where=str(par_file))
