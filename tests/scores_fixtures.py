"""Scores outputs without a model: made-up p_yes, assembled by the pipeline's own
ScoreAssembler into the scores schema with the default checklists, written as `vrscore
score` lays them out (DIR/scores/*.parquet, DIR/checklist.json)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.assemble import ScoreAssembler
from schemas import status
from schemas.checklist import default_checklist
from schemas.checklist_set import all_dimensions, checklists_to_json
from schemas.scores import scores_schema

CHECKLISTS = {"image": default_checklist("image"), "video": default_checklist("video")}


def scores_table(rows: list[dict], keep_fields: list[pa.Field] = ()) -> pa.Table:
    """rows: id, uri, media_type, prompt, group, status (default ok), error, p_yes (None
    for failed rows), answer_mass (default 1.0 per question of a row with p_yes), plus any
    `keep_fields` columns. p_yes and answer_mass reach the assembler as the scorer stage hands
    them over: raw float32 bytes, b"" for rows not scored."""
    schema = scores_schema(all_dimensions(CHECKLISTS), list(keep_fields),
                           checklists_json=checklists_to_json(CHECKLISTS), model_id="made-up")
    names = ["id", "uri", "media_type", "prompt", "group", "status", "error", "p_yes", *(f.name for f in keep_fields)]
    batch = {}
    for name in names:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r.get(name, status.OK if name == "status" else None) for r in rows]
        batch[name] = col
    masses = [r.get("answer_mass", None if r.get("p_yes") is None else np.ones(len(r["p_yes"]))) for r in rows]
    batch["answer_mass"] = np.empty(len(rows), dtype=object)
    for name, values in (("p_yes", list(batch["p_yes"])), ("answer_mass", masses)):
        batch[name][:] = [b"" if v is None else np.asarray(v, dtype=np.float32).tobytes() for v in values]
    return ScoreAssembler(CHECKLISTS, schema)(batch)


def write_scores(out: Path, rows: list[dict], keep_fields: list[pa.Field] = (), files: int = 2) -> Path:
    table = scores_table(rows, keep_fields)
    (out / "scores").mkdir(parents=True)
    (out / "checklist.json").write_text(checklists_to_json(CHECKLISTS))
    step = -(-table.num_rows // files)
    for k in range(files):
        pq.write_table(table.slice(k * step, step), out / "scores" / f"part-{k}.parquet")
    return out


def random_rows(rng: np.random.Generator, groups: int, per_group: tuple[int, int], *, media_type: str = "image",
                levels: int | None = None, error_rate: float = 0.0, prefix: str = "") -> list[dict]:
    """Random p_yes; `levels` makes them discrete (heavily tied scores)."""
    n_q = len(CHECKLISTS[media_type].questions)
    rows = []
    for g in range(groups):
        for k in range(int(rng.integers(per_group[0], per_group[1] + 1))):
            p = rng.random(n_q) if levels is None else rng.integers(0, levels, n_q) / (levels - 1)
            ext = "png" if media_type == "image" else "mp4"
            row = {"id": f"{prefix}g{g}/{k}", "uri": f"/media/{prefix}g{g}_{k}.{ext}",
                   "media_type": media_type, "prompt": f"prompt {prefix}{g}", "group": f"{prefix}g{g}",
                   "p_yes": p.astype(np.float32)}
            if rng.random() < error_rate:
                row.update(status=status.DECODE_ERROR, error="made-up failure", p_yes=None)
            rows.append(row)
    return rows
