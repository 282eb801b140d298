"""Checklist scoring throughput: the shared-prefix fast path (`score`) against one full forward
per question (`score_reference`), on a random-weight model of a chosen size. Run by hand:

    python benchmarks/checklist_throughput.py                        # bench preset, 2 CPU cores
    python benchmarks/checklist_throughput.py --preset bench --family internvl --repeats 3
    python benchmarks/checklist_throughput.py --preset qwen2_vl_2b --device cuda --dtype bfloat16
    python benchmarks/checklist_throughput.py --frames 8 --vocab 151936  # answer mass at Qwen2's vocabulary

The fast path also runs without the answer mass (`score_no_mass`: the yes/no rows of the LM head
only, as before the mass existed), alternating with the other two, and the ratio of the two is
printed: what the whole-vocabulary log-sum-exp costs. The tiny and bench models' vocabularies
are their tokenizers' (a few hundred tokens), which makes the LM head nearly free; `--vocab N`
pads the model to N rows (Qwen2's 151,936, Gemma 3's 262,208) so the head costs what it costs on
a real checkpoint of that vocabulary, relative to a language model far smaller than a real one.

Cases: (a) a 24-frame video with the 29-question VisionReward video checklist, (b) an image with
the 30-question VisionReward image checklist. Frames are random (the cost does not depend on
content); sizes are fixed so nothing is resized: the visual token count is printed with P.
Both paths run side by side in each repeat; figures are medians over repeats. The analytic
ceiling Q(P+S)/(P+QS) is the language-model speed-up for prefix length P, mean suffix S and Q
questions; the vision tower runs Q times per item in the reference and once in `score`, so the
measured ratio can exceed it: the second ceiling counts FLOPs of both, 2 x parameters x tokens
(patches for the vision tower; attention scores, padding and the yes/no head not counted). On
CUDA it also prints the fraction of the bf16 peak reached, with the same FLOP count, and the
peak GPU memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actors.adapters import MediaInput, load_adapter
from actors.adapters.packing import common_prefix_length
from actors.demo_model import FAMILIES, build_demo_model
from schemas.job_config import DecodeConfig, ModelConfig

VR = Path(__file__).resolve().parents[2] / "shared" / "data" / "visionreward"
VIDEO_QA = VR / "VisionReward_Video" / "VisionReward_video_qa_select.txt"
IMAGE_QA = VR / "VisionReward_Image" / "VisionReward_image_qa_select.txt"
PROMPT = ("A golden retriever runs along a beach at sunset, waves rolling in behind it, "
          "cinematic slow motion shot with warm lighting")
# Dense bf16 tensor-core peak of an H100 SXM (NVIDIA datasheet, without sparsity).
H100_BF16_PEAK_FLOPS = 989e12


def checklist(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [line.replace("[[prompt]]", PROMPT) for line in lines]


def make_items(kind: str, n: int, frames: int, side: int, seed: int) -> list[MediaInput]:
    rng = np.random.default_rng(seed)
    t = frames if kind == "video" else 1
    return [MediaInput(rng.integers(0, 256, (t, side, side, 3), dtype=np.uint8), kind, fps=1.0 if kind == "video" else None)
            for _ in range(n)]


def measure(fn, items: list[MediaInput], questions: list[list[str]],
            cuda: bool) -> tuple[float, list[np.ndarray], int, float]:
    """Seconds, result, peak GPU memory (bytes; 0 on CPU) and CPU seconds of this process (all
    its threads) of one call. On a shared CPU the CPU seconds leave out the time spent waiting
    for a core, which the wall-clock seconds count."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(items, questions)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out, torch.cuda.max_memory_allocated() if cuda else 0, time.process_time() - cpu


def vision_params(model) -> int:
    """Parameters of the vision tower and projector: the inner model less its language model."""
    return sum(p.numel() for p in model.model.parameters()) - sum(p.numel() for p in model.get_decoder().parameters())


def vision_patches(adapter, prepared) -> int:
    """Patches the vision tower embeds for one item: its pixels over (3 x temporal x patch x patch)."""
    vision = adapter.model.config.vision_config
    side = vision.patch_size  # InternVL gives [height, width]
    area = side[0] * side[1] if isinstance(side, (list, tuple)) else side**2
    per_patch = 3 * getattr(vision, "temporal_patch_size", 1) * area
    media = adapter.family.media_kwargs([prepared.visual], torch.device("cpu"), torch.float32)
    return sum(v.numel() for k, v in media.items() if k.startswith("pixel_values")) // per_patch


