"""Per-group Bradley-Terry strengths from judged pairs (OUT/items/ of `vrscore judge`).

Each ok pair (a, b) has a soft outcome y in [0, 1]: the mean of its questions' p_a weighted
by the questions' absolute weights. The log-strengths s maximise

    sum_pairs y log sigmoid(s_a - s_b) + (1 - y) log sigmoid(s_b - s_a)  -  l2 / 2 |s|^2,

the maximum a posteriori fit under a Gaussian prior of precision l2 > 0: an item that wins
every pair gets a finite strength, and the objective is strictly concave, so Newton's method
with step halving reaches its one maximum (a dense Hessian up to DENSE_MAX items, conjugate
gradients on the sparse one above). The prior's gradient makes the optimum sum to zero; it is centred again
to remove rounding. Items of the group that took part only in failed pairs are written with
n_pairs 0 and no strength or rank. Pairs without a group (a pairs file without one) are
fitted together, as one pool.

Rank 1 is the strongest; strengths equal to RANK_DECIMALS places rank by id, so solver
rounding never decides an order. A group's result does not depend on the order of its rows.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.parquet_reader import read_parquet
from schemas.judge_output import items_schema
from schemas.status import OK

if TYPE_CHECKING:
    import pyarrow.fs as pafs

DENSE_MAX = 2048  # items of one group solved with a dense n x n Hessian (32 MB at this size)
TOLERANCE = 1e-12  # Newton stops once no strength moves more than this
MAX_ITERATIONS = 100
RANK_DECIMALS = 9


def soft_outcomes(p_a: pa.Array | pa.ChunkedArray, weights: list[float]) -> np.ndarray:
    """Per pair the mean of its questions' p_a weighted by |weight|; NaN where a pair has
    no p_a (a failed pair) or a question's is missing."""
    w = np.abs(np.asarray(weights, dtype=np.float64))
    if not w.sum() > 0:
        raise ValueError("every question weighs 0: a pair's outcome would be undefined")
    if isinstance(p_a, pa.ChunkedArray):
        p_a = p_a.combine_chunks() if p_a.num_chunks else pa.array([], p_a.type)
    lengths = pc.fill_null(pc.list_value_length(p_a), 0).to_numpy(zero_copy_only=False)
    out = np.full(len(p_a), np.nan)
    full = lengths == len(w)
    if full.any():
        values = pc.fill_null(pc.cast(pc.list_flatten(p_a.filter(pa.array(full))), pa.float64()), np.nan)
        matrix = values.to_numpy(zero_copy_only=False).reshape(-1, len(w))
        out[full] = matrix @ w / w.sum()
    return out


def fit_strengths(a: np.ndarray, b: np.ndarray, y: np.ndarray, n: int, l2: float) -> np.ndarray:
    """MAP log-strengths of items 0..n-1 from pairs (a[k], b[k]) with soft outcomes y[k]."""
    if not l2 > 0:
        raise ValueError(f"the prior's precision l2 must be > 0, got {l2}")
    s = np.zeros(n)
    value = _objective(s, a, b, y, l2)
    for _ in range(MAX_ITERATIONS):
        p = _sigmoid(s[a] - s[b])
        grad = np.bincount(a, y - p, n) - np.bincount(b, y - p, n) - l2 * s
        step = _newton_step(a, b, p * (1 - p), grad, n, l2)
        # Newton's full step nearly always raises a concave objective; where it would not
        # (far from the optimum), halve it until it does.
        for _ in range(60):
            new = _objective(s + step, a, b, y, l2)
            if new >= value or np.max(np.abs(step), initial=0.0) < TOLERANCE:
                break
            step = step / 2
        s, value = s + step, new
        if np.max(np.abs(step), initial=0.0) < TOLERANCE:
            break
    return s - s.mean() if n else s


def _objective(s: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray, l2: float) -> float:
    d = s[a] - s[b]
    return float(-np.sum(y * np.logaddexp(0.0, -d) + (1 - y) * np.logaddexp(0.0, d)) - l2 / 2 * s @ s)


