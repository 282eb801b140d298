"""REFERENCE for tests only: pipeline/pair_mining.py as it was before its memory was bounded
(commit 808926b), verbatim. It holds O(n^2 x dimensions) arrays per group; the equivalence
test checks the bounded version gives the same pairs wherever its cap is not reached.

Mine chosen/rejected pairs within one group of scored items (pure, no Ray).

Strategies (a pair always joins two ok rows of the same checklist: the scores of an image
and a video checklist are not on one scale):
- dominance: the VisionReward multi-objective rule. Chosen is >= rejected on every
  considered dimension and > on at least one, and its total beats rejected's by at least
  `margin`. Dimensions missing for the whole group's checklist are not considered; a row
  missing a considered dimension that its checklist has takes part in no pair.
- margin: the best against the worst item, when their totals differ by at least `margin`
  (and at all): one pair per group, ties for best or worst broken by the seed.
- all: every pair whose totals differ by at least `margin` (and at all).
dominance and all keep the `pairs_per_group` pairs with the largest total gap, ties broken
by the seed. Rows are ordered by id first, so the result does not depend on the order in
which the cluster delivers a group.
"""
from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.pairs import gap_column, pairs_schema
from schemas.status import OK

Strategy = Literal["dominance", "margin", "all"]
STRATEGIES = ("dominance", "margin", "all")


def mine_pairs(
    group: pa.Table,
    strategy: Strategy,
    *,
    dimension_columns: list[str],
    dominance_columns: list[str] | None = None,
    score_column: str = "score",
    margin: float = 0.0,
    pairs_per_group: int | None = 16,
    seed: int = 0,
    group_column: str = "group",
) -> pa.Table:
    """Pairs of one group (rows sharing `group_column`), in `pairs_schema(dimension_columns)`.

    `dimension_columns` are written as gaps; `dominance_columns` (default: all of them) are
    the dimensions the dominance rule compares. `pairs_per_group` None or 0 = no cap.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    schema = pairs_schema(dimension_columns)
    ok = pc.and_(pc.equal(group["status"], OK), pc.is_valid(group[score_column]))
    rows = group.filter(pc.fill_null(ok, False))
    if rows.num_rows < 2:
        return schema.empty_table()
    rows = rows.take(pc.sort_indices(rows, [("id", "ascending")]))
    key = str(rows[group_column][0].as_py())
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    score = rows[score_column].to_numpy(zero_copy_only=False).astype(np.float64)
    checklist = np.array(rows["checklist"].to_pylist(), dtype=object)
    chosen, rejected = [], []
    for name in dict.fromkeys(checklist.tolist()):
        members = np.flatnonzero(checklist == name)
        if strategy == "margin":
            c, r = _best_vs_worst(score[members], margin, rng)
        else:
            dims = None
            if strategy == "dominance":
                dims = _dimension_matrix(rows, members, dominance_columns or dimension_columns)
            c, r = _candidate_pairs(score[members], margin, dims)
        chosen.append(members[c])
        rejected.append(members[r])
    ci, ri = np.concatenate(chosen), np.concatenate(rejected)
    if strategy != "margin" and pairs_per_group and len(ci) > pairs_per_group:
        # Largest total gap first: the surest preferences make the best training pairs.
        order = np.lexsort((rng.random(len(ci)), -(score[ci] - score[ri])))[:pairs_per_group]
        ci, ri = ci[order], ri[order]
    return _pairs_table(rows, ci, ri, score, dimension_columns, schema, group_column)


def _best_vs_worst(score: np.ndarray, margin: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    tiebreak = rng.random(len(score))
    best = np.lexsort((tiebreak, -score))[0]
    worst = np.lexsort((tiebreak, score))[0]
    gap = score[best] - score[worst]
    if gap > 0 and gap >= margin:
        return np.array([best]), np.array([worst])
    return np.array([], dtype=np.int64), np.array([], dtype=np.int64)


def _candidate_pairs(score: np.ndarray, margin: float, dims: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i chosen, j rejected) over the margin; with `dims` (n, k), also dominance."""
    gap = score[:, None] - score[None, :]
    if dims is None:
        keep = (gap > 0) & (gap >= margin)
    else:
        usable = ~np.isnan(dims).any(axis=1)
        diff = dims[:, None, :] - dims[None, :, :]
        dominates = (diff >= 0).all(axis=2) & (diff > 0).any(axis=2)
        keep = dominates & (gap >= margin) & usable[:, None] & usable[None, :]
    return np.nonzero(keep)


def _dimension_matrix(rows: pa.Table, members: np.ndarray, columns: list[str]) -> np.ndarray:
    """(n, k) dimension values of `members`; columns null for every member are left out."""
    cols = []
    for c in columns:
        values = rows[c].take(pa.array(members)).to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.isnan(values).all():
            cols.append(values)
    return np.stack(cols, axis=1) if cols else np.zeros((len(members), 0))


def _pairs_table(rows: pa.Table, ci: np.ndarray, ri: np.ndarray, score: np.ndarray,
                 dimension_columns: list[str], schema: pa.Schema, group_column: str) -> pa.Table:
    c, r = pa.array(ci, type=pa.int64()), pa.array(ri, type=pa.int64())

    def col(name: str, idx: pa.Array) -> pa.Array:
        return rows[name].take(idx) if name in rows.column_names else pa.nulls(len(idx), pa.string())

    data = {
        "group": pc.cast(rows[group_column].take(c), pa.string()),
        "prompt": col("prompt", c), "media_type": col("media_type", c),
        "chosen_id": col("id", c), "rejected_id": col("id", r),
        "chosen_uri": col("uri", c), "rejected_uri": col("uri", r),
        "chosen_score": pa.array(score[ci]), "rejected_score": pa.array(score[ri]),
    }
    for d in dimension_columns:
        data[gap_column(d)] = pc.subtract(rows[d].take(c), rows[d].take(r))
    return pa.Table.from_pydict({f.name: data[f.name] for f in schema}, schema=schema)
