"""`vrscore compare --model M --prompt P A B`: which of two media is better, by how much,
and where (per-dimension differences). Scored in process by jobs/reward_api.py, the same
stages as `vrscore score`."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from pipeline.storage import add_storage_args, storage_from_args
from schemas.user_error import UserError

if TYPE_CHECKING:  # the CLI imports this module for --help: torch and Ray only when run
    from jobs.reward_api import ItemScore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first image or video (path or URI)")
    p.add_argument("b", help="second image or video (path or URI)")
    p.add_argument("--prompt", required=True, help="the prompt both were generated from")
    p.add_argument("--model", required=True, help="transformers model id, local path, or fsspec URI of a saved checkpoint")
    p.add_argument("--checklist", action="append",
                   help="'default', a YAML/JSON checklist, or a VisionReward *_qa.txt (repeat for one per media kind)")
    p.add_argument("--weights", action="append", help="VisionReward weight file for each *_qa.txt checklist")
    p.add_argument("--dimensions", help="VisionReward dimensions.json (question text -> dimension)")
    p.add_argument("--frames", default="uniform:8", help="video frame sampling: uniform:N, visionreward[:M] or fps:F[:MAX]")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="where the model runs")
    p.add_argument("--by", choices=("score", "score_soft"), default="score",
                   help="total that decides which is better: hard answers (score) or p_yes (score_soft)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    add_storage_args(p)


def comparison(a: "ItemScore", b: "ItemScore", by: str) -> dict:
    """Who wins on `by`, the gap, and A - B per total and per dimension."""
    gap = getattr(a, by) - getattr(b, by)
    return {
        "better": "tie" if gap == 0 else ("A" if gap > 0 else "B"),
        "by": by,
        "margin": abs(gap),
        "A": {"uri": a.uri, "score": a.score, "score_soft": a.score_soft, "dimensions": a.dimensions},
        "B": {"uri": b.uri, "score": b.score, "score_soft": b.score_soft, "dimensions": b.dimensions},
        "difference": {"score": a.score - b.score, "score_soft": a.score_soft - b.score_soft,
                       **{d: a.dimensions[d] - b.dimensions[d] for d in a.dimensions}},
    }


def format_comparison(c: dict) -> str:
    lines = [f"A  {c['A']['uri']}", f"B  {c['B']['uri']}"]
    lines.append("A and B tie on " + c["by"] if c["better"] == "tie"
                 else f"{c['better']} is better by {c['margin']:.4f} on {c['by']}")
    lines.append(f"{'':<18} {'A':>9} {'B':>9} {'A-B':>9}")
    rows = [("score", c["A"]["score"], c["B"]["score"]), ("score_soft", c["A"]["score_soft"], c["B"]["score_soft"])]
    rows += [(d, c["A"]["dimensions"][d], c["B"]["dimensions"][d]) for d in c["A"]["dimensions"]]
    lines += [f"{name:<18} {va:>+9.4f} {vb:>+9.4f} {va - vb:>+9.4f}" for name, va, vb in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from jobs.reward_api import ChecklistReward

    with ChecklistReward.load(args.model, args.checklist or ["default"], device=args.device, frames=args.frames,
                              weights=args.weights, dimensions=args.dimensions,
                              storage=storage_from_args(args)) as rm:
        a, b = rm.score(args.prompt, [args.a, args.b])
    failed = [f"{name} ({r.uri}): {r.status}: {r.error}" for name, r in (("A", a), ("B", b)) if not r.ok]
    if failed:
        print("vrscore compare: cannot compare, " + "; ".join(failed), file=sys.stderr)
        return 1
    if a.checklist != b.checklist:
        raise UserError(f"A was scored with checklist {a.checklist!r} and B with {b.checklist!r} (an image and a "
                         "video?): their scores are not on one scale")
    c = comparison(a, b, args.by)
    print(json.dumps(c, indent=2) if args.json else format_comparison(c))
    return 0
