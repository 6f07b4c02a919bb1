"""Reading and writing renderer weights.

Formats, detected from the file:
- ours: ``.safetensors`` whose metadata holds ``format = lact-nvs``, the JSON ``config`` and, for
  renderers trained on re-expressed scenes, ``normalize`` (the scene normalisation rule the
  renderer expects, applied by default by eval, render and the viewer);
- the published LaCT checkpoints: a torch ``.pt`` holding ``{"model": state_dict, ...}`` (or a bare
  state dict) with the official key names, also accepted as ``.safetensors`` with those keys.
Nothing here unpickles code: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from nvs.geometry.scene_normalization import NORMALIZATIONS
from nvs.io.untrusted import check_model_fields, check_model_size
from nvs.models.config import ModelConfig, with_reading_settings
from nvs.models.full_attention import FullAttentionRenderer
from nvs.models.lact import LaCTRenderer

FORMAT_TAG = "lact-nvs"
Renderer = LaCTRenderer | FullAttentionRenderer

# official name inside a block -> ours (module 0: attention, 1: LaCT layer, 2: MLP)
_OFFICIAL_BLOCK_KEYS = {
    "module_list.0.ln.weight": "attn_norm.weight",
    "module_list.0.f.to_qkv.weight": "attn.qkv.weight",
    "module_list.0.f.c_proj.weight": "attn.proj.weight",
    "module_list.0.f.q_norm.weight": "attn.q_norm.weight",
    "module_list.0.f.k_norm.weight": "attn.k_norm.weight",
    "module_list.1.ln.weight": "ttt_norm.weight",
    "module_list.1.f.w0": "ttt.w0",
    "module_list.1.f.w1": "ttt.w1",
    "module_list.1.f.w2": "ttt.w2",
    "module_list.1.f.to_qkv.weight": "ttt.qkv.weight",
    "module_list.1.f.c_proj.weight": "ttt.proj.weight",
    "module_list.1.f.lr_fc.weight": "ttt.lr_proj.weight",
    "module_list.1.f.lr_fc.bias": "ttt.lr_proj.bias",
    "module_list.1.f.o_norm.weight": "ttt.out_norm.weight",
    "module_list.2.ln.weight": "mlp_norm.weight",
    "module_list.2.f.c_fc.weight": "mlp.fc.weight",
    "module_list.2.f.c_proj.weight": "mlp.proj.weight",
}
_OFFICIAL_TOP_KEYS = {
    "input_linear.weight": "tokenizer.embed.weight",
    "input_layernorm.weight": "tokenizer.norm.weight",
    "image_token_decoder.0.weight": "head.norm.weight",
    "image_token_decoder.1.weight": "head.proj.weight",
}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as a renderer; the message names the file and the reason."""


def param_checksum(model: torch.nn.Module) -> float:
    """The float64 sum of every parameter: names a set of weights (training summaries, manifests, adapters)."""
    return sum(float(p.detach().double().sum()) for p in model.parameters())


def build_renderer(config: ModelConfig) -> Renderer:
    return LaCTRenderer(config) if config.arch == "lact" else FullAttentionRenderer(config)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_renderer(model: Renderer, path: str | Path, metadata: Mapping[str, str] | None = None,
                  config: ModelConfig | None = None) -> Path:
    """Write weights + config as .safetensors, atomically (temporary file, then rename). The
    model's scene normalisation (``model.normalization``, read from its checkpoint) is kept.
    ``config`` replaces the model's in the file; it may differ only in READING_SETTINGS."""
    path = Path(path)
    config = model.config if config is None else config
    if with_reading_settings(config, model.config) != model.config:
        raise ValueError("save_renderer: the config to record differs from the model's in more than its reading settings")
    meta = {"format": FORMAT_TAG, "config": json.dumps(config.to_dict())}
    if getattr(model, "normalization", None):
        meta["normalize"] = model.normalization
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def _rename(state: Mapping[str, Tensor], top: Mapping[str, str], block: Mapping[str, str],
            strip_wrappers: bool) -> tuple[dict[str, Tensor], list[str]]:
    """Rename top-level keys by ``top`` and per-block keys (``blocks.<i>.<name>``) by ``block``;
    returns (renamed state, keys neither maps)."""
    out, unknown = {}, []
    for key, value in state.items():
        name = key
        while strip_wrappers and name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
        if name in top:
            out[top[name]] = value
        elif m and m.group(2) in block:
            out[f"blocks.{m.group(1)}.{block[m.group(2)]}"] = value
        else:
            unknown.append(key)
    return out, unknown


