"""Reading media bytes in the stage's own process, ahead of the decoder, with a time limit.

Reads happen here rather than in the decode child so that the child needs no credentials
at all (it gets bytes, never a URI) and so that the next item's read overlaps this item's
decode. A read runs on a daemon thread: a read that hangs (a stalled server, a named pipe)
is abandoned at `timeout_s` and its row becomes 'timeout'. The thread cannot be stopped;
it holds a blocked socket or file until the backend gives up, costs no CPU, and being a
daemon it never delays the process's exit.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from actors.media_io import MediaError, read_media_bytes, redact_uri, uri_protocol
from schemas import status as st
from schemas.job_config import DecodeConfig


class PendingRead:
    """One read queued on the process's reader threads; `result` waits for it within the row's time limit."""

    def __init__(self, uri: str, cfg: DecodeConfig, storage_options: dict[str, dict]):
        self.uri = uri
        self._future: Future = Future()
        self._started = time.monotonic()
        self._seconds = 0.0
        _READERS.submit(self, cfg, storage_options)

    def run(self, cfg: DecodeConfig, storage_options: dict[str, dict]) -> None:
        self._started = time.monotonic()  # from when a reader took it up: queueing is not reading
        try:
            data = read_media_bytes(self.uri, allowed_schemes=cfg.allowed_schemes, max_bytes=cfg.max_bytes,
                                    storage_options=storage_options.get(uri_protocol(self.uri)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting row
            self._seconds = time.monotonic() - self._started
            self._future.set_exception(exc)
            return
        self._seconds = time.monotonic() - self._started
        self._future.set_result(data)

    def result(self, timeout_s: float) -> tuple[bytes, float]:
        """(bytes, seconds the read took). MediaError for read failures, or 'timeout' when the
        read has run `timeout_s` seconds in all (time spent while an earlier row decoded counts)."""
        left = timeout_s - (time.monotonic() - self._started)
        try:
            data = self._future.result(timeout=max(0.0, left))
        except FutureTimeout:
            _READERS.replace_stuck()
            raise MediaError(st.TIMEOUT, f"reading {redact_uri(self.uri)} took longer than {timeout_s:g} s "
                             "(timeout_s); abandoned") from None
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - read_media_bytes maps backend errors; this is a bug
            raise MediaError(st.READ_ERROR, f"unexpected {type(exc).__name__} while reading: {exc}"[:300]) from None
        return data, self._seconds


class _Readers:
    """Daemon reader threads, kept between reads (starting a thread per read cost about as
    much as the rest of a small image's round trip). A read given up on keeps its thread;
    `replace_stuck` starts another so that the pool keeps its size."""

    size = 4

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, read: PendingRead, cfg: DecodeConfig, storage_options: dict[str, dict]) -> None:
        with self._lock:
            if self._threads < self.size:
                self._start()
        self._queue.put((read, cfg, storage_options))

    def replace_stuck(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        self._threads += 1
        threading.Thread(target=self._serve, daemon=True, name="vrscore-media-read").start()

    def _serve(self) -> None:
        while True:
            read, cfg, storage_options = self._queue.get()
            read.run(cfg, storage_options)


_READERS = _Readers()
