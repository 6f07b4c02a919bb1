"""Carry a renderer's weights to a deeper one: the old blocks first, new blocks after them as identities.

A block adds three residual branches (attention, fast-weight layer, MLP; full attention has two),
each ending in a ``proj`` linear layer. With those projections zero, a new block passes its input
through unchanged, so the grown model renders exactly what the checkpoint rendered; training
then lets the new blocks learn what the old ones could not. The other weights of a new block keep
their fresh initialisation, so the zero projections receive gradient from the first step.
"""

from __future__ import annotations

import dataclasses

import torch

from nvs.models.checkpoint import Renderer, build_renderer


def add_identity_blocks(model: Renderer, layers: int) -> Renderer:
    """A new renderer with ``layers`` blocks: ``model``'s blocks (copied), then identity blocks."""
    old_layers = model.config.layers
    if layers < old_layers:
        raise ValueError(f"cannot grow {old_layers} blocks to {layers}: a renderer only grows deeper here")
    grown = build_renderer(dataclasses.replace(model.config, layers=layers))
    state = grown.state_dict()
    state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
    for name in state:
        if name.startswith("blocks.") and int(name.split(".")[1]) >= old_layers and name.endswith(".proj.weight"):
            state[name] = torch.zeros_like(state[name])
    grown.load_state_dict(state)
    return grown.train(model.training)
