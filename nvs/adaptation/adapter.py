"""The adapter: what test-time adaptation trains, kept apart from the base checkpoint.

Parts (``PARTS``), chosen by measurement (BENCHMARKS.md, "Test-time adaptation"):
- ``lora``: a low-rank update B @ A (rank r, B starts at zero) on each linear layer of the slow
  weights (tokenizer, attention, fast-weight projections, MLP, output head; not the learning-rate
  projection);
- ``norms``: the gains of every LayerNorm / RMSNorm;
- ``fast_init``: the learned initial fast weights W0, W1, W2 of every LaCT layer;
- ``head``: the output projection.
An :class:`Adapter` holds the trained tensors (LoRA factors, and the new values of whole tensors),
the scene frame chosen for the scene, and the base checkpoint's parameter checksum. It is saved
as its own small safetensors file and applied on top of the base model by :func:`apply_adapter`.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from nvs.adaptation.frames import SceneFrame
from nvs.cameras import Cameras
from nvs.models.checkpoint import param_checksum

PARTS = ("lora", "norms", "fast_init", "head")
ADAPTER_FORMAT = "lact-nvs-adapter"
_LORA_EXCLUDE = ("lr_proj",)
_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm)


class LoRALinear(nn.Module):
    """y = base(x) + scale * (x @ A^T) @ B^T, the base frozen; A [r, in], B [out, r] (B = 0 at start)."""

    def __init__(self, base: nn.Linear, rank: int, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scale = 1.0 / rank
        a = torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_a = nn.Parameter(a.to(base.weight))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device))

    @property
    def weight(self) -> Tensor:
        """The frozen base weight (the model reads its dtype)."""
        return self.base.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * ((x @ self.lora_a.T) @ self.lora_b.T)


def _lora_targets(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not any(part in name.split(".") for part in _LORA_EXCLUDE)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _whole_tensor_names(model: nn.Module, parts: tuple[str, ...]) -> list[str]:
    names = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if "norms" in parts and isinstance(module, _NORM_TYPES) and module.weight is not None:
            names.append(prefix + "weight")
        if "fast_init" in parts and hasattr(module, "w0") and isinstance(getattr(module, "w0"), nn.Parameter):
            names += [prefix + w for w in ("w0", "w1", "w2")]
    if "head" in parts:
        names.append("head.proj.weight")
    return names


def check_parts(parts) -> tuple[str, ...]:
    parts = tuple(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"adapter parts must be a non-empty subset of {PARTS}, got {list(parts)}")
    return parts


class TrainableCopy:
    """A copy of the base model with the adapter's parts trainable (LoRA wrappers inserted) and
    everything else frozen. ``model`` runs as the base does; :meth:`adapter` reads the result out."""

    def __init__(self, base: nn.Module, parts, rank: int = 4, seed: int = 0):
        self.parts, self.rank = check_parts(parts), int(rank)
        self.model = copy.deepcopy(base)
        for p in self.model.parameters():
            p.requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        self.lora_names = _lora_targets(self.model) if "lora" in self.parts else []
        for name in self.lora_names:
            _set_module(self.model, name, LoRALinear(self.model.get_submodule(name), self.rank, generator))
        self.whole_names = _whole_tensor_names(base, self.parts)
        params = dict(self.model.named_parameters())
        for name in self.whole_names:
            params[self._wrapped(name)].requires_grad_(True)

    def _wrapped(self, name: str) -> str:
        """A base parameter's name inside the copy (LoRA wrappers add ``.base``)."""
        module, _, leaf = name.rpartition(".")
        return f"{module}.base.{leaf}" if module in self.lora_names else name

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def adapter(self, base_checksum: float, frame: SceneFrame, info: dict | None = None) -> "Adapter":
        tensors = {}
        for name in self.lora_names:
            m = self.model.get_submodule(name)
            tensors[f"lora.{name}.a"] = m.lora_a.detach().clone()
            tensors[f"lora.{name}.b"] = (m.lora_b.detach() * m.scale).clone()
        params = dict(self.model.named_parameters())
        for name in self.whole_names:
            tensors[f"set.{name}"] = params[self._wrapped(name)].detach().clone()
        return Adapter(tensors, frame, base_checksum, self.parts, self.rank, dict(info or {}))


