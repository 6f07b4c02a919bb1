"""Model configuration: a typed dataclass, read from our YAML files or the official LaCT layout."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nvs.models.fast_weight import NEWTON_SCHULZ_DTYPES
from nvs.models.photo_sampling import INTERPOLATIONS

ARCHITECTURES = ("lact", "full_attention")
SWEEP_RANGES = ("fixed", "inputs")
# fields that change how a renderer reads its inputs, not its weights: a checkpoint trained with
# one value renders with another. Each maps to the part of a renderer it acts on: "sweep" (a plane
# sweep), "photos" (sampled input photos: a view-blending head or a plane sweep), "inputs" (any LaCT
# renderer)
READING_SETTINGS = {"sweep_range": "sweep", "sweep_zncc": "sweep", "sweep_zncc_views": "sweep", "sweep_coarse": "sweep",
                    "sweep_coarse_levels": "sweep", "sweep_max_step": "sweep", "sweep_refine": "sweep",
                    "sweep_depth_views": "sweep", "sweep_hull": "sweep", "sweep_front": "sweep", "sweep_head_prior": "sweep",
                    "match_exposure": "inputs", "backdrop_white": "sweep", "photo_interpolation": "photos",
                    "frame_extent": "inputs", "frame_canvas": "inputs",
                    "mirror": "inputs"}


@dataclass
class ModelConfig:
    """Sizes of a renderer. Defaults are the published LaCT model (dim 768, 24 layers, ttt 2x)."""

    arch: str = "lact"
    patch_size: int = 8
    dim: int = 768
    layers: int = 24
    attn_head_dim: int = 64
    qk_norm: bool = True
    mlp_inter_multi: float = 4.0
    # LaCT fast-weight layer (ignored by the full-attention baseline)
    ttt_head_dim: int = 768
    ttt_inter_multi: float = 2.0
    ttt_base_lr: float = 0.01
    muon_steps: int = 5
    # dtype of the Newton-Schulz products: "bfloat16" as published; see nvs.models.fast_weight
    newton_schulz_dtype: str = "bfloat16"
    # k > 0: each target pixel also blends depth-warped samples of its k nearest input views
    # (models/view_blend.py); 0 is the published decoder
    view_blend: int = 0
    view_blend_depth: float = 2.0  # the depth a new blending head starts at, in scene units
    # c > 0: a convolutional decoder with c channels per pixel corrects the RGB head's patches
    # (models/pixel_decoder.py); 0 is the published linear head
    pixel_decoder: int = 0
    # k > 0: each target pixel's depth is found by a plane sweep over its k nearest input views and
    # the photos sampled there are blended with the decoded colour, or with a view-blending head's
    # output (models/plane_sweep.py); the planes are uniform in inverse depth from sweep_near to
    # sweep_far (distances along each pixel's ray, in scene units); k is 0 or at least 2
    sweep_views: int = 0
    sweep_planes: int = 32
    sweep_near: float = 1.2
    sweep_far: float = 4.5
    # "fixed": every scene is swept from sweep_near to sweep_far; "inputs": each scene between the
    # distances of the surface points triangulated from its input views (nvs.geometry.depth_range),
    # and the fixed range where too few are found
    sweep_range: str = "fixed"
    # w > 0: the plane sweep's plane scores add w x the zero-mean normalised cross-correlation of
    # the two nearest views' photos over each plane (models/plane_sweep.zncc_scores): a matching
    # prior that ignores a gain and offset between photos (exposure, white balance) and needs no training
    sweep_zncc: float = 0.0
    # n > 2 (n <= sweep_views), with sweep_zncc: on a walk (nvs.geometry.capture.capture_kind), the
    # correlation is taken between every pair of the n nearest views (of the sweep_depth_views
    # nearest where that is fewer), and each point keeps the mean of the better half of its pairs: a
    # view in which an occluder hides the point spoils only its own pairs
    # (models/plane_sweep.zncc_scores); around an object, and with 2, the two nearest views'
    # correlation
    sweep_zncc_views: int = 2
    # w > 0: the plane scores also add w x those of the same sweep on the photos at half resolution,
    # upsampled (cross-scale aggregation; models/plane_sweep): wide baselines are found at the coarse scale;
    # with sweep_coarse_levels n > 1, so do those at 1/4, ..., 1/2^n of the resolution, each at w
    sweep_coarse: float = 0.0
    sweep_coarse_levels: int = 1
    # s > 0: where a scene's photos are far apart for their resolution (a ring around an object in
    # large photos), the sweep matches on the photos and targets halved, up to 3 times, until
    # neighbouring planes lie at most s pixels apart in the cost volume, where its scorer's window
    # sees the surface's disparities as in training (models/plane_sweep.plane_steps); the photos are
    # still sampled at full resolution at the depth found
    sweep_max_step: float = 0.0
    # w > 0 (odd): the sweep's depth, found at half the target's resolution or less and upsampled,
    # is refined per pixel: of the upsampled value and those of the 3x3 low-resolution pixels
    # around it, each pixel takes the one where the photos agree best over w x w pixels, and a
    # median then removes isolated choices (models/depth_refine): sharp silhouettes instead of
    # depth blended across them
    sweep_refine: int = 0
    # m > 0: the plane sweep finds depth from the m nearest of its sweep_views views only (2 <= m <=
    # sweep_views); all of them are still sampled there and blended. A view far from the target
    # sees the surface at a steep angle or not at all (occluded), and its disagreement on the true
    # plane can outweigh the near views' agreement; 0: depth from all sweep_views
    sweep_depth_views: int = 0
    # w > 0, for objects on white: each plane's score loses w x (1 - its point's support by the
    # silhouettes of all input views: the least, over the views that see the point, of their
    # foreground sampled there), and a pixel whose ray no plane's point supports is background,
    # white (the visual hull; models/plane_sweep.hull_support); only photos at least half of whose
    # border is white carve, so the setting changes nothing on photos with a background
    sweep_hull: float = 0.0
    # w > 0, with sweep_hull: on each ray, a plane behind the first one inside the hull loses w x the
    # share of the planes between them (models/plane_sweep.behind_hull_entry): where matching cannot
    # tell the front of a textureless object from its back, the surface the ray meets first wins
    sweep_front: float = 0.0
    # w > 0, with a view-blending head (view_blend): each plane's score loses w x its distance in log
    # depth, beyond 35%, from the head's depth for that pixel, shifted to the sweep's scale
    # (models/plane_sweep.prior_distance): where the photos agree on many planes (a plain wall, a
    # repeated pattern) the renderer's own depth breaks the tie
    sweep_head_prior: float = 0.0
    # true: each scene's input photos are divided by per-view, per-channel gains that bring their
    # exposures and white balance to a common one, found from matched points (nvs.geometry.exposure),
    # before the renderer memorises them; false: the photos as given (the published model)
    match_exposure: bool = False
    # true, for objects: each input photo on a bright, plain backdrop is divided by the backdrop's
    # colour before the renderer reads it, so that its object stands on white as in training, and
    # the renders are multiplied by the brightest of the inputs' backdrop colours (models/plane_sweep.backdrop_gains)
    backdrop_white: bool = False
    # how a view-blending head and a plane sweep sample the input photos at the depth they find:
    # "bilinear", or "cubic", the Catmull-Rom spline, which keeps the photos' fine texture that
    # bilinear weights smooth away (models/photo_sampling); the depth refinement stays bilinear
    photo_interpolation: str = "bilinear"
    # x in (0, 1), for objects on a plain bright backdrop: where the input photos' silhouettes reach
    # farther from the image centre than x of the half-frame (the median over the photos), every
    # camera, inputs and targets, is zoomed out about its image centre until they reach x, and the
    # renders are resampled back to the cameras asked for (models/object_framing); x is how far the
    # renderer's training furniture reached. 0: the photos as given
    frame_extent: float = 0.0
    # with frame_extent: each framed scene also memorised on a canvas wide enough for its object to
    # reach frame_extent of it, the photos kept pixel for pixel, and the two renders averaged
    # (models/object_framing); ignored where frame_extent is 0
    frame_canvas: bool = False
    # true: each capture also memorised and rendered as its mirror image (photos flipped left to
    # right, the world reflected through x = 0), the two renders averaged (models/mirror_ensemble);
    # `--turns auto` then runs half as many turns
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        for name in ("patch_size", "dim", "layers", "attn_head_dim", "ttt_head_dim", "muon_steps", "mlp_inter_multi",
                     "ttt_inter_multi", "ttt_base_lr"):
            value = getattr(self, name)
            whole = name not in ("mlp_inter_multi", "ttt_inter_multi", "ttt_base_lr")
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not value == value \
                    or not (value >= 0 if name == "muon_steps" else value > 0) or value == float("inf"):
                raise ValueError(f"model config '{name}' must be a positive {'whole ' if whole else ''}number, got {value!r}")
        heads = [("attn_head_dim", self.attn_head_dim)] + [("ttt_head_dim", self.ttt_head_dim)] * (self.arch == "lact")
        for name, head in heads:
            if self.dim % head:
                raise ValueError(f"dim {self.dim} is not divisible by {name} {head}")
        if self.newton_schulz_dtype not in NEWTON_SCHULZ_DTYPES:
            raise ValueError(f"newton_schulz_dtype must be one of {NEWTON_SCHULZ_DTYPES}, got {self.newton_schulz_dtype!r}")
        for name in ("view_blend", "pixel_decoder"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4096:
                raise ValueError(f"model config '{name}' must be a whole number in [0, 4096], got {value!r}")
        if isinstance(self.view_blend_depth, bool) or not isinstance(self.view_blend_depth, (int, float)) \
                or not 0 < self.view_blend_depth < 1e3:
            raise ValueError(f"model config 'view_blend_depth' must be a number in (0, 1000), got {self.view_blend_depth!r}")
        views = self.sweep_views
        if isinstance(views, bool) or not isinstance(views, int) or not (views == 0 or 2 <= views <= 16):
            raise ValueError(f"model config 'sweep_views' must be 0 or a whole number in [2, 16] (matching needs two "
                             f"views), got {self.sweep_views!r}")
        if isinstance(self.sweep_planes, bool) or not isinstance(self.sweep_planes, int) or not 2 <= self.sweep_planes <= 256:
            raise ValueError(f"model config 'sweep_planes' must be a whole number in [2, 256], got {self.sweep_planes!r}")
        for name in ("sweep_near", "sweep_far"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e4:
                raise ValueError(f"model config '{name}' must be a number in (0, 10000), got {value!r}")
        if not self.sweep_near < self.sweep_far:
            raise ValueError(f"model config sweep_near ({self.sweep_near}) must be below sweep_far ({self.sweep_far})")
        for name in ("sweep_zncc", "sweep_coarse", "sweep_max_step", "sweep_hull", "sweep_front", "sweep_head_prior"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e3:
                raise ValueError(f"model config '{name}' must be a number in [0, 1000], got {value!r}")
        refine = self.sweep_refine
        if isinstance(refine, bool) or not isinstance(refine, int) or not (refine == 0 or (refine % 2 and 1 <= refine <= 31)):
            raise ValueError(f"model config 'sweep_refine' must be 0 or an odd whole number in [1, 31], got {refine!r}")
        depth_views = self.sweep_depth_views
        if isinstance(depth_views, bool) or not isinstance(depth_views, int) \
                or not (depth_views == 0 or 2 <= depth_views <= self.sweep_views):
            needs = f"a whole number from 2 to sweep_views ({self.sweep_views})" if self.sweep_views else "a plane sweep (sweep_views)"
            raise ValueError(f"model config 'sweep_depth_views' must be 0 or {needs}, got {depth_views!r}")
        zncc_views = self.sweep_zncc_views
        if isinstance(zncc_views, bool) or not isinstance(zncc_views, int) \
                or not 2 <= zncc_views <= max(2, self.sweep_views):
            raise ValueError(f"model config 'sweep_zncc_views' must be a whole number from 2 to sweep_views "
                             f"({self.sweep_views}; 2 without a plane sweep), got {zncc_views!r}")
        levels = self.sweep_coarse_levels
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 8:
            raise ValueError(f"model config 'sweep_coarse_levels' must be a whole number in [1, 8], got {levels!r}")
        for name in ("match_exposure", "backdrop_white", "frame_canvas", "mirror"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model config '{name}' must be true or false, got {getattr(self, name)!r}")
        if self.match_exposure and self.backdrop_white:
            raise ValueError("model config: match_exposure and backdrop_white both set the photos' gains; choose one")
        if self.backdrop_white and not (self.sweep_views and self.sweep_hull):
            raise ValueError("model config: backdrop_white needs a plane sweep with silhouettes (sweep_views, sweep_hull), "
                             "whose backdrops it reads")
        if self.sweep_head_prior and not (self.sweep_views and self.view_blend):
            raise ValueError("model config: sweep_head_prior needs a plane sweep after a view-blending head (sweep_views, "
                             "view_blend), whose depth it reads")
        extent = self.frame_extent
        if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not (extent == 0 or 0 < extent < 1):
            raise ValueError(f"model config 'frame_extent' must be 0 (off) or a number in (0, 1), got {extent!r}")
        if self.photo_interpolation not in INTERPOLATIONS:
            raise ValueError(f"model config 'photo_interpolation' must be one of {INTERPOLATIONS}, got {self.photo_interpolation!r}")
        if self.sweep_range not in SWEEP_RANGES:
            raise ValueError(f"model config 'sweep_range' must be one of {SWEEP_RANGES}, got {self.sweep_range!r}")
        if (self.view_blend or self.sweep_views) and self.arch != "lact":
            raise ValueError("view_blend and sweep_views need arch 'lact': the full-attention baseline keeps no input views to sample")
        if self.match_exposure and self.arch != "lact":
            raise ValueError("match_exposure needs arch 'lact'; the full-attention baseline reads its photos as given")
        if self.patch_size <= 0 or self.layers <= 0:
            raise ValueError("patch_size and layers must be positive")

    @property
    def ttt_heads(self) -> int:
        return self.dim // self.ttt_head_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        """Our YAML (keys of this class, optionally under ``model:``) or the official layout."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read model config: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a model config must be a YAML mapping")
        if "block_config" in data:
            return cls.from_official(data)
        data = data.get("model", data)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_official(cls, data: dict[str, Any]) -> "ModelConfig":
        """Parse the official LaCT layout: patch_size, dim, layers, block_config (attn, ttt, mlp)."""
        kinds = [b.get("type", "").rsplit(".", 1)[-1] for b in data["block_config"]]
        expected = ["SelfAttention", "FastWeightGluMLPMultihead", "MLP"]
        if kinds != expected:
            raise ValueError(f"unsupported official block_config {kinds}; expected {expected}")
        attn, ttt, mlp = (b.get("params", {}) for b in data["block_config"])
        return cls(
            arch="lact",
            patch_size=int(data["patch_size"]),
            dim=int(data["dim"]),
            layers=int(data["layers"]),
            attn_head_dim=int(attn["head_dim"]),
            qk_norm=bool(attn.get("use_qk_norm", True)),
            ttt_head_dim=int(ttt["head_dim"]),
            ttt_inter_multi=float(ttt.get("inter_multi", 1)),
            ttt_base_lr=float(ttt.get("base_lr", 0.01)),
            muon_steps=int(ttt.get("muon_update_steps", 0)),
            mlp_inter_multi=float(mlp.get("inter_multi", 4)),
        )


def with_reading_settings(config: ModelConfig, source: ModelConfig) -> ModelConfig:
    """``config`` with the READING_SETTINGS of ``source``."""
    return dataclasses.replace(config, **{key: getattr(source, key) for key in READING_SETTINGS})
