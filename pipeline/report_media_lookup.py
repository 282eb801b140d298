"""The report's read-back stage: the media of the rows it shows, by id, from the manifest that
holds it (pipeline/report_source.py checked it first), by the read-back the judge shares
(pipeline/media_readback.py), so a row's bytes, media type and id are found exactly as the job
found them:
- Parquet: the rows' places are looked for (ids from file and row number point at their row
  group; an id column is read alone first to find them), then only those row groups are read;
- WebDataset: the shard a row names in its `uri` (`<shard>/<key>.<ext>`), streamed until its
  wanted keys are all found.
Runs as a Ray Data stage, so the bytes never reach the driver; the thumbnail stage decodes them
under the report's limits (actors/report_thumbnailer.py).
"""
from __future__ import annotations

import numpy as np

from pipeline.media_readback import MediaReadback, MediaSource
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN
from schemas.job_config import StorageConfig


class MediaLookup:
    """Batch columns in: id, uri, media_type (every shown row in one batch, so each row group or
    shard is read once). Out: the same, the media type as the source gives it, plus the bytes
    (`media_bytes`) and why there are none (`read_error`)."""

    def __init__(self, source: MediaSource, storage: dict):
        self._readback = MediaReadback(source, StorageConfig.model_validate(storage))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(i) for i in batch["id"]]
        if self._readback.source.kind == "parquet":
            wanted = dict.fromkeys(ids)  # looked for by the read-back
        else:
            wanted = self._readback.shard_locations(
                dict(zip(ids, (None if u is None else str(u) for u in batch["uri"]))))
        found = self._readback.read(wanted)
        rows = [found[i] for i in ids]
        return {**batch,
                "media_type": np.array([r["media_type"] or m for r, m in zip(rows, batch["media_type"])], dtype=object),
                BYTES_COLUMN: np.array([r[BYTES_COLUMN] for r in rows], dtype=object),
                READ_ERROR_COLUMN: np.array([r[READ_ERROR_COLUMN] for r in rows], dtype=object)}
