"""Which pairs of a group a pairwise judge is asked about (`vrscore judge --schedule`).

- `all`: every unordered pair of the group, n (n - 1) / 2 of them.
- `random:K`: every item in exactly K pairs (one item in K + 1 where n x K is odd), no item
  paired with itself, no pair twice; a group of n <= K items gets all its pairs. O(nK)
  judgements where `all` costs O(n^2).

A random:K schedule is a K-regular graph on the group's items. It starts as a circulant on a
seeded random order of the items (each item joined to its h = K // 2 neighbours on each side
of the circle, plus, for odd K, a matching across the circle): every degree is right and no
edge repeats. The order's ring (offset 1) is kept, so for K >= 2 the group is connected and
every strength of a Bradley-Terry fit is compared with every other. The other edges are
then shuffled by degree-preserving double-edge swaps, so far-apart items of the circle meet
too (a pure circulant needs ~n / K steps to link two items; a random regular graph ~log n).

Pairs are deterministic for (ids, seed, group) and do not depend on the order in which the
cluster delivers a group's rows: ids are sorted first, the generator is seeded by the seed
and the group's key. a is the pair's smaller id (both orders are judged anyway); the pair's
id is `schemas.judge_output.pair_id(a, b)`, unique since item ids are.
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.judge_output import pair_id
from schemas.user_error import UserError

if TYPE_CHECKING:
    from ray.data import Dataset

SWAPS_PER_EDGE = 4  # swap attempts per shuffled edge: enough to spread the circulant's local structure


@dataclass(frozen=True)
class Schedule:
    """A parsed `--schedule`: kind 'all', or 'random' with `per_item` = K."""

    kind: str
    per_item: int | None = None


def parse_schedule(rule: str) -> Schedule:
    """'all' or 'random:K' (K >= 1); anything else is a UserError naming the forms."""
    text = rule.strip()
    if text == "all":
        return Schedule("all")
    kind, sep, k = text.partition(":")
    if kind == "random" and sep:
        try:
            per_item = int(k)
        except ValueError:
            per_item = 0
        if per_item >= 1:
            return Schedule("random", per_item)
        raise UserError(f"--schedule {rule!r}: K in random:K must be a whole number >= 1")
    raise UserError(f"--schedule {rule!r}: expected 'all' (every pair of a group) or 'random:K' (each item in K pairs)")


def schedule_pairs(n: int, schedule: Schedule, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, over items 0..n-1 of one group, in a deterministic order."""
    if schedule.kind == "all" or n <= (schedule.per_item or 0):
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    order = rng.permutation(n)
    ring, rest = _circulant(n, schedule.per_item)
    rest = _shuffle_edges(ring, rest, rng)
    edges = order[np.concatenate([ring, rest]).reshape(-1, 2)] if len(ring) + len(rest) else np.zeros((0, 2), int)
    edges = np.sort(edges, axis=1)
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
    return edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)


