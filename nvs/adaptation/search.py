"""Verified test-time adaptation of a renderer to one scene, within a time budget.

adapt(base, images [K, 3, H, W], cams [K]) only ever sees the scene's input views:

1. Held-out views: ``verifier_views`` inputs (those nearest the middle of the cameras) verify and
   the next ``confirm_views`` confirm; both stay out of every training task. The verifier score is
   the PSNR of rendering the verifier views from the training views.
2. Scene frame: candidate frames (:mod:`nvs.adaptation.frames`) are scored by leave-one-out PSNR
   on the training views with the base model; the best is adapted in.
3. Augmentation set: each candidate set trains for a short slice; the verifier picks one, which
   trains on for the rest of the budget.
4. Steps: tasks train on MSE (plus ``lpips_weight`` times LPIPS); the verifier scores the
   adapter every ``verify_every`` steps; the best step is kept.
5. Fallback: unless the best verified state beats the unadapted base model in the scene's own
   frame by ``min_gain_db``, the result is the base model unchanged. A new frame must likewise
   beat the given one by ``frame_margin_db``: the frame a scene comes in is the first guess.
6. Confirmation: the verifier chose among dozens of noisy states, so its best score is biased
   upwards. The chosen result (frame and adapter) is therefore scored once more, on the
   confirmation views rendered from all the other inputs, and it too must beat the base model by
   ``min_gain_db``, or the result is the base model unchanged.

The verifier's curve (every score with its step, seconds and phase) comes back in the result.
For a seed and a step count (``max_steps``, with a budget long enough to reach it) the result
is deterministic; a time budget alone stops after however many steps the machine managed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs.adaptation.adapter import Adapter, AdaptedRenderer, TrainableCopy, apply_adapter, check_parts
from nvs.adaptation.frames import GIVEN_FRAME, SceneFrame, frame_candidates
from nvs.adaptation.loss import photometric_loss
from nvs.adaptation.tasks import sample_task, split_held_out
from nvs.cameras import Cameras
from nvs.inference import model_device
from nvs.models.checkpoint import param_checksum
from nvs.progress import Progress, no_progress


@dataclass
class AdaptOptions:
    """Settings of :func:`adapt` (defaults: the measured choice, BENCHMARKS.md, "Test-time adaptation")."""

    budget_s: float = 60.0
    max_steps: int | None = None
    parts: tuple[str, ...] = ("lora", "norms")
    rank: int = 4
    lr: float = 1e-2
    verifier_views: int = 1
    # one more held-out view, scored only once at the end: with the plane-sweep object renderer the
    # verifier alone rated 7 of 8 adapters that lost on the targets as gains
    confirm_views: int = 1
    verify_every: int = 3
    # none: measured over 14 out-of-distribution scenes (BENCHMARKS.md), each augmentation alone and all three
    # together gained 0.2-1.1 dB less than the scene's own leave-one-out tasks
    augmentation_sets: tuple[tuple[str, ...], ...] = ((),)
    selection_fraction: float = 0.3  # share of the training time spent choosing the augmentation set
    search_frames: bool = True
    frame_budget_fraction: float = 0.25
    loo_tasks: int = 3  # leave-one-out renders per frame candidate
    # a training task's context holds at most this many views: adaptation was measured on captures of
    # 8 inputs (tasks of up to 5 around a left-out view); a larger capture, such as the 48 views
    # `nvs render --views auto` can take, trains on subsets at a small capture's cost and memory
    max_task_context: int = 7
    min_gain_db: float = 0.3  # a single held-out view is a noisy judge: small gains are not trusted
    frame_margin_db: float = 0.3  # a new frame must beat the given one by this much (leave-one-out PSNR)
    lpips_weight: float = 0.0  # training loss: MSE + this weight times LPIPS (alex) on each task's answer
    seed: int = 0

    def __post_init__(self) -> None:
        self.parts = check_parts(self.parts)
        if self.budget_s <= 0:
            raise ValueError(f"the adaptation budget must be positive, got {self.budget_s} s")
        if self.verifier_views < 1 or self.confirm_views < 0:
            raise ValueError(f"give at least 1 verifier view and 0 or more confirmation views, got {self.verifier_views} and {self.confirm_views}")
        if self.max_task_context < 1:
            raise ValueError(f"a task needs at least 1 context view, got max_task_context={self.max_task_context}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")
        if not self.augmentation_sets:
            raise ValueError("give at least one augmentation set (an empty one means none)")
        if not self.lpips_weight >= 0:
            raise ValueError(f"the LPIPS weight of the adaptation loss must be >= 0, got {self.lpips_weight}")


@dataclass
class AdaptResult:
    """model: the renderer to use (the base one wrapped, when the fallback applies); adapter: what
    was learned (empty for the fallback); best_verifier_psnr: the verifier's best score, also when
    the fallback applies (fallback_reason says why); curve: the verifier's scores; base_confirm_psnr and
    confirm_psnr: the confirmation views' PSNR unadapted and with the verifier's choice (None
    without confirmation views or without a choice to confirm); last_adapter: the state after the
    final training step, before the verifier's choice (None when nothing trained; for measuring the
    training itself); searched_frame: the scene frame the search chose, kept only when the adapter
    is (a fallback renders in the frame the scene came in)."""

    model: AdaptedRenderer
    adapter: Adapter
    fallback: bool
    base_verifier_psnr: float
    best_verifier_psnr: float
    curve: list[dict] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)
    augmentations: tuple[str, ...] = ()
    steps: int = 0
    seconds: float = 0.0
    last_adapter: Adapter | None = None
    base_confirm_psnr: float | None = None
    confirm_psnr: float | None = None
    fallback_reason: str = ""
    searched_frame: str = GIVEN_FRAME

    def summary(self) -> dict:
        return {"fallback": self.fallback, "fallback_reason": self.fallback_reason, "base_verifier_psnr": self.base_verifier_psnr,
                "best_verifier_psnr": self.best_verifier_psnr, "verifier_gain_db": self.best_verifier_psnr - self.base_verifier_psnr,
                "base_confirm_psnr": self.base_confirm_psnr, "confirm_psnr": self.confirm_psnr,
                "frame": self.adapter.frame.name, "searched_frame": self.searched_frame,
                "augmentations": list(self.augmentations), "steps": self.steps,
                "seconds": self.seconds, "adapter_values": self.adapter.num_values(), "frames": self.frames, "curve": self.curve}


def unkept_frame_note(frame: str, searched_frame: str) -> str:
    """" (the search chose frame 'X', not kept)" where a result renders in ``frame`` although its
    search chose ``searched_frame`` (a fallback); else ""."""
    return "" if searched_frame == frame else f" (the search chose frame '{searched_frame}', not kept)"


def _psnr(pred: Tensor, target: Tensor) -> float:
    mse = F.mse_loss(pred.clamp(0, 1).float(), target.float(), reduction="none").flatten(1).mean(1)
    return float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def _render(model: nn.Module, images: Tensor, cams: Cameras, targets: Cameras) -> Tensor:
    device = model_device(model)
    was_training = model.training
    model.eval()
    out = model(images[None].to(device), cams.unsqueeze(0).to(device), targets.unsqueeze(0).to(device))[0].cpu()
    model.train(was_training)
    return out


def leave_one_out_psnr(model: nn.Module, images: Tensor, cams: Cameras, tasks: int = 3) -> float:
    """Mean PSNR of rendering each of ``tasks`` evenly chosen views [N] from the other N - 1."""
    n = images.shape[0]
    picks = sorted({round(i * (n - 1) / max(tasks - 1, 1)) for i in range(min(tasks, n))}) if tasks > 1 else [0]
    scores = []
    for i in picks:
        rest = torch.tensor([j for j in range(n) if j != i])
        scores.append(_psnr(_render(model, images[rest], cams[rest], cams[i : i + 1]), images[i : i + 1]))
    return sum(scores) / len(scores)


class _Adam:
    """Adam (Kingma & Ba) without weight decay, written out: torch.optim's first use imports
    torch._dynamo, tens of seconds on a busy CPU, which a budget of seconds cannot absorb."""

    def __init__(self, params: list[nn.Parameter], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


class _Clock:
    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed


def adapt(base: nn.Module, images: Tensor, cams: Cameras, options: AdaptOptions | None = None,
          progress: Progress = no_progress) -> AdaptResult:
    """Adapt ``base`` to the scene of input views images [K, 3, H, W] with cameras [K] (see module doc).

    Never sees any other view of the scene: the targets of an evaluation are not an argument.
    """
    opts = options or AdaptOptions()
    if images.ndim != 4 or images.shape[0] != cams.shape[0]:
        raise ValueError(f"adapt takes images [K, 3, H, W] with cameras [K], got {tuple(images.shape)} and {tuple(cams.shape)}")
    clock = _Clock(opts.budget_s)
    torch.manual_seed(opts.seed)
    generator = torch.Generator().manual_seed(opts.seed)
    images = images.detach().float().cpu()
    cams = cams.to("cpu")
    train_idx, verify_idx, confirm_idx = split_held_out(cams, opts.verifier_views, opts.confirm_views)
    tr_images, tr_cams = images[train_idx], cams[torch.tensor(train_idx)]
    ver_images, ver_cams = images[verify_idx], cams[torch.tensor(verify_idx)]
    context_idx = torch.tensor(sorted(train_idx + verify_idx))  # what the confirmation views are rendered from
    checksum = param_checksum(base)
    base = base.eval()

    def verifier_psnr(model: nn.Module, frame: SceneFrame) -> float:
        return _psnr(_render(model, tr_images, frame.apply(tr_cams), frame.apply(ver_cams)), ver_images)

    curve: list[dict] = []
    progress("adapt: verifier", 0.0)
    base_score = verifier_psnr(base, SceneFrame.identity())
    render_s = clock.elapsed  # one render of the verifier: the unit of every cost estimate below
    curve.append({"phase": "base", "step": 0, "seconds": clock.elapsed, "psnr": base_score})

    # --- the scene frame, by leave-one-out PSNR on the training views (the verifier stays out)
    frame, frames_report = SceneFrame.identity(), []
    candidates = frame_candidates(cams) if opts.search_frames else [frame]
    loo_s = render_s * min(opts.loo_tasks, len(train_idx))
    if len(candidates) > 1 and 2 * loo_s + render_s < opts.budget_s * opts.frame_budget_fraction:
        best_loo = None
        for i, cand in enumerate(candidates):
            if clock.elapsed + loo_s + render_s > opts.budget_s * opts.frame_budget_fraction:
                break
            score = leave_one_out_psnr(base, tr_images, cand.apply(tr_cams), opts.loo_tasks)
            frames_report.append({"frame": cand.name, "loo_psnr": score})
            margin = 0.0 if cand.is_identity else opts.frame_margin_db
            if best_loo is None or score > best_loo + margin:
                frame, best_loo = cand, score
            progress("adapt: scene frame", (i + 1) / len(candidates))
    frame_score = base_score if frame.is_identity else verifier_psnr(base, frame)
    if not frame.is_identity:
        curve.append({"phase": f"frame: {frame.name}", "step": 0, "seconds": clock.elapsed, "psnr": frame_score})
    f_images, f_cams = tr_images, frame.apply(tr_cams)

    best = {"psnr": frame_score, "adapter": None, "step": 0, "augs": ()}
    last: dict = {"adapter": None}
    task_loss = photometric_loss(opts.lpips_weight)
    total_steps = 0
    step_s = 2.5 * render_s  # a training step renders fewer views but also runs backward: a first guess

    def train(copy_: TrainableCopy, optim, augs: tuple[str, ...], until_s: float, phase: str, max_steps: int | None) -> int:
        """Train until ``until_s`` seconds of the clock (or max_steps), keeping time to verify the
        last state; verify every verify_every steps and at the end."""
        nonlocal total_steps, step_s
        steps, verified = 0, 0

        def verify(loss: Tensor) -> None:
            score = verifier_psnr(copy_.model, frame)
            curve.append({"phase": phase, "step": steps, "seconds": clock.elapsed, "psnr": score, "loss": float(loss.detach())})
            if score > best["psnr"]:
                best.update(psnr=score, adapter=copy_.adapter(checksum, frame), step=steps, augs=augs)
            copy_.model.train()

        copy_.model.train()
        loss = None
        while (max_steps is None or steps < max_steps) and clock.elapsed + step_s + render_s < until_s:
            t0 = time.perf_counter()
            task = sample_task(f_images, f_cams, generator, augs, max_context=opts.max_task_context)
            device = model_device(copy_.model)
            pred = copy_.model(task.context[None].to(device), task.context_cams.unsqueeze(0).to(device),
                               task.answer_cams.unsqueeze(0).to(device))[0]
            loss = task_loss(pred, task.answer.to(device))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(copy_.parameters(), 1.0)
            optim.step()
            steps += 1
            total_steps += 1
            step_s = 0.7 * step_s + 0.3 * (time.perf_counter() - t0)
            if steps % opts.verify_every == 0:
                verify(loss)
                verified = steps
            progress(f"adapt: {phase}", min(1.0, max(clock.elapsed / until_s, steps / max_steps if max_steps else 0.0)))
        if loss is not None and verified != steps:
            verify(loss)
        if loss is not None:
            last["adapter"] = copy_.adapter(checksum, frame)
        return steps

    def new_run():
        copy_ = TrainableCopy(base, opts.parts, opts.rank, opts.seed)
        return copy_, _Adam(copy_.parameters(), lr=opts.lr)

    sets = [tuple(s) for s in opts.augmentation_sets]
    confirm_s = 2.5 * render_s if confirm_idx else 0.0  # two renders from one more view than the verifier's
    train_budget = clock.left() - confirm_s
    if opts.max_steps != 0 and train_budget > 0:
        per_set_steps = None if opts.max_steps is None else max(1, round(opts.max_steps * opts.selection_fraction / len(sets)))
        runs = []
        if len(sets) > 1:
            slice_s = train_budget * opts.selection_fraction / len(sets)
            for augs in sets:
                copy_, optim = new_run()
                before = len(curve)
                n = train(copy_, optim, augs, clock.elapsed + slice_s, "select " + ("+".join(augs) or "no augmentation"), per_set_steps)
                scores = [c["psnr"] for c in curve[before:]]
                runs.append((max(scores) if scores else float("-inf"), augs, copy_, optim, n))
            runs.sort(key=lambda r: -r[0])
        else:
            copy_, optim = new_run()
            runs.append((float("-inf"), sets[0], copy_, optim, 0))
        _, augs, copy_, optim, done = runs[0]
        remaining = None if opts.max_steps is None else max(0, opts.max_steps - sum(r[4] for r in runs))
        if remaining != 0:
            train(copy_, optim, augs, opts.budget_s - confirm_s, "train " + ("+".join(augs) or "no augmentation"), remaining)
    fallback = best["psnr"] < base_score + opts.min_gain_db
    reason = "the verifier did not improve" if fallback else ""
    chosen = Adapter({}, frame, checksum, (), 0) if best["adapter"] is None else best["adapter"]  # None: the frame alone helped
    candidate = None if fallback else apply_adapter(base, chosen, check=False)
    base_confirm = confirm_score = None
    if candidate is not None and confirm_idx:
        progress("adapt: confirmation", 0.0)
        conf = torch.tensor(confirm_idx)

        def confirm_psnr(m: nn.Module) -> float:
            return _psnr(_render(m, images[context_idx], cams[context_idx], cams[conf]), images[conf])

        base_confirm, confirm_score = confirm_psnr(base), confirm_psnr(candidate)
        curve.append({"phase": "confirm", "step": best["step"], "seconds": clock.elapsed, "psnr": confirm_score,
                      "base_psnr": base_confirm})
        if confirm_score < base_confirm + opts.min_gain_db:
            fallback, reason = True, "the confirmation views did not improve"
    progress("adapt: done", 1.0)
    adapter = Adapter.empty(checksum, {"reason": reason}) if fallback else chosen
    model = apply_adapter(base, adapter, check=False) if fallback else candidate
    adapter.info.update({"verifier_psnr_base": base_score, "verifier_psnr": best["psnr"],
                         "step": best["step"] if not fallback else 0, "augmentations": list(best["augs"])})
    return AdaptResult(model, adapter, fallback, base_score, best["psnr"], curve, frames_report,
                       best["augs"] if not fallback else (), total_steps, clock.elapsed, last["adapter"], base_confirm,
                       confirm_score, reason, frame.name)
