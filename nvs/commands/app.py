"""`nvs app`: start the Gradio viewer."""

from __future__ import annotations

import argparse

from nvs.commands.eval import add_reading_setting_argument
from nvs.inference import DEVICE_HELP, RENDERER_HELP, add_inference_arguments
from nvs.commands import argtypes as T


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="the Gradio viewer: upload photos (or pick an example), move the camera")
    p.add_argument("--checkpoint", default="auto", help=RENDERER_HELP)
    p.add_argument("--port", type=T.port, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for the local network)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--size", type=T.image_side, default=128, help="square image size the renderer works at")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_inference_arguments(p)
    add_reading_setting_argument(p)
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from nvs.viewer.app import launch  # gradio is slow to import: only when the viewer starts

    launch(args.checkpoint, port=args.port, share=args.share, size=args.size, host=args.host, device=args.device,
           memory_budget=args.memory_budget, dtype=args.dtype, turns=args.turns, settings=args.setting)
    return 0
