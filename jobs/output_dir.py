"""The output directory of a score job, and when a rerun may continue it.

A rerun with the same inputs, checklists, model and decode settings resumes: Ray Data's
checkpoint (ids of rows already written, kept in `_checkpoint/`) skips finished rows.
Anything that changes the scores refuses to mix into existing output; resources (actors,
batch sizes) may change between runs, since they change speed, not results.
"""
from __future__ import annotations

import json

import fsspec

from pipeline.storage import join

SCORES_DIR, CHECKLIST_FILE, JOB_FILE, CHECKPOINT_DIR = "scores", "checklist.json", "job.json", "_checkpoint"
# JobConfig fields that change what a row's scores are.
RESULT_FIELDS = ("manifest", "model", "decode", "keep_columns", "alignment_column", "storage")
# Keys inside those fields that change speed only; also absent from job.json of older versions.
SPEED_ONLY_KEYS = frozenset({"decode.worker_nice"})


class OutputMismatchError(ValueError):
    """The output directory holds rows of a different job."""


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def result_differences(old_job: dict, new_job: dict, old_checklists: dict, new_checklists: dict) -> list[str]:
    """Human-readable differences that would change scores; empty = safe to resume."""
    old = _flatten({k: old_job.get(k) for k in RESULT_FIELDS})
    new = _flatten({k: new_job.get(k) for k in RESULT_FIELDS})
    keys = sorted((set(old) | set(new)) - SPEED_ONLY_KEYS)
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    if old_checklists != new_checklists:
        changed = sorted(k for k in set(old_checklists) | set(new_checklists)
                         if old_checklists.get(k) != new_checklists.get(k))
        diffs.append(f"checklist for {', '.join(changed)} changed")
    return diffs


def check_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str) -> bool:
    """Check `out` without writing. Returns True when it holds earlier output of the same job."""
    job_path, checklist_path = join(out, JOB_FILE), join(out, CHECKLIST_FILE)
    if fs.exists(job_path):
        diffs = result_differences(
            json.loads(fs.cat_file(job_path)), json.loads(job_json),
            json.loads(fs.cat_file(checklist_path)) if fs.exists(checklist_path) else {}, json.loads(checklists_json),
        )
        if diffs:
            raise OutputMismatchError(
                f"{out} holds scores of a different job ({'; '.join(diffs)}). "
                "Use a new --out, or delete the old output to start over."
            )
        return True
    scores = join(out, SCORES_DIR)
    if fs.exists(scores) and fs.ls(scores):
        raise OutputMismatchError(f"{scores} holds files but {job_path} is missing: not a vrscore output to resume")
    return False


def create_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str) -> None:
    """Start a new output directory: the job and its checklists first, then the data."""
    job_path, checklist_path = join(out, JOB_FILE), join(out, CHECKLIST_FILE)
    fs.makedirs(out, exist_ok=True)
    fs.pipe_file(checklist_path, checklists_json.encode())
    fs.pipe_file(job_path, job_json.encode())
