"""`nvs bench`: benchmarks that print a table and write DIR/<name>.json (a list of rows)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from nvs.datasets.procedural import generate_scene


def bench_generator(out: Path, kinds=("object", "room"), views: int = 8, size: int = 128, scenes: int = 10) -> list[dict]:
    """Procedural views per second at size x size (rooms at 16:9 with the same height)."""
    rows = []
    for kind in kinds:
        width = size if kind == "object" else size * 16 // 9 // 8 * 8
        generate_scene(kind, 0, 2, size, width)  # warm-up
        t0 = time.perf_counter()
        for seed in range(1, scenes + 1):
            generate_scene(kind, seed, views, size, width)
        seconds = time.perf_counter() - t0
        rows.append({"kind": kind, "height": size, "width": width, "views": views * scenes, "seconds": round(seconds, 3),
                     "views_per_second": round(views * scenes / seconds, 1), "threads": torch.get_num_threads()})
    _report("generator", rows, out)
    return rows


def _report(name: str, rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}, indent=2))
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    print(f"wrote {out / (name + '.json')}")
