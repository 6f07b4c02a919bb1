"""Data sets of asset scenes on disk, with the attribution of every model they show.

In the ``lact`` layout the writer streams and resumes: each finished scene is
``scenes/<name>/{images/*.png, opencv_cameras.json, attribution.json}`` (the attribution file is
written last and marks the scene complete), and ``index.json``, ``attribution.json`` and
``synth.json`` are rewritten every ``flush_every`` scenes, so a partial data set can be trained on
while the rest is made, and a second run with the same arguments skips what exists. The other
formats are written in one go through :func:`nvs.datasets.formats.write_dataset`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from nvs.datasets.asset_scenes import generate_asset_scene, merge_attribution
from nvs.datasets.formats import FORMATS, write_dataset, write_lact_scene


def scene_name(kind: str, split: str, seed: int) -> str:
    return f"{kind}_{split}_{seed:07d}"


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _finish_lact(root: Path, summary: dict) -> dict:
    """Rewrite index.json, attribution.json and synth.json from the complete scenes on disk."""
    done = sorted(p.parent for p in (root / "scenes").glob("*/attribution.json"))
    _write_json(root / "index.json", [str((d / "opencv_cameras.json").relative_to(root)) for d in done])
    _write_json(root / "attribution.json",
                merge_attribution({d.name: json.loads((d / "attribution.json").read_text()) for d in done}))
    summary = {**summary, "scenes_written": len(done)}
    _write_json(root / "synth.json", summary)
    return summary


def write_asset_dataset(root: str | Path, kind: str, split: str, scenes: int, views: int, height: int, width: int,
                        seed: int = 0, fmt: str = "lact", flush_every: int = 25, log=print) -> dict:
    """Render scenes with seeds ``seed .. seed + scenes - 1`` of ``kind`` from the models of
    ``split`` into ``root``. Returns the summary also written to ``root/synth.json``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    summary = {"kind": kind, "split": split, "format": fmt, "scenes": scenes, "views": views, "height": height,
               "width": width, "seed": seed, "source": "nvs.datasets.asset_scenes"}
    if fmt != "lact":
        records, attribution = [], {}
        for s in range(seed, seed + scenes):
            scene = generate_asset_scene(kind, s, views, height, width, split)
            records.append((scene_name(kind, split, s), scene.images, scene.cameras))
            attribution[records[-1][0]] = scene.attribution
        index = write_dataset(root, fmt, records)
        _write_json(root / "attribution.json", merge_attribution(attribution))
        summary = {**summary, "index": str(index), "scenes_written": scenes}
        _write_json(root / "synth.json", summary)
        return summary
    t0, made = time.perf_counter(), 0
    for s in range(seed, seed + scenes):
        name = scene_name(kind, split, s)
        if (root / "scenes" / name / "attribution.json").is_file():
            continue
        scene = generate_asset_scene(kind, s, views, height, width, split)
        folder = write_lact_scene(root, name, scene.images, scene.cameras).parent
        _write_json(folder / "attribution.json", scene.attribution)
        made += 1
        if made % flush_every == 0:
            rate = made * views / (time.perf_counter() - t0)
            log(f"{root}: {name} done; {made} scenes this run, {rate:.1f} views/s")
            _finish_lact(root, summary)
    return _finish_lact(root, summary)
