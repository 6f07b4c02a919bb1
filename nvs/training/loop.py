"""`nvs train`: one loop from a 2-core CPU to multi-node GPUs (accelerate: DDP over gloo or NCCL)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast, set_seed
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from nvs.datasets.views import FileViews, MixedViews, ProceduralViews, batch_cameras
from nvs.io.media import image_grid
from nvs.io.outputs import atomic_write_text
from nvs.evaluation.metrics import psnr
from nvs.models import build_renderer
from nvs.models.checkpoint import Renderer, load_renderer, param_checksum
from nvs.models.config import ModelConfig, with_reading_settings
from nvs.models.fast_weight import cpu_has_native_bf16
from nvs.models.plane_sweep import sweep_loss
from nvs.models.view_blend import depth_loss, warp_loss
from nvs.training.grow_depth import add_identity_blocks
from nvs.training.patch_resize import resize_patches
from nvs.training.checkpoints import latest_readable_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from nvs.training.config import OptimConfig, TrainConfig, check_train_config, recipe_changes
from nvs.training.sampling import StepSampler

DATA_KINDS = ("procedural", "lact", "lvsm", "pixelsplat", "nerfstudio", "colmap")


def build_dataset(cfg: TrainConfig, validation: bool = False) -> Dataset | None:
    """The recipe's data (None: no validation data configured)."""
    d = cfg.data
    if d.kind not in DATA_KINDS:
        raise ValueError(f"data.kind {d.kind!r} is not supported; choose one of {DATA_KINDS}")
    if d.kind == "procedural":
        if validation:
            return ProceduralViews(d.scene, d.val_scenes, d.input_views, d.target_views, d.height, d.width, seed=d.val_seed)
        return ProceduralViews(d.scene, d.num_scenes, d.input_views, d.target_views, d.height, d.width, seed=d.seed,
                               depth=d.depth)
    path = d.val_path if validation else d.path
    if path is None:
        if validation:
            return None
        raise ValueError(f"data.kind {d.kind!r} needs data.path (a data set folder or index file)")
    where = ", ".join(path) if isinstance(path, tuple) else path  # for messages
    data = FileViews(path, d.input_views, d.target_views, d.height, d.width, "first" if validation else d.selection,
                     seed=d.seed, normalize=d.normalization or "none", frame_gap=d.frame_gap,
                     depth=d.depth and not validation)
    if data.format != d.kind:
        raise ValueError(f"{where}: holds {data.format} data, the recipe says data.kind={d.kind}")
    if validation:  # the first data.val_scenes of the held-out set, as procedural validation takes that many
        return Subset(data, range(min(d.val_scenes, len(data))))
    if data.depth:  # now, not hours in at the first scene without depth maps
        lacking = [data.name(i) for i in range(len(data)) if data.record(i).depths is None]
        if lacking:
            raise ValueError(f"{where}: data.depth is set but {len(lacking)} of {len(data)} scenes have no depth maps "
                             f"({', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''}); nvs data synth --kind "
                             "furniture, furnished-room or furnished-orbit writes them in the lact format; or set data.depth=false")
    if d.procedural_fraction > 0 and not validation:
        procedural = ProceduralViews(d.scene, d.num_scenes, d.input_views, d.target_views, d.height, d.width, seed=d.seed,
                                     depth=d.depth)
        return MixedViews(data, procedural, d.procedural_fraction)
    return data


def param_groups(model: torch.nn.Module, weight_decay: float, head_lr_scales: dict[str, float] | None = None
                 ) -> list[dict[str, Any]]:
    """Weight decay on tensors with 2+ dims only (matrices and fast-weight initial states); the
    parameters of each module named in ``head_lr_scales`` (e.g. ``{"view_blend": 20.0}``) in groups
    of their own, at that multiple of the learning rate (``lr_scale``)."""
    scales = {name: scale for name, scale in (head_lr_scales or {}).items() if getattr(model, name, None) is not None}

    def owner(param_name: str) -> str | None:
        return next((name for name in scales if param_name.startswith(name + ".")), None)

    groups = []
    for head in [None, *scales]:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and owner(n) == head]
        scale = 1.0 if head is None else scales[head]
        groups += [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay, "lr_scale": scale},
                   {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0, "lr_scale": scale}]
    return [g for g in groups if g["params"]]