def language_params(model) -> int:
    """Parameters touched per token by the decoder (embedding lookups cost no FLOPs)."""
    lm = model.get_decoder()
    return sum(p.numel() for p in lm.parameters()) - lm.embed_tokens.weight.numel()


def resize_factor(model_dir: Path) -> int:
    """patch x merge of a Qwen-style checkpoint (32 for Qwen3-VL), else the default 28."""
    cfg = json.loads((Path(model_dir) / "preprocessor_config.json").read_text())
    return cfg["patch_size"] * cfg["merge_size"] if "merge_size" in cfg else 28


def tile_side(model_dir: Path) -> int | None:
    """The side a fixed-tile processor (InternVL, LLaVA-OneVision, Gemma 3, SmolVLM) resizes every view
    to; None for dynamic-resolution ones (Qwen, GLM-4.1V), which keep a side that is a multiple of 28."""
    cfg = json.loads((Path(model_dir) / "preprocessor_config.json").read_text())
    if "merge_size" in cfg:
        return None
    size = cfg.get("max_image_size") or cfg["size"]
    return size.get("height") or size["longest_edge"]


def without_mass(adapter):
    """The fast path with the answer mass switched off (the engine's `answer_mass` flag)."""
    def score_no_mass(items, questions):
        adapter.answer_mass = False
        try:
            return adapter.score(items, questions)
        finally:
            adapter.answer_mass = True
    return score_no_mass


def padded_vocabulary(model_dir: Path, rows: int, out: Path) -> Path:
    """A copy of the checkpoint whose embedding and LM head have `rows` rows (new ones random)."""
    import shutil

    from transformers import AutoModelForImageTextToText

    shutil.copytree(model_dir, out)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.resize_token_embeddings(rows, mean_resizing=False)
    model.save_pretrained(out, safe_serialization=True)
    return out


