"""Missing values as None in numpy batches.

Ray Data gives a numpy-format stage a column that is null in every row of a block (Arrow type
`null`, e.g. `error` when no row of the block failed) as a float32 array of NaN. A stage that
passes it on unchanged emits a float column, and one that fills in some strings emits NaN
mixed with str, which Ray stores as pickled Python objects: blocks of one column then have
incompatible types and the job fails when Ray concatenates them. Stages call `nulls_as_none`
on their input so a missing value is always None.
"""
from __future__ import annotations

import numpy as np


def _is_nan(value) -> bool:
    return isinstance(value, (float, np.floating)) and value != value


def nulls_as_none(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`batch` with all-NaN float32 columns (Ray's null columns) and NaN items of object
    columns turned into None. Float64 columns (fps) are real numbers and stay as they are."""
    out = dict(batch)
    for name, values in batch.items():
        if values.dtype == np.float32 and values.size and np.isnan(values).all():
            out[name] = np.full(len(values), None, dtype=object)
        elif values.dtype == object and any(_is_nan(v) for v in values):
            out[name] = np.array([None if _is_nan(v) else v for v in values], dtype=object)
    return out
