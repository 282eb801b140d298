"""The report's thumbnail stage: the decode stage's frames, one JPEG per row.

A callable class for Ray Data's actor pool (`pipeline/report_thumbnails.py` runs it): the
report's own refusals first (local files outside the media roots, internal addresses), then
`MediaDecoder` with the report's limits (the scoring job's may narrow them), then a small JPEG
of the first frame.
"""
from __future__ import annotations

import numpy as np

from actors.media_decoder import MediaDecoder
from actors.report_media_policy import refusal
from pipeline.report_html import data_uri, thumbnail_jpeg
from schemas import status as st


class ReportThumbnailer:
    """Batch columns in: id, uri, media_type. Out: id, src (a data URI, or why there is none)."""

    def __init__(self, decode: dict, storage_options: dict[str, dict], media_roots: list[str]):
        self._roots = list(media_roots)
        self._decoder = MediaDecoder(decode, storage_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        reasons = [refusal(str(u), self._roots) for u in batch["uri"]]
        rows = {
            "id": batch["id"], "uri": batch["uri"], "media_type": batch["media_type"],
            "status": np.array([st.OK if r is None else "refused" for r in reasons], dtype=object),
            "error": np.array(reasons, dtype=object),
        }
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
