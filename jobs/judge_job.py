"""`vrscore judge`: config -> plan -> run -> items -> summary.

The output directory, its lease, job.json, checklist.json and Ray Data's checkpoint are the score
job's (pipeline/output_dir.py), with the rows in OUT/pairs/; the judge's own options (pairs file and its
fingerprint, schedule, seed, Bradley-Terry prior) are recorded under job.json's "judge" key and a
resume must match them. The plan (OUT/plan/) is written once by the first run and read by every run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import DataContext
from ray.data.checkpoint import CheckpointConfig

from actors.file_fingerprint import file_version, summary
from actors.model_store import pin_model
from pipeline.answer_mass import JUDGE_CAUSES, JUDGE_HEADING, low_mass_warning, mass_by_question, mass_lines
from pipeline.bradley_terry import write_items
from pipeline.judge_items import manifest_items
from pipeline.judge_pipeline import build_judge_dataset
from pipeline.judge_plan import build_plan, decode_counts, given_pairs, shuffle_partitions, unit_partitions
from pipeline.media_readback import job_source
from pipeline.model_family import resolve_decode, resolve_readout_config
from pipeline.output_dir import (CHECKPOINT_DIR, JOB_FILE, OutputMismatchError, check_output, job_record,
                                 may_hold_rows, normalise_local_path, normalised_config, open_output)
from pipeline.pair_schedule import pairs_from_groups
from pipeline.ray_runtime import init_ray
from pipeline.run_stats import STATS_FILE, record_run
from pipeline.score_pipeline import inspect_manifest
from pipeline.scores_input import committed_files
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join
from schemas.checklist import Checklist, load_checklist_file
from schemas.checklist_set import checklists_to_json
from schemas.job_config import JobConfig
from schemas.model_placement import resolve_placement
from schemas.judge_output import ITEMS_DIR, MASS_FIELDS, PAIRS_DIR, pairs_schema
from schemas.status import OK
from schemas.user_error import UserError

log = logging.getLogger(__name__)
PLAN_DIR, PLAN_FILE = "plan", "plan.parquet"


@dataclass(frozen=True)
class JudgeOptions:
    pairs: str | None = None  # a Parquet of pairs; None: pairs from the manifest's groups by `schedule`
    schedule: str = "all"
    seed: int = 0
    bt_l2: float = 0.01


@dataclass
class JudgeSummary:
    pairs: int
    ok: int
    errors_by_status: dict[str, int]
    decodes: dict[str, float]
    mean_position_bias: float | None
    consistent_fraction: float | None
    out: str
    seconds: float
    files: list[str] = field(default_factory=list)
    # "order ab" / "order ba" -> question id -> mean answer mass over the ok pairs (pipeline/answer_mass.py)
    answer_mass: dict[str, dict[str, float]] = field(default_factory=dict)

    def format(self) -> str:
        bias = "-" if self.mean_position_bias is None else f"{self.mean_position_bias:+.4f}"
        cons = "-" if self.consistent_fraction is None else f"{self.consistent_fraction:.1%}"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_status.items())) or "none"
        lines = [f"judged {self.pairs} pairs ({self.ok} ok; errors: {errors}) in {self.seconds:.1f}s -> {self.out}",
                 f"position bias (mean) {bias}; both orders agree on {cons} of the questions",
                 f"decodes per item: {self.decodes.get('per_item', 0):.2f} ({self.decodes.get('decodes', 0)} decodes "
                 f"of {self.decodes.get('items', 0)} items)"]
        lines += mass_lines(self.answer_mass, heading=JUDGE_HEADING)
        warning = low_mass_warning(self.answer_mass, answer="with a position", read="p_first", causes=JUDGE_CAUSES)
        return "\n".join(lines + ([warning] if warning else []))


def load_pairwise_checklist(paths: list[str]) -> Checklist:
    if len(paths) != 1:
        raise UserError(f"vrscore judge takes one pairwise checklist (--checklist), got {len(paths)}")
    checklist = load_checklist_file(paths[0])
    if checklist.mode != "pairwise":
        raise UserError(f"{paths[0]}: checklist {checklist.name!r} is not pairwise (mode: {checklist.mode}); "
                        "vrscore judge needs mode: pairwise with first_words and second_words")
    return checklist


def _judge_record(cfg: JobConfig, opts: JudgeOptions) -> dict:
    record = {"pairs": None, "schedule": opts.schedule, "seed": opts.seed, "bt_l2": opts.bt_l2}
    if opts.pairs is not None:
        fs = fsspec_filesystem(opts.pairs, cfg.storage)
        files = sorted(fs.find(opts.pairs)) if fs.isdir(opts.pairs) else [opts.pairs]
        record.update(pairs=normalise_local_path(opts.pairs), schedule=None, seed=None,
                      pairs_fingerprint=summary([file_version(f, fs.info(f)) for f in files]))
    return record


def _check_judge_options(fs, out: str, record: dict) -> None:
    path = join(out, JOB_FILE)
    if not fs.exists(path):
        return
    old = json.loads(fs.cat_file(path)).get("judge")
    if old != record and may_hold_rows(fs, out, PAIRS_DIR):
        raise OutputMismatchError(f"{out} holds pairs judged with other pairs or options ({old} -> {record}). "
                                  "Use a new --out, or delete the old output to start over.")


def _plan(cfg: JobConfig, opts: JudgeOptions, info) -> pa.Table:
    """The pairs joined with the manifest's items (id, uri, media_type, prompt, group and where each
    item's bytes are: pipeline/judge_items.py)."""
    items = manifest_items(cfg, info.manifest, info.id_column)
    if opts.pairs is not None:
        pfs, ppath = arrow_filesystem(opts.pairs, cfg.storage)
        pairs = given_pairs(pq.ParquetDataset(ppath, filesystem=pfs).read(), opts.pairs)
        # a pair without its own prompt or group takes a's from the manifest
        where = {key: k for k, key in enumerate(items["id"].to_pylist())}
        for col in ("prompt", "group"):
            own, of_a = pairs[col].to_pylist(), items[col].to_pylist()
            filled = [x if x is not None else of_a[where[a]] if a in where else None
                      for x, a in zip(own, pairs["a"].to_pylist())]
            pairs = pairs.set_column(pairs.schema.get_field_index(col), col, pa.array(filled, pa.string()))
    else:
        if info.manifest.kind != "webdataset" and "group" not in info.manifest.schema.names:
            raise UserError("pairs from a schedule need a 'group' column in the manifest (or give --pairs)")
        ds = pairs_from_groups(ray.data.from_arrow(items.select(["id", "group", "prompt"])), opts.schedule, opts.seed,
                               num_partitions=shuffle_partitions(items.num_rows))
        tables = [t for t in ds.iter_batches(batch_format="pyarrow") if t.num_rows]
        if not tables:
            raise UserError("no pairs to judge: the manifest's 'group' column has no group of 2 or more items")
        pairs = pa.concat_tables(tables)
        pairs = pairs.sort_by([("group", "ascending"), ("a", "ascending"), ("b", "ascending")])
    if pairs.num_rows == 0:
        raise UserError("no pairs to judge: give --pairs, or a manifest whose 'group' column has groups of 2+ items")
    return build_plan(pairs, items)