@dataclass
class Adapter:
    """Trained tensors: ``lora.<module>.a`` [r, in] and ``.b`` [out, r] (scale folded in), and
    ``set.<param>`` (new values of whole parameters); the scene frame; the base checksum."""

    tensors: dict[str, Tensor]
    frame: SceneFrame
    base_checksum: float
    parts: tuple[str, ...]
    rank: int
    info: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, base_checksum: float, info: dict | None = None) -> "Adapter":
        """The adapter that changes nothing (the verifier's fallback)."""
        return cls({}, SceneFrame.identity(), base_checksum, (), 0, dict(info or {}))

    @property
    def is_empty(self) -> bool:
        return not self.tensors and self.frame.is_identity

    def num_values(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def save(self, path: str | Path, base_name: str = "") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().float().contiguous().cpu() for k, v in self.tensors.items()}
        tensors["frame"] = self.frame.to_tensor()
        meta = {"format": ADAPTER_FORMAT, "base_param_checksum": repr(self.base_checksum), "base_checkpoint": base_name,
                "parts": json.dumps(list(self.parts)), "rank": str(self.rank), "frame_name": self.frame.name,
                "info": json.dumps(self.info)}
        save_file(tensors, str(path), metadata=meta)
        path.chmod(0o644)  # an ordinary file, readable like the checkpoints
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Adapter":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: adapter file not found")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: not a readable safetensors file: {exc}") from exc
        if meta.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"{path}: not an adapter (metadata format is {meta.get('format')!r}, expected {ADAPTER_FORMAT!r})")
        try:
            frame = SceneFrame.from_tensor(meta.get("frame_name", "saved"), tensors.pop("frame"))
            return cls(tensors, frame, float(meta["base_param_checksum"]), tuple(json.loads(meta["parts"])),
                       int(meta["rank"]), json.loads(meta.get("info", "{}")))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: corrupt adapter metadata or tensors: {exc}") from exc


class AdaptedRenderer(nn.Module):
    """A base renderer with an adapter merged in and its scene frame applied to every camera.

    memorize / render / forward take cameras in the scene's own frame, like the base renderer's.
    """

    def __init__(self, model: nn.Module, frame: SceneFrame):
        super().__init__()
        self.model = model
        self.frame = frame
        self.config = model.config

    def set_memory_budget(self, budget) -> None:
        """Forwarded to the wrapped renderer where it can chunk (nvs.inference.configure_inference)."""
        if hasattr(self.model, "set_memory_budget"):
            self.model.set_memory_budget(budget)

    def memorize(self, images: Tensor, cams: Cameras):
        return self.model.memorize(images, self.frame.apply(cams))

    def render(self, state, target_cams: Cameras) -> Tensor:
        return self.model.render(state, self.frame.apply(target_cams))

    def forward(self, images: Tensor, cams: Cameras, target_cams: Cameras) -> Tensor:
        return self.model(images, self.frame.apply(cams), self.frame.apply(target_cams))


def apply_adapter(base: nn.Module, adapter: Adapter, check: bool = True) -> AdaptedRenderer:
    """A new model: a copy of ``base`` with the adapter's tensors merged (W + B @ A for LoRA, the
    saved values for whole tensors). ``check``: refuse an adapter trained on another base."""
    if check and adapter.tensors and not math.isclose(param_checksum(base), adapter.base_checksum, rel_tol=1e-9, abs_tol=1e-6):
        raise ValueError(f"this adapter was trained on a base checkpoint with parameter checksum {adapter.base_checksum!r}, "
                         f"not on this one ({param_checksum(base)!r})")
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    with torch.no_grad():
        # whole tensors first: a LoRA update adds to the trained value of a tensor that has both
        for key, value in sorted(adapter.tensors.items(), key=lambda kv: not kv[0].startswith("set.")):
            kind, _, rest = key.partition(".")
            if kind == "lora" and rest.endswith(".a"):
                module = rest[: -len(".a")]
                weight = params.get(module + ".weight")
                b = adapter.tensors.get(f"lora.{module}.b")
                if weight is None or b is None or weight.shape != (b.shape[0], value.shape[1]):
                    raise ValueError(f"adapter tensor {key} does not fit the base model")
                weight += (b.to(weight) @ value.to(weight))
            elif kind == "set":
                if rest not in params or params[rest].shape != value.shape:
                    raise ValueError(f"adapter tensor {key} does not fit the base model")
                params[rest].copy_(value)
            elif not (kind == "lora" and rest.endswith(".b")):
                raise ValueError(f"unknown adapter tensor {key}")
    return AdaptedRenderer(model.eval(), adapter.frame)
