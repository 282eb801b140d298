"""The output directory of a score job, and when a rerun may continue it.

A rerun with the same inputs, checklists, model and decode settings resumes: Ray Data's
checkpoint (ids of rows already written, kept in `_checkpoint/`) skips finished rows.
Anything that changes the scores refuses to mix into existing output; resources (actors,
batch sizes) may change between runs, since they change speed, not results. The same job
written another way (a relative local path for an absolute one) is the same job: local
paths are stored and compared absolute. A manifest edited in place is a different job: its
fingerprint (file sizes and ETags, or mtimes where the store has no ETag) is in `job.json`.
An output that holds no committed row (its run failed before finishing a file) holds nothing
to mix with: a changed job takes it over and rewrites `job.json` and `checklist.json`.
One run at a time writes into an output (`jobs/output_lease.py`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath

import fsspec
import pyarrow.parquet as pq

from jobs.output_lease import OutputLease, check_free
from pipeline.run_stats import STATS_FILE
from pipeline.scores_input import PENDING_SUFFIX
from pipeline.storage import arrow_filesystem, fsspec_filesystem, join, protocol_of
from schemas.job_config import JobConfig
from schemas.user_error import UserError

SCORES_DIR, CHECKLIST_FILE, JOB_FILE, CHECKPOINT_DIR = "scores", "checklist.json", "job.json", "_checkpoint"
FINGERPRINT_KEY = "manifest_fingerprint"
# JobConfig fields that change what a row's scores are.
RESULT_FIELDS = ("manifest", "model", "decode", "keep_columns", "alignment_column", "storage")
# Keys inside those fields that change speed or start-up checks only, never a row's scores; also
# absent from job.json of older versions.
SPEED_ONLY_KEYS = frozenset({"decode.worker_nice", "model.systemic_failure_batches", "model.cache_dir",
                             "model.min_answer_mass"})
# Keys absent from job.json of older versions, with the value those versions used: they applied
# the Qwen2-VL rule to every model (a job.json of theirs resumes where the model's rule is that one).
LEGACY_VALUES = {"decode.resize_rule": "smart_resize"}

log = logging.getLogger(__name__)


class OutputMismatchError(UserError):
    """The output directory holds rows of a different job, or cannot be resumed safely."""


def normalise_local_path(uri: str, *, must_exist: bool = False) -> str:
    """A local path (or file:// URI) made absolute; remote URIs unchanged. With `must_exist`,
    only a path that exists is changed (a model may be a hub id that looks like a path)."""
    if protocol_of(uri) != "file":
        return uri
    path = uri.removeprefix("file://")
    if must_exist and not os.path.exists(path):
        return uri
    return os.path.abspath(os.path.expanduser(path))


def normalised_config(cfg: JobConfig) -> JobConfig:
    """The job with its local manifest, output and model paths absolute, as stored in job.json."""
    model = cfg.model.model_copy(update={"model": normalise_local_path(cfg.model.model, must_exist=True)})
    return cfg.model_copy(update={"manifest": normalise_local_path(cfg.manifest),
                                  "out": normalise_local_path(cfg.out), "model": model})


def _version_of(info: dict) -> str:
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    return "unknown"


def manifest_fingerprint(cfg: JobConfig) -> dict:
    """Files, bytes and a digest of (name, size, ETag or mtime) of the manifest's data files:
    the files Parquet reads, listed once (no data is read)."""
    fs = fsspec_filesystem(cfg.manifest, cfg.storage)
    arrow_fs, path = arrow_filesystem(cfg.manifest, cfg.storage)
    root = fs._strip_protocol(cfg.manifest)
    lines, total = [], 0
    for file in sorted(pq.ParquetDataset(path, filesystem=arrow_fs).files):
        info = fs.info(file)
        total += int(info.get("size") or 0)
        lines.append(f"{os.path.relpath(file, root) if file != root else ''}\t{info.get('size')}\t{_version_of(info)}")
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"files": len(lines), "bytes": total, "digest": digest}


def job_record(cfg: JobConfig) -> str:
    """What job.json (and the scores' metadata) hold: the normalised config plus the manifest
    fingerprint."""
    record = json.loads(cfg.model_dump_json())
    record[FINGERPRINT_KEY] = manifest_fingerprint(cfg)
    return json.dumps(record, indent=2)


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def _comparable(job: dict) -> dict:
    fields = {k: job.get(k) for k in RESULT_FIELDS}
    if isinstance(fields["manifest"], str):
        fields["manifest"] = normalise_local_path(fields["manifest"])
    if isinstance(fields["model"], dict) and isinstance(fields["model"].get("model"), str):
        fields["model"] = {**fields["model"], "model": normalise_local_path(fields["model"]["model"], must_exist=True)}
    return {**LEGACY_VALUES, **_flatten(fields)}


def result_differences(old_job: dict, new_job: dict, old_checklists: dict, new_checklists: dict) -> list[str]:
    """Human-readable differences that would change scores; empty = safe to resume."""
    old, new = _comparable(old_job), _comparable(new_job)
    keys = sorted((set(old) | set(new)) - SPEED_ONLY_KEYS)
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    old_fp, new_fp = old_job.get(FINGERPRINT_KEY), new_job.get(FINGERPRINT_KEY)
    # job.json of versions before the fingerprint has none: nothing to compare it with.
    if old_fp is not None and new_fp is not None and old_fp != new_fp:
        diffs.append(f"the manifest files changed since the first run ({old_fp['files']} files, "
                     f"{old_fp['bytes']} bytes -> {new_fp['files']} files, {new_fp['bytes']} bytes, or the "
                     "same sizes with other ETags/mtimes): the same path now holds other rows")
    if old_checklists != new_checklists:
        changed = sorted(k for k in set(old_checklists) | set(new_checklists)
                         if old_checklists.get(k) != new_checklists.get(k))
        diffs.append(f"checklist for {', '.join(changed)} changed")
    return diffs


def _has_files(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.exists(path) and bool(fs.find(path))


def may_hold_rows(fs: fsspec.AbstractFileSystem, out: str) -> bool:
    """Whether `out` may hold committed rows: a checkpoint file other than a pending one (its ids
    would also be skipped by the next run), or data files that no checkpoint accounts for."""
    checkpoint = join(out, CHECKPOINT_DIR)
    if _has_files(fs, checkpoint):
        return any(not posixpath.basename(p).endswith(PENDING_SUFFIX) for p in fs.find(checkpoint))
    return _has_files(fs, join(out, SCORES_DIR))


def check_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str,
                 lease_owner: str | None = None) -> bool:
    """Check `out` without writing (refused while another live run holds its lease). Returns
    True when it holds earlier output of the same job; False when it is new, or holds another
    job's start without a committed row (then `create_output` takes it over)."""
    check_free(fs, out, lease_owner)
    job_path, checklist_path = join(out, JOB_FILE), join(out, CHECKLIST_FILE)
    scores = join(out, SCORES_DIR)
    if fs.exists(job_path):
        diffs = result_differences(
            json.loads(fs.cat_file(job_path)), json.loads(job_json),
            json.loads(fs.cat_file(checklist_path)) if fs.exists(checklist_path) else {}, json.loads(checklists_json),
        )
        if diffs and may_hold_rows(fs, out):
            raise OutputMismatchError(
                f"{out} holds scores of a different job ({'; '.join(diffs)}). "
                "Use a new --out, or delete the old output to start over."
            )
        if diffs:
            log.info("%s holds no committed row of its earlier job (%s): starting it over", out, "; ".join(diffs))
            return False
        if _has_files(fs, scores) and not _has_files(fs, join(out, CHECKPOINT_DIR)):
            raise OutputMismatchError(
                f"{scores} holds files but {join(out, CHECKPOINT_DIR)}/ (which rows they hold) is missing: a "
                "rerun would score every row again and duplicate them. Restore the checkpoint folder, or use a "
                "new --out."
            )
        return True
    if _has_files(fs, scores):
        raise OutputMismatchError(f"{scores} holds files but {job_path} is missing: not a vrscore output to resume")
    return False


def create_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str) -> None:
    """Start a new output directory, or take over one without committed rows: the job and its
    checklists first, then the data."""
    job_path, checklist_path = join(out, JOB_FILE), join(out, CHECKLIST_FILE)
    fs.makedirs(out, exist_ok=True)
    stats = join(out, STATS_FILE)
    if fs.exists(stats):  # runs of the job taken over, which wrote no row
        fs.rm(stats)
    fs.pipe_file(checklist_path, checklists_json.encode())
    fs.pipe_file(job_path, job_json.encode())


def open_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str) -> tuple[OutputLease, bool]:
    """Take the output's lease, check it again under the lease (another run may have started
    it since the first check) and create it when new. Returns (lease, resumed); the caller
    releases the lease when the job ends."""
    lease = OutputLease.acquire(fs, out)
    try:
        resumed = check_output(fs, out, job_json, checklists_json, lease.owner)
        if not resumed:
            create_output(fs, out, job_json, checklists_json)
    except BaseException:
        lease.release()
        raise
    return lease, resumed
