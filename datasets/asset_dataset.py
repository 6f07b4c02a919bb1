"""Data sets of asset scenes on disk, with the attribution of every model they show.

In the ``lact`` layout the writer streams and resumes: each finished scene is
``scenes/<name>/{images/*.png, depth/*.png, opencv_cameras.json, attribution.json}`` (depth: 16-bit
z-depth, see :mod:`nvs.datasets.depth_maps`) (the attribution file is
written last and marks the scene complete), and ``index.json``, ``attribution.json`` and
``synth.json`` are rewritten every ``flush_every`` scenes, so a partial data set can be trained on
while the rest is made, and a second run with the same arguments skips what exists. The other
formats are written in one go through :func:`nvs.datasets.formats.write_dataset`.

With ``workers`` > 1, scenes are rendered by that many processes, each with one rasteriser
thread: Mesa's llvmpipe leaves its threads idle while Python prepares a view, so one process per
core keeps the cores busier than one process with a thread per core.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from nvs.datasets.asset_scenes import check_fit, generate_asset_scene, merge_attribution
from nvs.datasets.formats import FORMATS, write_dataset, write_lact_scene
from nvs.datasets.procedural import OBJECT_FOV_DEG


def scene_name(kind: str, split: str, seed: int) -> str:
    return f"{kind}_{split}_{seed:07d}"


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _finish_lact(root: Path, summary: dict, source: str | None = None) -> dict:
    """Rewrite index.json, attribution.json and synth.json from the complete scenes on disk."""
    done = sorted(p.parent for p in (root / "scenes").glob("*/attribution.json"))
    _write_json(root / "index.json", [str((d / "opencv_cameras.json").relative_to(root)) for d in done])
    _write_json(root / "attribution.json",
                merge_attribution({d.name: json.loads((d / "attribution.json").read_text()) for d in done}, source))
    # runs of several kinds may write into one folder (walks and rings of rooms); names start with the kind
    kinds = Counter(d.name.split("_")[0] for d in done)
    summary = {**summary, "scenes_written": len(done), "scenes_by_kind": dict(sorted(kinds.items()))}
    _write_json(root / "synth.json", summary)
    return summary


# settings that data sets written before they could be chosen do not record, as they were written
UNRECORDED_SETTINGS = {"fov": OBJECT_FOV_DEG, "backdrop": 1.0, "elevations": [0.0, 60.0], "fit": "sphere"}


def _refuse_other_settings(root: Path, summary: dict, keys: tuple[str, ...]) -> None:
    """A lact folder resumes: scenes already there are kept. Refuse to add to scenes of the same
    kind (and split) that ``root/synth.json`` says were written with other ``keys`` (one it does
    not record: with its UNRECORDED_SETTINGS value)."""
    try:
        before = json.loads((root / "synth.json").read_text())
    except (OSError, ValueError):
        return  # no summary to compare with (a new folder)
    if not isinstance(before, dict) or any(before.get(k) != summary.get(k) for k in ("kind", "split")):
        return
    written = {k: before[k] if k in before else UNRECORDED_SETTINGS.get(k) for k in keys if k in before or k in summary}
    changed = [f"{k}: {v!r} -> {summary.get(k)!r}" for k, v in written.items() if v is not None and v != summary.get(k)]
    if changed:
        raise ValueError(f"{root} holds {summary['kind']} scenes written with other settings ({'; '.join(changed)}): "
                         "write into another folder")


def _make_scene(job: tuple) -> tuple:
    """One scene of a job (root, fmt, kind, split, seed, views, height, width, elevations, backdrop, fov, fit):
    written to ``root`` in the lact layout, or returned as (name, images, cameras, attribution) to be
    written with the others."""
    root, fmt, kind, split, seed, views, height, width, elevations, backdrop, fov, fit = job
    scene = generate_asset_scene(kind, seed, views, height, width, split, elevations, backdrop, fov, fit)
    return _store(Path(root), fmt, scene_name(kind, split, seed), scene)


def _store(root: Path, fmt: str, name: str, scene) -> tuple:
    """A scene written to ``root`` in the lact layout (its attribution file last: it marks the
    scene complete), or returned as (name, images, cameras, attribution) to be written with the
    others."""
    if fmt == "lact":
        folder = write_lact_scene(root, name, scene.images, scene.cameras, scene.depth).parent
        _write_json(folder / "attribution.json", scene.attribution)
        return name, None, None, scene.attribution
    return name, scene.images, scene.cameras, scene.attribution


def _pending(root: Path, fmt: str, kind: str, split: str, seed: int, scenes: int) -> list[int]:
    """The seeds still to render: all of them, or in the lact layout those without a complete scene."""
    return [s for s in range(seed, seed + scenes)
            if fmt != "lact" or not (root / "scenes" / scene_name(kind, split, s) / "attribution.json").is_file()]


def _write_all(root: Path, fmt: str, summary: dict, made, flush_every: int, log, source: str | None = None) -> dict:
    """Take the (name, images, cameras, attribution) of :func:`_store` as ``made`` yields them:
    in the lact layout, rewrite the data set's index and summaries every ``flush_every`` scenes
    and at the end; in the others, write the data set in one go. Returns the summary."""
    if fmt != "lact":
        records, attribution = [], {}
        for name, images, cams, credits in made:
            records.append((name, images, cams))
            attribution[name] = credits
        index = write_dataset(root, fmt, records)
        _write_json(root / "attribution.json", merge_attribution(attribution, source))
        summary = {**summary, "index": str(index), "scenes_written": summary["scenes"]}
        _write_json(root / "synth.json", summary)
        return summary
    t0 = time.perf_counter()
    for count, (name, *_) in enumerate(made, 1):
        if count % flush_every == 0:
            rate = count * summary["views"] / (time.perf_counter() - t0)
            log(f"{root}: {name} done; {count} scenes this run, {rate:.1f} views/s")
            _finish_lact(root, summary, source)
    return _finish_lact(root, summary, source)


def _start_worker(warm_up: tuple, ready) -> None:
    """Pool initialiser: one rasteriser thread and one torch thread, the GL context of the image
    size opened and its shaders compiled on a one-view scene, then wait for the other workers."""
    os.environ["LP_NUM_THREADS"] = "1"  # read by llvmpipe when the first GL context opens
    import torch

    torch.set_num_threads(1)
    kind, split, height, width = warm_up
    generate_asset_scene(kind, 0, 1, height, width, split)
    try:
        ready.wait(READY_TIMEOUT_S)
    except threading.BrokenBarrierError:  # a worker started again after one died: nobody waits for it
        pass


READY_TIMEOUT_S = 600.0


@contextmanager
def scene_pool(workers: int, kind: str, split: str, height: int, width: int):
    """A pool of ``workers`` processes (spawned: GL and torch threads do not survive a fork), each
    ready to render ``kind`` scenes at height x width when this yields. A worker that crashes
    while rendering breaks the pool (BrokenProcessPool) instead of hanging it; one that fails to
    start is an error after READY_TIMEOUT_S."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    with ProcessPoolExecutor(workers, context, _start_worker, ((kind, split, height, width), ready)) as pool:
        started = [pool.submit(os.getpid) for _ in range(workers)]  # a worker starts per task until all run
        ready.wait(READY_TIMEOUT_S)
        for f in started:
            f.result()
        yield pool


