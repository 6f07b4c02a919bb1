"""Memorise and render in bounded chunks: the same math as one pass over all tokens, in less memory.

One pass over all tokens holds every intermediate of every token at once (queries, keys, values,
the SwiGLU hidden activations, the MLP's hidden layer): about 100 KB per token at the published
width. Nothing in the math needs that. Per block, this module keeps only the residual stream of
all tokens, x [B, N, dim], and updates it in place:

1. per-view attention, a group of views at a time;
2. the update's descent directions, summed over token ranges. Each of g0, g1, g2 is a sum over
   tokens of per-token terms taken against the weights the update starts from, so the sum of the
   ranges' sums is the whole chunk's sum; Newton-Schulz and the renormalisation then run once;
3. the apply, the output projection and the MLP, a token range at a time.

The tokenizer and the RGB head work a group of views at a time as well. Sizes of the groups and
ranges come from a memory budget (:func:`plan_chunks`). Inference only: nothing here keeps the
graph that a backward pass would need.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nvs.cameras import Cameras
from nvs.models.fast_weight import FastWeights, apply_update_into, column_norms, swiglu_apply, swiglu_update_grads

if TYPE_CHECKING:
    from nvs.models.lact import LaCTBlock, LaCTRenderer, SceneState

# Working memory per token, in elements, of each stage as this module runs it, measured at the
# published width and rounded up to leave room for the allocator's fragmentation: attention holds
# its input norm, q, k, v (normed), the output and its projection (7-8 x dim measured); the update
# holds the normed input, k, v, the learning rates and about six hidden-width activations (about
# 20 x dim measured with the published 2x hidden width); the apply + MLP hold the query, two
# hidden-width products, the output and the MLP's hidden layer twice.
ATTENTION_DIMS = 11
UPDATE_DIMS = 10  # + 7 x the fast-weight hidden width
UPDATE_HIDDEN = 7
APPLY_DIMS = 8  # + 3 x the fast-weight hidden width + 2 x the MLP's hidden width
APPLY_HIDDEN = 3
MLP_HIDDEN = 2
# Per sample and layer, independent of tokens: the update's sums (which become the new weights)
# and Newton-Schulz's temporaries, in fast-weight sizes.
FIXED_WEIGHT_COPIES = 2
# One pass over all tokens keeps q, k, v and more of every token alive: about 1.4 x a range's
# working memory per token at the published width (103 KB per token measured).
ONE_PASS_FACTOR = 1.6


@dataclass(frozen=True)
class ChunkPlan:
    """views: views per group (attention, tokenizer, RGB head); tokens: tokens per range (per sample)."""

    views: int
    tokens: int

    def __post_init__(self) -> None:
        if self.views < 1 or self.tokens < 1:
            raise ValueError(f"a chunk plan needs at least 1 view and 1 token per chunk, got {self}")


def parse_memory_size(text: str | int | None) -> int | None:
    """'8G', '512M', '64K' or a number of bytes (powers of 1024) -> bytes; None / 'none' / 'off' -> None."""
    if text is None or isinstance(text, int):
        return text
    value = str(text).strip().upper()
    if value in ("", "NONE", "OFF"):
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    scale = 1
    if value.endswith("B"):
        value = value[:-1]
    if value and value[-1] in units:
        scale = units[value[-1]]
        value = value[:-1]
    try:
        size = float(value) * scale
    except ValueError:
        raise ValueError(f"memory size {text!r} is not a number of bytes or a size like 512M, 8G") from None
    if not size > 0 or size == float("inf"):
        raise ValueError(f"memory size {text!r} must be a positive, finite number of bytes")
    return int(size)


def stage_bytes_per_token(renderer: "LaCTRenderer", element_size: int) -> tuple[int, int]:
    """(bytes per token of one attention group, of one fast-weight / MLP range) at ``element_size``."""
    cfg = renderer.config
    hidden = int(cfg.ttt_head_dim * cfg.ttt_inter_multi) * cfg.ttt_heads
    mlp_hidden = int(cfg.dim * cfg.mlp_inter_multi)
    attention = ATTENTION_DIMS * cfg.dim
    update = UPDATE_DIMS * cfg.dim + UPDATE_HIDDEN * hidden
    apply = APPLY_DIMS * cfg.dim + APPLY_HIDDEN * hidden + MLP_HIDDEN * mlp_hidden
    return attention * element_size, max(update, apply) * element_size


def plan_chunks(renderer: "LaCTRenderer", batch: int, views: int, tokens_per_view: int, budget: int,
                element_size: int = 4) -> ChunkPlan:
    """Largest groups and ranges whose working memory, with the residual stream [B, N, dim] of all
    tokens, fits ``budget`` bytes. At least one view per group: a budget below one view's attention
    is exceeded by that much. ValueError when the residual stream alone does not fit."""
    cfg = renderer.config
    tokens = views * tokens_per_view
    residual = batch * tokens * cfg.dim * element_size
    fast_weights = 3 * cfg.ttt_heads * cfg.ttt_head_dim * int(cfg.ttt_head_dim * cfg.ttt_inter_multi)
    fixed = FIXED_WEIGHT_COPIES * batch * fast_weights * element_size
    work = budget - residual - fixed
    if work <= 0:
        raise ValueError(
            f"a memory budget of {budget / 2**20:.1f} MiB cannot hold the {batch * tokens} tokens' residual stream "
            f"({residual / 2**20:.1f} MiB) and the fast-weight update ({fixed / 2**20:.1f} MiB); raise it"
        )
    attention, per_range = stage_bytes_per_token(renderer, element_size)
    group = max(1, min(views, work // (batch * tokens_per_view * attention)))
    span = max(1, min(tokens, work // (batch * per_range)))
    return ChunkPlan(views=int(group), tokens=int(span))


def fits_one_pass(renderer: "LaCTRenderer", batch: int, tokens: int, budget: int, element_size: int = 4) -> bool:
    """Whether one pass over all tokens (every intermediate of every token at once) fits ``budget``."""
    _, per_range = stage_bytes_per_token(renderer, element_size)
    return batch * tokens * (ONE_PASS_FACTOR * per_range + renderer.config.dim * element_size) <= budget


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None off glibc."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Hand the heap's free memory back to the system (glibc's malloc_trim; nothing off glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _ranges(total: int, step: int, device: torch.device):
    """[start, end) of each chunk. On the CPU, the memory freed by a chunk goes back to the system
    before the next: glibc keeps freed blocks in its heap (up to 32 MB by default, up to 1 GiB under
    nvs.inference.reuse_freed_memory, which the nvs command sets), where the next chunk's slightly
    different sizes fragment them, and the process would grow by a chunk's memory again."""
    trim = _malloc_trim() if device.type == "cpu" else None
    for start in range(0, total, step):
        yield start, min(start + step, total)
        if trim is not None:
            trim(0)


