"""`vrscore score`: config -> build -> run -> summary."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from actors.model_store import pin_model
from pipeline.answer_mass import low_mass_warning, mass_by_question, mass_lines
from pipeline.manifest_files import open_manifest
from pipeline.model_family import resolve_decode, resolve_readout_config
from pipeline.output_dir import CHECKLIST_FILE, JOB_FILE, SCORES_DIR, check_output, job_record, normalised_config
from pipeline.output_stats import OutputScanner
from pipeline.ray_runtime import init_ray
from pipeline.run_stats import format_entry
from pipeline.score_pipeline import inspect_manifest
from pipeline.score_run import output_scanner, run_scoring
from pipeline.storage import fsspec_filesystem, join
from schemas.checklist import Checklist
from schemas.checklist_set import all_dimensions, checklists_to_json, resolve_checklists
from schemas.job_config import JobConfig
from schemas.model_placement import resolve_placement
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


def run_score_job(cfg: JobConfig, *, ray_address: str | None = None, quiet: bool = False,
                  progress_interval: float = 10.0, verbose: bool | None = None) -> JobSummary:
    t0 = time.perf_counter()
    cfg = normalised_config(cfg)  # a relative and an absolute path to one manifest are one job
    checklists = resolve_checklists(cfg.checklist, cfg.weights, cfg.dimensions)
    manifest = open_manifest(cfg.manifest, cfg.storage, cfg.media_column)  # listed, footers read: once
    info = inspect_manifest(cfg, checklists, manifest)
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
    # where and in which precision the scorer runs, from its resources, recorded in job.json: every actor and
    # every resume uses these, not what its node happens to have
    cfg = resolve_placement(cfg)
    log.info("the scorer runs on %s in %s", cfg.model.device, cfg.model.dtype)
    # job.json records the fingerprints of the model's files and chat template: a resume refuses changed ones
    cfg = cfg.model_copy(update={"model": pin_model(cfg.model, cfg.storage)})
    dims = all_dimensions(checklists)
    checklists_json = checklists_to_json(checklists)
    job_json = job_record(cfg, manifest.fingerprint)  # the config plus the manifest's fingerprint
    schema = scores_schema(dims, info.keep_fields, checklists_json=checklists_json,
                           model_id=cfg.model.model, job_json=job_json,
                           level_probs=any(c.has_ratings for c in checklists.values()),
                           p_cal=any(c.has_calibration for c in checklists.values()),
                           normalized=any(c.aggregation.normalization for c in checklists.values()))
    # refuse a mismatch before any work (and before Ray starts); checked again under the lease
    check_output(fsspec_filesystem(cfg.out, cfg.storage), cfg.out, job_json, checklists_json)
    init_ray(ray_address, quiet=quiet, verbose=verbose)
    dim_cols = list(dimension_columns(dims).values()) + [f.name for f in schema if is_z_column(f.name)]
    scanner = output_scanner(cfg, dim_cols)
    run = run_scoring(cfg, checklists, info, schema, checklists_json, job_json, scanner,
                      progress_interval=progress_interval, quiet=quiet)
    summary = summarize(cfg, dim_cols, time.perf_counter() - t0, checklists, scanner)
    summary.run = run
    return summary


__all__ = ["JobSummary", "run_score_job", "summarize"]
