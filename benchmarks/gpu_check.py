"""The scorer on one GPU, in one JSON: fast path vs reference, throughput, share of the
bf16 peak, peak memory and a `model.token_budget` sweep, at Qwen2-VL-2B shapes.

Run through `benchmarks/gpu_check.sh` (which brings its dependencies); by hand:
`python benchmarks/gpu_check.py --device cuda --out gpu_check.json`. Imports the model
layer only (torch, transformers, pydantic, Pillow): no Ray, no decoder, no network. The
model is a random-weight checkpoint of the real architecture and shapes (built here, once),
so speeds and memory are those of the real model; its answers mean nothing.

Cases, as the VisionReward checklists ask them: (a) a 24-frame 224x224 video with the 29
video questions, (b) a 448x448 image with the 30 image questions. Per case: the fast path
(`score`: one prefix per item, packed question suffixes) against the reference (one forward
per question) on the same items (items/s and the largest p_yes difference), the fast path's
FLOP rate as a share of the bf16 peak (2 x parameters x tokens, vision patches included;
attention scores not counted) and its peak memory. Then the fast path's items/s and peak
memory per token budget. `--dry-run` runs tiny shapes of a tiny model (a CI check on CPU).
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
import torch
import transformers

from actors.adapters import MediaInput, load_adapter
from actors.adapters.packing import common_prefix_length
from actors.demo_model import build_demo_model
from schemas.job_config import DecodeConfig, ModelConfig

VR = Path(__file__).resolve().parents[2] / "shared" / "data" / "visionreward"
# Dense bf16 tensor-core peaks (NVIDIA datasheets, without sparsity), by device name.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
PROMPT = "A golden retriever runs along a beach at sunset, cinematic slow motion shot with warm lighting"


def questions(path: Path) -> list[str]:
    return [line.strip().replace("[[prompt]]", PROMPT) for line in path.read_text().splitlines() if line.strip()]


def items(kind: str, n: int, frames: int, side: int, seed: int) -> list[MediaInput]:
    rng = np.random.default_rng(seed)
    t = frames if kind == "video" else 1
    return [MediaInput(rng.integers(0, 256, (t, side, side, 3), dtype=np.uint8), kind, fps=1.0 if kind == "video" else None)
            for _ in range(n)]


def timed(fn, batch, qs, cuda: bool, repeats: int) -> tuple[float, list[np.ndarray], int]:
    """Median seconds, last result, peak GPU memory in bytes (0 on CPU)."""
    times, out = [], None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(batch, [qs] * len(batch))
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out, torch.cuda.max_memory_allocated() if cuda else 0


def fast_path_flops(adapter, item: MediaInput, qs: list[str]) -> float:
    """2 x parameters x tokens: the vision tower once per patch, the decoder once per prefix and
    suffix token (embedding lookups cost no FLOPs)."""
    prepared = adapter.prepare(item, qs)
    p = common_prefix_length(prepared.sequences)
    suffix_tokens = sum(len(seq) - p for seq in prepared.sequences)
    inner = adapter.model.model
    lm = adapter.model.get_decoder()  # every family's decoder, whatever its attribute name
    language = sum(t.numel() for t in lm.parameters()) - lm.embed_tokens.weight.numel()
    vision = sum(t.numel() for t in inner.parameters()) - sum(t.numel() for t in lm.parameters())
    media = adapter.family.media_kwargs([prepared.visual], torch.device("cpu"), torch.float32)
    vcfg = adapter.model.config.vision_config
    side = vcfg.patch_size  # InternVL gives [height, width]
    area = side[0] * side[1] if isinstance(side, (list, tuple)) else side**2
    per_patch = 3 * getattr(vcfg, "temporal_patch_size", 1) * area
    patches = sum(v.numel() for k, v in media.items() if k.startswith("pixel_values")) // per_patch
    return 2 * vision * patches + 2 * language * (p + suffix_tokens)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", choices=["bfloat16", "float32"],
                    help="default: bfloat16 on cuda, float32 on cpu (bf16 on CPU is slow and proves nothing)")
    ap.add_argument("--dry-run", action="store_true", help="tiny model and shapes (a CI check)")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--model-dir", type=Path, help="a checkpoint built earlier (else built in a temp folder)")
    ap.add_argument("--video-qa", type=Path, default=VR / "VisionReward_Video" / "VisionReward_video_qa_select.txt")
    ap.add_argument("--image-qa", type=Path, default=VR / "VisionReward_Image" / "VisionReward_image_qa_select.txt")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    if args.dry_run:
        preset, n_fast, n_ref, repeats, frames, vside, iside, budgets = "tiny", 2, 1, 1, 2, 56, 56, [256, 1024]
    else:
        preset, n_fast, n_ref, repeats, frames, vside, iside, budgets = (
            "qwen2_vl_2b", 32, 2, 3, 24, 224, 448, [4096, 8192, 16384, 32768, 65536])
    name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    peak = next((v for k, v in BF16_PEAK_FLOPS.items() if k in name), None) if cuda else None
    result = {"device": name, "torch": torch.__version__, "transformers": transformers.__version__,
              "dtype": args.dtype, "preset": preset, "dry_run": args.dry_run, "bf16_peak_flops": peak,
              "ray_imported": False, "cases": {}, "token_budget_sweep": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_demo_model(Path(tmp) / "model", preset=preset)
        decode = DecodeConfig(video_min_pixels=vside**2, video_max_pixels=vside**2,
                              image_min_pixels=iside**2, image_max_pixels=iside**2)

        def adapter_for(budget: int):
            return load_adapter(ModelConfig(model=str(model_dir), device=args.device, dtype=args.dtype,
                                            token_budget=budget), decode)

        adapter = adapter_for(ModelConfig.model_fields["token_budget"].default)
        cases = {"video": (args.video_qa, frames, vside), "image": (args.image_qa, 1, iside)}
        for seed, (kind, (qa, t, side)) in enumerate(cases.items()):
            qs, batch = questions(qa), items(kind, n_fast, t, side, seed)
            timed(adapter.score, batch[:1], qs, cuda, 1)  # warm-up: kernels, allocator
            fast_s, _, fast_mem = timed(adapter.score, batch, qs, cuda, repeats)
            few = batch[:n_ref]
            ref_s, ref_out, _ = timed(adapter.score_reference, few, qs, cuda, 1)
            small_s, small_out, _ = timed(adapter.score, few, qs, cuda, 1)
            flops = fast_path_flops(adapter, batch[0], qs) * n_fast / fast_s
            result["cases"][kind] = {
                "questions": len(qs), "frames": t, "side": side, "items": n_fast,
                "fast_items_per_s": round(n_fast / fast_s, 3), "reference_items_per_s": round(n_ref / ref_s, 3),
                "fast_vs_reference_per_item_small_batch": round(ref_s / small_s, 2),
                "max_abs_p_yes_diff": float(max(np.abs(a - b).max() for a, b in zip(small_out, ref_out))),
                "flops_per_s": flops, "share_of_bf16_peak": round(flops / peak, 4) if peak else None,
                "peak_memory_gib": round(fast_mem / 2**30, 3)}
            print(kind, json.dumps(result["cases"][kind]), flush=True)
        del adapter
        for budget in budgets:
            adapter = adapter_for(budget)
            qs, batch = questions(args.video_qa), items("video", n_fast, frames, vside, 9)
            timed(adapter.score, batch[:1], qs, cuda, 1)
            seconds, _, memory = timed(adapter.score, batch, qs, cuda, repeats)
            result["token_budget_sweep"][str(budget)] = {"video_items_per_s": round(n_fast / seconds, 3),
                                                         "peak_memory_gib": round(memory / 2**30, 3)}
            print("token_budget", budget, json.dumps(result["token_budget_sweep"][str(budget)]), flush=True)
            del adapter
            if cuda:
                torch.cuda.empty_cache()
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["ray_imported"] = "ray" in sys.modules
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
