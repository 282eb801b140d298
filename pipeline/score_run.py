"""One run of a score job into its output directory, on a connected Ray: the id check, the
output's lease, Ray Data's checkpoint, the write and the run's statistics.

The caller (jobs/score_job.py) resolves the job and checks the output without writing first;
here the manifest (opened once, pipeline/manifest_files.py) is checked for unique ids, the
output is taken under its lease (pipeline/output_lease.py) and created or resumed, and the
dataset is written under Ray Data's checkpoint: a two-phase commit per output file (pending
ids, data file, commit), so a job killed at any moment resumes without losing or duplicating
rows. The checkpoint is kept after success, so rerunning a finished job writes nothing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import DataContext
from ray.data.checkpoint import CheckpointConfig

from pipeline.id_check import check_unique_ids
from pipeline.output_dir import CHECKPOINT_DIR, SCORES_DIR, open_output
from pipeline.output_stats import OutputScanner
from pipeline.progress import JobProgress
from pipeline.run_stats import record_run
from pipeline.score_pipeline import ManifestInfo, build_score_dataset, cluster_shape
from pipeline.scores_input import committed_files
from pipeline.stage_clock import StageClock
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import Checklist
from schemas.job_config import JobConfig

log = logging.getLogger(__name__)

# Output columns added after the first version, in the order they came.
LATER_COLUMNS = ("answer_mass", "frame_count", "frame_times")


def as_written(fs, out: str, schema: pa.Schema) -> pa.Schema:
    """The schema a resumed output goes on with: one begun by a version before the answer mass
    (or the frame columns) continues without those columns, so that all files of one output
    share one schema."""
    files = committed_files(fs, join(out, SCORES_DIR)) if fs.isdir(join(out, SCORES_DIR)) else None
    if not files:
        return schema
    with fs.open(files[0], "rb") as f:
        names = pq.read_schema(f).names
    for column in LATER_COLUMNS:
        if column not in names and column in schema.names:
            log.warning("%s was begun by a vrscore version without the %s column: it goes on without it", out, column)
            schema = schema.remove(schema.get_field_index(column))
    return schema


@contextlib.contextmanager
def checkpointed(cfg: JobConfig) -> Iterator[None]:
    """Ray Data's checkpoint on the output's `_checkpoint/`, and rows in manifest order, for the
    datasets built inside (a Dataset captures the DataContext when it is created)."""
    ckpt_fs, ckpt_path = arrow_filesystem(join(cfg.out, CHECKPOINT_DIR), cfg.storage)
    ctx = DataContext.get_current()
    ctx.checkpoint_config = CheckpointConfig(
        id_column="id", checkpoint_path=ckpt_path if ckpt_fs is not None else os.path.abspath(ckpt_path),
        delete_checkpoint_on_success=False, override_filesystem=ckpt_fs,
    )
    # Rows reach the scorer in manifest order, however many decoders finish out of order: a
    # row's forward batch (and so its p_yes, to float rounding) does not depend on the timing.
    ordered, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        yield
    finally:
        ctx.checkpoint_config = None
        ctx.execution_options.preserve_order = ordered


def output_scanner(cfg: JobConfig, dim_cols: list[str]) -> OutputScanner:
    """Reads the output's committed files: the progress line while the job runs, the summary after."""
    return OutputScanner(join(cfg.out, SCORES_DIR), cfg.storage, ["score", *dim_cols])


def run_scoring(cfg: JobConfig, checklists: dict[str, Checklist], info: ManifestInfo, schema: pa.Schema,
                checklists_json: str, job_json: str, scanner: OutputScanner, *, progress_interval: float = 10.0,
                quiet: bool = False) -> dict | None:
    """Check the ids, take the output (created, or resumed when it holds this job's rows), write
    the job's rows into it and record the run in OUT/stats.json, all under the output's lease.
    Returns the run's stats.json entry (None when Ray Data kept no statistics)."""
    check_unique_ids(info.manifest, info.id_column)
    out_fs = fsspec_filesystem(cfg.out, cfg.storage)
    lease, resumed = open_output(out_fs, cfg.out, job_json, checklists_json)  # one run at a time
    try:
        schema = as_written(out_fs, cfg.out, schema) if resumed else schema
        log.info("%s %s with %s", "resuming" if resumed else "scoring", cfg.manifest, cfg.model.model)
        fs, path = arrow_filesystem(join(cfg.out, SCORES_DIR), cfg.storage)
        # the decode and score stages' own times, for stats.json where nodes' block stamps differ
        clock = StageClock.remote() if cluster_shape()[1] > 1 else None
        with checkpointed(cfg):
            ds = build_score_dataset(cfg, checklists, info, schema, checklists_json, resuming=resumed, clock=clock)
            run_start = time.time()
            with JobProgress(scanner, info.rows or 0, progress_interval, enabled=not quiet):
                ds.write_parquet(path, filesystem=fs, schema=schema)
            return record_run(ds, out_fs, cfg.out, run_start, clock)  # stats.json is written under the lease too
    finally:
        lease.release()


__all__ = ["LATER_COLUMNS", "as_written", "checkpointed", "output_scanner", "run_scoring"]
