"""The LaCT renderer, top to bottom: posed images -> ray tokens -> blocks -> RGB.

Pixels become 12 channels (ray origin, direction, origin x direction, RGB in [-1, 1]); 8x8
patches of them are embedded as tokens. Each block runs per-view self-attention, the LaCT
fast-weight layer over all tokens of a sample (``models/fast_weight.py``), and an MLP. Input
views are written into the fast weights in one large chunk (:meth:`LaCTRenderer.memorize`); any
target camera is then read out of them (:meth:`LaCTRenderer.render`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nvs.cameras import Cameras, pixel_rays
from nvs.geometry import exposure
from nvs.geometry.matching import scene_matches
from nvs.models.chunked import ChunkPlan, fits_one_pass, memorize_chunked, parse_memory_size, plan_chunks, render_chunked
from nvs.models.config import ModelConfig, with_reading_settings
from nvs.models.fast_weight import FastWeights, FastWeightSwiGLU, TTTOp
from nvs.models.pixel_decoder import PixelDecoder
from nvs.models.plane_sweep import PlaneSweepBlend, SweepFeatures, backdrop_gains
from nvs.models.view_blend import ViewBlendHead, blend_views, decoded_depth

RAY_CHANNELS = 9  # o, d, o x d
PIXEL_CHANNELS = RAY_CHANNELS + 3  # + RGB * 2 - 1


# ----------------------------------------------------------------------------- rays and tokens

def ray_embedding(cams: Cameras, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 9-channel pose embedding of LaCT/LVSM, [o, d, o x d]: cams [...] -> [..., 9, H, W].

    Computed in ``dtype`` (float32 unless the model runs in float64) with autocast off: bf16 ray
    directions would quantise the scene.
    """
    origins, dirs = pixel_rays(cams, dtype)
    return torch.cat([origins, dirs, torch.linalg.cross(origins, dirs, dim=-3)], dim=-3)