def run_judge_job(cfg: JobConfig, opts: JudgeOptions, *, ray_address: str | None = None, quiet: bool = False,
                  verbose: bool | None = None) -> JudgeSummary:
    t0 = time.perf_counter()
    cfg = normalised_config(cfg)
    checklist = load_pairwise_checklist(cfg.checklist)
    info = inspect_manifest(cfg, {})
    # where the ids come from ('<file>#<row>' when no column holds them), recorded in job.json
    cfg = cfg.model_copy(update={"id_column": info.id_column})
    cfg = cfg.model_copy(update={"decode": resolve_decode(cfg.model, cfg.decode, cfg.storage)})
    cfg = cfg.model_copy(update={"model": pin_model(resolve_readout_config(cfg.model, cfg.storage), cfg.storage)})
    cfg = resolve_placement(cfg)  # device and dtype from the resources, recorded in job.json (as `vrscore score`)
    record = _judge_record(cfg, opts)
    job_json = json.dumps({**json.loads(job_record(cfg)), "judge": record}, indent=2)
    checklists_json = checklists_to_json({checklist.media_type: checklist})
    schema = pairs_schema(checklist.dimensions, ties=bool(checklist.tie_words), checklists_json=checklists_json,
                          model_id=cfg.model.model, job_json=job_json)
    out_fs = fsspec_filesystem(cfg.out, cfg.storage)
    _check_judge_options(out_fs, cfg.out, record)
    check_output(out_fs, cfg.out, job_json, checklists_json, data_dir=PAIRS_DIR)  # refuse before any work
    init_ray(ray_address, quiet=quiet, verbose=verbose)
    lease, resumed = open_output(out_fs, cfg.out, job_json, checklists_json, data_dir=PAIRS_DIR)
    ctx = DataContext.get_current()
    try:
        plan_dir = join(cfg.out, PLAN_DIR)
        plan_fs, plan_path = arrow_filesystem(join(plan_dir, PLAN_FILE), cfg.storage)
        if resumed and out_fs.exists(join(plan_dir, PLAN_FILE)):
            plan = pq.read_table(plan_path, filesystem=plan_fs)
        else:  # written once: every run of this output judges the pairs the first one planned
            plan = _plan(cfg, opts, info)
            out_fs.makedirs(plan_dir, exist_ok=True)
            pq.write_table(plan, plan_path, filesystem=plan_fs)
        pairs_dir = join(cfg.out, PAIRS_DIR)
        fs, path = arrow_filesystem(pairs_dir, cfg.storage)
        done = _committed_ids(out_fs, pairs_dir)
        pending = plan.filter(pc.invert(pc.is_in(plan["id"], pa.array(sorted(done), pa.string())))) if done else plan
        counts = decode_counts(pending)
        decodes = {"decodes": sum(counts.values()), "items": len(counts),
                   "per_item": sum(counts.values()) / len(counts) if counts else 0.0,
                   "max_per_item": max(counts.values(), default=0)}
        log.info("%s %d of %d pairs with %s", "resuming" if resumed else "judging", pending.num_rows, plan.num_rows,
                 cfg.model.model)
        ckpt_fs, ckpt_path = arrow_filesystem(join(cfg.out, CHECKPOINT_DIR), cfg.storage)
        ctx.checkpoint_config = CheckpointConfig(
            id_column="id", checkpoint_path=ckpt_path if ckpt_fs is not None else os.path.abspath(ckpt_path),
            delete_checkpoint_on_success=False, override_filesystem=ckpt_fs)
        if pending.num_rows:
            ds = build_judge_dataset(cfg, checklist, join(plan_dir, PLAN_FILE), schema, resuming=resumed,
                                     unit_partitions=unit_partitions(pending),
                                     media=job_source(cfg, info.manifest, info.id_column))
            run_start = time.time()
            ds.write_parquet(path, filesystem=fs, schema=schema)
            recorded = record_run(ds, out_fs, cfg.out, run_start) is not None
        else:
            recorded = False
        ctx.checkpoint_config = None
        _record_decodes(out_fs, cfg.out, decodes, recorded)
        files = list(committed_files(out_fs, pairs_dir) or [])
        items_dir = join(cfg.out, ITEMS_DIR)
        if out_fs.exists(items_dir):  # refitted from all committed pairs on every run
            out_fs.rm(items_dir, recursive=True)
        items_fs, items_path = arrow_filesystem(items_dir, cfg.storage)
        write_items(files, items_path, opts.bt_l2, items_fs, [abs(q.weight) for q in checklist.questions],
                    num_partitions=shuffle_partitions(plan.num_rows))
    finally:
        ctx.checkpoint_config = None
        lease.release()
    return _summary(out_fs, files, decodes, cfg.out, time.perf_counter() - t0, checklist.question_ids)


