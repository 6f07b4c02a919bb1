"""The `nvs` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvs", description="LaCT novel view synthesis")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the main job on built-in procedural data (no downloads)")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--seconds", type=float, default=45.0, help="fitting time budget")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nvs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
