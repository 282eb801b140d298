"""`vrscore score`: config -> build -> run -> summary."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from ray.data import DataContext
from ray.data.checkpoint import CheckpointConfig

from actors.model_store import pin_model
from jobs.output_dir import (CHECKLIST_FILE, CHECKPOINT_DIR, JOB_FILE, SCORES_DIR, check_output, job_record,
                             normalised_config, open_output)
from pipeline.answer_mass import low_mass_warning, mass_by_question, mass_lines
from pipeline.model_family import resolve_decode, resolve_readout_config
from pipeline.output_stats import OutputScanner
from pipeline.parquet_reader import read_parquet, row_count
from pipeline.progress import JobProgress
from pipeline.ray_runtime import init_ray
from pipeline.run_stats import format_entry, record_run
from pipeline.scores_input import committed_files
from pipeline.score_pipeline import build_score_dataset, inspect_manifest, read_manifest
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from pipeline.webdataset_shards import webdataset_shards
from schemas.checklist import Checklist
from schemas.checklist_set import all_dimensions, checklists_to_json, resolve_checklists
from schemas.job_config import GENERATED_IDS, JobConfig
from schemas.manifest import STRING_READ_TYPE, ManifestError
from schemas.scores import dimension_columns, is_z_column, scores_schema

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    rows: int
    ok: int
    errors_by_status: dict[str, int]
    # media type -> column (score, dim_*) -> mean over its ok rows: image and video scores
    # live on different scales, so they are never averaged together.
    means: dict[str, dict[str, float | None]]
    seconds: float
    out: str
    files: list[str] = field(default_factory=list)
    run: dict | None = None  # this run's stats.json entry (pipeline/run_stats.py)
    # media type -> question id -> mean answer_mass over its ok rows (pipeline/answer_mass.py)
    answer_mass: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_status.values())

    def format(self) -> str:
        lines = [
            f"rows {self.rows}   ok {self.ok}   errors {self.errors}   ({self.seconds:.1f}s)",
            f"rows in = ok + errors: {self.rows} = {self.ok} + {self.errors}",
        ]
        for kind, n in sorted(self.errors_by_status.items()):
            lines.append(f"  {kind:<18} {n}")
        kinds = sorted(self.means)
        if kinds:
            lines.append(f"{'mean':<24}" + "".join(f"{k:>10}" for k in kinds))
            columns = dict.fromkeys(c for k in kinds for c in self.means[k])
            for col in columns:
                values = [self.means[k].get(col) for k in kinds]
                if any(v is not None for v in values):
                    lines.append(f"{col:<24}" + "".join(f"{_fmt(v):>10}" for v in values))
        lines += mass_lines(self.answer_mass)
        warning = low_mass_warning(self.answer_mass)
        if warning:
            lines.append(warning)
        if self.run is not None:
            lines.append(format_entry(self.run))
        lines.append(f"scores: {join(self.out, SCORES_DIR)}/  ({len(self.files)} files)")
        lines.append(f"checklist: {join(self.out, CHECKLIST_FILE)}   job: {join(self.out, JOB_FILE)}")
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


# Up to this many manifest rows the ids are counted on the driver: one column read with
# pyarrow (about 100 MB for 2M ids) in well under a second, where a distributed groupby
# costs seconds of shuffle tasks even for ten rows. Larger manifests never reach the driver.
DRIVER_ID_CHECK_MAX_ROWS = 2_000_000


def _id_problems(counts: pa.Table) -> pa.Table:
    """Rows of an (id, count()) table that are null ids or duplicates."""
    bad = pc.or_(pc.is_null(counts["id"]), pc.greater(counts["count()"], 1))
    return counts.filter(bad)


def _cluster_cpus() -> int:
    return max(1, min(200, int(ray.cluster_resources().get("CPU", 1))))


def _id_problems_on_driver(manifest: pq.ParquetDataset) -> tuple[int, list[dict]]:
    ids = manifest.read()
    ids = ids.rename_columns(["id"])
    counts = ids.group_by("id").aggregate([([], "count_all")]).rename_columns(["id", "count()"])
    problems = _id_problems(counts)
    first = pc.sort_indices(problems, sort_keys=[("id", "ascending", "at_start")])[:11]
    return problems.num_rows, problems.take(first).to_pylist()


def _id_problems_distributed(cfg: JobConfig) -> tuple[int, list[dict]]:
    problems = (
        # A shuffle partition per CPU: Ray's default of 200 costs tens of seconds on small jobs.
        _read_ids(cfg).groupby("id", num_partitions=_cluster_cpus()).count()
        .map_batches(_id_problems, batch_format="pyarrow").materialize()
    )
    n = problems.count()
    if n == 0:
        return 0, []
    nulls = problems.map_batches(_null_id_rows, batch_format="pyarrow").take(1)
    return n, nulls + problems.take(11)


def _read_ids(cfg: JobConfig):
    """The manifest's ids alone, in a column 'id' (never the media of a manifest that holds it)."""
    if cfg.id_column in (None, "id"):
        return read_manifest(cfg, ["id"])
    fs, path = arrow_filesystem(cfg.manifest, cfg.storage)
    schema = pa.schema([pa.field(cfg.id_column, STRING_READ_TYPE)])
    return read_parquet(path, fs, [cfg.id_column], schema=schema).rename_columns({cfg.id_column: "id"})