def freeze_all_but(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Only the parameters of the modules ``names`` (top-level, such as ``sweep``, or nested, such as
    ``sweep.blender``) train (all of them when empty)."""
    if not names:
        return
    modules = dict(model.named_modules())
    unknown = [name for name in names if not name or modules.get(name) is None]
    if unknown:
        have = sorted(name for name, module in model.named_children() if any(True for _ in module.parameters()))
        raise ValueError(f"optim.train_only names {unknown}, which this renderer lacks; it has {have} "
                         "and the modules inside them, named with dots (module.child)")
    for name, param in model.named_parameters():
        param.requires_grad_(any(name.startswith(module + ".") for module in names))


def lr_factor(step: int, progress: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` as ``progress``
    (the finished fraction of the run, by steps or by time) goes from 0 to 1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max(0.0, progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Schedule:
    """The learning-rate factor at a step. Without a time budget, progress counts the steps
    after warm-up; with one, it is the share of the budget spent after warm-up ended."""

    def __init__(self, cfg: OptimConfig):
        self.cfg = cfg
        self.warmup_end_s: float | None = None  # elapsed seconds when warm-up ended (time budgets)

    def factor(self, step: int, elapsed_s: float) -> float:
        c = self.cfg
        if c.time_budget_s <= 0:
            return lr_factor(step, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps), c.warmup_steps, c.min_lr_ratio)
        if step >= c.warmup_steps and self.warmup_end_s is None:
            self.warmup_end_s = elapsed_s
        start = self.warmup_end_s or 0.0
        progress = (elapsed_s - start) / max(1e-9, c.time_budget_s - start)
        return lr_factor(step, progress, c.warmup_steps, c.min_lr_ratio)


class Losses:
    """MSE, plus LPIPS (weight and switch-on step from the config) once it is switched on, plus,
    for a view-blending renderer's ``blend`` outputs (samples, valid, depth, and a plane sweep's
    plane logits and planes), the warp loss of its samples and the depth loss against the batch's
    ``target_depth``, as the config weighs them."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg.loss
        self._lpips = None
        self.device = device
        # only where bfloat16 is native: a CPU without AVX512-BF16 / AMX emulates it (the scene
        # recipe's first step took 237 s there, its first seven in float32 82 s)
        self.lpips_bf16 = cfg.loss.lpips_bf16 and (device.type != "cpu" or cpu_has_native_bf16())
        self.needs_blend = cfg.loss.warp_weight > 0 or cfg.loss.depth_weight > 0

    def of(self, model, batch: dict[str, torch.Tensor], step: int
           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """``model``'s render of the batch's targets (with the blend outputs the loss needs), its
        loss and the loss's terms."""
        args = batch["inputs"], batch_cameras(batch, "input"), batch_cameras(batch, "target")
        pred, blend = model(*args, with_samples=True) if self.needs_blend else (model(*args), None)
        return (pred, *self(pred, batch, step, blend))

    def __call__(self, pred: torch.Tensor, batch: dict[str, torch.Tensor], step: int,
                 blend: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        target = batch["targets"]
        mse = torch.nn.functional.mse_loss(pred.float(), target.float())
        logs = {"mse": mse.item()}
        loss = mse
        if blend is not None and self.cfg.warp_weight > 0:
            warped = warp_loss(blend[0], target)
            loss = loss + self.cfg.warp_weight * warped
            logs["warp_mse"] = warped.item()
        if blend is not None and self.cfg.depth_weight > 0:
            if "target_depth" not in batch:
                raise ValueError("loss.depth_weight needs samples with the targets' depth (target_depth); "
                                 "this data set gives none")
            target_cams = batch_cameras(batch, "target")
            if len(blend) == 5:  # a plane sweep's, with its plane logits and planes
                depth_error = sweep_loss(blend[2], blend[3], blend[4], batch["target_depth"], target_cams)
            else:
                depth_error = depth_loss(blend[2], batch["target_depth"], target_cams)
            loss = loss + self.cfg.depth_weight * depth_error
            logs["depth_log_l1"] = depth_error.item()  # a plane sweep's includes its planes' cross-entropy
        if self.cfg.lpips_weight > 0 and step >= self.cfg.lpips_start:
            if self._lpips is None:
                from nvs.evaluation.lpips import lpips_model

                self._lpips = lpips_model(self.cfg.lpips_net).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.lpips_bf16):
                perceptual = self._lpips(pred.flatten(0, 1).float(), target.flatten(0, 1).float()).mean().float()
            loss = loss + self.cfg.lpips_weight * perceptual
            logs["lpips"] = perceptual.item()
        return loss, logs


@torch.no_grad()
def validate(model, data: Dataset | None, device: torch.device) -> float:
    """Mean target-view PSNR over the validation scenes (NaN when there are none)."""
    if data is None:
        return float("nan")
    model.eval()
    scores = []
    for i in range(len(data)):
        batch = {k: v[None].to(device) for k, v in data[i].items()}
        pred = model(batch["inputs"], batch_cameras(batch, "input"), batch_cameras(batch, "target"))
        scores.append(psnr(pred, batch["targets"]).mean().item())
    model.train()
    return sum(scores) / max(1, len(scores))


GROWABLE_HEADS = ("view_blend", "pixel_decoder", "sweep")  # modules a recipe may add to a checkpoint that lacks them
# the shape of a plane sweep; its READING_SETTINGS are set afterwards, from the recipe (initial_weights)
SWEEP_KEYS = ("sweep_views", "sweep_planes", "sweep_near", "sweep_far")


def add_heads(model: Renderer, config: ModelConfig) -> Renderer:
    """``model`` with the heads ``config`` has and it lacks (view blending, pixel decoder, plane
    sweep), each new one starting where it changes nothing or little (see their ``reset_parameters``)."""
    changes = {"view_blend": config.view_blend, "view_blend_depth": config.view_blend_depth} \
        if model.config.view_blend == 0 and config.view_blend else {}
    if model.config.pixel_decoder == 0 and config.pixel_decoder:
        changes["pixel_decoder"] = config.pixel_decoder
    if model.config.sweep_views == 0 and config.sweep_views:
        changes.update({key: getattr(config, key) for key in SWEEP_KEYS})
    if not changes:
        return model
    grown = build_renderer(dataclasses.replace(model.config, **changes))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(name.split(".")[0] not in GROWABLE_HEADS for name in missing):
        raise ValueError(f"cannot add heads {sorted(changes)}: unexpected {unexpected}, missing {missing}")
    return grown.train(model.training)


def initial_weights(config: ModelConfig, path: str, heads_from: str | None = None) -> Renderer:
    """The renderer ``config`` describes, with the weights of ``path`` (patches resized, identity
    blocks appended, or a view-blending head, pixel decoder or plane sweep added, if the recipe
    asks for them: fresh, or with the weights of the same head in ``heads_from``). READING_SETTINGS
    (a sweep's range, prior and coarse scores, exposure matching) are settings, not weights: the
    recipe's are taken."""
    loaded = load_renderer(path)
    if loaded.config.patch_size != config.patch_size:
        loaded = resize_patches(loaded, config.patch_size)
    if loaded.config.layers < config.layers:
        loaded = add_identity_blocks(loaded, config.layers)
    had = {name for name, _ in loaded.named_children()}
    loaded = add_heads(loaded, config)
    if heads_from is not None:
        copy_heads(loaded, load_renderer(heads_from), [h for h in GROWABLE_HEADS if h not in had and getattr(loaded, h, None)],
                   heads_from)
    loaded.use_reading_settings(config)
    if loaded.config != config:
        raise ValueError(f"{path}: its model config {loaded.config} differs from the recipe's {config}")
    return loaded.train()


def copy_heads(model: Renderer, donor: Renderer, heads: list[str], where: str) -> None:
    """Load the weights of ``heads`` (modules of ``model``) from the same modules of ``donor``."""
    for head in heads:
        source = getattr(donor, head, None)
        if source is None:
            raise ValueError(f"run.heads_from {where} has no {head} to start the recipe's new {head} from")
        try:
            getattr(model, head).load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"run.heads_from {where}: its {head} does not fit the recipe's ({exc})") from None


