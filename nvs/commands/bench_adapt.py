"""`nvs bench adapt`: what test-time adaptation gains on held-out sets.

Sets (each scene: 8 input views, 4 target views, 128x128, never seen in training):
- ``objects``: procedural objects from the held-out seeds (in distribution: the fallback must hold);
- ``objects-detail``: the same kind of objects in another texture style (dense colour noise);
- ``rooms``: procedural rooms (a walk inside a textured box), centre-cropped and resized;
- ``temple``: the Middlebury temple (16 real photos on a ring, black background), two splits;
- ``furniture``: furniture models of the validation split rendered on white (realistic meshes and
  textures, the object cameras); ``furnished-rooms``: rooms furnished with them (a camera walk).
  Both need Debian's sweethome3d-furniture and headless OpenGL (nvs.datasets.asset_scenes).
Each scene is adapted by the renderer a ``--checkpoint`` value gives it (``auto``: the shipped
renderer of its kind of capture, as ``nvs adapt`` picks), in that renderer's frame, and scored
unadapted and adapted (on its input views only), PSNR/SSIM/LPIPS on the targets; with several
budgets, a plot of the mean gain against the budget.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from nvs.adaptation.search import AdaptOptions, adapt, unkept_frame_note
from nvs.cameras import Cameras
from nvs.datasets.procedural import HELDOUT_SEED, object_scene, room_scene
from nvs.datasets.views import spread_order
from nvs.evaluation.metrics import all_metrics
from nvs.geometry.image_ops import resize_and_center_crop
from nvs.geometry.scene_normalization import fitted_frame
from nvs.inference import choose_checkpoint, memorize_views, render_cameras, renderer_frame

SETS = ("objects", "objects-detail", "rooms", "temple", "furniture", "furnished-rooms")
TEMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "middlebury_templeSparseRing"
SIZE, INPUTS, TARGETS = 128, 8, 4


def _split(images, cams: Cameras, order: list[int]):
    idx = torch.tensor(order)
    return (images[idx[:INPUTS]], cams[idx[:INPUTS]], images[idx[INPUTS:INPUTS + TARGETS]], cams[idx[INPUTS:INPUTS + TARGETS]])


def _object_frame(in_cams: Cameras, tg_cams: Cameras) -> tuple[Cameras, Cameras]:
    """Both camera sets in the object frame fitted to the inputs (what the viewer does for any scene)."""
    move = fitted_frame("object", in_cams)
    return move(in_cams), move(tg_cams)


def heldout_scenes(name: str, count: int, temple: Path = TEMPLE):
    """Yield (scene name, inputs [8, 3, 128, 128], input cams, targets [4, ...], target cams) of a set."""
    if name not in SETS:
        raise ValueError(f"unknown set {name!r}; choose from {SETS}")
    n = INPUTS + TARGETS
    for i in range(count):
        seed = HELDOUT_SEED + 1000 + i
        if name in ("objects", "objects-detail"):
            s = object_scene(seed, n, SIZE, SIZE, texture="detail" if name == "objects-detail" else None)
            yield f"{name}-{seed}", *_split(s.images, s.cameras, list(range(n)))
        elif name in ("furniture", "furnished-rooms"):
            from nvs.datasets.asset_scenes import generate_asset_scene, unavailable_reason

            reason = unavailable_reason()
            if reason is not None:
                raise ValueError(f"set {name}: {reason}")
            kind = "furniture" if name == "furniture" else "furnished-room"
            s = generate_asset_scene(kind, seed, n, SIZE, SIZE, split="val")
            order = list(range(n)) if kind == "furniture" else spread_order(n, INPUTS).tolist()
            yield f"{name}-{seed}", *_split(s.images, s.cameras, order)
        elif name == "rooms":
            s = room_scene(seed, n, 144, 256)
            images, cams = resize_and_center_crop(s.images, s.cameras, SIZE, SIZE)
            yield f"room-{seed}", *_split(images, cams, spread_order(n, INPUTS).tolist())
        else:
            if i >= 2:
                return
            if not temple.is_dir():
                raise ValueError(f"{temple}: the Middlebury temple is not there (../shared/data)")
            from nvs.datasets.formats import load_views, read_any_scene

            record = read_any_scene(temple)
            views = record.cameras.shape[0]
            order = list(range(i, views, 2)) + list(range(1 - i, views, 4))  # inputs: every other view
            images, cams = load_views(record, order[: INPUTS + TARGETS], SIZE, SIZE)
            in_cams, tg_cams = _object_frame(cams[:INPUTS], cams[INPUTS:])
            yield f"temple-split{i}", images[:INPUTS], in_cams, images[INPUTS:], tg_cams


def target_scores(model, inputs, in_cams, targets, tg_cams) -> dict:
    """Mean PSNR, SSIM and LPIPS (vgg) of the model's renders of the target views from the inputs."""
    state, _ = memorize_views(model, inputs, in_cams)
    pred, _ = render_cameras(model, state, tg_cams)
    return {k: float(v.mean()) for k, v in all_metrics(pred.clamp(0, 1), targets, "vgg").items()}


