"""`vrscore make-demo-model DIR --family F`: a random-weight model of a supported family, built offline."""
from __future__ import annotations

import argparse

from actors.tiny_models import FAMILY_MODULES

FAMILIES = ("qwen2_vl", "qwen2_5_vl", *FAMILY_MODULES)

RANDOM_WEIGHTS_WARNING = (
    "NOTE: the demo model has RANDOM weights: its answers and scores mean nothing. "
    "It exists to exercise the pipeline end to end without downloading a model."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="where to save the model (save_pretrained layout)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "tiny_hd32", "bench", "qwen2_vl_2b"],
                   help="tiny: ~0.2M params (tests, demo); tiny_hd32: tiny with 32-wide heads (Qwen2-VL/2.5-VL, "
                   "for vLLM's CPU attention); bench: CPU benchmark size; qwen2_vl_2b: real 2B shapes")
    p.add_argument("--family", default="qwen2_vl", choices=list(FAMILIES),
                   help="config.model_type of the model; families other than Qwen2-VL/2.5-VL come in preset tiny only")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from actors.demo_model import build_demo_model

    path = build_demo_model(args.dir, preset=args.preset, family=args.family, seed=args.seed)
    print(f"demo model ({args.family}, preset {args.preset}) saved to {path}")
    print(RANDOM_WEIGHTS_WARNING)
    return 0