def _elapsed_on_rank0(seconds: float, device: torch.device) -> float:
    """Rank 0's clock, so every rank takes the same learning rate and stops at the same step."""
    if AcceleratorState().num_processes == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    return float(broadcast(value, from_process=0))


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # atomic: a run killed while writing it must not leave a config.yaml that blocks resuming
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))


def _check_same_recipe(checkpoint: Path, cfg: TrainConfig) -> None:
    """A checkpoint resumes only the recipe that wrote it (the config.yaml of its run folder):
    resuming with other data, schedule or seed would silently train a mixture of both."""
    saved_path = Path(checkpoint).parent.parent / "config.yaml"
    if not saved_path.is_file():
        return
    changes = recipe_changes(yaml.safe_load(saved_path.read_text()) or {}, cfg)
    if changes:
        raise ValueError(
            f"{checkpoint}: this checkpoint was trained with another recipe ({saved_path}); resuming would "
            f"go on with different settings: {'; '.join(changes)}. Start a fresh run (--no-resume or a new "
            "run.out_dir), or start from its weights with run.init_from")


def model_and_optimizer(cfg: TrainConfig) -> tuple[Renderer, torch.optim.Optimizer]:
    """A recipe's renderer (new weights; its trained parameters, gradient checkpointing and
    sweep's degraded colour as the recipe says) and its AdamW over the parameters it trains."""
    model = build_renderer(cfg.model)
    model.grad_checkpointing = cfg.run.grad_checkpointing
    freeze_all_but(model, cfg.optim.train_only)
    sweep = getattr(model, "sweep", None)
    if sweep is not None:
        sweep.degrade_probability = cfg.optim.sweep_degrade
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay, {
        "view_blend": cfg.optim.view_blend_lr_scale, "pixel_decoder": cfg.optim.pixel_decoder_lr_scale}),
                                  lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))
    return model, optimizer


