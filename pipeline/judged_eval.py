"""Agreement of judged pairs (`vrscore judge`) with human pairwise preferences (pure, no Ray).

A human pair (A, B) is matched with the judged pair of the same two items, in either order;
its model difference m is oriented towards A:
- `p_a`: 2 y - 1, y the pair's soft outcome (its questions' p_a weighted by |weight|);
- `pair_score` and each `dim_<name>`: the judge's aggregate, > 0 preferring a;
- `log_strength`: s_A - s_B, the Bradley-Terry strengths of OUT/items/, which also rank
  pairs the judge never compared directly, where both items were fitted in one group.
A human pair without an ok judged pair has no m: the figures of
pipeline/preference_metrics.py then count it as ImageReward's script does (wrong in
acc(IR), left out of acc(-ties) and tau*).

With tie words the judge can answer "tie" itself. GenAI-Bench's accuracy with ties counts
every human pair, human ties included: a pair is right when the judge's three-way answer
(a, b or tie: the largest of its weighted masses y - t/2, 1 - y - t/2 and t, t the weighted
tie mass) is the humans'. Judges without tie words are measured with ties by tau*, which
calibrates a tie threshold on |m|.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.bradley_terry import soft_outcomes
from schemas.status import OK
from schemas.user_error import UserError

SEPARATOR = "\x1f"  # between the two ids of a pair's key: a control character no id holds


def unordered_keys(a: pa.Array, b: pa.Array) -> pa.Array:
    """'x<SEP>y' with x the smaller id: the same key for a pair in either order."""
    lo, hi = pc.min_element_wise(a, b), pc.max_element_wise(a, b)
    return pc.binary_join_element_wise(lo, hi, SEPARATOR)


def judged_rows(batch: pa.Table, keys: pa.Array) -> pa.Table:
    """The judged pairs both of whose items a human judged: the filter of the join."""
    a, b = pc.cast(batch["a"], pa.string()), pc.cast(batch["b"], pa.string())
    return batch.filter(pc.and_(pc.is_in(a, value_set=keys), pc.is_in(b, value_set=keys)))


def judged_items(batch: pa.Table, keys: pa.Array) -> pa.Table:
    """The OUT/items/ rows of items a human judged."""
    return batch.filter(pc.is_in(pc.cast(batch["id"], pa.string()), value_set=keys))


def pair_measures(table: pa.Table, weights: list[float], dimension_columns: list[str]) -> dict[str, np.ndarray]:
    """Per judged row, each measure oriented towards its a; NaN on failed rows."""
    ok = np.asarray(pc.fill_null(pc.equal(table["status"], OK), False), dtype=bool)
    y = soft_outcomes(table["p_a"], weights)
    out = {"p_a": 2 * y - 1}
    for col in ["pair_score", *dimension_columns]:
        out[col] = pc.fill_null(pc.cast(table[col], pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    if "p_tie" in table.column_names:
        out["p_tie"] = soft_outcomes(table["p_tie"], weights)
        out["y"] = y
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}


def match_pairs(human_a: pa.Array, human_b: pa.Array, judged: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(row of the judged table, sign) per human pair: row -1 where none was judged; sign +1
    where the judged a is the human A. Refuses a pair judged twice."""
    keys = unordered_keys(pc.cast(judged["a"], pa.string()), pc.cast(judged["b"], pa.string()))
    counts = pc.value_counts(keys)
    twice = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(twice):
        a, b = twice[0]["values"].as_py().split(SEPARATOR)
        raise UserError(f"items {a!r} and {b!r} were judged as a pair more than once; their human pair could "
                        "match either")
    row = pc.fill_null(pc.index_in(unordered_keys(human_a, human_b), value_set=keys.combine_chunks()
                                   if isinstance(keys, pa.ChunkedArray) else keys), -1)
    row = row.to_numpy(zero_copy_only=False).astype(np.int64)
    judged_a = pc.cast(judged["a"], pa.string()).to_numpy(zero_copy_only=False)
    same = judged_a[np.maximum(row, 0)] == human_a.to_numpy(zero_copy_only=False) if len(judged_a) else \
        np.ones(len(row), dtype=bool)
    return row, np.where(same, 1.0, -1.0)


def oriented(values: np.ndarray, row: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """A judged measure per human pair, towards the human A; NaN where none was judged."""
    if not len(values):
        return np.full(len(row), np.nan)
    return np.where(row >= 0, values[np.maximum(row, 0)] * sign, np.nan)


def strength_differences(human_a: pa.Array, human_b: pa.Array, items: pa.Table) -> np.ndarray:
    """s_A - s_B from OUT/items/ rows (id, group, log_strength); NaN where either item has no
    strength, the two were fitted in different groups, or an item was fitted in several."""
    ids = pc.cast(items["id"], pa.string())
    counts = pc.value_counts(ids)
    single = counts.filter(pc.equal(counts.field("counts"), 1)).field("values")
    items = items.filter(pc.is_in(ids, value_set=single))
    ids = pc.cast(items["id"], pa.string()).combine_chunks() if items.num_rows else pa.array([], pa.string())
    strength = pc.fill_null(pc.cast(items["log_strength"], pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    group = pc.cast(items["group"], pa.string()).to_numpy(zero_copy_only=False)

    def lookup(keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        row = pc.fill_null(pc.index_in(keys, value_set=ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if not len(strength):
            return np.full(len(row), np.nan), np.full(len(row), None, dtype=object)
        return (np.where(row >= 0, strength[np.maximum(row, 0)], np.nan),
                np.where(row >= 0, group[np.maximum(row, 0)], None))

    (sa, ga), (sb, gb) = lookup(human_a), lookup(human_b)
    return np.where(ga == gb, sa - sb, np.nan)


def three_way_accuracy(h: np.ndarray, y: np.ndarray, tie: np.ndarray) -> float | None:
    """GenAI-Bench's accuracy with ties: over every human pair (unjudged ones wrong), the
    share whose judged answer (A, B or tie, the largest mass; equal masses count as a tie)
    is the humans'. y and tie oriented towards A, NaN where not judged."""
    if not len(h):
        return None
    a_mass, b_mass = y - tie / 2, 1 - y - tie / 2
    answer = np.where((tie >= a_mass) & (tie >= b_mass), 0, np.where(a_mass > b_mass, 1, -1))
    answer = np.where(a_mass == b_mass, 0, answer)
    return float(np.mean(np.where(np.isnan(y), False, answer == h)))