def _null_id_rows(counts: pa.Table) -> pa.Table:
    return counts.filter(pc.is_null(counts["id"]))


def check_unique_ids(cfg: JobConfig, driver_max_rows: int = DRIVER_ID_CHECK_MAX_ROWS) -> None:
    """Refuse null or duplicate ids before any work. Small manifests are checked on the
    driver; larger ones by a distributed groupby, so their ids never reach the driver. Ids
    made from file and row number (`GENERATED_IDS`) are unique by construction."""
    if cfg.id_column == GENERATED_IDS or webdataset_shards(cfg.manifest, cfg.storage) is not None:
        return  # unique by construction; a WebDataset's keys are not checked up front (it would read every shard)
    column = cfg.id_column or "id"
    fs, path = arrow_filesystem(cfg.manifest, cfg.storage)
    # ids as the job reads them (integers as their decimal string): 7 and "7" are one id
    manifest = pq.ParquetDataset(path, filesystem=fs, schema=pa.schema([pa.field(column, STRING_READ_TYPE)]))
    on_driver = row_count(manifest) <= driver_max_rows
    n_problems, rows = _id_problems_on_driver(manifest) if on_driver else _id_problems_distributed(cfg)
    if n_problems == 0:
        return
    nulls = [r for r in rows if r["id"] is None]
    if nulls:
        raise ManifestError(f"{nulls[0]['count()']} manifest rows have a null id; ids must be unique strings")
    shown = ", ".join(f"{r['id']!r} x{r['count()']}" for r in rows[:10])
    raise ManifestError(f"{n_problems} ids appear more than once in the manifest (ids must be unique): {shown}")


def output_scanner(cfg: JobConfig, dim_cols: list[str]) -> OutputScanner:
    return OutputScanner(join(cfg.out, SCORES_DIR), cfg.storage, ["score", *dim_cols])


def summarize(cfg: JobConfig, dim_cols: list[str], seconds: float, checklists: dict[str, Checklist],
              scanner: OutputScanner | None = None) -> JobSummary:
    """Streamed file by file (the driver never holds a whole column); `scanner` may already
    hold the files it read while the job ran. `checklists` by media type."""
    scanner = scanner or output_scanner(cfg, dim_cols)
    stats = scanner.refresh(strict=True)
    mass = {kind: mass_by_question(checklists[kind].question_ids, means)
            for kind, means in sorted(stats.mass_means().items())}
    return JobSummary(rows=stats.rows, ok=stats.ok, errors_by_status=stats.errors_by_status, means=stats.means(),
                      seconds=seconds, out=cfg.out, files=sorted(scanner.seen), answer_mass=mass)


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


# Output columns added after the first version, in the order they came.
LATER_COLUMNS = ("answer_mass", "frame_count", "frame_times")


def _manifest_rows(cfg: JobConfig) -> int:
    if webdataset_shards(cfg.manifest, cfg.storage) is not None:
        return 0  # unknown until the shards are read: the job line shows no total
    fs, path = arrow_filesystem(cfg.manifest, cfg.storage)
    return row_count(pq.ParquetDataset(path, filesystem=fs))


