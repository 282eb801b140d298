"""Turn scored rows into the output table: answers, weighted scores, dimension columns.

Pure over a batch: the scores schema is built once by the job and passed in, so the writer
never infers a schema.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.calibration import p_cal_rows
from pipeline.normalization import z_scores
from pipeline.weighting import aggregate
from schemas import status
from schemas.checklist import Checklist
from schemas.scores import dimension_columns


class ScoreAssembler:
    """Ray Data stage (a plain function object): numpy batch in, pyarrow table out."""

    def __init__(self, checklists: dict[str, Checklist], schema: pa.Schema, alignment_column: str | None = None):
        self.checklists = checklists
        self.schema = schema
        self.alignment_column = alignment_column
        dims = [d for c in checklists.values() for d in c.dimensions]
        self.dim_cols = dimension_columns(list(dict.fromkeys(dims)))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["id"])
        cols: dict[str, list] = {f.name: [None] * n for f in self.schema}
        for name in cols:
            if name in batch and name not in ("p_yes", "answer_mass", "level_probs"):
                cols[name] = [_py(v) for v in batch[name]]
        cols["group"] = [g if g is not None else p for g, p in zip(cols["group"], cols["prompt"])]
        if "frame_count" in cols:  # a resumed output begun without them goes on without them
            cols["frame_count"], cols["frame_times"] = _frames_seen(batch)
        for kind, checklist in self.checklists.items():
            rows = [i for i in range(n) if batch["media_type"][i] == kind]
            for i in rows:
                cols["checklist"][i] = checklist.name
            rows = [i for i in rows if batch["status"][i] == status.OK and len(batch["p_yes"][i])]
            if not rows:
                continue
            p = np.stack([np.frombuffer(batch["p_yes"][i], dtype=np.float32) for i in rows])
            mass = [np.frombuffer(batch["answer_mass"][i], dtype=np.float32).tolist() for i in rows]
            align = None
            if self.alignment_column:
                align = np.array([_float_or_nan(batch[self.alignment_column][i]) for i in rows])
            agg = aggregate(checklist, p, align)
            p_cal = p_cal_rows(checklist, p) if "p_cal" in cols else None
            for j, i in enumerate(rows):
                cols["p_yes"][i] = p[j].tolist()
                if p_cal is not None:
                    cols["p_cal"][i] = p_cal[j]
                if "answer_mass" in cols:  # a resumed output begun without it goes on without it
                    cols["answer_mass"][i] = mass[j]
                if "level_probs" in cols:
                    cols["level_probs"][i] = split_levels(checklist, batch["level_probs"][i])
                cols["answers"][i] = agg.answers[j].tolist()
                cols["score"][i] = float(agg.score[j])
                cols["score_soft"][i] = float(agg.score_soft[j])
                for dim, values in agg.dimensions.items():
                    cols[self.dim_cols[dim]][i] = float(values[j])
            for col, values in z_scores(checklist, agg.score, agg.dimensions).items():
                for j, i in enumerate(rows):
                    cols[col][i] = float(values[j])
        return pa.Table.from_pydict(cols, schema=self.schema)


def split_levels(checklist: Checklist, raw: bytes) -> list[list[float] | None]:
    """Per question, a rating's level probabilities from the scorer's bytes (`level_bytes`); None for
    a yes/no question."""
    flat, out, start = np.frombuffer(raw, dtype=np.float32), [], 0
    for q in checklist.questions:
        n = len(q.levels or []) if q.answer == "rating" else 0
        out.append(flat[start:start + n].tolist() if n else None)
        start += n
    if start != len(flat):
        raise ValueError(f"got {len(flat)} level probabilities for checklist {checklist.name!r}, which has {start}")
    return out


def _frames_seen(batch: dict[str, np.ndarray]) -> tuple[list, list]:
    """(frame_count, frame_times) per row: the decode stage's frame times of scored videos,
    null for images and for rows that failed anywhere (the model answered on no frames)."""
    n = len(batch["id"])
    counts: list = [None] * n
    times: list = [None] * n
    for i, row_times in enumerate(batch.get("frame_times", [None] * n)):
        if (batch["status"][i] == status.OK and batch["media_type"][i] == "video"
                and row_times is not None and len(row_times)):
            counts[i], times[i] = len(row_times), np.asarray(row_times, dtype=np.float32).tolist()
    return counts, times


def _py(value):
    """numpy scalars/arrays from Ray's numpy batches -> plain Python for pyarrow."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and np.isnan(value):
        return None  # Ray's numpy batches turn nulls of all-null columns into NaN
    return value


def _float_or_nan(value) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")
