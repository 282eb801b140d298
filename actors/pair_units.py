"""The decode stage of `vrscore judge`: a unit of pairs in, its items decoded once, one row out.

A unit is the pairs of one group (a large group is cut into several units, pipeline/judge_plan.py):
its pairs arrive together (Ray Data `groupby("unit").map_groups`), every item they name is checked
and decoded once by the score job's decode stage (actors/media_decoder.py), and the unit leaves as
one row holding its pairs and its decoded items side by side (list columns), so the judge stage
(actors/pair_judge.py) finds both items of every pair in the same row. An item in many pairs of a
unit is decoded once; an item in pairs of several units once per unit (`decodes` counts them).

Where the manifest holds the media (Parquet bytes, WebDataset shards), the stage is given the
manifest's read-back (`media`, pipeline/media_readback.py builds it): the unit's items are read by
id from the places the plan recorded (the row groups or shards they are in, nothing else) and
their bytes go to the decode stage in its `media_bytes` column, no further. An item that is not
found, or whose bytes cannot be read or decoded, is an error item: its pairs become error rows.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa

from actors.media_decoder import MediaDecoder
from schemas import status as st
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN
from schemas.manifest import check_embedded_row, check_row

# the plan's columns: a pair and, for each of its items, what the decode stage reads
PAIR_COLUMNS = ("id", "a", "b", "group", "prompt")
ITEM_SIDES = ("a", "b")
# per side, what an item is read from: its uri and media_type, and where the manifest keeps its bytes
ITEM_COLUMNS = ("", "_uri", "_media_type", "_file", "_row_group")
NO_CHECKS = {"image": False, "video": False}  # a pair's prompt is the judge's to check, not the decoder's

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


class ItemMedia(Protocol):
    """Reads items' media back from the manifest that holds it (pipeline/media_readback.py)."""

    def read(self, wanted: dict[str, tuple[str, int | None] | None]) -> dict[str, dict]:
        """id -> {uri, media_type, media_bytes, read_error} for each wanted id, from its (file,
        row group) or (shard, None); None where its place is not known."""
        ...


def unit_items(pairs: pa.Table) -> dict[str, list]:
    """The distinct items of a unit's pairs (first appearance order, a before b): id, uri,
    media_type and where the bytes are (file, row_group; null for a plan that predates them)."""
    seen: dict[str, tuple] = {}
    names = set(pairs.column_names)
    columns = {side: [pairs[f"{side}{c}"].to_pylist() if f"{side}{c}" in names else [None] * pairs.num_rows
                      for c in ITEM_COLUMNS] for side in ITEM_SIDES}
    for row in range(pairs.num_rows):
        for side in ITEM_SIDES:
            key, *rest = (col[row] for col in columns[side])
            seen.setdefault(key, tuple(rest))
    values = list(seen.values())
    return {"id": list(seen), **{name: [v[k] for v in values]
                                 for k, name in enumerate(("uri", "media_type", "file", "row_group"))}}


def _nan_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


class UnitDecoder:
    """Ray Data stage (`map_groups` on the plan's `unit`, pyarrow batches): `decode` is
    `DecodeConfig.model_dump()`; `storage_options` and `threads` as MediaDecoder takes them;
    `media`: the manifest's read-back where it holds the media (None: the items' uris are read)."""

    def __init__(self, decode: dict, storage_options: dict | None = None, threads: int = 0,
                 media: ItemMedia | None = None):
        self.decoder = MediaDecoder(decode, storage_options, threads)
        self.media = media

    def _batch(self, items: dict[str, list]) -> dict[str, np.ndarray]:
        """The decode stage's input rows of the unit's items: status, error and, from a manifest
        that holds the media, the bytes."""
        if self.media is None:
            checked = [check_row(u, k, None, NO_CHECKS) for u, k in zip(items["uri"], items["media_type"])]
            uris = items["uri"]
        else:
            places = [None if f is None else (f, g) for f, g in zip(items["file"], items["row_group"])]
            found = self.media.read(dict(zip(items["id"], places)))
            rows = [found[key] for key in items["id"]]
            checked = [(r["media_type"], st.READ_ERROR, r[READ_ERROR_COLUMN]) if r[READ_ERROR_COLUMN] is not None
                       else check_embedded_row(None if r[BYTES_COLUMN] is None else len(r[BYTES_COLUMN]),
                                               kind or r["media_type"], None, NO_CHECKS)
                       for r, kind in zip(rows, items["media_type"])]
            uris = [r["uri"] for r in rows]
        batch = {
            "id": np.array(items["id"], dtype=object), "uri": np.array(uris, dtype=object),
            "media_type": np.array([c[0] for c in checked], dtype=object),
            "status": np.array([c[1] for c in checked], dtype=object),
            "error": np.array([c[2] for c in checked], dtype=object),
        }
        if self.media is not None:
            batch[BYTES_COLUMN] = np.array([r[BYTES_COLUMN] for r in rows], dtype=object)
        return batch

    def __call__(self, pairs: pa.Table) -> pa.Table:
        items = unit_items(pairs)
        n = len(items["id"])
        batch = self._batch(items)
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
