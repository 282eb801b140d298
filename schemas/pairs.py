"""The preference pairs output of `vrscore pairs` and the DPO trainers' record formats.

One row per pair: the group it was mined in, the prompt, both items' ids and uris, the
score each got (the column named in the metadata: `score` or `score_soft`) and, for every
dimension of the scores, the gap chosen - rejected (`gap_<name>`; null where either item
lacks that dimension).
"""
from __future__ import annotations

import pyarrow as pa

META_PAIRS = b"vrscore.pairs"  # JSON of the mining options

BASE_FIELDS = [
    pa.field("group", pa.string(), nullable=False),
    pa.field("prompt", pa.string()),
    pa.field("media_type", pa.string()),
    pa.field("chosen_id", pa.string(), nullable=False),
    pa.field("rejected_id", pa.string(), nullable=False),
    pa.field("chosen_uri", pa.string()),
    pa.field("rejected_uri", pa.string()),
    pa.field("chosen_score", pa.float64(), nullable=False),
    pa.field("rejected_score", pa.float64(), nullable=False),
]


def gap_column(dimension_column: str) -> str:
    """'dim_quality' -> 'gap_quality'."""
    return "gap_" + dimension_column.removeprefix("dim_")


def pairs_schema(dimension_columns: list[str], options_json: str | None = None) -> pa.Schema:
    fields = BASE_FIELDS + [pa.field(gap_column(c), pa.float64()) for c in dimension_columns]
    return pa.schema(fields, metadata={META_PAIRS: options_json.encode()} if options_json else None)


def diffusion_dpo_record(pair: dict) -> dict:
    """Diffusion-DPO (Pick-a-Pic layout): label_0 = 1 says jpg_0 is preferred. The image
    fields hold uris, where Pick-a-Pic holds bytes: the trainer's loader opens them."""
    return {"caption": pair["prompt"], "jpg_0": pair["chosen_uri"], "jpg_1": pair["rejected_uri"], "label_0": 1}


def videodpo_record(pair: dict) -> dict:
    return {"caption": pair["prompt"], "chosen": pair["chosen_uri"], "rejected": pair["rejected_uri"]}


DPO_FORMATS = {"diffusion-dpo": diffusion_dpo_record, "videodpo": videodpo_record}
