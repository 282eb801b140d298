"""The decode stage: media URIs -> uint8 RGB frames at the size of the model's resize rule
(`DecodeConfig.resize_rule` and `resize_factor`, resolved on the driver from the model's family:
the model's input size, or the source capped for families that resize themselves).

A callable class for `map_batches` (numpy batch format). Each row's bytes are read in
this process (actors/media_fetch.py; the next rows' reads overlap this row's decode) and
decoded in the stage's child process by actors/frame_decode.py (what happens to images
and videos). Why a child process (actors/decode_worker.py): decord/FFmpeg can hang or
segfault on corrupt input; a hung child is killed at `timeout_s` (status 'timeout') and a
crashed one is an exit code (status 'decode_error'), where a thread could be neither
stopped nor survived. The child holds no credentials and speaks JSON + raw bytes only.
Cost: 0.5 s to start the child once per stage instance, then per row one socket round
trip and a copy of the file's bytes and of the frames (benchmarks/decode.py measures it).

Output columns, added to all input columns:
  frames        object array of bytes: the (T, H, W, 3) uint8 RGB frames, C order; b"" on failure
  frames_shape  object array of int32 arrays [T, H, W, 3]; an empty array on failure
  fps           float64: the rate of the sampled frames (T * avg_fps / frame count for
                'uniform', 1.0 for 'visionreward', the rate taken for 'fps:F'); NaN for images
                and failures
  video_duration float64: the video's length in seconds (frame count / avg_fps, as transformers'
                video readers give it to a processor); NaN for images, failures and videos
                without a frame rate
  frame_times   object array of float64 arrays: each video frame's time in seconds (its index /
                the average rate, as transformers' readers give a processor); an empty array for
                images and failures
A batch with a `media_bytes` column (a manifest that holds the media, schemas/embedded_media.py)
is decoded from those bytes, with no read; the column is dropped from the output, so the bytes
go no further than this stage.
Rows whose status is not "ok" on input pass through untouched; a row that fails here gets
its status kind and an error message, and the batch goes on.
"""
from __future__ import annotations

import fsspec
import numpy as np

from actors.decode_worker import DecodeWorker
from actors.media_io import MediaError
from pipeline.null_columns import nulls_as_none
from schemas import status as st
from schemas.embedded_media import BYTES_COLUMN
from schemas.job_config import DecodeConfig


def _check_storage_options(storage_options: dict | None) -> dict[str, dict]:
    """Options are keyed by protocol: one job may read s3:// and https:// rows, and S3
    kwargs (client_kwargs=endpoint_url...) would break the HTTP filesystem."""
    options = dict(storage_options or {})
    known = set(fsspec.available_protocols())
    for protocol, kwargs in options.items():
        if protocol not in known or not isinstance(kwargs, dict):
            raise ValueError(
                "storage_options must map a protocol to its fsspec kwargs, e.g. "
                f"{{'s3': {{'client_kwargs': {{'endpoint_url': ...}}}}}}; got key {protocol!r}"
            )
    return options


class MediaDecoder:
    """Decode stage. `decode` is `DecodeConfig.model_dump()`; `storage_options` maps an
    fsspec protocol ('s3', 'gs', ...) to the kwargs of its filesystem; `threads` is FFmpeg's
    decoding threads per video (0 = one per core; the pipeline sets it from the node's
    spare cores, pipeline/decode_pool.py)."""

    # Reads started ahead of the row being decoded: enough to hide a read's latency behind
    # a decode, few enough that a batch's bytes are not all held at once.
    read_ahead = 2

    def __init__(self, decode: dict, storage_options: dict | None = None, threads: int = 0):
        self._cfg = DecodeConfig.model_validate(decode)
        self._worker = DecodeWorker(self._cfg.model_dump(), _check_storage_options(storage_options), threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = nulls_as_none(batch)
        n = len(batch["uri"])
        status = np.array(batch["status"], dtype=object)  # object: a fixed-width str array would truncate
        error = np.array(batch["error"], dtype=object)
        frames = np.empty(n, dtype=object)
        shapes = np.empty(n, dtype=object)
        fps = np.full(n, np.nan, dtype=np.float64)
        duration = np.full(n, np.nan, dtype=np.float64)
        times = np.empty(n, dtype=object)
        todo = [i for i in range(n) if status[i] == st.OK]
        embedded = batch.get(BYTES_COLUMN)
        batch = {k: v for k, v in batch.items() if k != BYTES_COLUMN}  # the bytes go no further

        def read(i: int):
            if embedded is not None:
                return _InBatch(embedded[i], self._cfg.max_bytes)
            return self._worker.read(str(batch["uri"][i]))

        reads = {i: read(i) for i in todo[: self.read_ahead]}
        for i in range(n):
            frames[i], shapes[i], times[i] = b"", np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float64)
        for k, i in enumerate(todo):
            if k + self.read_ahead < len(todo):
                j = todo[k + self.read_ahead]
                reads[j] = read(j)
            try:
                data, read_s = reads.pop(i).result(self._cfg.timeout_s)
                out = self._worker.decode_bytes(data, str(batch["media_type"][i]),
                                                max(0.001, self._cfg.timeout_s - read_s))
            except MediaError as exc:
                status[i], error[i] = exc.status, exc.message
                continue
            frames[i], shapes[i], fps[i], duration[i] = out.data, np.array(out.shape, dtype=np.int32), out.fps, out.duration
            times[i] = np.array(out.times, dtype=np.float64)  # float32 only in the output: prompts use them
        return {**batch, "status": status, "error": error, "frames": frames, "frames_shape": shapes, "fps": fps,
                "video_duration": duration, "frame_times": times}

    def close(self) -> None:
        """Stop the worker process now rather than when the stage is garbage-collected."""
        self._worker.close()


class _InBatch:
    """An item's bytes that came in the batch: a read that has already happened (`PendingRead`'s
    interface), held to the same `max_bytes` limit as a file."""

    def __init__(self, data: bytes | None, max_bytes: int):
        self._data, self._max_bytes = data, max_bytes

    def result(self, timeout_s: float) -> tuple[bytes, float]:
        if not self._data:
            raise MediaError(st.EMPTY_FILE, "the media bytes are empty")
        if len(self._data) > self._max_bytes:
            raise MediaError(st.TOO_LARGE, f"the media bytes are {len(self._data)} bytes, over the limit of "
                             f"{self._max_bytes} (max_bytes)")
        return bytes(self._data), 0.0