def _committed_ids(fs, pairs_dir: str) -> set[str]:
    if not fs.isdir(pairs_dir):
        return set()
    ids: set[str] = set()
    for f in committed_files(fs, pairs_dir):
        with fs.open(f, "rb") as fh:
            ids.update(pq.read_table(fh, columns=["id"])["id"].to_pylist())
    return ids


def _record_decodes(fs, out: str, decodes: dict, recorded: bool) -> None:
    """Decodes of this run, in OUT/stats.json: in the run's entry (`recorded`: record_run wrote it
    last), else in an entry of its own."""
    path = join(out, STATS_FILE)
    stats = json.loads(fs.cat_file(path)) if fs.exists(path) else {"runs": []}
    if not (recorded and stats["runs"]):
        stats["runs"].append({})
    stats["runs"][-1]["decodes"] = decodes
    fs.pipe_file(path, json.dumps(stats, indent=2).encode())


def _summary(fs, files: list[str], decodes: dict, out: str, seconds: float, question_ids: list[str]) -> JudgeSummary:
    rows = ok = 0
    errors: dict[str, int] = {}
    bias_sum = bias_n = cons_sum = 0.0
    mass_sum = {name: np.zeros(len(question_ids)) for name in MASS_FIELDS}
    mass_rows = dict.fromkeys(MASS_FIELDS, 0)
    for f in files:
        with fs.open(f, "rb") as fh:
            pf = pq.ParquetFile(fh)
            mass_fields = [c for c in MASS_FIELDS if c in pf.schema_arrow.names]  # not in files of an earlier version
            t = pf.read(columns=["status", "position_bias", "consistent", *mass_fields])
        rows += t.num_rows
        for s in t["status"].to_pylist():
            ok += s == OK
            if s != OK:
                errors[s] = errors.get(s, 0) + 1
        flat_bias = pc.list_flatten(t["position_bias"]).to_numpy(zero_copy_only=False)
        flat_cons = pc.list_flatten(t["consistent"]).to_numpy(zero_copy_only=False)
        bias_sum, bias_n, cons_sum = bias_sum + float(flat_bias.sum()), bias_n + len(flat_bias), cons_sum + float(flat_cons.sum())
        for name in mass_fields:  # null on failed rows: ok rows only
            masses = pc.drop_null(t[name])
            values = pc.list_flatten(masses).to_numpy(zero_copy_only=False).astype(np.float64)
            mass_sum[name] += values.reshape(-1, len(question_ids)).sum(axis=0)
            mass_rows[name] += len(masses)
    mass = {f"order {name[-2:]}": mass_by_question(question_ids, mass_sum[name] / mass_rows[name])
            for name in MASS_FIELDS if mass_rows[name]}
    return JudgeSummary(rows, ok, errors, decodes, bias_sum / bias_n if bias_n else None,
                        cons_sum / bias_n if bias_n else None, out, seconds, files, mass)


__all__ = ["JudgeOptions", "JudgeSummary", "run_judge_job"]
