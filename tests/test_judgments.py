"""The Arrow-native judgment loader gives the same pairs, in the same order, with the same
group numbering as the loader it replaced (kept in tests/judgments_reference.py), on the
ImageReward test split and on Parquet pairs and rankings made from it."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.eval_command import HumanPairs, load_judgments, pairs_within_runs
from pipeline.preference_metrics import ranking_pairs
from schemas.job_config import StorageConfig
from tests import judgments_reference as reference
from tests.paths import PREFERENCES, require


def old_group_codes(old: reference.HumanPairs) -> list[int]:
    """The group codes `vrscore fit` made from the old loader's groups (fit_data.assemble)."""
    codes = pc.dictionary_encode(pa.array([str(g) for g in old.group], type=pa.string())).indices
    return codes.to_pylist()


def assert_same(new: HumanPairs, old: reference.HumanPairs) -> None:
    group, a, b, h = new.to_lists()
    assert (group, a, b, h) == (old.group, old.a, old.b, old.h.tolist())
    assert new.group.tolist() == old_group_codes(old)
    assert sorted(new.keys.to_pylist()) == sorted(set(old.a) | set(old.b))  # each judged key once
    assert new.a.dtype == new.b.dtype == new.group.dtype == np.int64


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return json.loads(require(PREFERENCES / "imagereward_test.json").read_text())


def rankings_table(items: list[dict], rng: np.random.Generator) -> pa.Table:
    """Rankings with integer groups (sorted as text: 10 before 2), rows shuffled, a key
    shared by two groups, and a one-item group (no pairs)."""
    rows = [{"group": g, "id": f"{it['id']}/{gen}", "rank": r}
            for g, it in enumerate(items) for gen, r in zip(it["generations"], it["ranking"])]
    rows.append({"group": 10_000, "id": rows[0]["id"], "rank": 1})
    rows.append({"group": 10_000, "id": "extra", "rank": 2})
    rows.append({"group": 10_001, "id": "alone", "rank": 1})
    return pa.Table.from_pylist([rows[i] for i in rng.permutation(len(rows))])


def pairs_table(items: list[dict], rng: np.random.Generator) -> pa.Table:
    a, b, h, g = [], [], [], []
    for it in items:
        i, j, hh = ranking_pairs(np.asarray(it["ranking"], dtype=np.float64))
        a += [f"{it['id']}/{it['generations'][x]}" for x in i]
        b += [f"{it['id']}/{it['generations'][x]}" for x in j]
        h += hh.tolist()
        g += [it["id"]] * len(i)
    order = rng.permutation(len(a))
    return pa.table({"group": pa.array(g).take(order), "a_id": pa.array(a).take(order),
                     "b_id": pa.array(b).take(order), "preference": pa.array(h, pa.int8()).take(order)})


def test_imagereward_json_gives_the_old_pairs(items, tmp_path: Path):
    path = PREFERENCES / "imagereward_test.json"
    new = load_judgments(str(path), StorageConfig())
    assert_same(new, reference.load_judgments(str(path)))
    assert int(np.sum(new.h != 0)) == 6399
    # negative control: one rank changed changes the pairs
    changed = [dict(it) for it in items]
    changed[0] = {**changed[0], "ranking": [r + 1 if k == 0 else r for k, r in enumerate(changed[0]["ranking"])]}
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    with pytest.raises(AssertionError):
        assert_same(load_judgments(str(tmp_path / "changed.json"), StorageConfig()), reference.load_judgments(str(path)))


def test_parquet_rankings_give_the_old_pairs(items, tmp_path: Path):
    table = rankings_table(items[:150], np.random.default_rng(0))
    pq.write_table(table, tmp_path / "ranks.parquet", row_group_size=97)  # several chunks
    new = load_judgments(str(tmp_path / "ranks.parquet"), StorageConfig())
    assert_same(new, reference.load_judgments(str(tmp_path / "ranks.parquet")))
    assert "alone" not in new.keys.to_pylist()  # a one-item group judges nothing
    # negative control: a group moved changes the pairs
    moved = table.set_column(0, "group", pc.if_else(pc.equal(table["id"], "extra"), 10_001, table["group"]))
    pq.write_table(moved, tmp_path / "moved.parquet")
    with pytest.raises(AssertionError):
        assert_same(load_judgments(str(tmp_path / "moved.parquet"), StorageConfig()),
                    reference.load_judgments(str(tmp_path / "ranks.parquet")))


def test_parquet_pairs_give_the_old_pairs(items, tmp_path: Path):
    table = pairs_table(items[:150], np.random.default_rng(1))
    pq.write_table(table, tmp_path / "pairs.parquet", row_group_size=500)
    new = load_judgments(str(tmp_path / "pairs.parquet"), StorageConfig())
    assert_same(new, reference.load_judgments(str(tmp_path / "pairs.parquet")))
    # negative control: one preference flipped changes the pairs
    flipped = table.set_column(3, "preference", pa.array([-table["preference"][0].as_py(),
                                                          *table["preference"].to_pylist()[1:]], pa.int8()))
    pq.write_table(flipped, tmp_path / "flipped.parquet")
    with pytest.raises(AssertionError):
        assert_same(load_judgments(str(tmp_path / "flipped.parquet"), StorageConfig()),
                    reference.load_judgments(str(tmp_path / "pairs.parquet")))


def test_pairs_within_runs_is_ranking_pairs_run_by_run():
    rng = np.random.default_rng(2)
    sizes = np.array([3, 0, 1, 5, 2])
    ranks = rng.integers(0, 3, sizes.sum()).astype(np.float64)
    row_a, row_b, run, h = pairs_within_runs(sizes, ranks)
    start = np.cumsum(sizes) - sizes
    want = [(s + i, s + j, k, hh) for k, (s, n) in enumerate(zip(start, sizes))
            for i, j, hh in zip(*ranking_pairs(ranks[s:s + n]))]
    assert list(zip(row_a.tolist(), row_b.tolist(), run.tolist(), h.tolist())) == want
    assert len(want) == 3 + 10 + 1


def test_rankings_without_a_rank_are_refused(tmp_path: Path):
    # the old loader turned a missing rank into NaN and then into a meaningless preference
    pq.write_table(pa.table({"group": [1, 1], "id": ["a", "b"], "rank": [1, None]}), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="1 ranking rows have no rank"):
        load_judgments(str(tmp_path / "r.parquet"), StorageConfig())
