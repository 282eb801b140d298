"""The output directory of a score job, and when a rerun may continue it.

A rerun with the same inputs, checklists, model and decode settings resumes: Ray Data's
checkpoint (ids of rows already written, kept in `_checkpoint/`) skips finished rows.
Anything that changes the scores refuses to mix into existing output; the settings that
change speed and memory, not results (resources, `model.token_budget`, ...), may change
between runs: each such JobConfig field is marked (schemas/resume_rules.py). The same job
written another way (a relative local path for an absolute one) is the same job: local
paths are stored and compared absolute. A manifest edited in place is a different job: its
fingerprint (file sizes and ETags, or mtimes where the store has no ETag) is in `job.json`, and
so are those of the model's files and chat template file (`actors/model_store.py`): a checkpoint
re-exported or a template edited at the same path is a different job too. `job.json` holds the
model's device and dtype as resolved from the resources (schemas/model_placement.py), so a resume
that would score in another precision is refused with the settings that continue it.
An output that holds no committed row (its run failed before finishing a file) holds nothing
to mix with: a changed job takes it over and rewrites `job.json` and `checklist.json`.
One run at a time writes into an output (`pipeline/output_lease.py`). A question's `calibration` is
part of its checklist: a resume with another one is refused (one output, one calibration in
`p_cal`); `vrscore rescore` applies a new calibration to finished scores.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath

import fsspec
from pydantic import ValidationError

from pipeline.manifest_fingerprint import FINGERPRINT_KEY, manifest_fingerprint
from pipeline.output_lease import OutputLease, check_free
from pipeline.run_stats import STATS_FILE
from pipeline.scores_input import PENDING_SUFFIX
from pipeline.storage import join, protocol_of
from schemas.checklist import Checklist
from schemas.job_config import JobConfig
from schemas.model_placement import AUTO, PLACEMENT_KEYS, placement_hint
from schemas.resume_rules import resume_rules, rule_for
from schemas.user_error import UserError

SCORES_DIR, CHECKLIST_FILE, JOB_FILE, CHECKPOINT_DIR = "scores", "checklist.json", "job.json", "_checkpoint"
# Dotted JobConfig keys a resume may change -> whether a change to or from 0 is still refused.
# The manifest's fingerprint, a key of job.json beside the config's, is compared on its own.
RESUME_RULES = resume_rules(JobConfig)
# Fingerprints of the files the model reads (actors/model_store.py) -> what they are, where.
FILE_FINGERPRINTS = {"model.fingerprint": ("model files at", "model.model"),
                     "model.chat_template_fingerprint": ("chat template file", "model.chat_template")}
# Keys absent from job.json of older versions, with the value those versions used: they applied
# the Qwen2-VL rule to every model (a job.json of theirs resumes where the model's rule is that one).
LEGACY_VALUES = {"decode.resize_rule": "smart_resize",
                 # rendered without template options or an answer prefix
                 "model.chat_template_kwargs": None, "model.answer_prefix": None}
# Keys older versions recorded unresolved, as 'auto' (each actor chose from what its node had): such a
# record resumes as what this run resolves, with a warning. The first run's 'auto' took the side (GPU
# or CPU) of its resources.num_gpus_per_actor, which a resume may not move to or from 0, so this
# run's resolves alike, as long as those actors saw the GPUs they reserved.
UNRESOLVED_LEGACY = dict.fromkeys(PLACEMENT_KEYS, AUTO)

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


def job_record(cfg: JobConfig, manifest_fp: dict | None = None) -> str:
    """What job.json (and the scores' metadata) hold: the normalised config plus the manifest
    fingerprint (`manifest_fp`, from the opened manifest; taken here when not given)."""
    record = json.loads(cfg.model_dump_json())
    record[FINGERPRINT_KEY] = manifest_fp if manifest_fp is not None else manifest_fingerprint(cfg.manifest, cfg.storage)
    return json.dumps(record, indent=2)


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def _comparable(job: dict) -> dict:
    fields = {k: job.get(k) for k in JobConfig.model_fields}
    if isinstance(fields["manifest"], str):
        fields["manifest"] = normalise_local_path(fields["manifest"])
    if isinstance(fields["model"], dict) and isinstance(fields["model"].get("model"), str):
        fields["model"] = {**fields["model"], "model": normalise_local_path(fields["model"]["model"], must_exist=True)}
    return {**LEGACY_VALUES, **_flatten(fields)}


def _difference(key: str, old: dict, new: dict) -> str | None:
    if key not in FILE_FINGERPRINTS:
        return f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
    what, path_key = FILE_FINGERPRINTS[key]
    if old.get(key) is None or old.get(path_key) != new.get(path_key):
        return None  # a version that did not fingerprint this file, or another path (listed already)
    return (f"the {what} {new.get(path_key)} changed since the first run ({key} {str(old[key])[:12]}... -> "
            f"{str(new.get(key))[:12]}...): the same path now holds other files")


def _comparable_pair(old_job: dict, new_job: dict) -> tuple[dict, dict]:
    old, new = _comparable(old_job), _comparable(new_job)
    for key, unresolved in UNRESOLVED_LEGACY.items():
        if old.get(key) == unresolved:
            old[key] = new.get(key)
    return old, new


def unresolved_legacy(old_job: dict, new_job: dict) -> str | None:
    """A warning when `old_job` (a job.json of an older version) left a key of UNRESOLVED_LEGACY
    unresolved that this run resolves; None when it recorded them all."""
    old, new = _comparable(old_job), _comparable(new_job)
    keys = [key for key, unresolved in UNRESOLVED_LEGACY.items() if old.get(key) == unresolved]
    if not keys:
        return None
    return (f"the first run of this output recorded {' and '.join(keys)} as 'auto' (an older vrscore, where "
            f"each scorer actor chose from what its node had): continuing it with "
            f"{', '.join(f'{key}={new.get(key)}' for key in keys)}, as its resources resolve. Its rows are of "
            "that precision only if every actor of it saw the GPUs it reserved (or none)")


def result_differences(old_job: dict, new_job: dict, old_checklists: dict, new_checklists: dict) -> list[str]:
    """Human-readable differences that would change scores; empty = safe to resume."""
    old, new = _comparable_pair(old_job, new_job)
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b, zero_is_a_change = old.get(k), new.get(k), rule_for(RESUME_RULES, k)
        if zero_is_a_change is None and a != b:
            diffs.append(_difference(k, old, new))
        elif zero_is_a_change and a is not None and b is not None and (a == 0) != (b == 0):
            diffs.append(f"{k}: {a!r} -> {b!r} (a resume may change it, but not to or from 0)")
    diffs = [d for d in diffs if d]
    old_fp, new_fp = old_job.get(FINGERPRINT_KEY), new_job.get(FINGERPRINT_KEY)
    # job.json of versions before the fingerprint has none: nothing to compare it with.
    if old_fp is not None and new_fp is not None and old_fp != new_fp:
        diffs.append(f"the manifest files changed since the first run ({old_fp['files']} files, "
                     f"{old_fp['bytes']} bytes -> {new_fp['files']} files, {new_fp['bytes']} bytes, or the "
                     "same sizes with other ETags/mtimes): the same path now holds other rows")
    old_checklists, new_checklists = _current_form(old_checklists), _current_form(new_checklists)
    if old_checklists != new_checklists:
        changed = sorted(k for k in set(old_checklists) | set(new_checklists)
                         if old_checklists.get(k) != new_checklists.get(k))
        only = all(_uncalibrated(old_checklists.get(k)) == _uncalibrated(new_checklists.get(k)) for k in changed)
        # A resume keeps one calibration per output: p_cal of two calibrations would mix in one column.
        diffs.append(f"checklist for {', '.join(changed)} changed" + (
            " (only its calibration: finish the run with the checklist it began with, then `vrscore rescore` "
            "its output with the new one)" if only else ""))
    return diffs


def _current_form(checklists: dict) -> dict:
    """checklist.json entries as this version writes them: a field added since (a question's
    `calibration`, null by default) is no change to an output begun before it."""
    out = {}
    for kind, checklist in checklists.items():
        try:
            out[kind] = Checklist.model_validate(checklist).model_dump(mode="json")
        except ValidationError:
            out[kind] = checklist  # not loadable now: compared as written
    return out


def _uncalibrated(checklist: dict | None) -> dict | None:
    """A checklist.json entry without its questions' calibrations."""
    if not isinstance(checklist, dict):
        return checklist
    questions = [{k: v for k, v in q.items() if k != "calibration"} if isinstance(q, dict) else q
                 for q in checklist.get("questions", [])]
    return {**checklist, "questions": questions}


def _has_files(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.exists(path) and bool(fs.find(path))


def may_hold_rows(fs: fsspec.AbstractFileSystem, out: str, data_dir: str = SCORES_DIR) -> bool:
    """Whether `out` may hold committed rows: a checkpoint file other than a pending one (its ids
    would also be skipped by the next run), or data files that no checkpoint accounts for."""
    checkpoint = join(out, CHECKPOINT_DIR)
    if _has_files(fs, checkpoint):
        return any(not posixpath.basename(p).endswith(PENDING_SUFFIX) for p in fs.find(checkpoint))
    return _has_files(fs, join(out, data_dir))


def check_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str,
                 lease_owner: str | None = None, data_dir: str = SCORES_DIR) -> bool:
    """Check `out` without writing (refused while another live run holds its lease). Returns
    True when it holds earlier output of the same job; False when it is new, or holds another
    job's start without a committed row (then `create_output` takes it over)."""
    check_free(fs, out, lease_owner)
    job_path, checklist_path = join(out, JOB_FILE), join(out, CHECKLIST_FILE)
    scores = join(out, data_dir)  # the rows: scores/, or pairs/ of a judge job
    if fs.exists(job_path):
        old_job, new_job = json.loads(fs.cat_file(job_path)), json.loads(job_json)
        diffs = result_differences(
            old_job, new_job,
            json.loads(fs.cat_file(checklist_path)) if fs.exists(checklist_path) else {}, json.loads(checklists_json),
        )
        if diffs and may_hold_rows(fs, out, data_dir):
            old, new = _comparable_pair(old_job, new_job)
            placement = [key for key in PLACEMENT_KEYS if old.get(key) != new.get(key)]
            hint = f" {placement_hint(old, placement)}." if placement else ""
            raise OutputMismatchError(
                f"{out} holds scores of a different job ({'; '.join(diffs)}).{hint} "
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


def open_output(fs: fsspec.AbstractFileSystem, out: str, job_json: str, checklists_json: str,
                data_dir: str = SCORES_DIR) -> tuple[OutputLease, bool]:
    """Take the output's lease, check it again under the lease (another run may have started
    it since the first check) and create it when new. Returns (lease, resumed); the caller
    releases the lease when the job ends."""
    lease = OutputLease.acquire(fs, out)
    try:
        resumed = check_output(fs, out, job_json, checklists_json, lease.owner, data_dir)
        if not resumed:
            create_output(fs, out, job_json, checklists_json)
        else:  # said once, by the check that decides (the one before it, outside the lease, may be repeated)
            warning = unresolved_legacy(json.loads(fs.cat_file(join(out, JOB_FILE))), json.loads(job_json))
            if warning:
                log.warning("%s: %s", out, warning)
    except BaseException:
        lease.release()
        raise
    return lease, resumed