def _newton_step(a: np.ndarray, b: np.ndarray, w: np.ndarray, grad: np.ndarray, n: int, l2: float) -> np.ndarray:
    """Solve (B' W B + l2 I) step = grad, B the pairs' +1/-1 incidence matrix and W the
    pairs' curvatures: the Newton step of the objective."""
    if n <= DENSE_MAX:
        h = np.zeros((n, n))
        np.add.at(h, (a, a), w)
        np.add.at(h, (b, b), w)
        np.add.at(h, (a, b), -w)
        np.add.at(h, (b, a), -w)
        h[np.diag_indices(n)] += l2
        return np.linalg.solve(h, grad)
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import cg

    rows = np.concatenate([a, b, a, b, np.arange(n)])
    cols = np.concatenate([a, b, b, a, np.arange(n)])
    vals = np.concatenate([w, w, -w, -w, np.full(n, l2)])
    h = coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    step, _ = cg(h, grad, rtol=1e-14, atol=0.0, maxiter=10 * n)
    return step


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def group_items(pairs: pa.Table, l2: float) -> pa.Table:
    """OUT/items/ rows of one group from its pairs (columns a, b, group, y: NaN = not ok)."""
    if pairs.num_rows == 0:
        return items_schema().empty_table()
    a_ids = pc.cast(pairs["a"], pa.string()).to_numpy(zero_copy_only=False)
    b_ids = pc.cast(pairs["b"], pa.string()).to_numpy(zero_copy_only=False)
    y = pairs["y"].to_numpy(zero_copy_only=False).astype(np.float64)
    ids, codes = np.unique(np.concatenate([a_ids, b_ids]), return_inverse=True)  # sorted: row order free
    a, b = codes[: len(y)], codes[len(y):]
    ok = np.isfinite(y)
    n_pairs = np.bincount(a[ok], minlength=len(ids)) + np.bincount(b[ok], minlength=len(ids))
    fitted = np.flatnonzero(n_pairs > 0)
    index = np.full(len(ids), -1)
    index[fitted] = np.arange(len(fitted))
    s = fit_strengths(index[a[ok]], index[b[ok]], y[ok], len(fitted), l2)
    strength = np.full(len(ids), np.nan)
    strength[fitted] = s
    order = np.lexsort((ids[fitted], -np.round(s, RANK_DECIMALS)))  # ids sorted: ties go to the smaller id
    rank = np.zeros(len(ids), dtype=np.int64)
    rank[fitted[order]] = np.arange(1, len(fitted) + 1)
    has = n_pairs > 0
    group = pairs["group"][0].as_py()  # null: the pairs given without a group, fitted as one pool
    return pa.table({
        "id": pa.array(ids, pa.string()), "group": pa.array([group] * len(ids), pa.string()),
        "log_strength": pa.array(strength, pa.float64(), mask=~has),
        "rank": pa.array(rank, pa.int32(), mask=~has), "n_pairs": pa.array(n_pairs, pa.int32()),
    }, schema=items_schema())


def _outcome_rows(batch: pa.Table, weights: list[float]) -> pa.Table:
    """(a, b, group, y) of each pair; y NaN unless the pair is ok."""
    y = soft_outcomes(batch["p_a"], weights)
    ok = np.asarray(pc.fill_null(pc.equal(batch["status"], OK), False), dtype=bool)
    return pa.table({"a": batch["a"], "b": batch["b"], "group": pc.cast(batch["group"], pa.string()),
                      "y": pa.array(np.where(ok, y, np.nan))})


def write_items(pairs: str | list[str], out_items_dir: str, l2: float, filesystem: pafs.FileSystem | None,
                weights: list[float], num_partitions: int | None = None) -> None:
    """Read judged pairs (a Parquet directory, or its committed files), fit every group in
    the cluster and write OUT/items/ Parquet; nothing but the plan passes the driver."""
    if not l2 > 0:
        raise ValueError(f"the prior's precision l2 must be > 0, got {l2}")
    ds = read_parquet(pairs, filesystem, ["a", "b", "group", "status", "p_a"])
    items = (ds.map_batches(functools.partial(_outcome_rows, weights=list(weights)), batch_format="pyarrow")
             .groupby("group", num_partitions=num_partitions)
             .map_groups(functools.partial(group_items, l2=l2), batch_format="pyarrow"))
    items.write_parquet(out_items_dir, filesystem=filesystem, schema=items_schema())
