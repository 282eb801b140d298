"""Bradley-Terry strengths against a maximum a posteriori fit computed here apart from
pipeline/bradley_terry.py (scipy's L-BFGS on the same objective, written out below), with
negative controls; items that win everything stay finite; OUT/items/ through Ray."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.optimize import minimize

from pipeline import bradley_terry
from pipeline.bradley_terry import fit_strengths, group_items, soft_outcomes, write_items
from schemas.judge_output import items_schema
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture


def reference_fit(a, b, y, n, l2):
    """argmax of sum y log s(d) + (1-y) log s(-d) - l2/2 |s|^2, d = s_a - s_b, by L-BFGS."""
    def loss(s):
        d = s[a] - s[b]
        sig = 1 / (1 + np.exp(-d))
        value = -np.sum(y * np.log(sig) + (1 - y) * np.log(1 - sig)) + l2 / 2 * s @ s
        r = sig - y
        grad = np.zeros(n)
        np.add.at(grad, a, r)
        np.add.at(grad, b, -r)
        return value, grad + l2 * s

    res = minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15,
                                                                           "maxiter": 10_000})
    return res.x - res.x.mean()


def random_pairs(rng, n, m):
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    return a, b, rng.random(m)


@pytest.mark.parametrize("l2", [0.01, 0.3, 2.0])
def test_strengths_equal_an_independent_fit(l2):
    rng = np.random.default_rng(int(l2 * 100))
    for trial in range(10):
        n = int(rng.integers(2, 12))
        a, b, y = random_pairs(rng, n, int(rng.integers(1, 40)))
        if trial % 3 == 0:
            y = np.round(y)  # hard outcomes
        got = fit_strengths(a, b, y, n, l2)
        assert got == pytest.approx(reference_fit(a, b, y, n, l2), abs=1e-6)
        assert abs(got.sum()) < 1e-9
        flipped = y.copy()  # negative control: another outcome moves the strengths
        flipped[0] = 1 - y[0] if abs(y[0] - 0.5) > 0.05 else 1.0
        assert np.max(np.abs(fit_strengths(a, b, flipped, n, l2) - got)) > 1e-4


def test_the_sparse_solver_agrees(monkeypatch):
    rng = np.random.default_rng(2)
    a, b, y = random_pairs(rng, 30, 120)
    dense = fit_strengths(a, b, y, 30, 0.01)
    monkeypatch.setattr(bradley_terry, "DENSE_MAX", 0)
    assert fit_strengths(a, b, y, 30, 0.01) == pytest.approx(dense, abs=1e-9)


def test_an_item_winning_everything_stays_finite_and_ranks_first():
    a = np.array([0, 0, 0, 1, 2])
    b = np.array([1, 2, 3, 2, 3])
    y = np.array([1.0, 1.0, 1.0, 0.6, 0.5])
    s = fit_strengths(a, b, y, 4, 0.01)
    assert np.isfinite(s).all() and s[0] == s.max() and s[0] > 2
    assert s == pytest.approx(reference_fit(a, b, y, 4, 0.01), abs=1e-6)
    with pytest.raises(ValueError, match="l2"):
        fit_strengths(a, b, y, 4, 0.0)


def test_soft_outcomes_weigh_questions_by_absolute_weight():
    p_a = pa.array([[0.9, 0.2, 0.5], None, [0.1, None, 1.0], [1.0, 0.0, 0.0]], pa.list_(pa.float32()))
    got = soft_outcomes(p_a, [2.0, -1.0, 0.0])
    assert got[0] == pytest.approx((2 * 0.9 + 0.2) / 3, abs=1e-7)
    assert np.isnan(got[1]) and np.isnan(got[2])
    assert got[3] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="weighs 0"):
        soft_outcomes(p_a, [0.0, 0.0, 0.0])


def pairs_table(rows):
    return pa.Table.from_pylist(rows, schema=pa.schema([("a", pa.string()), ("b", pa.string()),
                                                        ("group", pa.string()), ("y", pa.float64())]))


def test_group_items_ranks_counts_and_leaves_failed_only_items_unranked():
    rows = [{"a": "x", "b": "y", "group": "g", "y": 0.8}, {"a": "y", "b": "z", "group": "g", "y": 0.7},
            {"a": "x", "b": "z", "group": "g", "y": 0.9}, {"a": "w", "b": "x", "group": "g", "y": float("nan")}]
    got = {r["id"]: r for r in group_items(pairs_table(rows), l2=0.01).to_pylist()}
    assert [got[i]["rank"] for i in "xyz"] == [1, 2, 3]
    assert [got[i]["n_pairs"] for i in "wxyz"] == [0, 2, 2, 2]
    assert got["w"]["log_strength"] is None and got["w"]["rank"] is None
    want = reference_fit(np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.8, 0.7, 0.9]), 3, 0.01)
    assert [got[i]["log_strength"] for i in "xyz"] == pytest.approx(want, abs=1e-6)
    shuffled = pairs_table([rows[k] for k in (3, 1, 0, 2)])
    assert group_items(shuffled, l2=0.01).equals(group_items(pairs_table(rows), l2=0.01))


def test_equal_strengths_rank_by_id():
    rows = [{"a": "b", "b": "a", "group": "g", "y": 0.5}]
    got = group_items(pairs_table(rows), l2=0.01).to_pylist()
    assert [(r["id"], r["rank"]) for r in got] == [("a", 1), ("b", 2)]


def test_write_items_fits_every_group_in_the_cluster(tmp_path, ray_session):
    rng = np.random.default_rng(5)
    rows, expected = [], {}
    for g in range(4):
        n = 3 + g
        a, b, _ = random_pairs(rng, n, 3 * n)
        p_a = rng.random((len(a), 2))
        failed = rng.random(len(a)) < 0.2
        for k in range(len(a)):
            rows.append({"a": f"g{g}-{a[k]}", "b": f"g{g}-{b[k]}", "group": f"g{g}",
                         "status": "decode_error" if failed[k] else "ok",
                         "p_a": None if failed[k] else p_a[k].tolist()})
        ok = ~failed
        y = (p_a[:, 0] * 1.0 + p_a[:, 1] * 3.0) / 4.0
        ids = sorted({f"g{g}-{x}" for x in np.concatenate([a[ok], b[ok]])})
        code = {f"g{g}-{x}": k for k, x in enumerate(sorted({int(v) for v in np.concatenate([a[ok], b[ok]])}))}
        s = reference_fit(np.array([code[f"g{g}-{x}"] for x in a[ok]]), np.array([code[f"g{g}-{x}"] for x in b[ok]]),
                          y[ok], len(ids), 0.05)
        expected.update({i: s[code[i]] for i in ids})
    (tmp_path / "pairs").mkdir()
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.slice(0, len(rows) // 2), tmp_path / "pairs" / "part-0.parquet")
    pq.write_table(table.slice(len(rows) // 2), tmp_path / "pairs" / "part-1.parquet")
    write_items(str(tmp_path / "pairs"), str(tmp_path / "items"), 0.05, None, [1.0, -3.0])
    items = pq.read_table(tmp_path / "items").to_pylist()
    fitted = {r["id"]: r["log_strength"] for r in items if r["n_pairs"]}
    assert fitted.keys() == expected.keys()
    assert [fitted[i] for i in sorted(fitted)] == pytest.approx([expected[i] for i in sorted(fitted)], abs=1e-6)
    files = sorted((tmp_path / "items").glob("*.parquet"))
    assert files
    for f in files:  # every file in the one owner's schema, types and metadata alike
        assert pq.read_schema(f).equals(items_schema(), check_metadata=True), pq.read_schema(f)