def _listed(keys: list[str]) -> str:
    return f"{keys[:10]}{' ...' if len(keys) > 10 else ''}"


def official_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official LaCT state dict; unknown keys raise a CheckpointError that lists them."""
    out, unknown = _rename(state, _OFFICIAL_TOP_KEYS, _OFFICIAL_BLOCK_KEYS, strip_wrappers=True)
    if unknown:
        raise CheckpointError(f"unknown keys in the official state dict: {_listed(unknown)}")
    return out


def ours_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`official_to_ours` (LaCT renderers only); unknown keys raise a CheckpointError."""
    top = {ours: official for official, ours in _OFFICIAL_TOP_KEYS.items()}
    block = {ours: official for official, ours in _OFFICIAL_BLOCK_KEYS.items()}
    out, unknown = _rename(state, top, block, strip_wrappers=False)
    if unknown:
        raise CheckpointError(f"keys with no official name: {_listed(unknown)}")
    return out


def official_config_dict(config: ModelConfig) -> dict:
    """``config`` in the official LaCT YAML layout (what :meth:`ModelConfig.from_official` reads)."""
    if config.arch != "lact":
        raise CheckpointError(f"only LaCT renderers have an official layout, not {config.arch!r}")
    if config.view_blend:
        raise CheckpointError("the official layout has no view-blending head (model config view_blend)")
    if config.pixel_decoder:
        raise CheckpointError("the official layout has no pixel decoder (model config pixel_decoder)")
    if config.sweep_views:
        raise CheckpointError("the official layout has no plane sweep (model config sweep_views)")

    def number(x: float) -> int | float:
        return int(x) if float(x).is_integer() else float(x)

    return {
        "patch_size": config.patch_size,
        "dim": config.dim,
        "layers": config.layers,
        "block_config": [
            {"type": "model.SelfAttention", "length_dim": "l",
             "params": {"head_dim": config.attn_head_dim, "use_qk_norm": config.qk_norm}},
            {"type": "lact_ttt.FastWeightGluMLPMultihead", "length_dim": "vl",
             "params": {"head_dim": config.ttt_head_dim, "inter_multi": number(config.ttt_inter_multi),
                        "base_lr": config.ttt_base_lr, "muon_update_steps": config.muon_steps}},
            {"type": "model.MLP", "length_dim": "vl", "params": {"inter_multi": number(config.mlp_inter_multi)}},
        ],
    }


def save_official_checkpoint(model: LaCTRenderer, path: str | Path) -> tuple[Path, Path]:
    """Write ``model`` as the published checkpoints are laid out: a torch ``.pt`` holding
    ``{"model": state_dict}`` with the official key names, and the official YAML config beside it
    (same name, ``.yaml``). Returns (checkpoint path, config path); both written atomically."""
    path = Path(path)
    text = yaml.safe_dump(official_config_dict(model.config), sort_keys=False)  # refuses modules it lacks, first
    tensors = {k: v.detach().contiguous().cpu() for k, v in ours_to_official(model.state_dict()).items()}
    _atomic_write(path, lambda tmp: torch.save({"model": tensors}, tmp))
    yaml_path = path.with_suffix(".yaml")
    _atomic_write(yaml_path, lambda tmp: Path(tmp).write_text(text))
    return path, yaml_path


def infer_official_config(state: Mapping[str, Tensor]) -> ModelConfig:
    """Model sizes from tensor shapes (base_lr and Newton-Schulz steps take the published 0.01 / 5)."""
    try:
        dim, in_features = state["tokenizer.embed.weight"].shape
        patch = int(round((in_features / 12) ** 0.5))
        layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        heads, head_dim, hidden = state["blocks.0.ttt.w0"].shape
        attn_head_dim = state["blocks.0.attn.q_norm.weight"].shape[0]
        mlp_hidden = state["blocks.0.mlp.fc.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot infer the model size from the state dict (missing {exc})") from exc
    return ModelConfig(
        arch="lact", patch_size=patch, dim=dim, layers=layers, attn_head_dim=attn_head_dim,
        ttt_head_dim=head_dim, ttt_inter_multi=hidden / head_dim, mlp_inter_multi=mlp_hidden / dim,
    )


