"""The `nvs` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from nvs.demo import run_demo

    m = run_demo(Path(args.out), seconds=args.seconds)
    print(f"\n{m['what']}")
    print(f"held-out views, PSNR: model {m['model']['psnr']:.2f} dB | nearest input view "
          f"{m['nearest_view']['psnr']:.2f} dB | untrained {m['untrained']['psnr']:.2f} dB")
    print(f"wrote {args.out}/grid.png (inputs | held-out truth | renders), orbit.mp4, metrics.json")
    return 0


def _train(args: argparse.Namespace) -> int:
    from nvs.training.config import load_train_config
    from nvs.training.loop import train

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvs", description="LaCT novel view synthesis")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the main job on built-in procedural data (no downloads)")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--seconds", type=float, default=45.0, help="fitting time budget")
    p.set_defaults(func=_demo)

    p = sub.add_parser("train", help="train a renderer from a YAML recipe (CPU, GPU, or `accelerate launch`)")
    p.add_argument("config", help="recipe, e.g. configs/train-demo-object.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 run.out_dir=runs/x")
    p.add_argument("--out", help="run folder (same as run.out_dir=...)")
    p.add_argument("--resume", help="checkpoint folder to resume from (default: the run folder's latest)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has checkpoints")
    p.add_argument("--max-steps", type=int, help="stop after this step (the schedule still spans optim.steps)")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "overrides", None) is None or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nvs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