def run_score_job(cfg: JobConfig, *, ray_address: str | None = None, quiet: bool = False,
                  progress_interval: float = 10.0, verbose: bool | None = None) -> JobSummary:
    t0 = time.perf_counter()
    cfg = normalised_config(cfg)  # a relative and an absolute path to one manifest are one job
    checklists = resolve_checklists(cfg.checklist, cfg.weights, cfg.dimensions)
    info = inspect_manifest(cfg, checklists)
    # where the ids come from ('<file>#<row>' when no column holds them), recorded in job.json
    cfg = cfg.model_copy(update={"id_column": info.id_column})
    # the model's resize rule and factor, recorded in job.json; an unsupported model stops here, in one line
    cfg = cfg.model_copy(update={"decode": resolve_decode(cfg.model, cfg.decode, cfg.storage)})
    # the chat template's options and the answer prefix every actor renders with, recorded in job.json
    given, cfg = cfg.model, cfg.model_copy(update={"model": resolve_readout_config(cfg.model, cfg.storage)})
    if (cfg.model.chat_template_kwargs, cfg.model.answer_prefix) != (given.chat_template_kwargs, given.answer_prefix):
        log.info("the answer is read after the prompt rendered with chat_template_kwargs=%s and answer_prefix=%r "
                 "(the checkpoint's defaults; set model.* to change them)",
                 cfg.model.chat_template_kwargs, cfg.model.answer_prefix)
    # job.json records the fingerprints of the model's files and chat template: a resume refuses changed ones
    cfg = cfg.model_copy(update={"model": pin_model(cfg.model, cfg.storage)})
    dims = all_dimensions(checklists)
    checklists_json = checklists_to_json(checklists)
    job_json = job_record(cfg)  # the config plus the manifest's fingerprint
    schema = scores_schema(dims, info.keep_fields, checklists_json=checklists_json,
                           model_id=cfg.model.model, job_json=job_json,
                           level_probs=any(c.has_ratings for c in checklists.values()),
                           p_cal=any(c.has_calibration for c in checklists.values()),
                           normalized=any(c.aggregation.normalization for c in checklists.values()))
    out_fs = fsspec_filesystem(cfg.out, cfg.storage)
    resumed = check_output(out_fs, cfg.out, job_json, checklists_json)  # refuse a mismatch before any work
    init_ray(ray_address, quiet=quiet, verbose=verbose)
    check_unique_ids(cfg)
    lease, resumed = open_output(out_fs, cfg.out, job_json, checklists_json)  # one run at a time
    schema = as_written(out_fs, cfg.out, schema) if resumed else schema
    log.info("%s %s with %s", "resuming" if resumed else "scoring", cfg.manifest, cfg.model.model)

    fs, path = arrow_filesystem(join(cfg.out, SCORES_DIR), cfg.storage)
    ckpt_fs, ckpt_path = arrow_filesystem(join(cfg.out, CHECKPOINT_DIR), cfg.storage)
    ctx = DataContext.get_current()
    # Ray Data's checkpoint: a two-phase commit per output file (pending ids, data file,
    # commit), so a job killed at any moment resumes without losing or duplicating rows.
    # Kept after success, so rerunning a finished job writes nothing. Set before the dataset
    # is built: a Dataset captures the DataContext when it is created.
    ctx.checkpoint_config = CheckpointConfig(
        id_column="id", checkpoint_path=ckpt_path if ckpt_fs is not None else os.path.abspath(ckpt_path),
        delete_checkpoint_on_success=False, override_filesystem=ckpt_fs,
    )
    # Rows reach the scorer in manifest order, however many decoders finish out of order: a
    # row's forward batch (and so its p_yes, to float rounding) does not depend on the timing.
    ordered, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    dim_cols = list(dimension_columns(dims).values()) + [f.name for f in schema if is_z_column(f.name)]
    scanner = output_scanner(cfg, dim_cols)
    try:
        ds = build_score_dataset(cfg, checklists, info, schema, checklists_json, resuming=resumed)
        run_start = time.time()
        with JobProgress(scanner, _manifest_rows(cfg), progress_interval, enabled=not quiet):
            ds.write_parquet(path, filesystem=fs, schema=schema)
        run = record_run(ds, out_fs, cfg.out, run_start)  # stats.json is written under the lease too
    finally:
        ctx.checkpoint_config = None
        ctx.execution_options.preserve_order = ordered
        lease.release()
    summary = summarize(cfg, dim_cols, time.perf_counter() - t0, checklists, scanner)
    summary.run = run
    return summary


__all__ = ["JobSummary", "run_score_job"]