def _load_weights(model: Renderer, state: Mapping[str, Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not fit the model: missing {missing[:10]}, unexpected {unexpected[:10]}")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{path}: tensor shapes do not fit the config: {bad[:5]}")
    broken = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} tensors hold NaN or infinite values (a diverged or damaged "
                              f"checkpoint): {broken[:5]}")
    model.load_state_dict(dict(state))  # copied into the model's dtype (see _weights_dtype)


def _weights_dtype(state: Mapping[str, Tensor]) -> torch.dtype:
    """float64 when the checkpoint holds float64 weights (kept exact), else float32 (bf16/fp16 widened)."""
    return torch.float64 if any(v.dtype == torch.float64 for v in state.values()) else torch.float32


def _check_fits(cfg: ModelConfig, state: Mapping[str, Tensor], path: Path) -> None:
    """The config may not ask for more parameters than the file holds, checked by arithmetic
    before the model is built: a stored config asking for an absurd size is refused here."""
    present = {int(k.split(".")[1]) for k in state if re.match(r"blocks\.\d+\.", k)}
    if present and present != set(range(cfg.layers)):
        missing = [f"blocks.{i}" for i in range(min(cfg.layers, 10**6)) if i not in present][:10]
        unexpected = [f"blocks.{i}" for i in sorted(present) if i >= cfg.layers][:10]
        raise CheckpointError(f"{path}: checkpoint does not fit the model: the config has {cfg.layers} blocks, the file "
                              f"{len(present)}: missing {missing}, unexpected {unexpected}")
    try:
        check_model_fields(cfg.to_dict(), "model config")
        check_model_size(cfg.to_dict(), sum(v.numel() for v in state.values()), str(path))
    except ValueError as exc:
        raise CheckpointError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from exc


def _read_pt(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise CheckpointError(f"{path}: not a readable torch checkpoint (weights only): {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or {{'model': state_dict}})")
    return obj


def load_renderer(
    path: str | Path,
    config: ModelConfig | str | Path | None = None,
    device: str | torch.device = "cpu",
    newton_schulz_dtype: str | None = None,
) -> Renderer:
    """Load a renderer from our .safetensors or a published LaCT checkpoint, in eval mode.

    ``config`` (a ModelConfig or a YAML path, ours or the official layout) is needed only for
    official checkpoints whose sizes cannot be read from the tensors; by default it is inferred.
    ``newton_schulz_dtype`` ("bfloat16" as published, "bfloat16_emulated", "float32", "float64")
    overrides the stored setting. Float64 weights load as a float64 model; anything else as float32.
    Whether the file was an official checkpoint is recorded in ``renderer.source_format``
    ("lact-nvs" or "official"), the scene normalisation it expects in ``renderer.normalization``
    (a rule of NORMALIZATIONS, or None when the file names none).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if isinstance(config, (str, Path)):
        config = ModelConfig.from_yaml(config)
    metadata: dict[str, str] = {}
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc
    elif path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
        state = _read_pt(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors or a torch .pt)")

    if metadata.get("format") == FORMAT_TAG:
        try:
            stored = json.loads(metadata["config"])
            if not isinstance(stored, dict):
                raise ValueError("the config must be a JSON object")
            check_model_fields(stored, "stored config")
            cfg = ModelConfig.from_dict(stored)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt config in metadata: {exc}") from exc
    else:
        official = {k: v for k, v in state.items() if not k.startswith(("input.", "target.", "output.", "state."))}
        try:
            state = official_to_ours(official)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        cfg = config if config is not None else infer_official_config(state)
    if newton_schulz_dtype is not None:
        try:
            cfg = dataclasses.replace(cfg, newton_schulz_dtype=newton_schulz_dtype)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
    _check_fits(cfg, state, path)
    model = build_renderer(cfg).to(_weights_dtype(state))
    _load_weights(model, state, path)
    normalization = metadata.get("normalize")
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise CheckpointError(f"{path}: unknown scene normalisation {normalization!r} in metadata; "
                              f"expected one of {NORMALIZATIONS}")
    model.source_format = FORMAT_TAG if metadata.get("format") == FORMAT_TAG else "official"
    model.normalization = normalization
    return model.to(device).eval()
