"""Pair mining with bounded memory: the same pairs as the all-at-once enumeration it
replaced (tests/pair_mining_reference.py) wherever no cap of its own is reached, block
boundaries included, and a 20k-item group mined in tens of MiB."""
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from pipeline import pair_mining
from pipeline.pair_mining import mine_pairs
from tests import pair_mining_reference as reference
from tests.scores_fixtures import random_rows, scores_table

DIMS = [f.name for f in scores_table([]).schema if f.name.startswith("dim_")]


def _group(rng, levels, size):
    rows = random_rows(rng, 1, size, levels=levels, error_rate=0.1)
    if rng.random() < 0.5:  # a second checklist in the group: mined apart, drawn in sequence
        videos = random_rows(rng, 1, (2, 12), media_type="video", levels=levels, prefix="v")
        rows += [{**v, "group": rows[0]["group"], "prompt": rows[0]["prompt"]} for v in videos]
    return scores_table(rows)


def _cases(seed, n=24):
    rng = np.random.default_rng(seed)
    for trial in range(n):
        levels = [None, 2, 3][trial % 3]
        yield trial, _group(rng, levels, (2, 40)), dict(
            dimension_columns=DIMS, score_column="score_soft" if trial % 2 else "score",
            dominance_columns=None if trial % 4 else ["dim_quality", "dim_alignment"],
            margin=float(rng.choice([0.0, 0.05])), pairs_per_group=int(rng.choice([0, 1, 3, 16])), seed=trial)


@pytest.mark.parametrize("block", [pair_mining.BLOCK_ELEMENTS, 7, 1], ids=["default-blocks", "7-pair-blocks", "row-blocks"])
@pytest.mark.parametrize("strategy", ["all", "dominance", "margin"])
def test_same_pairs_as_the_all_at_once_enumeration(monkeypatch, strategy, block):
    # small blocks split every group into many steps: pruning and floors are exercised
    monkeypatch.setattr(pair_mining, "BLOCK_ELEMENTS", block)
    capped = 0
    for trial, table, kw in _cases(hash((strategy, block)) % 2**32):
        got, want = mine_pairs(table, strategy, **kw), reference.mine_pairs(table, strategy, **kw)
        assert got.equals(want), (trial, kw)
        capped += kw["pairs_per_group"] and want.num_rows == kw["pairs_per_group"]
    assert strategy == "margin" or capped >= 3  # the per-group cap was reached in some groups


def test_sparse_dominance_path_agrees(monkeypatch):
    # force the pair-by-pair path from the first dimension on, and never
    for sparse in (2.0, 0.0):
        monkeypatch.setattr(pair_mining, "SPARSE_BELOW", sparse)
        for trial, table, kw in _cases(7, n=12):
            assert mine_pairs(table, "dominance", **kw).equals(reference.mine_pairs(table, "dominance", **kw))


def test_negative_controls_change_the_result(monkeypatch):
    # the comparison sees the seed's tie-breaks and the order of pairs ...
    rows = random_rows(np.random.default_rng(3), 1, (30, 30), levels=2)
    for r in rows[:4]:  # four items tie for best, four for worst: 16 pairs share the top gap
        r["p_yes"] = np.ones_like(r["p_yes"])
    for r in rows[-4:]:
        r["p_yes"] = np.zeros_like(r["p_yes"])
    tied = scores_table(rows)
    kw = dict(dimension_columns=DIMS, pairs_per_group=3)
    assert not mine_pairs(tied, "all", seed=1, **kw).equals(reference.mine_pairs(tied, "all", seed=2, **kw))
    # ... and reaching the group's hard cap changes it: the largest gaps are kept, as the
    # per-group cap does
    monkeypatch.setattr(pair_mining, "MAX_PAIRS_PER_GROUP", 5)
    unbounded = reference.mine_pairs(tied, "all", dimension_columns=DIMS, pairs_per_group=0, seed=0)
    bounded = mine_pairs(tied, "all", dimension_columns=DIMS, pairs_per_group=0, seed=0)
    assert unbounded.num_rows > 5 and bounded.num_rows == 5 and not bounded.equals(unbounded)
    assert bounded.equals(reference.mine_pairs(tied, "all", dimension_columns=DIMS, pairs_per_group=5, seed=0))
    assert mine_pairs(tied, "all", dimension_columns=DIMS, pairs_per_group=50, seed=0).num_rows == 5


N_BIG = 20_000
# The all-at-once enumeration needs n^2 float64 gaps (3.2 GB at 20k items) plus n^2 x k
# differences (28.8 GB with 9 dimensions). The blocks keep a few arrays of 2^20 elements.
PEAK_BOUND_MIB = 160


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["dominance", "all"])
def test_a_20k_item_group_is_mined_in_bounded_memory(strategy):
    rng = np.random.default_rng(0)
    dims = DIMS[:9]
    values = rng.integers(0, 3, (N_BIG, len(dims))) / 2.0  # coarse values: many ties and candidates
    table = pa.table({"id": [f"i{k:05d}" for k in range(N_BIG)], "uri": [f"/m/{k}.png" for k in range(N_BIG)],
                      "media_type": ["image"] * N_BIG, "prompt": ["p"] * N_BIG, "group": ["g"] * N_BIG,
                      "checklist": ["c"] * N_BIG, "status": ["ok"] * N_BIG, "score": values.mean(axis=1),
                      **{d: values[:, k] for k, d in enumerate(dims)}})
    tracemalloc.start()
    try:
        pairs = mine_pairs(table, strategy, dimension_columns=dims, pairs_per_group=16, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{strategy}: peak {peak / 2**20:.1f} MiB for a group of {N_BIG}")
    assert peak < PEAK_BOUND_MIB * 2**20
    assert pairs.num_rows == 16
    gaps = [p["chosen_score"] - p["rejected_score"] for p in pairs.to_pylist()]
    assert gaps == sorted(gaps, reverse=True)  # largest total gap first
    score = values.mean(axis=1)
    if strategy == "all":  # every pair counts: the best one spans the whole group
        assert gaps[0] == pytest.approx(score.max() - score.min())
    else:
        at = {r: k for k, r in enumerate(table["id"].to_pylist())}
        for p in pairs.to_pylist():
            a, b = values[at[p["chosen_id"]]], values[at[p["rejected_id"]]]
            assert (a >= b).all() and (a > b).any()
