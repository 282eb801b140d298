"""The plan of a judge job (pure pyarrow): which pairs, in which units, with what each item is read from.

The plan is one row per pair: id, a, b, group, prompt, unit, and per side the item's uri and
media_type from the manifest and where its bytes are when the manifest holds them (`file`: the
Parquet data file or tar shard as the manifest's filesystem names it; `row_group`: the Parquet row
group, null for shards), so that a unit reads only the row groups and shards its items are in
(pipeline/media_readback.py). The plan never holds media bytes; plans written before the places
were recorded (manifests of URIs only) lack those columns, which then read as null.

The plan is written once into OUT/plan/ and read back by the job, so that Ray Data's checkpoint
(ids of written pairs) skips finished pairs on resume exactly as `score` skips finished rows, and
a resumed job judges the very pairs the first run planned.

Units. The pairs of a group travel together: a unit is a group's pairs, cut into units of at most
`unit_pairs` pairs where a group is larger, so that a unit's decoded items fit one actor's memory.
An item is decoded once per unit it appears in: once per job when its group fits one unit.
Pairs without a group form units of their own, in the order given.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.judge_output import PAIRS_INPUT_OPTIONAL, PAIRS_INPUT_REQUIRED, pair_id
from schemas.user_error import UserError

UNIT_PAIRS = 256  # pairs per unit at most: a unit's items are held decoded at once
# Ray Data shuffles into 200 partitions by default: on a small job, hundreds of near-empty tasks
# (and files). The judge's groupings scale with their input instead.
MAX_PARTITIONS = 200
ROWS_PER_PARTITION = 250_000  # small rows (pairs, manifest ids) one partition's task groups at once

PLAN_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False), pa.field("a", pa.string(), nullable=False),
    pa.field("b", pa.string(), nullable=False), pa.field("group", pa.string()), pa.field("prompt", pa.string()),
    pa.field("unit", pa.int64(), nullable=False),
    pa.field("a_uri", pa.string()), pa.field("a_media_type", pa.string()),
    pa.field("b_uri", pa.string()), pa.field("b_media_type", pa.string()),
    pa.field("a_file", pa.string()), pa.field("a_row_group", pa.int64()),
    pa.field("b_file", pa.string()), pa.field("b_row_group", pa.int64()),
])


def given_pairs(table: pa.Table, where: str) -> pa.Table:
    """A `--pairs` table as (id, a, b, group, prompt) strings; UserError for a missing column, a null
    or self pair, or a repeated pair id. Pairs without an id get `schemas.judge_output.pair_id`."""
    missing = [c for c in PAIRS_INPUT_REQUIRED if c not in table.column_names]
    if missing:
        raise UserError(f"{where}: the pairs need columns {list(PAIRS_INPUT_REQUIRED)}; missing {missing}")
    cols = {c: pc.cast(table[c], pa.string()) if c in table.column_names else pa.nulls(table.num_rows, pa.string())
            for c in (*PAIRS_INPUT_REQUIRED, *PAIRS_INPUT_OPTIONAL)}
    a, b = cols["a"].to_pylist(), cols["b"].to_pylist()
    bad = [i for i, (x, y) in enumerate(zip(a, b)) if x is None or y is None or x == y]
    if bad:
        raise UserError(f"{where}: pair row {bad[0]} has a null item or pairs an item with itself "
                        f"(a={a[bad[0]]!r}, b={b[bad[0]]!r}); {len(bad)} such rows")
    ids = [i if i is not None else pair_id(x, y) for i, x, y in zip(cols["id"].to_pylist(), a, b)]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise UserError(f"{where}: pair id {dup!r} appears twice; every pair needs its own id")
    return pa.table({"id": ids, "a": a, "b": b, "group": cols["group"], "prompt": cols["prompt"]})


def assign_units(groups: list[str | None], unit_pairs: int = UNIT_PAIRS) -> np.ndarray:
    """Unit number of each pair: the pairs of one group together, in runs of at most `unit_pairs`,
    numbered in order of the groups' first appearance; a pair without a group is a unit of its own."""
    order: dict[str, list[int]] = {}
    singles = []
    for i, g in enumerate(groups):
        (order.setdefault(g, []) if g is not None else singles).append(i)
    units = np.empty(len(groups), np.int64)
    next_unit = 0
    for members in order.values():
        for start in range(0, len(members), unit_pairs):
            units[members[start:start + unit_pairs]] = next_unit
            next_unit += 1
    for start in range(0, len(singles), unit_pairs):
        units[singles[start:start + unit_pairs]] = next_unit
        next_unit += 1
    return units


def build_plan(pairs: pa.Table, items: pa.Table, unit_pairs: int = UNIT_PAIRS) -> pa.Table:
    """The plan of `pairs` (given_pairs' columns) over the manifest's `items` (id, uri, optional
    media_type, file, row_group: pipeline/judge_items.py); UserError for a pair naming an id the
    manifest lacks."""
    ids = pc.cast(items["id"], pa.string()).to_pylist()

    def column(name: str) -> list:
        return items[name].to_pylist() if name in items.column_names else [None] * len(ids)

    uris, kinds, files, groups = column("uri"), column("media_type"), column("file"), column("row_group")
    where = {key: k for k, key in enumerate(ids)}
    if len(where) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise UserError(f"the manifest repeats the id {dup!r}: a pair could not say which item it means")
    cols = {}
    for side in ("a", "b"):
        named = pairs[side].to_pylist()
        unknown = [x for x in named if x not in where]
        if unknown:
            raise UserError(f"pairs name {len(unknown)} item ids the manifest lacks, e.g. {unknown[0]!r} (column {side})")
        rows = [where[x] for x in named]
        cols[f"{side}_uri"] = [uris[r] for r in rows]
        cols[f"{side}_media_type"] = [kinds[r] for r in rows]
        cols[f"{side}_file"] = [files[r] for r in rows]
        cols[f"{side}_row_group"] = [groups[r] for r in rows]
    units = assign_units(pairs["group"].to_pylist(), unit_pairs)
    table = {c: pairs[c] for c in ("id", "a", "b", "group", "prompt")}
    table.update(unit=units, **cols)
    return pa.table(table, schema=PLAN_SCHEMA)


def shuffle_partitions(rows: int) -> int:
    """Partitions for grouping `rows` small rows (the schedule's manifest rows, the judged pairs)."""
    return min(MAX_PARTITIONS, max(1, -(-rows // ROWS_PER_PARTITION)))


def unit_partitions(plan: pa.Table) -> int:
    """Partitions for gathering the plan's units: one per unit up to MAX_PARTITIONS, so that every
    decode actor gets units to decode however few there are."""
    return min(MAX_PARTITIONS, max(1, len(pc.unique(plan["unit"]))))


def decode_counts(plan: pa.Table) -> dict[str, int]:
    """How many times each item of the plan is decoded: once per unit it appears in."""
    counts: dict[str, int] = {}
    seen: set[tuple[int, str]] = set()
    for unit, a, b in zip(plan["unit"].to_pylist(), plan["a"].to_pylist(), plan["b"].to_pylist()):
        for key in (a, b):
            if (unit, key) not in seen:
                seen.add((unit, key))
                counts[key] = counts.get(key, 0) + 1
    return counts