def _circulant(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (positions on the circle, shape (m, 2)) of a graph where every position has
    degree k, position (n - 3) / 2 degree k + 1 when n * k is odd; n > k. Returns the
    ring (offset 1, kept as is when k >= 2) and the other edges."""
    pos = np.arange(n)
    half = k // 2
    ring = np.stack([pos, (pos + 1) % n], axis=1) if half >= 1 else np.zeros((0, 2), np.int64)
    parts = [np.stack([pos, (pos + d) % n], axis=1) for d in range(2, half + 1)]
    if k % 2:
        if n % 2 == 0:  # a perfect matching across the circle
            top = np.arange(n // 2)
            parts.append(np.stack([top, top + n // 2], axis=1))
        else:  # n - 1 positions matched at distance (n - 1) / 2, the last one joined to (n - 3) / 2
            m = (n - 1) // 2
            top = np.arange(m)
            parts.append(np.stack([top, top + m], axis=1))
            parts.append(np.array([[n - 1, (n - 3) // 2]]))
    rest = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return ring.astype(np.int64), rest.astype(np.int64)


def _shuffle_edges(fixed: np.ndarray, edges: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Degree-preserving double-edge swaps on `edges` ((a, b), (c, d) -> (a, d), (c, b)),
    refused where one would join an item to itself or repeat an edge of either set."""
    m = len(edges)
    if m < 2:
        return edges
    edges = edges.copy()
    present = {frozenset(e) for e in fixed.tolist()} | {frozenset(e) for e in edges.tolist()}
    picks = rng.integers(0, m, size=(SWAPS_PER_EDGE * m, 2))
    flips = rng.random(SWAPS_PER_EDGE * m) < 0.5
    for (x, y), flip in zip(picks.tolist(), flips.tolist()):
        if x == y:
            continue
        a, b = edges[x]
        c, d = edges[y]
        if flip:
            c, d = d, c
        new1, new2 = frozenset((a, d)), frozenset((c, b))
        if a == d or c == b or new1 in present or new2 in present:
            continue
        present -= {frozenset((a, b)), frozenset((c, d))}
        present |= {new1, new2}
        edges[x], edges[y] = (a, d), (c, b)
    return edges


def group_rng(seed: int, group: str) -> np.random.Generator:
    """The generator of one group: the same for a (seed, group) wherever the group is scheduled."""
    return np.random.default_rng([seed, zlib.crc32(group.encode())])


SCHEDULED_FIELDS = [("id", pa.string()), ("a", pa.string()), ("b", pa.string()), ("group", pa.string()),
                    ("prompt", pa.string())]
SCHEDULED_SCHEMA = pa.schema(SCHEDULED_FIELDS)


def group_pairs(group: pa.Table, schedule: Schedule, seed: int) -> pa.Table:
    """The scheduled pairs of one group (rows: id, group, optional prompt) as SCHEDULED_SCHEMA.
    A pair's prompt is a's: the items of a group answer one prompt."""
    if group.num_rows == 0:
        return SCHEDULED_SCHEMA.empty_table()
    group = group.sort_by([("id", "ascending")])
    ids = pc.cast(group["id"], pa.string())
    if len(pc.unique(ids)) != len(ids):
        raise ValueError(f"group {group['group'][0].as_py()!r} repeats an id; ids must be unique")
    key = str(group["group"][0].as_py())
    i, j = schedule_pairs(group.num_rows, schedule, group_rng(seed, key))
    a, b = ids.take(pa.array(i)), ids.take(pa.array(j))
    prompt = group["prompt"].take(pa.array(i)) if "prompt" in group.column_names else pa.nulls(len(i), pa.string())
    pair_ids = [pair_id(x, y) for x, y in zip(a.to_pylist(), b.to_pylist())]
    return pa.table({"id": pa.array(pair_ids, pa.string()), "a": a, "b": b,
                     "group": pa.array([key] * len(i), pa.string()), "prompt": pc.cast(prompt, pa.string())},
                    schema=SCHEDULED_SCHEMA)


def _has_group(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_valid(batch["group"]))


def pairs_from_groups(ds: Dataset, rule: str, seed: int, num_partitions: int | None = None) -> Dataset:
    """The scheduled pairs of a manifest's groups (columns id, group, optional prompt; rows
    without a group take part in no pair), computed per group in the cluster: the manifest
    never reaches the driver."""
    schedule = parse_schedule(rule)
    columns = [c for c in ("id", "group", "prompt") if c in ds.schema().names]
    if "group" not in columns:
        raise UserError("pairs from a schedule need a 'group' column in the manifest (or give --pairs)")
    return (ds.select_columns(columns).map_batches(_has_group, batch_format="pyarrow")
            .groupby("group", num_partitions=num_partitions)
            .map_groups(functools.partial(group_pairs, schedule=schedule, seed=seed), batch_format="pyarrow"))
