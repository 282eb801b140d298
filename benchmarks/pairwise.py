"""Pairwise judging throughput and decodes per item, in one run. Run by hand:

    python benchmarks/pairwise.py                               # bench preset, 2 groups of 6 images, 3 questions
    python benchmarks/pairwise.py --preset tiny --groups 2 --per-group 4 --size 112   # a quick look (minutes)
    python benchmarks/pairwise.py --preset qwen2_vl_2b --device cuda --dtype bfloat16

Judged pairs/s, both orders of every pair, on a random-weight Qwen2-VL-family model:
  fast       `PairReader.judge`: per order one prompt (system turn, both images, question), the
             questions sharing its prefix, all pairs of the call packed under the token budget;
  reference  one complete forward per (pair, order, question), nothing shared.
Both run side by side in each repeat on the same pairs; figures are medians, with their ratio.

Decodes per item: the pairs of `--schedule` within each group go through the judge job's plan
(pipeline/judge_plan.py: a group's pairs in one unit) and the job's decode stage
(actors/pair_units.UnitDecoder) on real PNG files; every item the decode stage reads is counted.
Printed beside the count a pipeline decoding per pair (2 per pair) would make.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from actors.adapters.base import MediaInput
from actors.demo_model import build_demo_model
from actors.media_decoder import MediaDecoder
from actors.pair_reader import PairReader
from actors.pair_units import UnitDecoder
from actors.synthetic_media import write_image
from pipeline.judge_plan import build_plan
from pipeline.pair_schedule import parse_schedule, schedule_pairs
from schemas.checklist import load_checklist_file
from schemas.job_config import DecodeConfig, ModelConfig

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    {"id": "overall", "text": "Which of the two is better overall?", "dimension": "overall"},
    {"id": "alignment", "text": "Which of the two follows the description more closely?", "dimension": "alignment"},
    {"id": "quality", "text": "Which of the two has fewer visual flaws?", "dimension": "quality"},
]


class CountingDecoder(MediaDecoder):
    """The decode stage, counting the items it is given."""

    decoded: list[str] = []

    def __call__(self, batch):
        CountingDecoder.decoded += [str(i) for i in batch["id"]]
        return super().__call__(batch)


def decodes(folder: Path, groups: int, per_group: int, rule: str, decode: DecodeConfig) -> tuple[int, int, int]:
    """(items decoded by the job's decode stage, distinct items, pairs) for the schedule's pairs."""
    rows, pairs = [], []
    for g in range(groups):
        ids = [f"g{g}_{i}" for i in range(per_group)]
        for i, key in enumerate(ids):
            rows.append({"id": key, "uri": str(write_image(folder / f"{key}.png", (96, 128), seed=g * 100 + i))})
        a, b = schedule_pairs(per_group, parse_schedule(rule), np.random.default_rng(g))
        pairs += [{"id": f"{ids[x]}|{ids[y]}", "a": ids[x], "b": ids[y], "group": f"g{g}", "prompt": "a fox"}
                  for x, y in zip(a, b)]
    plan = build_plan(pa.Table.from_pylist(pairs), pa.Table.from_pylist(rows))
    stage = UnitDecoder(decode.model_dump())
    stage.decoder = CountingDecoder(decode.model_dump())  # the same stage, counted
    CountingDecoder.decoded = []
    for unit in sorted(set(plan["unit"].to_pylist())):
        stage(plan.filter(pa.compute.equal(plan["unit"], unit)))
    stage.close()
    return len(CountingDecoder.decoded), len(set(CountingDecoder.decoded)), plan.num_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="bench", choices=["tiny", "bench", "qwen2_vl_2b"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--per-group", type=int, default=6)
    ap.add_argument("--schedule", default="all", help="pairs per group: all or random:K")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    checklist = load_checklist_file(REPO / "schemas/checklists/image_pair_rank.yaml")
    checklist = checklist.model_copy(update={"questions": [checklist.questions[0].model_validate(q) for q in QUESTIONS]})
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_demo_model(Path(tmp) / "model", preset=args.preset)
        reader = PairReader(ModelConfig(model=str(model_dir), device=args.device, dtype=args.dtype),
                            DecodeConfig(), checklist)
        rng = np.random.default_rng(0)
        items, pairs = {}, []
        for g in range(args.groups):
            ids = [f"g{g}_{i}" for i in range(args.per_group)]
            for key in ids:
                items[key] = MediaInput(rng.integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8), "image")
            a, b = schedule_pairs(args.per_group, parse_schedule(args.schedule), np.random.default_rng(g))
            pairs += [(ids[x], ids[y], "a red fox in the snow") for x, y in zip(a, b)]
        reader.judge(items, pairs[:1])  # warm-up
        times: dict[str, list[float]] = {"fast": [], "reference": []}
        for _ in range(args.repeats):
            for name in times:
                t0 = time.perf_counter()
                reader.judge(items, pairs, reference=name == "reference")
                times[name].append(time.perf_counter() - t0)
        fast, ref = (statistics.median(times[k]) for k in ("fast", "reference"))
        n_decoded, n_items, n_pairs = decodes(Path(tmp), args.groups, args.per_group, args.schedule, DecodeConfig())
    q = len(checklist.questions)
    print(f"{args.preset} qwen2_vl on {args.device}/{args.dtype}: {len(pairs)} pairs ({args.groups} groups of "
          f"{args.per_group}, schedule {args.schedule}), {q} questions, both orders, {args.size}x{args.size} images, "
          f"median of {args.repeats}")
    print(f"  fast (shared prefix)                        {len(pairs) / fast:8.2f} pairs/s  ({fast:.2f} s)")
    print(f"  reference (1 forward per pair/order/question) {len(pairs) / ref:6.2f} pairs/s  ({ref:.2f} s, "
          f"{2 * q * len(pairs)} forwards)")
    print(f"  speed-up fast / reference: {ref / fast:.2f}x")
    print(f"  decodes per item: {n_decoded / n_items:.2f} ({n_decoded} decodes of {n_items} items for {n_pairs} pairs); "
          f"decoding per pair: {2 * n_pairs / n_items:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
