"""Running totals of a scores output, read file by file.

The job summary and the live job line both come from here. Each output file (one per
`rows_per_file` rows) is read once, a handful of columns, folded into counts and sums, and
dropped: the driver never holds more than a few files' columns, whatever the job's size.
Files that cannot be read yet (still being written) are picked up on a later refresh.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.storage import fsspec_filesystem
from schemas import status
from schemas.job_config import StorageConfig

READ_THREADS = 8  # files are small; reading a few at once hides S3 latency
MASS = "answer_mass"  # the per-question list column whose mean per question the summary shows


@dataclass
class OutputStats:
    """Counts by status, and per media type the sum and count of each score column over ok rows,
    and the per-question sum of answer_mass over the ok rows that have it (files of a version
    before the column have none)."""

    rows: int = 0
    statuses: Counter = field(default_factory=Counter)
    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    mass_sums: dict[str, np.ndarray] = field(default_factory=dict)  # media type -> (questions,) float64
    mass_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get(status.OK, 0)

    @property
    def errors_by_status(self) -> dict[str, int]:
        return {k: n for k, n in self.statuses.items() if k != status.OK}

    def add_table(self, table: pa.Table, columns: list[str]) -> None:
        self.rows += table.num_rows
        for r in pc.value_counts(table["status"]).to_pylist():
            self.statuses[r["values"]] += r["counts"]
        ok = table.filter(pc.equal(table["status"], status.OK))
        for kind in set(pc.unique(ok["media_type"]).to_pylist()) - {None}:
            rows = ok.filter(pc.equal(ok["media_type"], kind))
            sums, counts = self.sums.setdefault(kind, {}), self.counts.setdefault(kind, {})
            for c in columns:
                total = pc.sum(rows[c]).as_py()
                sums[c] = sums.get(c, 0.0) + (total or 0.0)
                counts[c] = counts.get(c, 0) + pc.count(rows[c]).as_py()
            if MASS in rows.column_names:
                self._add_mass(kind, pc.drop_null(rows[MASS]).combine_chunks())

    def _add_mass(self, kind: str, lists: pa.Array) -> None:
        if not len(lists):
            return
        # one checklist per media type: every row of a kind has its question count
        values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(lists), -1)
        self.mass_sums[kind] = self.mass_sums.get(kind, 0.0) + values.sum(axis=0)
        self.mass_counts[kind] = self.mass_counts.get(kind, 0) + len(lists)

    def merge(self, other: "OutputStats") -> None:
        self.rows += other.rows
        self.statuses.update(other.statuses)
        for kind, sums in other.sums.items():
            mine_s, mine_c = self.sums.setdefault(kind, {}), self.counts.setdefault(kind, {})
            for c, s in sums.items():
                mine_s[c] = mine_s.get(c, 0.0) + s
                mine_c[c] = mine_c.get(c, 0) + other.counts[kind][c]
        for kind, total in other.mass_sums.items():
            self.mass_sums[kind] = self.mass_sums.get(kind, 0.0) + total
            self.mass_counts[kind] = self.mass_counts.get(kind, 0) + other.mass_counts[kind]

    def means(self) -> dict[str, dict[str, float | None]]:
        """media type -> column -> mean over its ok rows (None when no row has a value)."""
        return {kind: {c: (s / self.counts[kind][c] if self.counts[kind][c] else None) for c, s in sums.items()}
                for kind, sums in self.sums.items()}

    def mass_means(self) -> dict[str, list[float]]:
        """media type -> mean answer mass of each question (checklist order) over its ok rows."""
        return {kind: (total / self.mass_counts[kind]).tolist() for kind, total in self.mass_sums.items()}


class OutputScanner:
    """Keeps `OutputStats` of a directory of Parquet files that grows while a job writes it."""

    def __init__(self, uri: str, storage: StorageConfig, columns: list[str]):
        self.fs = fsspec_filesystem(uri, storage)
        self.path = self.fs._strip_protocol(uri)
        self.columns = columns
        self.seen: set[str] = set()
        self.stats = OutputStats()

    def list_files(self) -> list[str]:
        self.fs.invalidate_cache(self.path)
        if not self.fs.exists(self.path):
            return []
        return sorted(f for f in self.fs.find(self.path) if f.endswith(".parquet"))

    def refresh(self, strict: bool = False) -> OutputStats:
        """Fold in the files written since the last call; returns the running totals.
        `strict`: every file must be readable now (the job has finished writing)."""
        files = self.list_files()
        if not self.seen <= set(files):  # a file went away (a retried write): count again from scratch
            self.seen, self.stats = set(), OutputStats()
        new = [f for f in files if f not in self.seen]
        with ThreadPoolExecutor(READ_THREADS) as pool:
            for path, stats in zip(new, pool.map(lambda p: self._read(p, strict), new)):
                if stats is not None:
                    self.stats.merge(stats)
                    self.seen.add(path)
        return self.stats

    def _read(self, path: str, strict: bool) -> OutputStats | None:
        try:
            with self.fs.open(path, "rb") as f:
                parquet = pq.ParquetFile(f)
                extra = [MASS] if MASS in parquet.schema_arrow.names else []  # older outputs have none
                table = parquet.read(columns=["status", "media_type", *self.columns, *extra])
        except (OSError, pa.ArrowInvalid):  # still being written
            if strict:
                raise
            return None
        stats = OutputStats()
        stats.add_table(table, self.columns)
        return stats