def write_asset_dataset(root: str | Path, kind: str, split: str, scenes: int, views: int, height: int, width: int,
                        seed: int = 0, fmt: str = "lact", flush_every: int = 25, log=print, workers: int = 1,
                        pool=None, elevation_deg: tuple[float, float] = (0.0, 60.0), backdrop: float = 1.0,
                        fov_deg: float = OBJECT_FOV_DEG, fit: str = "sphere") -> dict:
    """Render scenes with seeds ``seed .. seed + scenes - 1`` of ``kind`` from the models of
    ``split`` into ``root``, in ``workers`` processes (or in ``pool``, see :func:`scene_pool`);
    furniture scaled by ``fit``, seen from ``elevation_deg`` with a ``fov_deg`` lens on a grey
    ``backdrop``. Returns the summary also written to ``root/synth.json``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    given = {"elevations": tuple(elevation_deg) != (0.0, 60.0), "backdrop": backdrop != 1.0, "fov": fov_deg != OBJECT_FOV_DEG,
             "fit": fit != "sphere"}
    if kind != "furniture" and any(given.values()):  # rooms would silently ignore them
        raise ValueError(f"{kind} scenes take no {', '.join(k for k, v in given.items() if v)}: those set furniture scenes")
    check_fit(fit)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    summary = {"kind": kind, "split": split, "format": fmt, "scenes": scenes, "views": views, "height": height,
               "width": width, "seed": seed, "source": "nvs.datasets.asset_scenes"}
    if kind == "furniture":
        summary["elevations"], summary["backdrop"], summary["fov"] = list(elevation_deg), backdrop, fov_deg
        summary["fit"] = fit
    if fmt == "lact":
        _refuse_other_settings(root, summary, ("views", "height", "width", "elevations", "backdrop", "fov", "fit"))
    pending = _pending(root, fmt, kind, split, seed, scenes)
    if pool is None and workers > 1 and len(pending) > 1:
        with scene_pool(min(workers, len(pending)), kind, split, height, width) as pool:
            return write_asset_dataset(root, kind, split, scenes, views, height, width, seed, fmt, flush_every, log,
                                       pool=pool, elevation_deg=elevation_deg, backdrop=backdrop, fov_deg=fov_deg,
                                       fit=fit)
    jobs = [(str(root), fmt, kind, split, s, views, height, width, tuple(elevation_deg), backdrop, fov_deg, fit)
            for s in pending]
    made = pool.map(_make_scene, jobs) if pool is not None else map(_make_scene, jobs)
    return _write_all(root, fmt, summary, made, flush_every, log)


def write_mesh_dataset(root: str | Path, meshes: str | Path, scenes: int, views: int, height: int, width: int,
                       seed: int = 0, fmt: str = "lact", up: str = "y", elevation_deg: tuple[float, float] = (0.0, 60.0),
                       flush_every: int = 25, log=print, backdrop: float = 1.0, fov_deg: float = OBJECT_FOV_DEG,
                       fit: str = "sphere") -> dict:
    """Render scenes with seeds ``seed .. seed + scenes - 1`` of the models in the mesh folder
    ``meshes`` (:mod:`nvs.datasets.mesh_folder`) into ``root``, in this process; the lact layout
    streams and resumes as :func:`write_asset_dataset`'s. Each model's problems (a missing
    texture, say) are logged once. Returns the summary also written to ``root/synth.json``."""
    from nvs.datasets.mesh_folder import find_meshes, load_mesh, mesh_scene

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    check_fit(fit)
    entries = find_meshes(meshes, log)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    source = f"the models of the mesh folder {meshes}; each model's creator, licence and source are listed under 'models'"
    summary = {"kind": "meshes", "split": "all", "meshes": str(Path(meshes).resolve()), "models": len(entries),
               "model_names": [e.name for e in entries], "up": up, "elevations": list(elevation_deg),
               "backdrop": backdrop, "fov": fov_deg, "fit": fit, "format": fmt,
               "scenes": scenes, "views": views, "height": height, "width": width, "seed": seed,
               "source": "nvs.datasets.mesh_folder"}
    if fmt == "lact":
        _refuse_other_settings(root, summary, ("meshes", "model_names", "up", "elevations", "backdrop", "fov", "fit",
                                               "views", "height", "width"))
    pending = _pending(root, fmt, "meshes", "all", seed, scenes)
    for entry in {entries[s % len(entries)] for s in pending}:  # every model read before any is rendered
        load_mesh(entry, up)
    reported = set()

    def made():
        for s in pending:
            scene = mesh_scene(entries, s, views, height, width, up, elevation_deg, backdrop, fov_deg, fit)
            model = scene.attribution[0]["id"]
            for problem in scene.problems if model not in reported else ():
                log(f"{model}: {problem}")
            reported.add(model)
            yield _store(root, fmt, scene_name("meshes", "all", s), scene)

    return _write_all(root, fmt, summary, made(), flush_every, log, source)
