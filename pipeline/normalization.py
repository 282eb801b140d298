"""z-scores from a reference output: `rescore --normalize-from REF_OUT`.

A model's raw scores live on its own scale (another model, or another checklist, gives other
means and spreads). Each checklist's `score` and `dim_*` columns are measured over the reference
output's ok rows, rescored with the checklist the output gets, and stored in
`aggregation.normalization`; every output row then gets z = (value - mean) / std.

The moments are computed in the cluster: Ray Data's grouped Count/Mean/Std (Std merges per-block
[M2, mean, count] accumulators, Chan's parallel rule, stabler than a sum of squares), one group per
checklist, so the driver receives a few numbers per column, never the reference rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.checklist import Checklist, Moments, Normalization
from schemas.scores import dimension_columns, z_column
from schemas.status import OK
from schemas.user_error import UserError

if TYPE_CHECKING:
    from ray.data import Dataset

# A spread this small against the values' size is rounding, not a spread: z would be noise.
_ZERO_STD = 1e-9


def z_scores(checklist: Checklist, score: np.ndarray, dims: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """z column -> values for rows scored on a normalised `checklist` (empty when it is not)."""
    norm = checklist.aggregation.normalization
    if norm is None:
        return {}
    cols = dimension_columns(checklist.dimensions)
    out = {z_column("score"): (np.asarray(score, np.float64) - norm.score.mean) / norm.score.std}
    for dim, values in dims.items():
        m = norm.dims[dim]
        out[z_column(cols[dim])] = (np.asarray(values, np.float64) - m.mean) / m.std
    return out


def _ok_rows(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.fill_null(pc.and_(pc.equal(batch["status"], OK), pc.is_valid(batch["score"])), False))


def reference_moments(rescored: Dataset, checklists: dict[str, Checklist], reference: str) -> dict[str, Normalization]:
    """Per media kind, the moments of `score` and each dimension over `rescored`'s ok rows (a
    dataset already rescored with `checklists`, by media kind). Refuses a kind with fewer than two
    ok rows and a column that does not vary."""
    from ray.data.aggregate import Count, Mean, Std

    columns = list(dict.fromkeys(["score", *(col for c in checklists.values()
                                             for col in dimension_columns(c.dimensions).values())]))
    aggs = [Count()]
    for col in columns:
        aggs += [Count(col, ignore_nulls=True, alias_name=f"n:{col}"), Mean(col, alias_name=f"mean:{col}"),
                 Std(col, ddof=0, alias_name=f"std:{col}")]
    groups = (rescored.map_batches(_ok_rows, batch_format="pyarrow")
              .select_columns(["media_type", *columns])
              .groupby("media_type").aggregate(*aggs).take_all())
    by_kind = {g["media_type"]: g for g in groups}
    out = {}
    for kind, checklist in checklists.items():
        g = by_kind.get(kind)
        n = int(g["count()"]) if g else 0
        if n < 2:
            raise UserError(f"--normalize-from {reference}: {n} ok {kind} row(s) scored there; a mean and a "
                             f"standard deviation for {checklist.name!r} need at least two")
        cols = dimension_columns(checklist.dimensions)
        wanted = [("score", "score"), *((d, cols[d]) for d in checklist.dimensions)]
        moments, score = {}, None
        for name, col in wanted:
            mean, std, count = g[f"mean:{col}"], g[f"std:{col}"], g[f"n:{col}"]
            if count != n or std is None or not np.isfinite(std) or std <= _ZERO_STD * max(1.0, abs(mean)):
                what = f"dimension {name!r} ({col})" if col != "score" else "score"
                raise UserError(f"--normalize-from {reference}: the {kind} rows' {what} has standard deviation "
                                 f"{std!r} over {count} of {n} ok rows: every reference item scores the same, so "
                                 "no z-score can be taken; use a reference set whose items differ")
            if col == "score":
                score = Moments(mean=float(mean), std=float(std))
            else:
                moments[name] = Moments(mean=float(mean), std=float(std))
        out[kind] = Normalization(score=score, dims=moments, reference=reference, rows=n)
    return out
