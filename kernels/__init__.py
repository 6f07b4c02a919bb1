"""Fused Triton kernels for the fast-weight SwiGLU, and the choice of when to run them.

``NVS_KERNELS`` picks per call: ``auto`` (the default) and ``torch`` run the plain-torch reference
in :mod:`nvs.models.fast_weight`; ``triton`` runs the fused kernels and makes a call on tensors
they cannot take (not CUDA, or no triton package) an error instead of a fallback.

The reference is the default on GPUs too because it was the faster on the one GPU measured
(BENCHMARKS.md, H100): at 16K-64K tokens its cuBLAS products plus unfused elementwise work beat
the fused kernels by 1.35x in float32, and in bfloat16 neither is ahead by more than 25%.

The update's fused pass has no backward, so it is used only when no gradient flows through the
update (memorising for rendering); training with ``triton`` runs the fused apply (which has one)
and the reference update.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

HAVE_TRITON = importlib.util.find_spec("triton") is not None
KERNEL_CHOICES = ("auto", "torch", "triton")


def kernel_choice() -> str:
    choice = os.environ.get("NVS_KERNELS", "auto")
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"NVS_KERNELS={choice!r}: choose one of {KERNEL_CHOICES}")
    return choice


def triton_available(device: torch.device | str) -> bool:
    """Whether the Triton kernels can run on ``device``."""
    return HAVE_TRITON and torch.device(device).type == "cuda"


def use_triton(*tensors: Tensor) -> bool:
    """True when NVS_KERNELS=triton (then every tensor must be on CUDA); False otherwise."""
    if kernel_choice() != "triton":
        return False
    if not all(triton_available(t.device) for t in tensors):
        raise RuntimeError("NVS_KERNELS=triton, but the Triton kernels need CUDA tensors and the triton package")
    return True


def triton_swiglu_apply(w0: Tensor, w1: Tensor, w2: Tensor, x: Tensor) -> Tensor:
    from nvs.kernels import triton_swiglu

    return triton_swiglu.swiglu_apply(w0, w1, w2, x).to(x.dtype)


def triton_swiglu_update_grads(*tensors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(w0, w1, w2, k, v, lr0, lr1, lr2) -> (g0, g1, g2), as :func:`nvs.models.fast_weight.swiglu_update_grads`."""
    from nvs.kernels import triton_swiglu

    return tuple(g.to(tensors[3].dtype) for g in triton_swiglu.swiglu_update_grads(*tensors))


__all__ = ["HAVE_TRITON", "KERNEL_CHOICES", "kernel_choice", "triton_available", "triton_swiglu_apply",
           "triton_swiglu_update_grads", "use_triton"]
