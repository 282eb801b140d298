"""Mine chosen/rejected pairs within one group of scored items (pure, no Ray).

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

Memory per group is bounded: candidate pairs are found a block of chosen rows at a time
(at most BLOCK_ELEMENTS row pairs per step, one dimension at a time) and only the best
`pairs_per_group` of them are kept as the blocks go by, never an n x n matrix. A group
never yields more than MAX_PAIRS_PER_GROUP pairs, also when no cap is asked for
(`pairs_per_group` 0): past it the same rule applies (largest gaps, ties by the seed).
Below the caps the result is exactly that of enumerating every pair at once.
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
# Row pairs compared per step: ~8 MB of float64 per array whatever the group's size.
BLOCK_ELEMENTS = 1 << 20
# The most pairs one group yields (about 40 bytes each while mining, plus the output rows).
MAX_PAIRS_PER_GROUP = 100_000


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
    the dimensions the dominance rule compares. `pairs_per_group` None or 0 = no cap of its
    own (MAX_PAIRS_PER_GROUP still applies).
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
    if strategy == "margin":
        chosen, rejected = [], []
        for name in dict.fromkeys(checklist.tolist()):
            members = np.flatnonzero(checklist == name)
            c, r = _best_vs_worst(score[members], margin, rng)
            chosen.append(members[c])
            rejected.append(members[r])
        ci, ri = np.concatenate(chosen), np.concatenate(rejected)
    else:
        best = _BestPairs(min(pairs_per_group or MAX_PAIRS_PER_GROUP, MAX_PAIRS_PER_GROUP))
        for name in dict.fromkeys(checklist.tolist()):
            members = np.flatnonzero(checklist == name)
            dims = None
            if strategy == "dominance":
                dims = _dimension_matrix(rows, members, dominance_columns or dimension_columns)
            for start, keep, gap in _candidate_blocks(score[members], margin, dims):
                best.add_block(members, start, keep, gap, rng)
        ci, ri = best.result()
    return _pairs_table(rows, ci, ri, score, dimension_columns, schema, group_column)


class _BestPairs:
    """The `cap` candidates with the largest gap (ties: smallest tie-break), kept as they
    stream by; in enumeration order while no more than `cap` were seen."""

    def __init__(self, cap: int):
        self.cap, self.seen = cap, 0
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.size = 0
        self.floor = -np.inf  # gap of the worst kept pair once `cap` are kept

    def add_block(self, members: np.ndarray, start: int, keep: np.ndarray, gap: np.ndarray,
                  rng: np.random.Generator) -> None:
        """Candidates of one block: `keep` (b, m) marks pairs (members[start + i] chosen,
        members[j] rejected), `gap` their total gaps; enumeration order is row-major."""
        count = np.count_nonzero(keep)
        # One draw per candidate in enumeration order: the tie-breaks an all-at-once
        # enumeration draws in one call (the generator's stream is the same in pieces).
        tiebreak = rng.random(count)
        first = self.seen
        self.seen += count
        if self.floor == -np.inf:
            c, r = np.nonzero(keep)
            rank = np.arange(count)
        else:
            enters = keep & (gap >= self.floor)  # a smaller gap can never enter the kept set
            if not enters.any():
                return
            rank = (np.cumsum(keep.ravel()) - 1).reshape(keep.shape)[enters]
            c, r = np.nonzero(enters)
        ci, ri = members[c + start], members[r]
        self.parts.append((ci, ri, gap[c, r], tiebreak[rank], first + rank))
        self.size += len(ci)
        if self.size > 2 * self.cap:
            self._prune()

    def _prune(self) -> None:
        ci, ri, gap, tiebreak, seq = (np.concatenate(a) for a in zip(*self.parts))
        order = np.lexsort((tiebreak, -gap))[: self.cap]
        self.parts = [(ci[order], ri[order], gap[order], tiebreak[order], seq[order])]
        self.size = len(order)
        if self.size == self.cap:
            self.floor = gap[order[-1]]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.parts:
            return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
        ci, ri, gap, tiebreak, seq = (np.concatenate(a) for a in zip(*self.parts))
        if self.seen <= self.cap:
            order = np.argsort(seq)
        else:
            # Largest total gap first: the surest preferences make the best training pairs.
            order = np.lexsort((tiebreak, -gap))[: self.cap]
        return ci[order], ri[order]


def _best_vs_worst(score: np.ndarray, margin: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    tiebreak = rng.random(len(score))
    best = np.lexsort((tiebreak, -score))[0]
    worst = np.lexsort((tiebreak, score))[0]
    gap = score[best] - score[worst]
    if gap > 0 and gap >= margin:
        return np.array([best]), np.array([worst])
    return np.array([], dtype=np.int64), np.array([], dtype=np.int64)


def _candidate_blocks(score: np.ndarray, margin: float, dims: np.ndarray | None):
    """(start, keep, gap) per block of chosen rows: keep[i, j] marks pair (start + i chosen,
    j rejected) over the margin (with `dims` (n, k), also dominance); gap is the total gap.
    Blocks follow the row-major order of the full n x n comparison."""
    n = len(score)
    usable = None if dims is None else ~np.isnan(dims).any(axis=1)
    step = max(1, BLOCK_ELEMENTS // max(1, n))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        gap = score[rows, None] - score[None, :]
        if dims is None:
            keep = (gap > 0) & (gap >= margin)
        else:
            # a >= b on every dimension and a > b on one (comparisons, not differences:
            # the same answers for finite values, one pass less)
            keep = _dominates(dims, rows, (gap >= margin) & usable[rows, None] & usable[None, :])
        yield start, keep, gap


SPARSE_BELOW = 1 / 16  # share of pairs still in the running under which the rest go pair by pair


def _dominates(dims: np.ndarray, rows: slice, keep: np.ndarray) -> np.ndarray:
    """keep & (row a >= row b on every dimension and > on one), for a in `rows`, b in all.
    Comparisons, not differences: the same answers for finite values, one pass less. Once
    few pairs are left, the remaining dimensions are compared for those pairs only."""
    better = np.zeros(keep.shape, dtype=bool)
    for d in range(dims.shape[1]):
        if np.count_nonzero(keep) < SPARSE_BELOW * keep.size:
            idx = np.flatnonzero(keep)
            i, j = np.divmod(idx, keep.shape[1])
            a, b = dims[rows][i, d:], dims[j, d:]
            wins = (a >= b).all(axis=1) & (better.ravel()[idx] | (a > b).any(axis=1))
            out = np.zeros(keep.shape, dtype=bool)
            out.ravel()[idx[wins]] = True
            return out
        a, b = dims[rows, d, None], dims[None, :, d]
        keep &= a >= b
        better |= a > b
    return keep & better


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
