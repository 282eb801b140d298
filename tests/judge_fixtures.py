"""Judge outputs without a model: made-up one-order probabilities, turned into the columns of
`schemas/judge_output.py` (p_a, position_bias, consistent, pair_score, dim_<name> as the issue
defines them) and written as `vrscore judge` lays them out (OUT/pairs/*.parquet, OUT/items/)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.bradley_terry import group_items, soft_outcomes
from schemas.checklist import Checklist, dimension_column
from schemas.checklist_set import checklists_to_json
from schemas.judge_output import ITEMS_DIR, PAIRS_DIR, items_schema, pair_id, pairs_schema
from schemas.status import OK

CHECKLIST = Checklist.model_validate({
    "name": "made-up-pairs", "media_type": "image", "mode": "pairwise", "first_words": ["1"], "second_words": ["2"],
    "aggregation": {"rule": "mean"},
    "questions": [{"id": "faithful", "text": "Which matches [[prompt]] better?", "dimension": "alignment", "weight": 2.0},
                  {"id": "pretty", "text": "Which looks better?", "dimension": "quality", "weight": 1.0},
                  {"id": "aside", "text": "Which is bluer?", "dimension": "quality", "weight": 0.0}],
})


def judged_row(a: str, b: str, group: str | None, ab: list[float] | None, ba: list[float] | None,
               checklist: Checklist = CHECKLIST, status: str = OK) -> dict:
    """One pairs row from P(first | a, b) and P(first | b, a) per question (None: a failed pair)."""
    row = {"id": pair_id(a, b), "a": a, "b": b, "group": group, "prompt": f"prompt {group}", "status": status,
           "error": None if status == OK else "made-up failure"}
    if ab is None:
        return row
    ab, ba = np.asarray(ab, np.float64), np.asarray(ba, np.float64)
    p_a = (ab + 1 - ba) / 2
    w = np.array([q.weight for q in checklist.questions])
    row.update(p_first_ab=ab.tolist(), p_first_ba=ba.tolist(), p_a=p_a.tolist(),
               position_bias=((ab + ba) / 2 - 0.5).tolist(), consistent=((ab > 0.5) == (ba < 0.5)).tolist(),
               pair_score=float(np.sum(w * (2 * p_a - 1)) / np.sum(np.abs(w))))
    for name in checklist.dimensions:
        cols = [i for i, q in enumerate(checklist.questions) if q.dimension == name]
        total = np.sum(np.abs(w[cols]))
        row[dimension_column(name)] = float(np.sum(w[cols] * (2 * p_a[cols] - 1)) / total) if total else 0.0
    return row


def write_judged(out: Path, rows: list[dict], checklist: Checklist = CHECKLIST, files: int = 2,
                 l2: float = 0.01) -> Path:
    """OUT/pairs/ from `judged_row` rows and OUT/items/ fitted per group as the job does."""
    schema = pairs_schema(checklist.dimensions, checklists_json=checklists_to_json({checklist.media_type: checklist}),
                          model_id="made-up")
    table = pa.Table.from_pylist(rows, schema=schema)
    (out / PAIRS_DIR).mkdir(parents=True)
    step = max(1, -(-table.num_rows // files))
    for k in range(files):
        pq.write_table(table.slice(k * step, step), out / PAIRS_DIR / f"part-{k}.parquet")
    y = soft_outcomes(table["p_a"], [q.weight for q in checklist.questions])
    ok = np.array([r["status"] == OK for r in rows])
    outcomes = pa.table({"a": table["a"], "b": table["b"], "group": table["group"], "y": np.where(ok, y, np.nan)})
    (out / ITEMS_DIR).mkdir()
    groups = pc.unique(outcomes["group"]).to_pylist()
    parts = [group_items(outcomes.filter(pc.equal(outcomes["group"], g)) if g is not None
                         else outcomes.filter(pc.is_null(outcomes["group"])), l2) for g in groups]
    items = pa.concat_tables(parts) if parts else items_schema().empty_table()
    pq.write_table(items, out / ITEMS_DIR / "part-0.parquet")
    return out


def random_judged(rng: np.random.Generator, groups: int, per_group: int, error_rate: float = 0.1,
                  bias: float = 0.0) -> list[dict]:
    """Every pair of `per_group` items per group; a hidden quality per item decides the odds,
    `bias` pushes both orders towards the first slot."""
    rows = []
    for g in range(groups):
        quality = rng.normal(size=per_group)
        for i in range(per_group):
            for j in range(i + 1, per_group):
                base = 1 / (1 + np.exp(-(quality[i] - quality[j]) * rng.uniform(0.5, 3, len(CHECKLIST.questions))))
                ab = np.clip(base + bias + rng.normal(0, 0.1, base.shape), 0.01, 0.99)
                ba = np.clip(1 - base + bias + rng.normal(0, 0.1, base.shape), 0.01, 0.99)
                failed = rng.random() < error_rate
                rows.append(judged_row(f"g{g}/{i}", f"g{g}/{j}", f"g{g}", None if failed else ab.tolist(),
                                       None if failed else ba.tolist(), status="decode_error" if failed else OK))
    return rows