def train(
    cfg: TrainConfig, resume: str | None = "auto", max_steps: int | None = None, dataset: Dataset | None = None
) -> dict[str, Any]:
    """Run (or continue) training. ``resume``: 'auto' (latest readable checkpoint of the run
    folder, if any), a checkpoint folder, or None (start fresh). ``max_steps`` stops early
    (the schedule still spans optim.steps), as a crash would. ``dataset`` replaces the one the
    recipe describes (items as in nvs.datasets.views). Returns the summary dict."""
    check_train_config(cfg)  # the fields may have been changed since the config was built
    # a run in this process that raised left accelerate's process-wide state (mixed precision) set
    AcceleratorState._reset_state()
    # cpu=True on GPU-less machines lets torchrun-launched processes form a gloo group (MULTI_CPU)
    accelerator = Accelerator(mixed_precision=cfg.run.mixed_precision, cpu=not torch.cuda.is_available())
    run_dir = Path(cfg.run.out_dir)
    device = accelerator.device
    set_seed(cfg.run.seed)

    model, optimizer = model_and_optimizer(cfg)
    schedule = Schedule(cfg.optim)

    start_step, skipped, elapsed_before, found = 0, 0, 0.0, None
    if resume == "auto":
        found = latest_readable_checkpoint(run_dir)
    elif resume:
        found = (Path(resume), *load_checkpoint(Path(resume)))
    if found is not None:
        path, loaded, state = found
        # its reading settings are the recipe's render section's, not training's (see RenderConfig)
        if with_reading_settings(loaded.config, cfg.model) != cfg.model:
            raise ValueError(f"{path}: checkpoint model config differs from the recipe's; refusing to resume")
        _check_same_recipe(path, cfg)
        model.load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_step, skipped = int(state["step"]), int(state["skipped"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        schedule.warmup_end_s = state.get("warmup_end_s")
        if accelerator.is_main_process:
            print(f"resuming from {path} at step {start_step}")
    elif cfg.run.init_from:
        model.load_state_dict(initial_weights(cfg.model, cfg.run.init_from, cfg.run.heads_from).state_dict())
        if accelerator.is_main_process:
            print(f"starting from the weights of {cfg.run.init_from}")
    if accelerator.is_main_process:
        _write_config(run_dir, cfg)

    raw_model = model  # validated and checkpointed: the plain module, whose keys carry no compile prefix
    if cfg.run.compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    losses = Losses(cfg, device)
    if accelerator.is_main_process and cfg.loss.lpips_weight > 0 and cfg.loss.lpips_bf16 and not losses.lpips_bf16:
        print("loss.lpips_bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); the LPIPS loss runs in float32")
    for key in ("warp_weight", "depth_weight"):
        if getattr(cfg.loss, key) > 0 and not (cfg.model.view_blend or cfg.model.sweep_views):
            raise ValueError(f"loss.{key} needs a view-blending renderer (model.view_blend or model.sweep_views > 0)")
    if cfg.run.heads_from and not cfg.run.init_from:
        raise ValueError("run.heads_from gives the heads a recipe adds to run.init_from's weights; set run.init_from too")
    if cfg.loss.depth_weight > 0 and not cfg.data.depth:
        raise ValueError("loss.depth_weight needs the targets' true depth: set data.depth=true (lact-layout data "
                         "written by `nvs data synth --kind furniture|furnished-room`, or procedural data)")

    dataset = build_dataset(cfg) if dataset is None else dataset
    val_data = build_dataset(cfg, validation=True) if accelerator.is_main_process else None
    accum = cfg.optim.grad_accum
    end_step = cfg.optim.steps if max_steps is None else min(cfg.optim.steps, max_steps)
    sampler = StepSampler(len(dataset), cfg.optim.batch_size * accum, start_step, end_step,
                          accelerator.process_index, accelerator.num_processes, cfg.data.seed)
    loader = DataLoader(dataset, batch_size=cfg.optim.batch_size, sampler=sampler, num_workers=cfg.data.workers)
    batches = iter(loader)

    writer = None
    if accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))
    budget = cfg.optim.time_budget_s
    bar = tqdm(total=None if budget > 0 else end_step, initial=start_step, desc="train", dynamic_ncols=True,
               disable=not accelerator.is_main_process)
    t0, last_val = time.time(), None
    history: list[dict[str, float]] = []
    model.train()
    done = start_step
    elapsed = _elapsed_on_rank0(elapsed_before, device) if budget > 0 else 0.0  # read once per step below
    for step in range(start_step, end_step):
        if budget > 0 and elapsed >= budget:  # a resumed run whose budget is already spent
            break
        lr = cfg.optim.lr * schedule.factor(step, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # checkpoints from before the key: one scale
        logs_sum: dict[str, float] = {}
        for micro in range(accum):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            sync = accelerator.no_sync(model) if micro < accum - 1 else nullcontext()
            with sync, accelerator.autocast():
                pred, loss, logs = losses.of(model, batch, step)
                accelerator.backward(loss / accum)
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + v / accum
        held = None
        if step < cfg.optim.view_blend_hold_steps and getattr(raw_model, "view_blend", None) is not None:
            raw_model.view_blend.drop_logit_grads()
            held = raw_model.view_blend.logit_weights()
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
        grad_norm = float(grad_norm)
        if math.isfinite(grad_norm) and grad_norm <= cfg.optim.skip_grad_norm:
            optimizer.step()
            if held is not None:
                raw_model.view_blend.restore_logit_weights(held)
        else:
            skipped += 1
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if budget > 0:
            elapsed = _elapsed_on_rank0(elapsed_before + time.time() - t0, device)
        last = done == end_step or (budget > 0 and elapsed >= budget)

        train_psnr = -10 * math.log10(max(logs_sum["mse"], 1e-10)) if math.isfinite(logs_sum["mse"]) else float("nan")
        history.append({"step": done, "loss": logs_sum["mse"], "psnr": train_psnr, "grad_norm": grad_norm,
                        **{k: v for k, v in logs_sum.items() if k != "mse"}})  # lpips, warp_mse, depth_log_l1
        if accelerator.is_main_process:
            rate = (done - start_step) / max(time.time() - t0, 1e-9)
            bar.update(1)
            left = {"min_left": f"{max(0.0, budget - elapsed) / 60:.1f}"} if budget > 0 else {}
            bar.set_postfix(loss=f"{logs_sum['mse']:.4f}", psnr=f"{train_psnr:.2f}", it_s=f"{rate:.2f}", skipped=skipped, **left)
            if done % cfg.run.log_every == 0:
                for k, v in logs_sum.items():
                    writer.add_scalar(f"train/{k}", v, done)
                writer.add_scalar("train/psnr", train_psnr, done)
                writer.add_scalar("train/grad_norm", grad_norm, done)
                writer.add_scalar("train/lr", lr, done)
                writer.add_scalar("train/skipped_steps", skipped, done)
            if done % cfg.run.image_every == 0:
                rows = [[*batch["inputs"][0][:3]], [*batch["targets"][0][:3]], [*pred[0][:3].detach().float()]]
                writer.add_image("train/inputs|target|prediction", image_grid(rows), done)
        if done % cfg.run.val_every == 0 or done == cfg.optim.steps or (last and budget > 0):
            if accelerator.is_main_process:
                last_val = validate(raw_model, val_data, device)
                writer.add_scalar("val/psnr", last_val, done)
                bar.write(f"step {done}: validation PSNR {last_val:.2f} dB")
            accelerator.wait_for_everyone()
        if done % cfg.run.ckpt_every == 0 or last:
            if accelerator.is_main_process:
                trainer_state = {"step": done, "skipped": skipped, "optimizer": optimizer.state_dict(), "rng": rng_state(),
                                 "elapsed_s": elapsed_before + time.time() - t0, "warmup_end_s": schedule.warmup_end_s}
                save_checkpoint(run_dir, done, raw_model, trainer_state, cfg.run.keep_last, cfg.data.normalization,
                                cfg.render.apply(raw_model.config))
            accelerator.wait_for_everyone()
        if last:
            break
    bar.close()
    # every rank reports a checksum of its parameters: DDP ranks must agree exactly
    checksum = torch.tensor([param_checksum(raw_model)], dtype=torch.float64, device=device)
    checksums = accelerator.gather(checksum).tolist()
    summary = {
        "steps": done, "start_step": start_step, "skipped_steps": skipped, "seconds": round(time.time() - t0, 2),
        "train_seconds_total": round(elapsed_before + time.time() - t0, 2),
        "final_loss": history[-1]["loss"] if history else None, "val_psnr": last_val,
        "processes": accelerator.num_processes, "param_checksums": checksums,
        "ranks_in_sync": len(set(checksums)) == 1, "history": history,
    }
    if accelerator.is_main_process:
        writer.close()
        (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    # ranks leave together, so none tears down its process group while another still writes; one
    # CI run under heavy load saw rank 0 abort at exit ("terminate called without an active exception")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    # accelerate keeps mixed precision in a process-wide singleton; clear it (not the process
    # group) so a later train() in the same process may use other settings
    AcceleratorState._reset_state()
    return summary