def loaded_renderers(checkpoint) -> dict:
    """Renderers by file, read before any scene is made: the one a ``--checkpoint`` value names
    (so that a bad file is refused at once), none for ``auto``; :func:`scene_renderer` adds to it."""
    from nvs.models import load_renderer

    if str(checkpoint) == "auto":
        return {}
    path, _ = choose_checkpoint(checkpoint)
    return {path: load_renderer(path)}


def scene_renderer(checkpoint, inputs, in_cams: Cameras, tg_cams: Cameras, loaded: dict):
    """(renderer, its file, input cams, target cams in its frame) for one scene: the renderer
    ``checkpoint`` (a ``--checkpoint`` value) gives these inputs, as ``nvs adapt`` picks it, and
    both camera sets moved by its scene normalisation fitted on the inputs. ``loaded``: renderers
    already read, by file."""
    from nvs.models import load_renderer

    path, _ = choose_checkpoint(checkpoint, in_cams, inputs)
    if path not in loaded:
        loaded[path] = load_renderer(path)
    model = loaded[path]
    move = renderer_frame(model, in_cams)
    return model, path, move(in_cams), move(tg_cams)


def bench_adapt(checkpoint, out: Path, sets=SETS, scenes: int = 2, budgets=(60.0,), options: dict | None = None,
                log=print) -> list[dict]:
    """Rows: one per (scene, budget) with the renderer ``checkpoint`` gives the scene
    (:func:`scene_renderer`), its unadapted and adapted scores; writes adapt.json."""
    rows, loaded = [], loaded_renderers(checkpoint)
    for set_name in sets:
        for name, inputs, in_cams, targets, tg_cams in heldout_scenes(set_name, scenes):
            model, path, in_cams, tg_cams = scene_renderer(checkpoint, inputs, in_cams, tg_cams, loaded)
            before = target_scores(model, inputs, in_cams, targets, tg_cams)
            for budget in budgets:
                start = time.perf_counter()
                result = adapt(model, inputs, in_cams, AdaptOptions(budget_s=budget, **(options or {})))
                seconds = time.perf_counter() - start
                after = target_scores(result.model, inputs, in_cams, targets, tg_cams)
                row = {"set": set_name, "scene": name, "renderer": path.name, "budget_s": budget, "seconds": round(seconds, 1),
                       **{f"{k}_base": round(v, 4) for k, v in before.items()},
                       **{f"{k}_adapted": round(v, 4) for k, v in after.items()},
                       "gain_db": round(after["psnr"] - before["psnr"], 3), "fallback": result.fallback,
                       "verifier_gain_db": round(result.best_verifier_psnr - result.base_verifier_psnr, 3),
                       "frame": result.adapter.frame.name, "searched_frame": result.searched_frame, "augmentations": "+".join(result.augmentations),
                       "steps": result.steps, "curve": result.curve}
                rows.append(row)
                log(f"{set_name:15s} {name:24s} {path.stem:12s} budget {budget:5.0f} s: PSNR {before['psnr']:.2f} -> {after['psnr']:.2f} "
                    f"({row['gain_db']:+.2f} dB; verifier {row['verifier_gain_db']:+.2f}; {result.steps} steps, "
                    f"frame '{row['frame']}'{unkept_frame_note(row['frame'], row['searched_frame'])}, {'fallback' if result.fallback else row['augmentations'] or 'no aug'}) {seconds:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapt.json").write_text(json.dumps(rows, indent=1))
    return rows


def renderer_names(rows: list[dict]) -> str:
    """The renderers rows were measured with, for a summary's cell ("a + b" where they differ)."""
    return " + ".join(sorted({r.get("renderer", "") for r in rows}))


def summarize(rows: list[dict]) -> list[dict]:
    """Per set and budget: mean scores, mean/min gain, seconds per scene."""
    table = []
    keys = sorted({(r["set"], r["budget_s"]) for r in rows}, key=lambda k: (SETS.index(k[0]), k[1]))
    for set_name, budget in keys:
        group = [r for r in rows if r["set"] == set_name and r["budget_s"] == budget]
        mean = lambda k: round(statistics.fmean(r[k] for r in group), 3)
        table.append({"set": set_name, "renderer": renderer_names(group), "budget_s": budget, "scenes": len(group),
                      "psnr": f"{mean('psnr_base'):.2f} -> {mean('psnr_adapted'):.2f}",
                      "ssim": f"{mean('ssim_base'):.3f} -> {mean('ssim_adapted'):.3f}",
                      "lpips": f"{mean('lpips_base'):.3f} -> {mean('lpips_adapted'):.3f}",
                      "gain_db": mean("gain_db"), "worst_gain_db": min(r["gain_db"] for r in group),
                      "fallbacks": sum(r["fallback"] for r in group), "s_per_scene": mean("seconds")})
    return table


def plot_gain(rows: list[dict], path: Path) -> Path | None:
    """Mean PSNR gain against the budget, one line per set (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for set_name in SETS:
        budgets = sorted({r["budget_s"] for r in rows if r["set"] == set_name})
        if not budgets:
            continue
        gains = [statistics.fmean(r["gain_db"] for r in rows if r["set"] == set_name and r["budget_s"] == b) for b in budgets]
        ax.plot([0] + budgets, [0] + gains, marker="o", label=set_name)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("adaptation budget (s)")
    ax.set_ylabel("mean PSNR gain on targets (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
