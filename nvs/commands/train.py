"""`nvs train`: train a renderer from a YAML recipe (CPU, GPU, or several processes with accelerate)."""

from __future__ import annotations

import argparse
import os

from nvs.training.config import load_train_config
from nvs.training.loop import train
from nvs.commands import argtypes as T


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a renderer from a YAML recipe (CPU, GPU, or `accelerate launch`)")
    p.add_argument("config", help="recipe, e.g. configs/train-object-cpu.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 run.out_dir=runs/x")
    p.add_argument("--out", type=T.out_dir, help="run folder (same as run.out_dir=...)")
    p.add_argument("--resume", help="checkpoint folder to resume from (default: the run folder's latest)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has checkpoints")
    p.add_argument("--max-steps", type=T.positive_int(10**12), help="stop after this step (the schedule still spans optim.steps)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, args.overrides)
    if args.out:
        cfg.run.out_dir = args.out
    resume = None if args.no_resume else (args.resume or "auto")
    summary = train(cfg, resume=resume, max_steps=args.max_steps)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained to step {summary['steps']} ({summary['skipped_steps']} skipped steps); "
          f"run folder {cfg.run.out_dir} (summary.json, config.yaml, checkpoints/, tensorboard/)")
    return 0
