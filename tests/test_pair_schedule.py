"""Pair schedules: `random:K` puts each item in exactly K pairs (K + 1 for one item where
n x K is odd), small groups get all their pairs, no self or repeated pairs, the result is
fixed by the seed and the group and not by row order; the Ray wiring groups in the cluster."""
from __future__ import annotations

import collections
import itertools

import numpy as np
import pyarrow as pa
import pytest

from pipeline.pair_schedule import (
    Schedule,
    group_pairs,
    group_rng,
    pairs_from_groups,
    parse_schedule,
    schedule_pairs,
)
from schemas.judge_output import pair_id
from schemas.user_error import UserError
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture


def degrees(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(np.concatenate([i, j]), minlength=n)


def connected(i: np.ndarray, j: np.ndarray, n: int) -> bool:
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(i.tolist(), j.tolist()):
        parent[find(x)] = find(y)
    return len({find(x) for x in range(n)}) == 1


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_random_k_judges_each_item_k_times(k):
    for n in range(1, 40):
        i, j = schedule_pairs(n, Schedule("random", k), group_rng(7, f"g{n}"))
        pairs = list(zip(i.tolist(), j.tolist()))
        assert all(a < b for a, b in pairs) and len(set(pairs)) == len(pairs)  # no self pair, no repeat
        deg = degrees(i, j, n)
        if n <= k:  # a small group gets all its pairs
            assert set(pairs) == set(itertools.combinations(range(n), 2))
            continue
        if n * k % 2:
            assert sorted(deg.tolist()) == [k] * (n - 1) + [k + 1]
        else:
            assert deg.tolist() == [k] * n
        assert len(pairs) == -(-n * k // 2)
        if k >= 2:  # the kept ring links every item to every other
            assert connected(i, j, n)


def test_all_is_every_pair():
    i, j = schedule_pairs(6, Schedule("all"), group_rng(0, "g"))
    assert list(zip(i.tolist(), j.tolist())) == list(itertools.combinations(range(6), 2))


def test_random_k_is_fixed_by_the_seed_and_spreads_beyond_the_circle():
    n, k = 60, 4
    first = schedule_pairs(n, Schedule("random", k), group_rng(3, "g"))
    again = schedule_pairs(n, Schedule("random", k), group_rng(3, "g"))
    other = schedule_pairs(n, Schedule("random", k), group_rng(4, "g"))
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert set(zip(*map(list, first))) != set(zip(*map(list, other)))  # negative control: the seed matters
    # The swaps spread the starting circle's local structure: two items are a few pairs
    # apart (a random 4-regular graph of 60 items has a diameter of about 5; the circle
    # itself, with neighbours 1 and 2 on each side, has 15).
    assert diameter(*first, n) <= 8


def diameter(i: np.ndarray, j: np.ndarray, n: int) -> int:
    adjacent = collections.defaultdict(set)
    for x, y in zip(i.tolist(), j.tolist()):
        adjacent[x].add(y)
        adjacent[y].add(x)
    longest = 0
    for start in range(n):
        seen, frontier, steps = {start}, [start], 0
        while frontier:
            frontier = [y for x in frontier for y in adjacent[x] if y not in seen]
            seen.update(frontier)
            steps += bool(frontier)
        longest = max(longest, steps)
    return longest


def group_table(ids: list[str], group: str = "g") -> pa.Table:
    return pa.table({"id": ids, "group": [group] * len(ids), "prompt": [f"prompt {group}"] * len(ids)})


def test_group_pairs_do_not_depend_on_row_order_and_have_stable_ids():
    ids = [f"item{x:02d}" for x in range(11)]
    table = group_table(ids)
    shuffled = table.take(np.random.default_rng(1).permutation(len(ids)))
    one = group_pairs(table, Schedule("random", 3), seed=5)
    two = group_pairs(shuffled, Schedule("random", 3), seed=5)
    assert one.equals(two)
    assert one.column_names == ["id", "a", "b", "group", "prompt"]
    for row in one.to_pylist():
        assert row["a"] < row["b"] and row["prompt"] == "prompt g"
        assert row["id"] == pair_id(row["a"], row["b"])
    assert len(set(one["id"].to_pylist())) == one.num_rows
    assert not group_pairs(table, Schedule("random", 3), seed=6).equals(one)  # negative control


@pytest.mark.parametrize("rule", ["random", "random:", "random:0", "random:-2", "random:x", "rand:3", "every", ""])
def test_bad_schedules_are_user_errors(rule):
    with pytest.raises(UserError, match="--schedule"):
        parse_schedule(rule)


def test_parse_schedule():
    assert parse_schedule("all") == Schedule("all")
    assert parse_schedule(" random:4 ") == Schedule("random", 4)


def test_pairs_from_groups_in_the_cluster(ray_session):
    import ray

    rows = [{"id": f"g{g}/{x}", "group": f"g{g}", "prompt": f"p{g}"} for g in range(5) for x in range(3 + 2 * g)]
    rows.append({"id": "lonely", "group": None, "prompt": "p"})
    ds = ray.data.from_arrow(pa.Table.from_pylist(rows)).repartition(3)
    got = pairs_from_groups(ds, "random:2", seed=9).to_arrow_refs()
    table = pa.concat_tables(ray.get(got))
    by_group = collections.defaultdict(list)
    for r in table.to_pylist():
        by_group[r["group"]].append(r)
        assert r["a"].split("/")[0] == r["b"].split("/")[0] == r["group"] and r["prompt"] == "p" + r["group"][1:]
    assert set(by_group) == {f"g{g}" for g in range(5)}  # the row without a group is in no pair
    for g in range(5):
        want = group_pairs(pa.Table.from_pylist([r for r in rows if r["group"] == f"g{g}"]), Schedule("random", 2), 9)
        assert sorted(r["id"] for r in by_group[f"g{g}"]) == sorted(want["id"].to_pylist())
        count = collections.Counter(x for r in by_group[f"g{g}"] for x in (r["a"], r["b"]))
        n = 3 + 2 * g
        assert sorted(count.values()) == ([2] * n if n > 2 else [n - 1] * n)


def test_pairs_from_groups_needs_a_group_column(ray_session):
    import ray

    with pytest.raises(UserError, match="'group' column"):
        pairs_from_groups(ray.data.from_items([{"id": "a"}]), "all", seed=0)
