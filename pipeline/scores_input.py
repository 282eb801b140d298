"""Open the output of `vrscore score` (or of `vrscore filter`) for the downstream jobs.

A scores location is either a job directory (DIR/scores/*.parquet beside checklist.json)
or the Parquet file/directory itself; local path or URI. Only the Parquet footer is read
here: the data stays in the cluster and is read by Ray Data workers.

Committed files only. `vrscore score` writes through Ray Data's two-phase commit: before a
data file `scores/<base>-<i>.parquet` is written, its ids go to
`_checkpoint/<base>.pending.parquet`, renamed to `_checkpoint/<base>.parquet` once the data
file is complete. A data file of a running job, or one left by a killed job (its pending
checkpoint is still there; the next run deletes both), is therefore not committed. Beside a
`_checkpoint/` folder, only data files whose name starts with a committed checkpoint's base
are read; outputs without one (`vrscore filter`) are read whole.
"""
from __future__ import annotations

import argparse
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fsspec
import pyarrow as pa
import pyarrow.fs  # noqa: F401 - pa.fs in annotations
import pyarrow.parquet as pq

from pipeline.parquet_reader import read_parquet, row_count
from pipeline.storage import add_storage_args as add_storage_arguments  # noqa: F401  (re-exported)
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from pipeline.storage import storage_from_args  # noqa: F401  (re-exported)
from schemas.checklist import DIMENSION_PREFIX, Checklist
from schemas.checklist_set import check_unique_names
from schemas.job_config import StorageConfig
from schemas.scores import META_MODEL, is_z_column, read_checklists_metadata
from schemas.user_error import UserError

if TYPE_CHECKING:
    from ray.data import Dataset

SCORES_DIR = "scores"
CHECKLIST_FILE = "checklist.json"
CHECKPOINT_DIR = "_checkpoint"
PENDING_SUFFIX = ".pending.parquet"  # Ray Data's PENDING_CHECKPOINT_SUFFIX + ".parquet"


class ParquetOutput:
    """What every reader of a vrscore output folder of Parquet shares (scores, judged pairs): its
    committed files, row count, read, dimension columns and model. Needs `data_uri`, `schema`,
    `storage` and `files` (None = every file under data_uri)."""

    def _source(self) -> tuple[pa.fs.FileSystem | None, str | list[str]]:
        fs, path = arrow_filesystem(self.data_uri, self.storage)
        return fs, list(self.files) if self.files is not None else path

    @property
    def dimension_columns(self) -> list[str]:
        return [n for n in self.schema.names if n.startswith(DIMENSION_PREFIX)]

    @property
    def model_id(self) -> str | None:
        raw = (self.schema.metadata or {}).get(META_MODEL)
        return raw.decode() if raw else None

    def count_rows(self) -> int:
        """Row count from the Parquet footers, without reading any data."""
        fs, source = self._source()
        return row_count(pq.ParquetDataset(source, filesystem=fs))

    def read(self, columns: list[str] | None = None) -> Dataset:
        fs, source = self._source()
        return read_parquet(source, fs, columns)


@dataclass(frozen=True)
class ScoresInput(ParquetOutput):
    data_uri: str  # the Parquet file or directory
    schema: pa.Schema  # with the vrscore metadata
    checklists: dict[str, Checklist]  # by media kind, as in the metadata
    storage: StorageConfig
    # The committed data files when the scores carry a checkpoint; None = every file under data_uri.
    files: tuple[str, ...] | None = None

    @property
    def checklists_by_name(self) -> dict[str, Checklist]:
        """Rows name their checklist (the `checklist` column), not their media kind."""
        self.refuse_shared_names()
        return {c.name: c for c in self.checklists.values()}

    def refuse_shared_names(self) -> None:
        """Two different checklists of one name (written before rescore checked): a row's
        name could be either, so no reader may look its checklist up by name."""
        try:
            check_unique_names(self.checklists)
        except UserError as exc:
            raise UserError(f"{self.data_uri}: {exc}. Rows name their checklist, so these scores cannot be read by "
                            "name: `vrscore rescore` them, giving one of the two a checklist of its own name") from None

    @property
    def z_columns(self) -> list[str]:
        """z_score and z_dim_* (`rescore --normalize-from`), where the scores have them."""
        return [n for n in self.schema.names if is_z_column(n)]


    def require_columns(self, columns: list[str], what: str) -> None:
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise UserError(f"{what}: the scores have no column {missing[0]!r} "
                             f"(columns: {', '.join(self.schema.names)})")


