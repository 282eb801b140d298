"""The judged items and pairs `vrscore fit` fits on: `eval`'s judgments and join, kept as arrays.

The join is eval's (`collect_judged_rows`, on Ray Data): only the judged rows
reach the driver, as Arrow batches (p_yes stays a float32 list column until it becomes one
(N, Q) array per media type). Pairs become item indices with Arrow's `index_in`, so a
million pairs never turn into Python dictionaries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.eval_command import HumanPairs, first_seen_codes, item_rows
from jobs.eval_command import collect_judged_rows as eval_join
from pipeline.scores_input import ScoresInput
from pipeline.weight_fit import Pairs
from schemas.scores import META_JOB
from schemas.status import OK


def source_alignment_column(scores: ScoresInput) -> str | None:
    """The manifest column the scores' job read alignment from, when the scores kept it."""
    raw = (scores.schema.metadata or {}).get(META_JOB)
    column = json.loads(raw).get("alignment_column") if raw else None
    return column if column in scores.schema.names else None


def collect_judged_rows(scores: ScoresInput, key_column: str, keys: pa.Array, columns: list[str]) -> pa.Table:
    """The scored rows whose key is judged, with `columns`; refuses a key found twice."""
    scores.require_columns([key_column, *columns], "fit")
    return eval_join(scores, key_column, keys, columns)


@dataclass
class MediaPairs:
    """One media type's judged items (rows of `p_yes`) and the pairs between them."""

    p_yes: np.ndarray  # (N, Q) float32, the checklist's question order
    alignment: np.ndarray | None  # (N,) or None
    stored: dict[str, np.ndarray]  # stored score columns, (N,) each
    pairs: Pairs  # item indices into the rows above; y = human preference, ties kept
    group: np.ndarray  # (P,) int group code of each pair


@dataclass
class JudgedData:
    judged_pairs: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> pairs left out entirely
    by_media: dict[str, MediaPairs] = field(default_factory=dict)


def assemble(pairs: HumanPairs, table: pa.Table, key_column: str, media_types: list[str],
             alignment_column: str | None, stored: list[str]) -> JudgedData:
    """Pairs as item indices per media type (`table` holds at least one row). A pair with an
    item missing from the scores, an item that failed, or items of two media types is left
    out and counted; human ties are kept (held-out tau* counts them), the fit skips them."""
    rows = item_rows(pairs.keys, table, key_column)
    ia, ib = rows[pairs.a], rows[pairs.b]
    ok = np.asarray(pc.fill_null(pc.equal(table["status"], OK), False), dtype=bool)
    media_code, media_names = first_seen_codes(pc.cast(table["media_type"], pa.string()).combine_chunks())
    media = media_code if len(media_code) else np.zeros(len(table), dtype=np.int64)
    missing = (ia < 0) | (ib < 0)
    ia0, ib0 = np.where(missing, 0, ia), np.where(missing, 0, ib)
    failed = ~missing & ~(ok[ia0] & ok[ib0])
    mixed = ~missing & ~failed & (media[ia0] != media[ib0])
    data = JudgedData(len(pairs.h), {"missing_item": int(missing.sum()), "failed_item": int(failed.sum()),
                                     "mixed_media": int(mixed.sum())})
    usable = ~(missing | failed | mixed)
    for kind in media_types:
        code = media_names.index(kind).as_py()  # -1: no judged row of this kind
        rows = np.flatnonzero(ok & (media == code))
        sel = np.flatnonzero(usable & (media[ia0] == code))
        if not len(sel):
            continue
        local = np.full(len(table), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        sub = table if len(rows) == len(table) else table.take(pa.array(rows))  # take copies p_yes
        p = pc.list_flatten(sub["p_yes"]).to_numpy(zero_copy_only=False).reshape(len(rows), -1)
        align = None
        if alignment_column:
            align = np.asarray(pc.cast(sub[alignment_column], pa.float64()).to_numpy(zero_copy_only=False),
                               dtype=np.float64)
        data.by_media[kind] = MediaPairs(
            p_yes=p, alignment=align,
            stored={c: sub[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in stored},
            pairs=Pairs(local[ia[sel]], local[ib[sel]], np.asarray(pairs.h)[sel].astype(np.int64)),
            group=pairs.group[sel])
    return data
