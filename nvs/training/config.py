"""Training recipes: YAML -> typed dataclasses, with dotted ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nvs.models.config import READING_SETTINGS, ModelConfig
from nvs.geometry.scene_normalization import NORMALIZATIONS


@dataclass
class DataConfig:
    kind: str = "procedural"  # procedural | lact | lvsm | pixelsplat | nerfstudio | colmap
    scene: str = "object"  # procedural scenes: object | room
    path: str | tuple[str, ...] | None = None  # data set root or index file for the file formats; a list reads several as one
    num_scenes: int = 1_000_000  # procedural: distinct training scenes (seeds seed .. seed + n - 1)
    input_views: int = 4
    target_views: int = 2
    height: int = 64
    width: int = 64
    seed: int = 0
    # file data: re-express each sample by a named rule (nvs.geometry.scene_normalization: lvsm,
    # object, none, lact); true means lvsm. The renderer's checkpoints record it
    normalize: bool | str = False
    selection: str = "random"  # file data: random | gap (video windows of frame_gap frames) | spread | first
    frame_gap: tuple[int, int] = (25, 192)  # selection=gap: min and max frames between the outer inputs
    val_path: str | None = None  # file data: held-out data set for validation (default: none)
    val_scenes: int = 8  # validation scenes: procedural ones, or the first of val_path's
    val_seed: int = 50_000_000  # procedural validation scenes use seeds from here on
    workers: int = 0
    # file data: this share of training samples are procedural scenes of kind `scene` instead
    procedural_fraction: float = 0.0
    # training samples also carry their targets' true depth (lact-layout depth maps, and the
    # procedural scenes' own), for loss.depth_weight
    depth: bool = False

    @property
    def normalization(self) -> str | None:
        """The scene normalisation of the training samples, which the trained renderer will expect
        (recorded in its checkpoints): the rule ``normalize`` names, ``lvsm`` for true and for
        procedural rooms (always re-expressed), else None."""
        if isinstance(self.normalize, str):
            return None if self.normalize == "none" else self.normalize
        only_rooms = self.kind == "procedural" and self.scene == "room"
        return "lvsm" if self.normalize or only_rooms else None


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05  # only on tensors with 2+ dims
    warmup_steps: int = 4000
    steps: int = 100_000
    batch_size: int = 8  # per process, per micro-batch
    grad_accum: int = 1
    clip_grad_norm: float = 1.0
    skip_grad_norm: float = 4.0  # skip steps whose gradient norm is above this, or non-finite
    min_lr_ratio: float = 0.0
    # > 0: train for this many wall-clock seconds (steps becomes a cap) and decay the learning
    # rate over time instead of steps, so runs of different speed get the same budget
    time_budget_s: float = 0.0
    # learning rate of a view-blending head (models/view_blend.py) as a multiple of lr: a new head
    # starts from zero weights and its biases must move by whole units, the rest only a little
    view_blend_lr_scale: float = 1.0
    # the same for a pixel decoder (models/pixel_decoder.py), whose last layer starts at zero
    pixel_decoder_lr_scale: float = 1.0
    # a view-blending head's blending logits stay as they are for this many steps (their gradients
    # are dropped) while its depth trains: on wide baselines a new head's samples land on the wrong
    # pixels at first, and it learns to shut them out before the depth is right
    view_blend_hold_steps: int = 0
    # top-level modules of the renderer that train (e.g. [sweep]); the rest stay frozen and pass
    # no gradients. Empty: everything trains
    train_only: tuple[str, ...] = ()
    # a plane sweep's blend sees, with this probability per target, a blurred and colour-shifted
    # decoded colour (models/plane_sweep.degrade): the renderer's colour on photos unlike its
    # training data, which the blend must not trust where the photos agree
    sweep_degrade: float = 0.0


@dataclass
class LossConfig:
    lpips_weight: float = 0.0
    lpips_start: int = 5000
    lpips_net: str = "vgg"
    # the LPIPS network in bfloat16 autocast: on a CPU with AMX the VGG loss of 16 128x128 views
    # took 2.9 s instead of 6.8 (forward + backward), its value moved by 2e-4; on a CPU without
    # AVX512-BF16 or AMX it runs in float32 instead, and the run says so
    lpips_bf16: bool = False
    # a view-blending renderer: MSE of each depth-warped input sample against the target, over
    # every pixel (models/view_blend.warp_loss), which trains the depth whatever the blending weights
    warp_weight: float = 0.0
    # a view-blending renderer: mean absolute log-depth error of its decoded depth against the
    # targets' true depth where they show a surface (models/view_blend.depth_loss; needs data.depth);
    # a plane sweep adds the cross-entropy of its planes (models/plane_sweep.sweep_loss). With both
    # a view-blending head and a plane sweep, these two losses train the sweep's depth only
    depth_weight: float = 0.0


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    init_from: str | None = None  # start (not resume) from these weights; the patch may grow by an integer factor, the depth may grow
    # the heads the recipe adds to init_from's weights (view blending, pixel decoder, plane sweep)
    # start from this checkpoint's, when it has them in the same shapes (e.g. the object renderer's sweep)
    heads_from: str | None = None
    seed: int = 0
    mixed_precision: str = "no"  # no | bf16 (bf16 autocast on GPU, optional on CPU)
    grad_checkpointing: bool = False
    compile: bool = False
    log_every: int = 10
    image_every: int = 500
    val_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3


@dataclass
class RenderConfig:
    """How the run's checkpoints say to read photos at render time, where that differs from training
    (None: as trained). A recipe may train with the fixed sweep range and without exposure matching,
    for speed, and still write checkpoints that render as the shipped renderer does."""

    sweep_range: str | None = None
    sweep_zncc: float | None = None
    sweep_zncc_views: int | None = None
    sweep_coarse: float | None = None
    sweep_coarse_levels: int | None = None
    sweep_max_step: float | None = None
    sweep_refine: int | None = None
    sweep_depth_views: int | None = None
    sweep_hull: float | None = None
    sweep_front: float | None = None
    sweep_head_prior: float | None = None
    match_exposure: bool | None = None
    backdrop_white: bool | None = None
    photo_interpolation: str | None = None
    frame_extent: float | None = None
    frame_canvas: bool | None = None
    mirror: bool | None = None

    def apply(self, model: ModelConfig) -> ModelConfig:
        """``model`` with these settings laid over it (checked as any model config is)."""
        return dataclasses.replace(model, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None})


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        check_train_config(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# key -> (lowest, highest, lowest excluded): checked at the border so nothing divides by zero or
# allocates from a nonsensical value later
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "data.num_scenes": (1, 2**62, False), "data.input_views": (1, 4096, False), "data.target_views": (1, 4096, False),
    "data.height": (1, 8192, False), "data.width": (1, 8192, False), "data.seed": (0, 2**62, False),
    "data.val_scenes": (0, 2**31, False), "data.val_seed": (0, 2**62, False), "data.workers": (0, 256, False),
    "data.procedural_fraction": (0, 1, False),
    "optim.lr": (0, 10, True), "optim.weight_decay": (0, 10, False), "optim.warmup_steps": (0, 2**62, False),
    "optim.steps": (1, 2**62, False), "optim.batch_size": (1, 65536, False), "optim.grad_accum": (1, 65536, False),
    "optim.clip_grad_norm": (0, 1e12, True), "optim.skip_grad_norm": (0, float("inf"), True),
    "optim.min_lr_ratio": (0, 1, False), "optim.time_budget_s": (0, 1e9, False),
    "optim.view_blend_lr_scale": (0, 1e4, True), "optim.pixel_decoder_lr_scale": (0, 1e4, True),
    "optim.view_blend_hold_steps": (0, 2**62, False), "optim.sweep_degrade": (0, 1, False),
    "loss.lpips_weight": (0, 1e6, False), "loss.lpips_start": (0, 2**62, False), "loss.warp_weight": (0, 1e6, False),
    "loss.depth_weight": (0, 1e6, False),
    "run.seed": (0, 2**62, False), "run.log_every": (1, 2**62, False), "run.image_every": (1, 2**62, False),
    "run.val_every": (1, 2**62, False), "run.ckpt_every": (1, 2**62, False), "run.keep_last": (1, 10**6, False),
}
_CHOICES = {"data.selection": ("random", "gap", "spread", "first"),
            "loss.lpips_net": ("vgg", "alex"), "run.mixed_precision": ("no", "bf16", "fp16")}


def check_train_config(cfg: "TrainConfig") -> None:
    """Refuse values no run can use (zero intervals, negative sizes, NaN rates), naming the key."""
    import math

    for key, (low, high, open_low) in _BOUNDS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
              and (value > low if open_low else value >= low) and value <= high)
        if not ok:
            bound = f"above {low:g}" if open_low else f"at least {low:g}"
            raise ValueError(f"config key '{key}' must be {bound} and at most {high:g}, got {value!r}")
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) not in allowed:
            raise ValueError(f"config key '{key}' must be one of {allowed}, got {getattr(getattr(cfg, section), name)!r}")
    betas = cfg.optim.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"config key 'optim.betas' must be two numbers in [0, 1), got {betas!r}")
    norm = cfg.data.normalize
    if not isinstance(norm, bool) and norm not in NORMALIZATIONS:
        raise ValueError(f"config key 'data.normalize' must be true, false or one of {NORMALIZATIONS}, got {norm!r}")
    gap = cfg.data.frame_gap
    if len(gap) != 2 or not 1 <= gap[0] <= gap[1]:
        raise ValueError(f"config key 'data.frame_gap' must be [min, max] with 1 <= min <= max, got {gap!r}")
    if cfg.optim.sweep_degrade > 0 and not cfg.model.sweep_views:
        raise ValueError("config key 'optim.sweep_degrade' needs a plane sweep (model.sweep_views > 0)")
    try:
        cfg.render.apply(cfg.model)
    except ValueError as exc:
        raise ValueError(f"config section 'render': {exc}") from None


def _all_keys(cls, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or (isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory)):
            keys += _all_keys(f.default_factory, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _coerce(value: Any, type_name: str, key: str) -> Any:
    """Convert a YAML value to the field's declared type ('3e-3' is a string in YAML 1.1)."""
    try:
        if value is None and "None" in type_name:
            return None
        if type_name.startswith("float"):
            return float(value)
        if type_name.startswith("int"):
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if type_name in ("bool", "bool | None"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if type_name.startswith("tuple"):
            if isinstance(value, (str, bytes)):
                raise ValueError
            item = type_name[len("tuple["):].split(",")[0].strip()
            return tuple(_coerce(v, item, key) for v in value)
        if type_name.startswith("str | tuple") and isinstance(value, (list, tuple)):  # one or several
            if not value or not all(isinstance(v, str) for v in value):
                raise ValueError
            return tuple(value)
        if type_name.startswith("str"):
            if isinstance(value, (list, tuple, dict)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"config key '{key}' expects {type_name}, got {value!r}") from None
    return value


def _fill(cls, data: dict[str, Any], where: str, **given: Any):
    """cls built from the mapping ``data`` (checked key by key) and the fields ``given`` as they are."""
    valid = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean '{where}{close[0]}'?" if close else ""
            raise ValueError(f"unknown config key '{where}{key}'{hint}")
        factory = valid[key].default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            if not isinstance(value, dict):
                raise ValueError(f"config key '{where}{key}' must be a mapping")
            kwargs[key] = _fill(factory, value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, str(valid[key].type), where + key)
    return cls(**kwargs, **given)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested dict; unknown keys raise
    with the closest valid key."""
    known = _all_keys(TrainConfig)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown config key '{key}'{hint}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` laid over ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe at ``path`` as a dict, its ``model`` path read into a mapping and its ``base``
    recipe (a path relative to this recipe's folder) laid underneath it."""
    if not path.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ValueError(f"{path}: training config not found{where}")
    if path.resolve() in {p.resolve() for p in chain}:
        raise ValueError(f"{path}: recipes name each other as base: {' -> '.join(map(str, chain + (path,)))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping")
    model = data.get("model")
    if isinstance(model, str):
        model_path = Path(model)
        if not model_path.is_absolute() and not model_path.exists():
            model_path = path.parent / model_path
        data["model"] = ModelConfig.from_yaml(model_path).to_dict()
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'base' must be the path of another recipe")
    return _merge(_read_recipe(path.parent / base, chain + (path,)), data)


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a recipe. ``model`` may be a mapping or the path of a model YAML (relative paths are
    resolved against the recipe's folder); ``base`` names a recipe whose settings this one changes."""
    data = _read_recipe(Path(path)) if path is not None else {}
    data = apply_overrides(data, list(overrides))
    model_cfg = ModelConfig.from_dict(data.pop("model", {}))
    return _fill(TrainConfig, data, "", model=model_cfg)  # built with its model, so checks across sections see it


# may differ between a run and its resumption: how long it goes on, and how it logs and runs
RESUMABLE_CHANGES = frozenset({
    "optim.steps", "optim.time_budget_s", "data.workers", "run.out_dir", "run.log_every", "run.image_every",
    "run.val_every", "run.ckpt_every", "run.keep_last", "run.compile", "run.grad_checkpointing",
}) | {f"render.{key}" for key in READING_SETTINGS}  # what checkpoints record for rendering, not how the run trains


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: list(node) if isinstance(node, tuple) else node}


def recipe_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``key: old -> new`` for each setting of ``cfg`` that differs from the recipe ``saved`` (a
    run folder's config.yaml) other than those in RESUMABLE_CHANGES. A key the saved recipe lacks
    (written before the key existed) counts as its default."""
    old, new = _flat(TrainConfig().to_dict()) | _flat(saved), _flat(cfg.to_dict())
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(old.keys() | new.keys())
            if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)]
