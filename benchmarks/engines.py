"""Our engine against vLLM on the same items and questions, in one run: items/s and the ratios.

    python benchmarks/engines.py                          # bench Qwen2-VL, 16 images x 21 questions, 3 repeats
    python benchmarks/engines.py --items 2 --repeats 1    # the quick look (a minute or two on 2 cores)
    python benchmarks/engines.py --device cuda --preset qwen2_vl_2b --items 64

Needs vLLM (`model.engine=vllm`; on CPU the venv of .ci/vllm_env.sh). Three engines score the same
random images (at a size the decode stage would have produced, so no engine resizes them) with the
default image checklist's questions, rendered with a prompt:
  ours            model.engine=transformers, share_prefix: one prefix forward per item, the questions
                  packed against its cache;
  vllm_cached     model.engine=vllm with automatic prefix caching: one prompt per (item, question),
                  an item's prompts submitted together;
  vllm_uncached   the same without prefix caching.
Each repeat takes fresh items (vLLM would otherwise find their prompts and images cached from the
repeat before) and runs the engines one after the other; figures are medians over repeats. vLLM's
start-up (engine build, profiling, KV cache allocation) is reported apart, not in items/s. The
largest p_yes difference to ours shows all three answered the same prompts.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from actors.adapters import MediaInput, load_adapter
from actors.demo_model import build_demo_model
from schemas.checklist import default_checklist
from schemas.job_config import DecodeConfig, ModelConfig

PROMPT = "A golden retriever runs along a beach at sunset, cinematic slow motion shot with warm lighting"


def images(n: int, side: int, seed: int) -> list[MediaInput]:
    rng = np.random.default_rng(seed)
    return [MediaInput(rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8), "image", resized=True)
            for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=16, help="images per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="bench", help="actors/demo_model.py preset (not `tiny`: head size 16)")
    ap.add_argument("--family", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl"])
    ap.add_argument("--side", type=int, default=448, help="image side in pixels (a multiple of 28)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: float32 on cpu, bfloat16 on cuda")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    questions = default_checklist("image").render(PROMPT)
    result: dict = {"machine": platform.processor() or platform.machine(), "device": args.device, "dtype": dtype,
                    "preset": args.preset, "family": args.family, "items": args.items, "repeats": args.repeats,
                    "questions": len(questions), "side": args.side, "start_s": {}, "items_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_demo_model(Path(tmp) / "model", preset=args.preset, family=args.family)
        base = dict(model=str(model), device=args.device, dtype=dtype)
        configs = {"ours": ModelConfig(**base),
                   "vllm_cached": ModelConfig(**base, engine="vllm", share_prefix=True),
                   "vllm_uncached": ModelConfig(**base, engine="vllm", share_prefix=False)}
        decode = DecodeConfig(image_min_pixels=args.side**2, image_max_pixels=args.side**2)
        engines = {}
        for name, config in configs.items():
            start = time.perf_counter()
            engines[name] = load_adapter(config, decode)
            engines[name].readout(images(1, args.side, seed=10_000), [questions])  # warm-up, not timed
            result["start_s"][name] = round(time.perf_counter() - start, 1)
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        diff = {name: 0.0 for name in engines}
        for rep in range(args.repeats):
            batch = images(args.items, args.side, seed=rep)
            p_yes = {}
            for name, engine in engines.items():
                start = time.perf_counter()
                p_yes[name] = engine.readout(batch, [questions] * len(batch))
                seconds[name].append(time.perf_counter() - start)
            for name in engines:
                diff[name] = max(diff[name], max(float(np.abs(a.p_yes - b.p_yes).max())
                                                 for a, b in zip(p_yes[name], p_yes["ours"])))
    for name, times in seconds.items():
        result["items_per_s"][name] = round(args.items / statistics.median(times), 3)
    ips = result["items_per_s"]
    result["ours_over_vllm_cached"] = round(ips["ours"] / ips["vllm_cached"], 2)
    result["ours_over_vllm_uncached"] = round(ips["ours"] / ips["vllm_uncached"], 2)
    result["max_p_yes_diff_to_ours"] = {k: float(f"{v:.2g}") for k, v in diff.items()}
    print(f"{args.items} images {args.side}x{args.side} x {len(questions)} questions, {args.preset} {args.family}, "
          f"{args.device} {dtype}, median of {args.repeats}")
    print(f"{'engine':<15}{'items/s':>10}{'start s':>10}{'max |dp_yes|':>14}")
    for name in engines:
        print(f"{name:<15}{ips[name]:>10.3f}{result['start_s'][name]:>10.1f}{diff[name]:>14.2g}")
    print(f"ours / vllm_cached = {result['ours_over_vllm_cached']}x, "
          f"ours / vllm_uncached = {result['ours_over_vllm_uncached']}x")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
