"""Scores recomputed from stored p_yes with another checklist: no model, one pass per batch.

New weights, aggregation or masks change `score`, `score_soft` and `dim_*` only; the stored
p_yes stay what the model answered. The new checklist's questions are found in the stored
ones by id (same text) or by text, and p_yes/answer_mass/answers are rewritten in the new
question order (an output without answer_mass, from a version before it, stays without).
`p_cal` is recomputed from the raw p_yes with the new checklist's calibrations (written where
one of them has a calibrated question, dropped otherwise). The sums are the library's own
(`pipeline/weighting.aggregate`, as `vrscore score` runs it), so rescoring with the checklist
the scores were made with gives back the same bits, and any change to the weighting rules
reaches rescored outputs too.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.calibration import p_cal_rows
from pipeline.normalization import z_scores
from pipeline.weighting import aggregate
from schemas.checklist import DIMENSION_PREFIX, Checklist
from schemas.checklist_set import all_dimensions, checklists_to_json
from schemas.scores import (BASE_FIELDS, LEVEL_PROBS_FIELD, META_JOB, META_MODEL, P_CAL_FIELD, dimension_columns,
                            is_z_column, scores_schema)
from schemas.status import OK
from schemas.user_error import UserError

META_RESCORE = b"vrscore.rescore"
RESCORED = {"checklist", "p_yes", "p_cal", "answer_mass", "answers", "score", "score_soft"}
MASS = "answer_mass"
LEVELS = LEVEL_PROBS_FIELD.name
P_CAL = P_CAL_FIELD.name


def _norm(text: str) -> str:
    return " ".join(text.split())


def match_questions(source: Checklist, new: Checklist) -> np.ndarray:
    """For each question of `new`, its column in p_yes answered on `source`; refuses a
    question the stored scores lack, and a prompt the model was not asked."""
    for attr in ("prompt_template", "system_prompt"):
        if getattr(source, attr) != getattr(new, attr):
            raise UserError(f"checklist {new.name!r} has another {attr} than {source.name!r}, which the stored p_yes "
                             f"answer ({getattr(new, attr)!r} vs {getattr(source, attr)!r}); rescore changes weights, "
                             "aggregation and masks, not what the model was asked")
    by_id = {q.id: i for i, q in enumerate(source.questions)}
    by_text = {_norm(q.text): i for i, q in enumerate(source.questions)}
    columns = []
    for q in new.questions:
        i = by_id.get(q.id)
        if i is not None and _norm(source.questions[i].text) == _norm(q.text):
            columns.append(i)
        elif _norm(q.text) in by_text:
            columns.append(by_text[_norm(q.text)])
        elif i is not None:
            raise UserError(f"question {q.id!r} of {new.name!r} reads {q.text!r}, but the stored scores "
                             f"({source.name!r}) answered {source.questions[i].text!r} under that id")
        else:
            raise UserError(f"question {q.id!r} of {new.name!r} ({q.text!r}) is not in the stored scores "
                             f"({source.name!r}): its p_yes was never computed; score it with `vrscore score`")
    for q, i in zip(new.questions, columns):
        if source.questions[i].asked != q.asked:
            raise UserError(f"question {q.id!r} of {new.name!r} is asked or read otherwise (answer, readout, "
                             f"prompt_template {q.asked!r}) than the stored scores answered it "
                             f"({source.questions[i].asked!r}); score it with `vrscore score`")
    return np.array(columns, dtype=np.int64)


def rescored_schema(source: pa.Schema, checklists: dict[str, Checklist], record_json: str) -> pa.Schema:
    """The scores schema for `checklists`, keeping every non-score column of `source`."""
    base = {f.name for f in BASE_FIELDS}
    keep = [f for f in source if f.name not in base | {LEVELS, P_CAL} and not f.name.startswith(DIMENSION_PREFIX)
            and not is_z_column(f.name)]  # recomputed: a z-score of the old weights would be stale
    meta = source.metadata or {}
    schema = scores_schema(all_dimensions(checklists), keep, checklists_json=checklists_to_json(checklists),
                           model_id=meta[META_MODEL].decode() if META_MODEL in meta else None,
                           job_json=meta[META_JOB].decode() if META_JOB in meta else None,
                           level_probs=LEVELS in source.names,
                           p_cal=any(c.has_calibration for c in checklists.values()),
                           normalized=any(c.aggregation.normalization for c in checklists.values()))
    if MASS not in source.names:  # scores of a version before the answer mass: nothing to carry
        schema = schema.remove(schema.get_field_index(MASS))
    return schema.with_metadata({**schema.metadata, META_RESCORE: record_json.encode()})


class Rescorer:
    """Ray Data stage: a scores batch in, the same rows rescored out (pyarrow tables)."""

    def __init__(self, source: dict[str, Checklist], new: dict[str, Checklist], schema: pa.Schema,
                 alignment_column: str | None = None):
        self.plans = {kind: (source[kind], new[kind], match_questions(source[kind], new[kind])) for kind in new}
        self.schema = schema
        self.alignment_column = alignment_column
        self.dim_cols = dimension_columns(all_dimensions(new))

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        media = np.asarray(batch["media_type"].to_pylist(), dtype=object)
        scored = np.asarray(pc.fill_null(pc.and_(pc.equal(batch["status"], OK), pc.is_valid(batch["p_yes"])), False),
                            dtype=bool)
        checklist = np.asarray(batch["checklist"].to_pylist(), dtype=object)
        p_rows, answer_rows = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
        mass_rows, level_rows = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
        cal_rows = np.full(n, None, dtype=object)
        values = {c: np.full(n, np.nan) for c in ["score", "score_soft", *self.dim_cols.values()]}
        values.update({f.name: np.full(n, np.nan) for f in self.schema if is_z_column(f.name)})
        for kind, (source, new, columns) in self.plans.items():
            checklist[media == kind] = new.name
            rows = np.flatnonzero(scored & (media == kind))
            if not len(rows):
                continue
            stored = batch["p_yes"].take(pa.array(rows))
            p = pc.list_flatten(stored).to_numpy(zero_copy_only=False).reshape(len(rows), -1)
            if p.shape[1] != len(source.questions):
                raise UserError(f"stored p_yes has {p.shape[1]} values per row, checklist {source.name!r} "
                                 f"has {len(source.questions)} questions")
            p = p[:, columns]
            align = None
            if self.alignment_column:
                align = pc.cast(batch[self.alignment_column].take(pa.array(rows)), pa.float64())
                align = align.to_numpy(zero_copy_only=False).astype(np.float64)
            agg = aggregate(new, p, align)
            for j, i in enumerate(rows):
                p_rows[i], answer_rows[i] = p[j], agg.answers[j]
            if MASS in self.schema.names:
                for i, mass in zip(rows, batch[MASS].take(pa.array(rows)).to_pylist()):
                    mass_rows[i] = None if mass is None else np.asarray(mass, dtype=np.float32)[columns]
            if LEVELS in self.schema.names:  # the rating questions' distributions, in the new order
                for i, levels in zip(rows, batch[LEVELS].take(pa.array(rows)).to_pylist()):
                    level_rows[i] = None if levels is None else [levels[c] for c in columns]
            if P_CAL in self.schema.names:  # the new checklist's calibrations, from the raw p_yes
                for i, cal in zip(rows, p_cal_rows(new, p)):
                    cal_rows[i] = cal
            values["score"][rows], values["score_soft"][rows] = agg.score, agg.score_soft
            for dim, v in agg.dimensions.items():
                values[self.dim_cols[dim]][rows] = v
            for col, v in z_scores(new, agg.score, agg.dimensions).items():
                values[col][rows] = v
        out = {"checklist": pa.array(checklist.tolist(), type=pa.string()),
               "p_yes": pa.array(list(p_rows), type=pa.list_(pa.float32())),
               MASS: pa.array(list(mass_rows), type=pa.list_(pa.float32())),
               LEVELS: pa.array(list(level_rows), type=LEVEL_PROBS_FIELD.type),
               P_CAL: pa.array(list(cal_rows), type=P_CAL_FIELD.type),
               "answers": pa.array(list(answer_rows), type=pa.list_(pa.int8())),
               **{c: pa.array(v, mask=np.isnan(v), type=pa.float64()) for c, v in values.items()}}
        # Scores written before a column existed (frame_count, frame_times) get it as nulls.
        return pa.Table.from_arrays(
            [out[f.name] if f.name in out else batch[f.name] if f.name in batch.column_names
             else pa.nulls(n, f.type) for f in self.schema], schema=self.schema)
