"""The job line: rows done of total, rows/s, errors so far by status, and the time left.

Counted from what the job has written: a background thread on the driver folds each new
output file into an `OutputScanner` every `interval` seconds (one file holds
`rows_per_file` rows, so the count moves a file at a time). Nothing is added to the
pipeline's own stages, so watching costs the job nothing; the same totals then make the
summary. In a terminal the line is written between Ray Data's progress bars (tqdm.write);
elsewhere it is printed as a plain line, so logs of a batch system stay readable.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from pipeline.output_stats import OutputScanner, OutputStats

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_job_line(stats: OutputStats, total: int, new_rows: int, seconds: float) -> str:
    """`new_rows` were written in `seconds` by this run (a resumed job starts from earlier rows);
    `total` 0 = not known."""
    done = stats.rows
    pct = f" ({100 * done / total:.1f}%)" if total else ""
    rate = new_rows / seconds if seconds > 0 else 0.0
    errors = stats.errors_by_status
    n_err = sum(errors.values())
    err = f"errors {n_err:,}" + (" (" + ", ".join(f"{k} {n:,}" for k, n in sorted(errors.items())) + ")" if n_err else "")
    if not total:  # unknown (WebDataset shards): rows so far, no total and no ETA
        return f"[vrscore] rows {done:,}   {rate:,.1f} rows/s   {err}"
    left = max(0, total - done)
    eta = "ETA -" if rate <= 0 else f"ETA {format_duration(left / rate)}"
    return f"[vrscore] rows {done:,}/{total:,}{pct}   {rate:,.1f} rows/s   {err}   {eta}"


def _default_writer() -> Callable[[str], None]:
    if sys.stdout.isatty():
        from tqdm import tqdm  # Ray Data's bars are tqdm bars: write between them, not over them

        return tqdm.write
    return lambda line: print(line, flush=True)


class JobProgress:
    """Context manager around the job's write: the job line every `interval` seconds, and
    once more at the end. `enabled=False` prints nothing (the scanner still works)."""

    def __init__(self, scanner: OutputScanner, total: int, interval: float, enabled: bool = True,
                 write: Callable[[str], None] | None = None):
        self.scanner, self.total, self.interval, self.enabled = scanner, total, interval, enabled
        self.write = write or _default_writer()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_rows, self._t0 = 0, time.monotonic()

    def __enter__(self) -> "JobProgress":
        self._start_rows = self.scanner.refresh().rows  # rows of an earlier run being resumed
        self._t0 = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="vrscore-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.enabled and exc_type is None:
            self.report()

    def report(self) -> None:
        stats = self.scanner.refresh()
        self.write(format_job_line(stats, self.total, stats.rows - self._start_rows, time.monotonic() - self._t0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as exc:  # noqa: BLE001 - a failed look at the output must not stop the job
                log.debug("progress: %s", exc)
