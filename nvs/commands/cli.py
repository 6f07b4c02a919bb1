"""The `nvs` command: one entry point, one subcommand per job (each in its own module here)."""

from __future__ import annotations

import argparse
import sys

from nvs.commands import adapt, app, bench, data, demo, eval, metrics, reconstruct, render, train
from nvs.inference import reuse_freed_memory

SUBCOMMANDS = (demo, app, data, eval, render, adapt, reconstruct, bench, metrics, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvs", description="LaCT novel view synthesis")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "overrides", None) is None or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    reuse_freed_memory()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nvs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written (disk full, permissions, a busy port)
        print(f"nvs {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