def _tokenize(renderer: "LaCTRenderer", cams: Cameras, images: Tensor | None, plan: ChunkPlan, dtype: torch.dtype) -> Tensor:
    """Tokens [B, V * L, dim] written a view group at a time."""
    b, v = cams.shape
    per_view = renderer.tokens_per_view(cams)
    x = torch.empty(b, v * per_view, renderer.config.dim, dtype=dtype, device=cams.c2w.device)
    for start, end in _ranges(v, plan.views, x.device):
        group_images = None if images is None else images[:, start:end]
        x[:, start * per_view : end * per_view] = renderer.tokenizer(cams[:, start:end], group_images)
    return x


def _attend(block: "LaCTBlock", x: Tensor, tokens_per_view: int, plan: ChunkPlan) -> None:
    """x += per-view attention, in place, a view group at a time."""
    b, n, d = x.shape
    for start, end in _ranges(n // tokens_per_view, plan.views, x.device):
        part = x[:, start * tokens_per_view : end * tokens_per_view]
        per_view = block.attn_norm(part).reshape(b * (end - start), tokens_per_view, d)
        part += block.attn(per_view).reshape(b, -1, d)


def _update(block: "LaCTBlock", x: Tensor, state: FastWeights, plan: ChunkPlan) -> FastWeights:
    """The fast weights after one update with all tokens of x, their descent directions summed over ranges."""
    layer = block.ttt
    weights = state.flat()
    # sums in the weights' dtype (float32 or float64): bfloat16 sums (autocast) would lose the
    # small ranges' terms; they become the new weights in place
    sums = [torch.zeros_like(w, memory_format=torch.contiguous_format) for w in weights]
    for start, end in _ranges(x.shape[1], plan.tokens, x.device):
        k, v, lrs = layer.keys_values_rates(block.ttt_norm(x[:, start:end]))
        swiglu_update_grads(*weights, k, v, *lrs, accumulate=sums)
    new = apply_update_into(sums, weights, column_norms(weights), layer.muon_steps, layer.ns_dtype)
    return layer.unflatten(x.shape[0], new)


def _apply_and_mlp(block: "LaCTBlock", x: Tensor, state: FastWeights, plan: ChunkPlan) -> None:
    """x += fast-weight output, then x += MLP, in place, a token range at a time."""
    layer = block.ttt
    weights = state.flat()
    for start, end in _ranges(x.shape[1], plan.tokens, x.device):
        part = x[:, start:end]
        out = swiglu_apply(*weights, layer.queries(block.ttt_norm(part)))
        part += layer.read_out(out, x.shape[0])
        part += block.mlp(block.mlp_norm(part))


def residual_dtype(renderer: "LaCTRenderer") -> torch.dtype:
    return renderer.tokenizer.embed.weight.dtype


def memorize_chunked(renderer: "LaCTRenderer", images: Tensor, cams: Cameras, plan: ChunkPlan) -> list[FastWeights]:
    """The fast weights of every block after reading images [B, V, 3, H, W] (checked by the caller)."""
    x = _tokenize(renderer, cams, images, plan, residual_dtype(renderer))
    per_view = renderer.tokens_per_view(cams)
    states = []
    for block in renderer.blocks:
        _attend(block, x, per_view, plan)
        state = _update(block, x, block.ttt.initial_weights(x.shape[0]), plan)
        _apply_and_mlp(block, x, state, plan)
        states.append(state)
    return states


def render_chunked(renderer: "LaCTRenderer", state: "SceneState", target_cams: Cameras, plan: ChunkPlan,
                   sweep: bool = True) -> Tensor:
    """Images [B, T, 3, H, W] of target_cams [B, T] read out of ``state`` (checked by the caller);
    ``sweep=False`` leaves out a plane sweep (as :meth:`LaCTRenderer.render`)."""
    x = _tokenize(renderer, target_cams, None, plan, residual_dtype(renderer))
    per_view = renderer.tokens_per_view(target_cams)
    for block, weights in zip(renderer.blocks, state.layers):
        _attend(block, x, per_view, plan)
        _apply_and_mlp(block, x, weights, plan)
    groups = []
    for start, end in _ranges(target_cams.shape[1], plan.views, x.device):
        part = x[:, start * per_view : end * per_view]
        groups.append(renderer.decode(part, target_cams[:, start:end], state.sources, sweep=sweep,
                                      sweep_ranges=state.sweep_ranges, sweep_features=state.sweep_features))
    return torch.cat(groups, dim=1)