def committed_files(fs: fsspec.AbstractFileSystem, data_uri: str) -> tuple[str, ...] | None:
    """The committed data files under `data_uri` when a `_checkpoint/` lies beside it (see
    the module doc); None when there is no checkpoint (every file counts)."""
    checkpoint = join(data_uri.rstrip("/").rsplit("/", 1)[0], CHECKPOINT_DIR) if "/" in data_uri.rstrip("/") \
        else CHECKPOINT_DIR
    if not fs.isdir(checkpoint):
        return None
    names = [posixpath.basename(p) for p in fs.find(checkpoint)]
    bases = tuple(n[:-len(".parquet")] for n in names if n.endswith(".parquet") and not n.endswith(PENDING_SUFFIX))
    data = [p for p in fs.find(data_uri) if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_"))]
    return tuple(sorted(p for p in data if posixpath.basename(p).startswith(bases))) if bases else ()


def open_scores(uri: str, storage: StorageConfig, *, by_name: bool = True) -> ScoresInput:
    """The scores at `uri`; raises UserError when it is not a vrscore scores output, or (with
    `by_name`, every reader that finds a row's checklist by its name) when two different
    checklists share a name. `rescore` reads by media type and so can repair such scores."""
    fs = fsspec_filesystem(uri, storage)
    data_uri = join(uri, SCORES_DIR) if fs.isdir(join(uri, SCORES_DIR)) else uri
    if not fs.exists(data_uri):
        raise FileNotFoundError(f"no scores at {uri}")
    files = committed_files(fs, data_uri) if fs.isdir(data_uri) else None
    if files == ():
        raise UserError(f"{data_uri} holds no committed scores yet (the job is still running, or was stopped "
                        "before it finished a file)")
    arrow_fs, path = arrow_filesystem(data_uri, storage)
    try:
        schema = pq.ParquetDataset(list(files) if files is not None else path, filesystem=arrow_fs).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read scores Parquet at {data_uri}: {exc}") from exc
    scores = ScoresInput(data_uri, schema, read_checklists_metadata(schema), storage, files)
    if by_name:
        scores.refuse_shared_names()
    return scores


def refuse_existing_output(out: str, storage: StorageConfig, subdirs: list[str]) -> None:
    """Refuse to mix two runs' files in one output: Ray names its files uniquely, so a rerun
    into the same place would silently duplicate every row."""
    fs = fsspec_filesystem(out, storage)
    for sub in subdirs:
        target = join(out, sub)
        if fs.exists(target) and fs.ls(target):
            raise FileExistsError(f"{target} already holds output; choose another --out")
    fs.makedirs(out, exist_ok=True)


def write_empty_if_missing(uri: str, schema: pa.Schema, storage: StorageConfig) -> None:
    """Ray writes no file for an empty dataset; leave a readable empty Parquet with the
    schema instead, so an empty result still opens like any other."""
    fs = fsspec_filesystem(uri, storage)
    if fs.exists(uri) and fs.ls(uri):
        return
    fs.makedirs(uri, exist_ok=True)
    arrow_fs, path = arrow_filesystem(uri, storage)
    pq.write_table(schema.empty_table(), f"{path}/empty.parquet", filesystem=arrow_fs)


def write_text(uri: str, text: str, storage: StorageConfig) -> None:
    fsspec_filesystem(uri, storage).pipe_file(uri, text.encode())


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
