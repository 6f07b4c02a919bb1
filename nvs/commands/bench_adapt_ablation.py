"""`nvs bench adapt-ablation`: which augmentation, and which training loss, make adaptation pay.

Each arm adapts every scene of the held-out sets (:func:`nvs.commands.bench_adapt.heldout_scenes`)
with one fixed augmentation set and one LPIPS weight of the loss, for a fixed number of training
steps and a fixed seed, so that a row does not depend on the machine's load (the time budget is
set out of reach). Each row scores the four target views (never seen by the adaptation), PSNR,
SSIM and LPIPS (vgg, not the alex net a loss may train on):
- ``last``: the adapter after the final step (what the training alone bought);
- ``kept``: what :func:`nvs.adaptation.search.adapt` returns (the verifier's best step, or the
  unadapted model when the verifier did not improve).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from nvs.adaptation.adapter import apply_adapter
from nvs.adaptation.search import AdaptOptions, adapt
from nvs.commands.bench_adapt import SETS, heldout_scenes, loaded_renderers, renderer_names, scene_renderer, target_scores

AUGMENTATION_SETS = {"none": (), "mirror": ("mirror",), "rotate": ("rotate",), "colour": ("colour",),
                     "all": ("mirror", "rotate", "colour")}
UNREACHABLE_BUDGET_S = 86_400.0  # steps, not seconds, end a run: the rows do not depend on the load


@dataclass(frozen=True)
class Arm:
    """One configuration of the ablation: an augmentation set (a key of AUGMENTATION_SETS) and the
    LPIPS weight of the training loss (0: MSE alone)."""

    augmentations: str
    lpips_weight: float

    @property
    def name(self) -> str:
        loss = "mse" if self.lpips_weight == 0 else f"mse+{self.lpips_weight:g}*lpips"
        return f"{self.augmentations}/{loss}"

    def options(self, steps: int, seed: int) -> AdaptOptions:
        return AdaptOptions(budget_s=UNREACHABLE_BUDGET_S, max_steps=steps, seed=seed, lpips_weight=self.lpips_weight,
                            augmentation_sets=(AUGMENTATION_SETS[self.augmentations],))


def ablation_arms(augmentations, lpips_weights) -> list[Arm]:
    """Every augmentation set (names of AUGMENTATION_SETS) with every LPIPS weight, in the order given."""
    unknown = [a for a in augmentations if a not in AUGMENTATION_SETS]
    if unknown:
        raise ValueError(f"unknown augmentation sets {unknown}; choose from {list(AUGMENTATION_SETS)}")
    if any(not w >= 0 for w in lpips_weights):
        raise ValueError(f"LPIPS weights must be >= 0, got {list(lpips_weights)}")
    return [Arm(a, float(w)) for a in augmentations for w in lpips_weights]


def adapt_arm(model, arm: Arm, inputs, in_cams, targets, tg_cams, steps: int, seed: int) -> dict:
    """Adapt to one scene (inputs [8, 3, H, W] only) under one arm; target scores of the last and kept states."""
    start = time.perf_counter()
    result = adapt(model, inputs, in_cams, arm.options(steps, seed))
    seconds = time.perf_counter() - start
    last_model = result.model if result.last_adapter is None else apply_adapter(model, result.last_adapter, check=False)
    last = target_scores(last_model, inputs, in_cams, targets, tg_cams)
    kept = target_scores(result.model, inputs, in_cams, targets, tg_cams)
    return {"arm": arm.name, "augmentations": arm.augmentations, "lpips_weight": arm.lpips_weight, "steps": result.steps,
            **{f"{k}_last": round(v, 4) for k, v in last.items()}, **{f"{k}_kept": round(v, 4) for k, v in kept.items()},
            "fallback": result.fallback, "kept_step": int(result.adapter.info.get("step", 0)),
            "frame": result.adapter.frame.name, "searched_frame": result.searched_frame, "seconds": round(seconds, 1)}


def bench_adapt_ablation(checkpoint, out: Path, sets=SETS, scenes: int = 2, arms: list[Arm] | None = None, steps: int = 20,
                         seed: int = 0, log=print) -> list[dict]:
    """Rows: one per (scene, arm), with the renderer ``checkpoint`` (a ``--checkpoint`` value) gives
    the scene (:func:`nvs.commands.bench_adapt.scene_renderer`) and the unadapted scores;
    adapt-ablation.json is rewritten after each row."""
    arms = arms or ablation_arms(list(AUGMENTATION_SETS), [0.0])
    out.mkdir(parents=True, exist_ok=True)
    rows, loaded = [], loaded_renderers(checkpoint)
    for set_name in sets:
        for name, inputs, in_cams, targets, tg_cams in heldout_scenes(set_name, scenes):
            model, path, in_cams, tg_cams = scene_renderer(checkpoint, inputs, in_cams, tg_cams, loaded)
            base = {f"{k}_base": round(v, 4) for k, v in target_scores(model, inputs, in_cams, targets, tg_cams).items()}
            for arm in arms:
                row = {"set": set_name, "scene": name, "renderer": path.name, **base,
                       **adapt_arm(model, arm, inputs, in_cams, targets, tg_cams, steps, seed)}
                rows.append(row)
                (out / "adapt-ablation.json").write_text(json.dumps(rows, indent=1))
                log(f"{set_name:15s} {name:22s} {arm.name:24s} PSNR {row['psnr_base']:.2f} -> last {row['psnr_last']:.2f}, "
                    f"kept {row['psnr_kept']:.2f} (step {row['kept_step']}{', fallback' if row['fallback'] else ''}); "
                    f"LPIPS {row['lpips_base']:.3f} -> {row['lpips_last']:.3f}; {row['seconds']:.0f} s")
    return rows


def summarize_ablation(rows: list[dict]) -> list[dict]:
    """Per set and arm, then per arm over every set ('all sets'): mean target scores, unadapted -> last
    step, the mean PSNR gain of the last and of the kept state, and fallbacks."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    sets = [s for s in SETS if any(r["set"] == s for r in rows)]
    table = []
    for set_name in [*sets, "all sets"]:
        for arm in arms:
            group = [r for r in rows if r["arm"] == arm and set_name in (r["set"], "all sets")]
            if not group:
                continue
            mean = lambda k: statistics.fmean(r[k] for r in group)
            table.append({"set": set_name, "arm": arm, "renderer": renderer_names(group), "scenes": len(group),
                          "psnr_last": f"{mean('psnr_base'):.2f} -> {mean('psnr_last'):.2f}",
                          "gain_last_db": round(mean("psnr_last") - mean("psnr_base"), 2),
                          "gain_kept_db": round(mean("psnr_kept") - mean("psnr_base"), 2),
                          "ssim_last": f"{mean('ssim_base'):.3f} -> {mean('ssim_last'):.3f}",
                          "lpips_last": f"{mean('lpips_base'):.3f} -> {mean('lpips_last'):.3f}",
                          "lpips_kept": round(mean("lpips_kept"), 3),
                          "fallbacks": sum(r["fallback"] for r in group), "s_per_scene": round(mean("seconds"), 1)})
    return table
