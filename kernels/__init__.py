"""Fast-weight kernels: the plain-torch reference used on every device.

Fused Triton versions are tracked in the performance issue; until they land, every call goes
to the reference in :mod:`nvs.kernels.reference`.
"""

from nvs.kernels.reference import newton_schulz, renormalize_columns, swiglu_apply, swiglu_update_grads

__all__ = ["newton_schulz", "renormalize_columns", "swiglu_apply", "swiglu_update_grads"]
