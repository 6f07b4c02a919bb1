"""Fast-weight kernels, chosen per call: the fused Triton kernels for CUDA tensors when Triton is
installed (NVS_KERNELS=torch forces the reference), the plain-torch reference everywhere else.

The update's fused pass has no backward, so it is used only when no gradient flows through the
update (memorising for rendering); training on CUDA runs the fused apply (which has one) and the
reference update.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from nvs.kernels import reference
from nvs.kernels.reference import newton_schulz, renormalize_columns

HAVE_TRITON = importlib.util.find_spec("triton") is not None


def use_triton(*tensors: Tensor) -> bool:
    return HAVE_TRITON and os.environ.get("NVS_KERNELS", "auto") != "torch" and all(t.is_cuda for t in tensors)


def swiglu_apply(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    if use_triton(w0, w1, w2, x):
        from nvs.kernels import triton_swiglu

        return triton_swiglu.swiglu_apply(w0, w1, w2, x).to(x.dtype)
    return reference.swiglu_apply(w0, w1, w2, x)


def swiglu_update_grads(w0: Tensor, w1: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor,
                        lr2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    tensors = (w0, w1, w2, k, v, lr0, lr1, lr2)
    if use_triton(*tensors) and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        from nvs.kernels import triton_swiglu

        return tuple(g.to(k.dtype) for g in triton_swiglu.swiglu_update_grads(*tensors))
    return reference.swiglu_update_grads(*tensors)


__all__ = ["HAVE_TRITON", "newton_schulz", "renormalize_columns", "swiglu_apply", "swiglu_update_grads", "use_triton"]