def run_case(label: str, adapter, items: list[MediaInput], questions: list[str], repeats: int, cuda: bool,
             reference: bool = True) -> None:
    qs = [questions] * len(items)
    prepared = adapter.prepare(items[0], questions)
    p = common_prefix_length(prepared.sequences)
    s = float(np.mean([len(seq) - p for seq in prepared.sequences]))
    q = len(questions)
    patches = vision_patches(adapter, prepared)
    print(f"{label}: {len(items)} items/call, Q = {q} questions, prefix P = {p} tokens "
          f"({patches} vision patches), mean suffix S = {s:.1f} tokens")

    paths = {"score": adapter.score, "score_no_mass": without_mass(adapter)}
    if reference:
        paths["score_reference"] = adapter.score_reference
    for fn in paths.values():  # warm-up: allocator, kernels, lazy inits
        measure(fn, items[:1], [questions[:1]], cuda)
    runs: dict[str, list] = {name: [] for name in paths}
    for _ in range(repeats):  # alternate, so that drifts of the machine hit every path alike
        for name, fn in paths.items():
            runs[name].append(measure(fn, items, qs, cuda))
    rate = {name: len(items) / statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    memory = {name: max(r[2] for r in rs) for name, rs in runs.items()}
    for other in [name for name in paths if name != "score"]:
        diff = max(float(np.abs(f - r).max()) for f, r in zip(runs["score"][-1][1], runs[other][-1][1]))
        print(f"{label}: max |score - {other}| = {diff:.2e}")
    for path in paths:
        print(f"{label}: {path:<16} {rate[path]:8.3f} items/s (median of {repeats})")
    vision_flops = 2 * vision_params(adapter.model) * patches
    per_token = 2 * language_params(adapter.model)
    fast = vision_flops + per_token * (p + q * s)
    flops = {"score": fast, "score_no_mass": fast, "score_reference": q * (vision_flops + per_token * (p + s))}
    if cuda:
        for path in paths:
            print(f"{label}: {path:<16} {flops[path] * rate[path] / H100_BF16_PEAK_FLOPS:8.1%} of bf16 peak, "
                  f"peak memory {memory[path] / 2**30:.2f} GiB")
    if reference:
        print(f"{label}: ceiling Q(P+S)/(P+QS) = {q * (p + s) / (p + q * s):.1f}x")
        print(f"{label}: ceiling counting the vision tower's FLOPs too = "
              f"{flops['score_reference'] / flops['score']:.1f}x")
        print(f"{label}: ratio score / score_reference = {rate['score'] / rate['score_reference']:.1f}x")
    head = 2 * adapter.head.weight.numel() * q  # the whole LM head once per question
    print(f"{label}: answer mass: ratio score / score_no_mass = {rate['score'] / rate['score_no_mass']:.3f} "
          f"(time {rate['score_no_mass'] / rate['score'] - 1:+.1%}; the whole head once per question is "
          f"{head / fast:.1%} of the other FLOPs of the fast path)")
    if not cuda:
        cpu = {name: statistics.median(r[3] for r in runs[name]) for name in ("score", "score_no_mass")}
        print(f"{label}: answer mass: CPU seconds per call {cpu['score']:.3f} vs {cpu['score_no_mass']:.3f} without, "
              f"{cpu['score'] / cpu['score_no_mass'] - 1:+.1%} (median of {repeats})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench", "qwen2_vl_2b"])
    ap.add_argument("--family", default="qwen2_vl", choices=list(FAMILIES),
                    help="model family of the random model (families other than qwen2_vl/qwen2_5_vl: presets tiny "
                    "and bench; bench has the real vision geometry of a small checkpoint of the family)")
    ap.add_argument("--model-dir", type=Path, help="reuse a model built earlier (else built in a temp folder)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--items", type=int, default=1, help="items per scoring call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--token-budget", type=int, default=ModelConfig.model_fields["token_budget"].default)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--video-side", type=int, help="video frame side in pixels (default: the model's tile "
                    "side for fixed-tile processors, else 224, a multiple of 28 and of 32)")
    ap.add_argument("--image-side", type=int, help="image side in pixels (default: the tile side, else 448)")
    ap.add_argument("--cases", default="video,image", help="comma-separated: video, image")
    ap.add_argument("--skip-reference", action="store_true",
                    help="leave out the one-forward-per-question path (quick: the answer mass's cost alone)")
    ap.add_argument("--vocab", type=int, help="pad the model's vocabulary to this many rows (e.g. 151936, Qwen2's), "
                    "so the LM head and the answer mass cost what they cost at a real vocabulary")
    ap.add_argument("--video-qa", type=Path, default=VIDEO_QA, help="VisionReward video checklist (*_qa_select.txt)")
    ap.add_argument("--image-qa", type=Path, default=IMAGE_QA, help="VisionReward image checklist (*_qa_select.txt)")
    args = ap.parse_args()

    cuda = args.device == "cuda"
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}; bf16 peak assumed {H100_BF16_PEAK_FLOPS / 1e12:.0f} TFLOP/s "
              "(H100 SXM dense)")
    else:
        print(f"device: cpu, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_demo_model(Path(tmp) / "model", preset=args.preset, family=args.family)
        if args.vocab:
            model_dir = padded_vocabulary(model_dir, args.vocab, Path(tmp) / "padded")
        # one view per frame or image at the tile size, so the processor neither splits nor rescales
        tile = tile_side(model_dir)
        args.video_side = args.video_side or tile or 224
        args.image_side = args.image_side or tile or 448
        # pixel bounds that keep the chosen frame sizes as they are
        decode = DecodeConfig(resize_factor=tile or resize_factor(model_dir),
                              video_min_pixels=args.video_side**2, video_max_pixels=args.video_side**2,
                              image_min_pixels=args.image_side**2, image_max_pixels=args.image_side**2)
        adapter = load_adapter(ModelConfig(model=str(model_dir), device=args.device, dtype=args.dtype,
                                           token_budget=args.token_budget), decode)
        print(f"model: {args.preset} {args.family}, {sum(p.numel() for p in adapter.model.parameters()) / 1e6:.1f}M "
              f"parameters, vocabulary {adapter.head.weight.shape[0]}, {args.dtype}, token_budget {args.token_budget}")
        cases = {"video": ("(a) video", args.video_qa), "image": ("(b) image", args.image_qa)}
        for seed, key in enumerate(args.cases.split(",")):
            label, qa = cases[key]
            frames, side = (args.frames, args.video_side) if key == "video" else (1, args.image_side)
            run_case(label, adapter, make_items(key, args.items, frames, side, seed), checklist(qa), args.repeats, cuda,
                     reference=not args.skip_reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
