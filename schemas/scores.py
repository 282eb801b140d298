"""The scores output: one row per manifest row, an explicit Arrow schema, self-describing.

Columns: id, uri, media_type, frame_count and frame_times (the video frames the model saw:
their number and their times in seconds from the first frame, under any `--frames` rule;
null for images and failed rows), prompt, group, checklist (name of the checklist that scored
the row), status, error, p_yes (list<float32>, in that checklist's question order),
answer_mass (list<float32>, same order: P(yes words) + P(no words) under the softmax over the
whole vocabulary, where p_yes was read; absent from outputs of versions before it),
level_probs (list<list<float32>>, only where a checklist has rating questions: per question its
levels' probabilities, null for a yes/no question),
p_cal (list<float32>, only where a checklist has a calibrated question, after p_yes: in the
question order of p_yes, each calibrated question's p_yes after its `calibration`, null for a
question without one; p_yes stays the model's raw answer),
answers (list<int8>, +1/-1), score, score_soft, one float64 `dim_<name>` per dimension
(null where the row's checklist lacks that dimension or the row failed), `z_score` and
`z_dim_<name>` (float64, only where a checklist carries `aggregation.normalization`: the
value minus the reference mean, over the reference standard deviation), then any
carried-through manifest columns. The checklists, model id and job config travel in the
Parquet schema metadata and in checklist.json / job.json beside the data.
"""
from __future__ import annotations

import json

import pyarrow as pa

from schemas.checklist import DIMENSION_PREFIX, Checklist, dimension_column
from schemas.user_error import UserError

META_CHECKLISTS = b"vrscore.checklists"
META_MODEL = b"vrscore.model"
META_JOB = b"vrscore.job"
META_VERSION = b"vrscore.version"
FORMAT_VERSION = "1"

BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("uri", pa.string()),
    pa.field("media_type", pa.string()),
    pa.field("frame_count", pa.int32()),
    pa.field("frame_times", pa.list_(pa.float32())),
    pa.field("prompt", pa.string()),
    pa.field("group", pa.string()),
    pa.field("checklist", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("p_yes", pa.list_(pa.float32())),
    pa.field("answer_mass", pa.list_(pa.float32())),
    pa.field("answers", pa.list_(pa.int8())),
    pa.field("score", pa.float64()),
    pa.field("score_soft", pa.float64()),
]


# Written only where a checklist has rating questions (`scores_schema(level_probs=True)`), after answer_mass.
LEVEL_PROBS_FIELD = pa.field("level_probs", pa.list_(pa.list_(pa.float32())))
# Written only where a checklist has calibrated questions (`scores_schema(p_cal=True)`), after p_yes.
P_CAL_FIELD = pa.field("p_cal", pa.list_(pa.float32()))

# z-scores of `score` and of each `dim_` column, written only where a checklist is normalised.
Z_PREFIX = "z_"
Z_SCORE = "z_score"


def z_column(column: str) -> str:
    """'score' -> 'z_score', 'dim_quality' -> 'z_dim_quality'."""
    return Z_PREFIX + column


def is_z_column(name: str) -> bool:
    return name == Z_SCORE or name.startswith(Z_PREFIX + DIMENSION_PREFIX)

# Columns the stages add to a batch between the read and the write (the decode stage's frames,
# their shape, the video's fps and duration, actors/media_decoder.py; an embedded item's bytes
# and why a source could not read them, schemas/embedded_media.py): a manifest column of one
# of these names would be replaced by them on the way.
STAGE_COLUMNS = ("frames", "frames_shape", "fps", "video_duration", "frame_times", "media_bytes", "read_error")


def reserved_column(name: str) -> str | None:
    """Why vrscore itself writes a column of this name, into the output or between its stages;
    None when it never does. Every `dim_` name is reserved, not only the dimensions of the
    checklists in use: readers take any `dim_` column for a dimension, and `rescore` may add one."""
    if name in {f.name for f in BASE_FIELDS} or name in (LEVEL_PROBS_FIELD.name, P_CAL_FIELD.name):
        return "is a column vrscore writes"
    if name.startswith(DIMENSION_PREFIX):
        return f"starts with {DIMENSION_PREFIX!r}, which vrscore keeps for its dimension columns"
    if is_z_column(name):
        return "is a z-score column vrscore writes for normalised checklists"
    if name in STAGE_COLUMNS:
        return "is a column the decode stage adds to each row"
    return None


def check_carried_columns(keep_columns: list[str], alignment_column: str | None) -> None:
    """Refuse manifest columns a job carries beside its own (kept into the output, or read for
    the alignment term) that vrscore writes itself: a kept one would reach the writer twice and
    fail the job at its end; a read one would be replaced before it is used."""
    problems = [f"keep_columns names {c!r} twice" for c in dict.fromkeys(keep_columns) if keep_columns.count(c) > 1]
    named = [("keep_columns", c) for c in dict.fromkeys(keep_columns)]
    named += [("alignment_column", alignment_column)] if alignment_column is not None else []
    problems += [f"{field} {c!r} {why}" for field, c in named if (why := reserved_column(c)) is not None]
    if problems:
        raise ValueError("; ".join(problems) + " (rename the manifest column)")


def dimension_columns(dimensions: list[str]) -> dict[str, str]:
    """Dimension name -> output column, refusing two names that collide as columns."""
    cols: dict[str, str] = {}
    for d in dimensions:
        col = dimension_column(d)
        clash = [k for k, v in cols.items() if v == col]
        if clash:
            raise ValueError(f"dimensions {clash[0]!r} and {d!r} both map to column {col!r}")
        cols[d] = col
    return cols


def scores_schema(
    dimensions: list[str],
    keep_fields: list[pa.Field] | None = None,
    *,
    checklists_json: str | None = None,
    model_id: str | None = None,
    job_json: str | None = None,
    level_probs: bool = False,
    p_cal: bool = False,
    normalized: bool = False,
) -> pa.Schema:
    fields = list(BASE_FIELDS)
    if p_cal:
        fields.insert([f.name for f in fields].index("p_yes") + 1, P_CAL_FIELD)
    if level_probs:
        fields.insert([f.name for f in fields].index("answer_mass") + 1, LEVEL_PROBS_FIELD)
    dim_cols = list(dimension_columns(dimensions).values())
    fields += [pa.field(c, pa.float64()) for c in dim_cols]
    if normalized:
        fields += [pa.field(z_column(c), pa.float64()) for c in ["score", *dim_cols]]
    fields += list(keep_fields or [])
    meta = {META_VERSION: FORMAT_VERSION.encode()}
    if checklists_json is not None:
        meta[META_CHECKLISTS] = checklists_json.encode()
    if model_id is not None:
        meta[META_MODEL] = model_id.encode()
    if job_json is not None:
        meta[META_JOB] = job_json.encode()
    return pa.schema(fields, metadata=meta)


def read_checklists_metadata(schema: pa.Schema) -> dict[str, Checklist]:
    """The checklists a scores file was made with (from its Parquet metadata)."""
    meta = schema.metadata or {}
    if META_CHECKLISTS not in meta:
        raise UserError("not a vrscore scores file: no checklist in its metadata")
    return {k: Checklist.model_validate(v) for k, v in json.loads(meta[META_CHECKLISTS]).items()}
