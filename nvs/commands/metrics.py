"""`nvs metrics`: PSNR / SSIM / LPIPS of two images, as JSON."""

from __future__ import annotations

import argparse
import json

from nvs.evaluation.metrics import all_metrics
from nvs.io.media import read_image


def add_parser(sub) -> None:
    p = sub.add_parser("metrics", help="PSNR / SSIM / LPIPS of two images of the same size, as JSON")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--lpips-net", choices=["vgg", "alex"], default="vgg")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a, b = read_image(args.image_a), read_image(args.image_b)
    if a.shape != b.shape:
        raise ValueError(f"{args.image_a} is {tuple(a.shape[1:])} pixels but {args.image_b} is {tuple(b.shape[1:])}")
    values = all_metrics(a[None], b[None], lpips_net=args.lpips_net)
    print(json.dumps({k: round(float(v[0]), 6) for k, v in values.items()}))
    return 0
