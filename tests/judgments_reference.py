"""The judgment loader as it was before it went Arrow-native (commit 10e7731), kept as the
reference the new loader must reproduce pair for pair (tests/test_judgments.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.preference_metrics import ranking_pairs
from schemas.user_error import UserError


@dataclass(frozen=True)
class HumanPairs:
    group: list[str]
    a: list[str]  # keys
    b: list[str]
    h: np.ndarray  # +1 a preferred, -1 b preferred, 0 tie


def _from_rankings(groups: list[str], keys: list[list[str]], ranks: list[list[float]]) -> HumanPairs:
    g, a, b, h = [], [], [], []
    for group, k, r in zip(groups, keys, ranks):
        if len(k) != len(r):
            raise UserError(f"group {group!r}: {len(k)} items but {len(r)} ranks")
        i, j, hh = ranking_pairs(np.asarray(r, dtype=np.float64))
        g += [group] * len(i)
        a += [k[x] for x in i]
        b += [k[x] for x in j]
        h.append(hh)
    return HumanPairs(g, a, b, np.concatenate(h) if h else np.zeros(0, dtype=np.int64))


def load_judgments(uri: str) -> HumanPairs:
    if uri.lower().endswith(".json"):
        with open(uri, "rb") as f:
            items = json.load(f)
        return _from_rankings([str(it["id"]) for it in items],
                              [[f"{it['id']}/{gen}" for gen in it["generations"]] for it in items],
                              [it["ranking"] for it in items])
    table = pq.read_table(uri)
    names = set(table.column_names)
    if {"group", "a_id", "b_id", "preference"} <= names:
        h = table["preference"].to_numpy(zero_copy_only=False)
        if not np.isin(h, [-1, 0, 1]).all():
            raise UserError(f"{uri}: preference must be 1 (a preferred), -1 (b preferred) or 0 (tie)")
        group, a, b = (table[c].cast(pa.string()).to_pylist() for c in ("group", "a_id", "b_id"))
        return HumanPairs(group, a, b, h.astype(np.int64))
    if {"group", "id", "rank"} <= names:
        return _ranking_groups(table)
    raise UserError(f"{uri}: expected ImageReward JSON, or Parquet with columns group, a_id, b_id, preference "
                     f"(pairs) or group, id, rank (rankings); found {', '.join(table.column_names)}")


def _ranking_groups(table: pa.Table) -> HumanPairs:
    """Pairs within each group of a rankings table. Groups are keyed by their string form
    and cut where that key changes after sorting on it, so the key, the sort and the cut
    agree for any type (sorting integers and cutting on strings merged 2 and 10)."""
    if table["group"].null_count:
        raise UserError(f"{table['group'].null_count} ranking rows have no group; every ranked item needs one")
    group = pc.cast(table["group"], pa.string())
    table = table.set_column(table.schema.get_field_index("group"), "group", group).sort_by("group")
    keys = np.array(table["group"].to_pylist(), dtype=object)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    bounds = [*starts[1:], table.num_rows]
    ids, ranks = table["id"].cast(pa.string()).to_pylist(), table["rank"].to_pylist()
    return _from_rankings([keys[s] for s in starts], [ids[s:e] for s, e in zip(starts, bounds)],
                          [ranks[s:e] for s, e in zip(starts, bounds)])
