"""The report's thumbnail stage: the decode stage's frames, one JPEG per row.

A callable class for Ray Data's actor pool (`pipeline/report_thumbnails.py` runs it): the
report's own refusals first (local files outside the media roots, internal addresses; or, for
media read back from the manifest that holds it, whatever kept it from being read), then
`MediaDecoder` with the report's limits (the scoring job's may narrow them), then a small JPEG
of the first frame.
"""
from __future__ import annotations

import numpy as np

from actors.media_decoder import MediaDecoder
from actors.report_media_policy import refusal
from pipeline.null_columns import nulls_as_none
from pipeline.report_html import data_uri, thumbnail_jpeg
from schemas import status as st
from schemas.embedded_media import BYTES_COLUMN, READ_ERROR_COLUMN


class ReportThumbnailer:
    """Batch columns in: id, uri, media_type, and for media read back from a manifest that holds
    it (pipeline/report_media_lookup.py) `media_bytes` and `read_error`, decoded from those bytes
    with no read. Out: id, src (a data URI, or why there is none). `no_uri` is why a row without
    a uri (and without bytes) has no preview."""

    def __init__(self, decode: dict, storage_options: dict[str, dict], media_roots: list[str],
                 no_uri: str = "the row has no uri"):
        self._roots, self._no_uri = list(media_roots), no_uri
        self._decoder = MediaDecoder(decode, storage_options)

    def _refusal(self, uri) -> str | None:
        return self._no_uri if uri is None else refusal(str(uri), self._roots)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = nulls_as_none(batch)
        n = len(batch["id"])
        embedded = batch.get(BYTES_COLUMN)
        if embedded is not None:  # the bytes came from the manifest: nothing is read, the decode limits hold
            reasons, kind = list(batch[READ_ERROR_COLUMN]), st.READ_ERROR
        else:
            reasons, kind = [self._refusal(u) for u in batch["uri"]], "refused"
        rows = {
            "id": batch["id"], "uri": batch["uri"], "media_type": batch["media_type"],
            "status": np.array([st.OK if r is None else kind for r in reasons], dtype=object),
            "error": np.array(reasons, dtype=object),
        }
        if embedded is not None:
            rows[BYTES_COLUMN] = embedded
        decoded = self._decoder(rows)
        src = np.empty(n, dtype=object)
        for i in range(n):
            if decoded["status"][i] == st.OK:
                shape = tuple(int(d) for d in decoded["frames_shape"][i])
                frames = np.frombuffer(decoded["frames"][i], dtype=np.uint8).reshape(shape)
                src[i] = data_uri(thumbnail_jpeg(frames[0]))
            else:
                src[i] = f"no preview ({decoded['status'][i]}): {decoded['error'][i]}"[:300]
        return {"id": batch["id"], "src": src}

    def close(self) -> None:
        self._decoder.close()
