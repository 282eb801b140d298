"""The decode stage of `vrscore judge`: a unit of pairs in, its items decoded once, one row out.

A unit is the pairs of one group (a large group is cut into several units, pipeline/judge_plan.py):
its pairs arrive together (Ray Data `groupby("unit").map_groups`), every item they name is checked
and decoded once by the score job's decode stage (actors/media_decoder.py), and the unit leaves as
one row holding its pairs and its decoded items side by side (list columns), so the judge stage
(actors/pair_judge.py) finds both items of every pair in the same row. An item in many pairs of a
unit is decoded once; an item in pairs of several units once per unit (`decodes` counts them).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from actors.media_decoder import MediaDecoder
from schemas import status as st
from schemas.manifest import check_row

# the plan's columns: a pair and, for each of its items, what the decode stage reads
PAIR_COLUMNS = ("id", "a", "b", "group", "prompt")
ITEM_SIDES = ("a", "b")

UNIT_SCHEMA = pa.schema([
    pa.field("unit", pa.int64()),
    *[pa.field(f"pair_{c}", pa.list_(pa.string())) for c in PAIR_COLUMNS],
    pa.field("item_id", pa.list_(pa.string())),
    pa.field("item_media_type", pa.list_(pa.string())),
    pa.field("item_status", pa.list_(pa.string())),
    pa.field("item_error", pa.list_(pa.string())),
    pa.field("item_frames", pa.list_(pa.large_binary())),
    pa.field("item_shape", pa.list_(pa.list_(pa.int32()))),
    pa.field("item_fps", pa.list_(pa.float64())),
    pa.field("item_duration", pa.list_(pa.float64())),
])


def unit_items(pairs: pa.Table) -> dict[str, list]:
    """The distinct items of a unit's pairs (first appearance order, a before b): id, uri, media_type."""
    seen: dict[str, tuple] = {}
    columns = {side: [pairs[f"{side}{c}"].to_pylist() for c in ("", "_uri", "_media_type")] for side in ITEM_SIDES}
    for row in range(pairs.num_rows):
        for side in ITEM_SIDES:
            ids, uris, kinds = columns[side]
            seen.setdefault(ids[row], (uris[row], kinds[row]))
    return {"id": list(seen), "uri": [u for u, _ in seen.values()], "media_type": [k for _, k in seen.values()]}


def _nan_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


class UnitDecoder:
    """Ray Data stage (`map_groups` on the plan's `unit`, pyarrow batches): `decode` is
    `DecodeConfig.model_dump()`; `storage_options` and `threads` as MediaDecoder takes them."""

    def __init__(self, decode: dict, storage_options: dict | None = None, threads: int = 0):
        self.decoder = MediaDecoder(decode, storage_options, threads)

    def __call__(self, pairs: pa.Table) -> pa.Table:
        items = unit_items(pairs)
        n = len(items["id"])
        checked = [check_row(u, k, None, {"image": False, "video": False})
                   for u, k in zip(items["uri"], items["media_type"])]
        batch = {
            "id": np.array(items["id"], dtype=object), "uri": np.array(items["uri"], dtype=object),
            "media_type": np.array([c[0] for c in checked], dtype=object),
            "status": np.array([c[1] for c in checked], dtype=object),
            "error": np.array([c[2] for c in checked], dtype=object),
        }
        out = self.decoder(batch) if n else {**batch, "frames": [], "frames_shape": [], "fps": [], "video_duration": []}
        row = {"unit": [int(pairs["unit"][0].as_py())]}
        row.update({f"pair_{c}": [pairs[c].cast(pa.string()).to_pylist()] for c in PAIR_COLUMNS})
        ok = [s == st.OK for s in out["status"]]
        row.update(
            item_id=[items["id"]], item_media_type=[list(out["media_type"])], item_status=[list(out["status"])],
            item_error=[list(out["error"])],
            item_frames=[[bytes(f) if good else b"" for f, good in zip(out["frames"], ok)]],
            item_shape=[[[int(s) for s in shape] for shape in out["frames_shape"]]],
            item_fps=[[_nan_none(x) for x in out["fps"]]], item_duration=[[_nan_none(x) for x in out["video_duration"]]],
        )
        return pa.table(row, schema=UNIT_SCHEMA)

    def close(self) -> None:
        self.decoder.close()