def patchify(x: Tensor, patch: int) -> Tensor:
    """[B, V, C, H, W] -> [B, V * (H/p) * (W/p), p * p * C], features ordered (row, col, channel)."""
    b, v, c, h, w = x.shape
    x = x.reshape(b, v, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # b v hh ww ph pw c
    return x.reshape(b, v * (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: Tensor, views: int, height: int, width: int, patch: int) -> Tensor:
    """Inverse of :func:`patchify`: [B, V * L, p * p * C] -> [B, V, C, H, W]."""
    b = tokens.shape[0]
    hh, ww = height // patch, width // patch
    c = tokens.shape[-1] // (patch * patch)
    x = tokens.reshape(b, views, hh, ww, patch, patch, c)
    x = x.permute(0, 1, 6, 2, 4, 3, 5)  # b v c hh ph ww pw
    return x.reshape(b, views, c, height, width)


def check_cameras(cams: Cameras, batch: int | None, patch: int, name: str) -> None:
    """ValueError unless cams has batch shape [B, V] and a patch-divisible image size."""
    if len(cams.shape) != 2:
        raise ValueError(f"{name} must have batch shape [B, V], got {tuple(cams.shape)}")
    if batch is not None and cams.shape[0] != batch:
        raise ValueError(f"{name} has batch size {cams.shape[0]}, the images have {batch}")
    if cams.shape[1] == 0:
        raise ValueError(f"{name} holds no views")
    if cams.height % patch or cams.width % patch:
        raise ValueError(
            f"{name}: image size {cams.height}x{cams.width} is not divisible by the patch size {patch}; "
            f"resize or crop to a multiple of {patch}"
        )
    cams.validate(name)


def check_images(images: Tensor, cams: Cameras, patch: int) -> None:
    """ValueError unless images [B, V, 3, H, W] match ``cams`` and are finite."""
    if not isinstance(images, Tensor) or images.ndim != 5 or images.shape[2] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape [B, V, 3, H, W], got {shape}")
    if tuple(images.shape[:2]) != tuple(cams.shape):
        raise ValueError(f"images have batch/views {tuple(images.shape[:2])}, cameras {tuple(cams.shape)}")
    if tuple(images.shape[-2:]) != (cams.height, cams.width):
        raise ValueError(f"images are {tuple(images.shape[-2:])} pixels, cameras say {(cams.height, cams.width)}")
    check_cameras(cams, images.shape[0], patch, "input cameras")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")


class PatchTokenizer(nn.Module):
    """Rays (+ RGB for posed inputs, zeros for targets) -> tokens [B, V * L, dim]."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(PIXEL_CHANNELS * patch * patch, dim, bias=False)
        self.norm = nn.LayerNorm(dim, bias=False)

    def pixel_features(self, cams: Cameras, images: Tensor | None) -> Tensor:
        """[B, V, 12, H, W]: rays, then RGB in [-1, 1] (zeros without images); float64 in a float64 model."""
        dtype = torch.float64 if self.embed.weight.dtype == torch.float64 else torch.float32
        rays = ray_embedding(cams, dtype)
        if images is None:
            rgb = rays.new_zeros(*rays.shape[:-3], 3, *rays.shape[-2:])
        else:
            rgb = images.to(dtype) * 2.0 - 1.0
        return torch.cat([rays, rgb], dim=-3)

    def forward(self, cams: Cameras, images: Tensor | None = None) -> Tensor:
        feats = patchify(self.pixel_features(cams, images), self.patch)
        return self.norm(self.embed(feats))


class RGBHead(nn.Module):
    """Target tokens [B, T * L, dim] -> colour logits [B, T, 3, H, W] (a sigmoid makes them images)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.norm = nn.LayerNorm(dim, bias=False)
        self.proj = nn.Linear(dim, patch * patch * 3, bias=False)

    def forward(self, tokens: Tensor, views: int, height: int, width: int) -> Tensor:
        return unpatchify(self.proj(self.norm(tokens)), views, height, width, self.patch)


# ----------------------------------------------------------------------------- attention and MLP

class SelfAttention(nn.Module):
    """Multi-head self-attention over the token axis of [N, L, dim]; QK RMSNorm per head; no biases."""

    def __init__(self, dim: int, head_dim: int, qk_norm: bool = True):
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        # eps=None: torch's default (machine epsilon of the dtype), as the published model uses.
        self.q_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, dim // self.head_dim, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class MLP(nn.Module):
    """GELU MLP without biases: [..., dim] -> [..., dim]."""

    def __init__(self, dim: int, inter_multi: float = 4.0):
        super().__init__()
        hidden = int(dim * inter_multi)
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


# ----------------------------------------------------------------------------- what every renderer shares

class RendererBase(nn.Module):
    """Config, tokenizer, RGB head, input checks, init and activation checkpointing."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = PatchTokenizer(config.patch_size, config.dim)
        self.head = RGBHead(config.patch_size, config.dim)
        self.pixel_decoder = PixelDecoder(config.patch_size, config.dim, config.pixel_decoder) if config.pixel_decoder else None
        self.view_blend = ViewBlendHead(config.patch_size, config.dim, config.view_blend, config.view_blend_depth) if config.view_blend else None
        self.sweep = PlaneSweepBlend(config.sweep_views, config.sweep_planes, config.sweep_near, config.sweep_far) \
            if config.sweep_views else None
        self.use_reading_settings(config)
        self.grad_checkpointing = False

    def use_reading_settings(self, source: ModelConfig) -> None:
        """Read photos as ``source`` says (its READING_SETTINGS); the weights stay."""
        self.config = with_reading_settings(self.config, source)
        if self.sweep is not None:
            self.sweep.zncc_weight, self.sweep.coarse_weight = source.sweep_zncc, source.sweep_coarse
            self.sweep.coarse_levels, self.sweep.hull_weight = source.sweep_coarse_levels, source.sweep_hull
            self.sweep.front_weight, self.sweep.max_step = source.sweep_front, source.sweep_max_step
            self.sweep.refine_window, self.sweep.depth_views = source.sweep_refine, source.sweep_depth_views
            self.sweep.prior_weight, self.sweep.zncc_views = source.sweep_head_prior, source.sweep_zncc_views
            self.sweep.interpolation = source.photo_interpolation

    @property
    def blends_views(self) -> bool:
        """Whether rendering samples the input photos (a view-blending head or a plane sweep)."""
        return self.view_blend is not None or self.sweep is not None

    def init_weights(self, modules_per_block: int) -> None:
        """GPT-2 style: Linear ~ N(0, 0.02), residual projections scaled by depth."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        depth = modules_per_block * self.config.layers
        for name, p in self.named_parameters():
            if name.startswith("blocks.") and name.endswith(".proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(depth))
        for head in (self.pixel_decoder, self.view_blend, self.sweep):
            if head is not None:
                head.reset_parameters()

    def run_block(self, block: nn.Module, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def tokens_per_view(self, cams: Cameras) -> int:
        return (cams.height // self.config.patch_size) * (cams.width // self.config.patch_size)

    def check_inputs(self, images: Tensor, cams: Cameras) -> None:
        check_images(images, cams, self.config.patch_size)

    def check_targets(self, target_cams: Cameras, batch: int) -> None:
        check_cameras(target_cams, batch, self.config.patch_size, "target cameras")

    def decode(self, tokens: Tensor, target_cams: Cameras, sources: tuple[Tensor, Cameras] | None = None,
               with_samples: bool = False, sweep: bool = True, sweep_ranges: Tensor | None = None,
               sweep_features: SweepFeatures | None = None):
        """Target tokens [B, T * L, dim] -> [B, T, 3, H, W]; ``sources`` (input images [B, V, 3, H, W],
        cams [B, V]) are what a view-blending renderer samples, ``sweep_ranges`` [B, 2] where a
        plane sweep looks for surfaces (None: its fixed range) and ``sweep_features`` what it matches
        on (None: read off the sources here); ``with_samples`` also returns its
        warped samples and depth (see :func:`nvs.models.view_blend.blend_views`, or, with a plane
        sweep, :meth:`nvs.models.plane_sweep.PlaneSweepBlend.forward`); ``sweep=False`` leaves a plane
        sweep out, and where the sweep reads the view-blending head's depth (``sweep_head_prior``)
        returns that depth as a fourth channel [B, T, 4, H, W]."""
        views, height, width = target_cams.shape[1], target_cams.height, target_cams.width
        logits = self.head(tokens, views, height, width)
        if self.pixel_decoder is not None:
            features = unpatchify(self.pixel_decoder.spread(tokens), views, height, width, self.config.patch_size)
            logits = logits + self.pixel_decoder(features, logits)
        rgb = torch.sigmoid(logits)
        if not self.blends_views:
            if with_samples:
                raise ValueError("with_samples needs a view-blending renderer (model config view_blend or sweep_views > 0)")
            return rgb
        prior = None  # the head's depth, where the sweep reads it (sweep_head_prior): a prior, not a target
        if self.view_blend is not None:
            maps = unpatchify(self.view_blend(tokens), views, height, width, self.config.patch_size)
            sweeps = self.sweep is not None and sweep
            rgb = blend_views(rgb, maps, target_cams, *sources, with_samples=with_samples and not sweeps,
                              interpolation=self.config.photo_interpolation)
            if self.sweep is not None and self.sweep.prior_weight:
                prior = decoded_depth(maps).detach()
        if self.sweep is not None and sweep:  # after a view-blending head, it blends that head's output
            rgb = self.sweep(rgb, target_cams, *sources, sweep_ranges, with_samples=with_samples, features=sweep_features,
                             prior_depth=prior)
        elif prior is not None and not with_samples:  # for a sweep run later (a turn ensemble's, on its median)
            rgb = torch.cat([rgb, prior.to(rgb.dtype)], dim=2)
        return rgb

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- the LaCT block and renderer

class LaCTBlock(nn.Module):
    """Pre-norm residual block: per-view attention -> LaCT fast-weight layer -> MLP."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.dim
        self.attn_norm = nn.LayerNorm(dim, bias=False)
        self.attn = SelfAttention(dim, config.attn_head_dim, config.qk_norm)
        self.ttt_norm = nn.LayerNorm(dim, bias=False)
        self.ttt = FastWeightSwiGLU(
            dim, config.ttt_head_dim, config.ttt_inter_multi, config.ttt_base_lr, config.muon_steps, config.newton_schulz_dtype
        )
        self.mlp_norm = nn.LayerNorm(dim, bias=False)
        self.mlp = MLP(dim, config.mlp_inter_multi)

    def forward(
        self, x: Tensor, tokens_per_view: int, ops: list[TTTOp], state: FastWeights | None
    ) -> tuple[Tensor, FastWeights]:
        """x: [B, V * L, dim] -> (x, fast weights after ``ops``)."""
        b, n, d = x.shape
        per_view = self.attn_norm(x).reshape(b * (n // tokens_per_view), tokens_per_view, d)
        x = x + self.attn(per_view).reshape(b, n, d)
        out, state = self.ttt(self.ttt_norm(x), ops, state)
        if out.shape[1] != n:
            raise ValueError(f"the apply ops cover {out.shape[1]} tokens; the block needs all {n} (residual stream)")
        x = x + out
        x = x + self.mlp(self.mlp_norm(x))
        return x, state


@dataclass
class SceneState:
    """A memorised scene: the fast weights of every LaCT layer, whose size does not depend on V.

    layers: one FastWeights per block, each w [B, H, d, dh]; num_views: how many views were read;
    sources: the input images [B, V, 3, H, W] and cams [B, V], kept only by a view-blending
    renderer (``ModelConfig.view_blend`` or ``sweep_views``), which samples them when it renders;
    sweep_ranges: [B, 2] (near, far) of a plane sweep's planes, found from the inputs
    (``ModelConfig.sweep_range = "inputs"``), else None; exposure_gains: [B, V, 3] the inputs were
    divided by (``ModelConfig.match_exposure``), else None; sweep_features: what a plane sweep
    matches on, read off the inputs once (:meth:`nvs.models.plane_sweep.PlaneSweepBlend.photo_features`),
    else None.
    """

    layers: list[FastWeights]
    num_views: int
    sources: tuple[Tensor, Cameras] | None = None
    sweep_ranges: Tensor | None = None
    exposure_gains: Tensor | None = None
    sweep_features: SweepFeatures | None = None

    @property
    def batch_size(self) -> int:
        return self.layers[0].w0.shape[0]

    def _map_features(self, fn) -> SweepFeatures | None:
        if self.sweep_features is None:
            return None
        fine, coarse, octave, max_step = self.sweep_features
        return SweepFeatures(fn(fine), None if coarse is None else [fn(level) for level in coarse], octave, max_step)

    def to(self, *args, **kwargs) -> "SceneState":
        sources = None if self.sources is None else tuple(s.to(*args, **kwargs) for s in self.sources)
        ranges, gains = (None if t is None else t.to(*args, **kwargs) for t in (self.sweep_ranges, self.exposure_gains))
        return SceneState([w.to(*args, **kwargs) for w in self.layers], self.num_views, sources, ranges, gains,
                          self._map_features(lambda t: t.to(*args, **kwargs)))

    def detach(self) -> "SceneState":
        sources = None if self.sources is None else (self.sources[0].detach(), self.sources[1])
        return SceneState([w.detach() for w in self.layers], self.num_views, sources, self.sweep_ranges, self.exposure_gains,
                          self._map_features(Tensor.detach))

    def nbytes(self) -> int:
        kept = [t for fw in self.layers for t in (fw.w0, fw.w1, fw.w2)] + ([] if self.sources is None else [self.sources[0]])
        if self.sweep_features is not None:
            kept += [self.sweep_features.fine, *(self.sweep_features.coarse or [])]
        return sum(t.numel() * t.element_size() for t in kept)


class LaCTRenderer(RendererBase):
    """Large-Chunk Test-Time Training renderer (LaCT, Zhang et al. 2025), NVS variant on LVSM tokens.

    memorize(images [B, V, 3, H, W], cams [B, V]) -> SceneState
    render(state, target_cams [B, T]) -> [B, T, 3, H, W]
    forward(images, cams, target_cams) == render(memorize(images, cams), target_cams)

    ``memory_budget`` (bytes, None: no limit): when set, memorize and render run without gradients
    in bounded chunks (``models/chunked.py``) whenever one pass over all tokens would not fit it;
    the results equal the one-pass results up to float rounding. Training is never chunked.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList([LaCTBlock(config) for _ in range(config.layers)])
        self.init_weights(modules_per_block=3)
        self.memory_budget: int | None = None

    def set_memory_budget(self, budget: int | str | None) -> None:
        """Bytes (or '8G', '512M') that inference may use above the weights and inputs (and a plane
        sweep's features of them); None: no limit."""
        self.memory_budget = parse_memory_size(budget)

    def chunk_plan(self, batch: int, views: int, tokens_per_view: int) -> ChunkPlan | None:
        """The chunks that fit the memory budget, or None for one pass (no budget, gradients needed,
        or everything fits in one chunk)."""
        if self.memory_budget is None:
            return None
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return None
        element_size = 8 if self.tokenizer.embed.weight.dtype == torch.float64 else 4
        if fits_one_pass(self, batch, views * tokens_per_view, self.memory_budget, element_size):
            return None
        return plan_chunks(self, batch, views, tokens_per_view, self.memory_budget, element_size)

    def _run(self, x: Tensor, tokens_per_view: int, ops: list[TTTOp], states: list[FastWeights] | None):
        new_states = []
        for i, block in enumerate(self.blocks):
            x, st = self.run_block(block, x, tokens_per_view, ops, None if states is None else states[i])
            new_states.append(st)
        return x, new_states

    def memorize(self, images: Tensor, cams: Cameras, sweep_ranges: Tensor | None = None,
                 exposure_gains: Tensor | None = None, sweep_features: SweepFeatures | None = None) -> SceneState:
        """``sweep_ranges``, ``exposure_gains``, ``sweep_features``: what :meth:`read_inputs` and
        the plane sweep already read off these photos (the same photos in a turned world: none of
        it changes), else read here when needed."""
        self.check_inputs(images, cams)
        images, sweep_ranges, exposure_gains = self.read_inputs(images, cams, sweep_ranges, exposure_gains)
        plan = self.chunk_plan(cams.shape[0], cams.shape[1], self.tokens_per_view(cams))
        with contextlib.nullcontext() if plan is None else torch.no_grad():
            if sweep_features is None and self.sweep is not None:
                sweep_features = self.sweep.photo_features(images, cams, sweep_ranges, None if plan is None else plan.views)
            if plan is not None:
                states = memorize_chunked(self, images, cams, plan)
            else:
                x = self.tokenizer(cams, images)
                _, states = self._run(x, self.tokens_per_view(cams), [TTTOp(0, x.shape[1], update=True, apply=True)], None)
        return SceneState(states, cams.shape[1], self.kept_sources(images, cams), sweep_ranges, exposure_gains,
                          sweep_features)

    def kept_sources(self, images: Tensor, cams: Cameras) -> tuple[Tensor, Cameras] | None:
        """What a memorised scene keeps besides its fast weights: the inputs, if the renderer blends views."""
        return (images, cams) if self.blends_views else None

    def read_inputs(self, images: Tensor, cams: Cameras, sweep_ranges: Tensor | None = None,
                    exposure_gains: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """What the renderer reads off its input photos images [B, V, 3, H, W] (cams [B, V]) before
        it memorises them, from one matching of each scene's photos (:mod:`nvs.geometry.matching`)
        where something is to be found: (the photos, divided by their exposure gains where there are
        any; the plane sweep's ranges [B, 2] with ``sweep_range = "inputs"``
        (:meth:`nvs.models.plane_sweep.PlaneSweepBlend.ranges_from_inputs`), else None; the photos'
        gains [B, V, 3] with ``match_exposure`` (:mod:`nvs.geometry.exposure`) or ``backdrop_white``
        (:func:`nvs.models.plane_sweep.backdrop_gains`), else None). Ranges and gains passed in are kept."""
        wants_ranges = sweep_ranges is None and self.sweep is not None and self.config.sweep_range == "inputs"
        if exposure_gains is None and self.config.backdrop_white:
            exposure_gains = backdrop_gains(images.detach())
        wants_gains = exposure_gains is None and self.config.match_exposure
        if wants_ranges or wants_gains:
            matches = scene_matches(images, cams)
            if wants_ranges:
                sweep_ranges = self.sweep.ranges_from_inputs(images.detach(), cams, matches)
            if wants_gains:
                exposure_gains = torch.stack([exposure.exposure_gains(scene, found) for scene, found in zip(images, matches)])
        if exposure_gains is not None:
            exposure_gains = exposure_gains.to(device=images.device)
            images = exposure.apply_gains(images, exposure_gains)
        return images, sweep_ranges, exposure_gains

    def render(self, state: SceneState, target_cams: Cameras, sweep: bool = True) -> Tensor:
        """``sweep=False``: the colour before a plane sweep (which a turn ensemble runs once, on the
        median of its turns), with the depth the sweep reads as a fourth channel where it reads one
        (:meth:`decode`)."""
        if not isinstance(state, SceneState) or len(state.layers) != len(self.blocks):
            raise ValueError("state must be a SceneState produced by this renderer's memorize()")
        self.check_targets(target_cams, state.batch_size)
        plan = self.chunk_plan(target_cams.shape[0], target_cams.shape[1], self.tokens_per_view(target_cams))
        if plan is not None:
            with torch.no_grad():
                out = render_chunked(self, state, target_cams, plan, sweep=sweep)
        else:
            x = self.tokenizer(target_cams)
            x, _ = self._run(x, self.tokens_per_view(target_cams), [TTTOp(0, x.shape[1], update=False, apply=True)],
                             state.layers)
            out = self.decode(x, target_cams, state.sources, sweep=sweep, sweep_ranges=state.sweep_ranges,
                              sweep_features=state.sweep_features)
        return self.on_backdrop(out, state.exposure_gains) if sweep else out

    def on_backdrop(self, renders: Tensor, gains: Tensor | None) -> Tensor:
        """renders [B, T, 3, H, W] of photos divided by their backdrop gains [B, V, 3]
        (``backdrop_white``) -> the same on the brightest of the inputs' backdrops, per channel (a
        backdrop photographed brighter than white clips at 1, so a darker reading is the likelier
        error); others unchanged."""
        if not self.config.backdrop_white or gains is None:
            return renders
        return renders * gains.amax(dim=1)[:, None, :, None, None].to(renders)

    def forward(self, images: Tensor, cams: Cameras, target_cams: Cameras, with_samples: bool = False):
        """Joint pass (training): inputs and targets in one sequence; the update sees inputs only.
        ``with_samples``: (rendered images, (samples, valid, depth)) of a view-blending renderer,
        for its warp and depth losses; with a plane sweep, the sweep's (samples, valid, depth,
        plane logits), and a view-blending head before it gives none of its own."""
        self.check_inputs(images, cams)
        self.check_targets(target_cams, images.shape[0])
        if (target_cams.height, target_cams.width) != (cams.height, cams.width):
            if with_samples:
                raise ValueError("with_samples needs targets of the inputs' size")
            return self.render(self.memorize(images, cams), target_cams)
        images, sweep_ranges, gains = self.read_inputs(images, cams)
        x = torch.cat([self.tokenizer(cams, images), self.tokenizer(target_cams)], dim=1)
        n_in = self.tokens_per_view(cams) * cams.shape[1]
        ops = [TTTOp(0, n_in, update=True, apply=False), TTTOp(0, x.shape[1], update=False, apply=True)]
        x, _ = self._run(x, self.tokens_per_view(cams), ops, None)
        out = self.decode(x[:, n_in:], target_cams, self.kept_sources(images, cams), with_samples,
                          sweep_ranges=sweep_ranges)
        if isinstance(out, tuple):
            return self.on_backdrop(out[0], gains), out[1]
        return self.on_backdrop(out, gains)
