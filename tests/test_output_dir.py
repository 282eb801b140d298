"""When a rerun may continue an output directory: only changes that alter scores refuse it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import output_lease
from pipeline.output_dir import (RESUME_RULES, OutputMismatchError, check_output, create_output, job_record,
                             normalise_local_path, normalised_config, open_output, result_differences)
from pipeline.output_lease import OutputBusyError, OutputLease
from pipeline.process_identity import process_identity
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (session fixture)


def _job(**kw) -> JobConfig:
    return JobConfig(manifest="m.parquet", out="o", model=ModelConfig(model="m"), **kw)


def _commit_a_file(out) -> None:
    """One data file and its committed checkpoint: the output holds rows of its job."""
    for folder, name in (("scores", "w0-0.parquet"), ("_checkpoint", "w0.parquet")):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
        with open(os.path.join(out, folder, name), "wb") as f:
            f.write(b"x")


def test_speed_knobs_may_change_and_score_settings_may_not(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    first = _job()
    assert check_output(fs, out, first.model_dump_json(), "{}") is False
    create_output(fs, out, first.model_dump_json(), "{}")
    _commit_a_file(out)
    faster = _job(resources=ResourcesConfig(batch_size=64, scorer_actors=3),
                  decode=DecodeConfig(worker_nice=0))
    faster.model.systemic_failure_batches = 5  # when to stop on a broken model: not a result setting
    assert check_output(fs, out, faster.model_dump_json(), "{}") is True
    other = _job(decode=DecodeConfig(frames="uniform:16"))
    with pytest.raises(OutputMismatchError, match=r"decode\.frames: 'uniform:8' -> 'uniform:16'"):
        check_output(fs, out, other.model_dump_json(), "{}")


# The audit of every JobConfig field (its resume_may_change marker): what a resume may change.
MAY_CHANGE = {
    "checklist", "weights", "dimensions",  # compared by the checklists they load, in checklist.json
    "out", "max_error_fraction",
    "decode.worker_nice", "decode.timeout_s",
    "model.token_budget", "model.systemic_failure_batches", "model.cache_dir", "model.min_answer_mass",
    "model.vllm_gpu_memory_utilization", "model.vllm_cpu_kv_cache_gib", "model.vllm_max_model_len",
    "model.vllm_enforce_eager",
    *(f"resources.{name}" for name in ResourcesConfig.model_fields),
}


def _flat(value, prefix=""):
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.removesuffix("."): value}


def _with(job: dict, key: str, value) -> dict:
    job = json.loads(json.dumps(job))
    *sections, name = key.split(".")
    node = job
    for section in sections:
        node = node[section]
    node[name] = value
    return job


def test_a_resume_may_change_exactly_the_marked_settings():
    assert set(RESUME_RULES) == MAY_CHANGE
    # fingerprints set: a job.json without one is of a version that took none (nothing to compare)
    # device and dtype resolved, as a job records them (schemas/model_placement.py)
    model = ModelConfig(model="m", fingerprint="f1", chat_template="t.jinja", chat_template_fingerprint="f2",
                        device="cuda", dtype="bfloat16")
    first = json.loads(JobConfig(manifest="m.parquet", out="o", model=model,
                                 resources=ResourcesConfig(num_gpus_per_actor=1)).model_dump_json())
    keys = _flat(first)
    assert MAY_CHANGE <= set(keys) and "model.dtype" in keys and "decode.frames" in keys
    for key in keys:
        diffs = result_differences(first, _with(first, key, 0.5), {}, {})  # a value no field holds by default
        assert (diffs == []) == (key in MAY_CHANGE), (key, diffs)
        assert all(d.startswith(f"{key}: ") or f"({key} " in d for d in diffs), diffs


def test_gpus_per_actor_may_change_but_not_to_or_from_zero():
    def job(gpus: float) -> dict:
        return json.loads(_job(resources=ResourcesConfig(num_gpus_per_actor=gpus)).model_dump_json())

    assert result_differences(job(1), job(0.5), {}, {}) == []  # two actors per GPU, or one
    # 0 runs the scorer on CPU, where dtype 'auto' is float32 (bfloat16 on GPU)
    assert result_differences(job(0), job(1), {}, {}) == [
        "resources.num_gpus_per_actor: 0.0 -> 1.0 (a resume may change it, but not to or from 0)"]
    assert result_differences(job(0.5), job(0), {}, {}) != []


def test_job_json_of_a_version_without_worker_nice_still_resumes():
    old = json.loads(_job().model_dump_json())
    del old["decode"]["worker_nice"]
    assert result_differences(old, json.loads(_job().model_dump_json()), {}, {}) == []


# --- the lease: one run at a time per output (local disk and S3) ---------------------------

def _lease_record(fs, out, **kw) -> dict:
    record = {"owner": "someone-else", **process_identity(), "heartbeat": time.time(), "ttl_s": 60.0, **kw}
    fs.makedirs(out, exist_ok=True)
    fs.pipe_file(f"{out}/{output_lease.LEASE_FILE}", json.dumps(record).encode())
    return record


def _lease_rules(fs, out):
    job = _job().model_dump_json()
    # A live run holds the output: refused before any work, and by the lease itself.
    _lease_record(fs, out)
    with pytest.raises(OutputBusyError, match=r"another run is writing here .*expires \d+ s from now"):
        check_output(fs, out, job, "{}")
    with pytest.raises(OutputBusyError):
        OutputLease.acquire(fs, out, settle_s=0)
    # A lease whose heartbeat is older than its ttl (its run died on some machine) is taken over.
    _lease_record(fs, out, host="another-machine", pid=1, heartbeat=time.time() - 61)
    lease = OutputLease.acquire(fs, out, settle_s=0)
    assert output_lease.read_lease(fs, out)["owner"] == lease.owner
    with pytest.raises(OutputBusyError):  # and now it blocks the next run
        check_output(fs, out, job, "{}")
    assert check_output(fs, out, job, "{}", lease_owner=lease.owner) is False  # not its own holder
    lease.release()
    assert output_lease.read_lease(fs, out) is None
    assert check_output(fs, out, job, "{}") is False
    # A lease that cannot be read (here: empty) was written just now: held, not free.
    fs.pipe_file(f"{out}/{output_lease.LEASE_FILE}", b"")
    with pytest.raises(OutputBusyError, match="cannot be read"):
        OutputLease.acquire(fs, out, settle_s=0)
    fs.rm_file(f"{out}/{output_lease.LEASE_FILE}")


def test_a_live_lease_refuses_a_second_run_and_a_stale_one_is_taken_over(tmp_path):
    _lease_rules(fsspec.filesystem("file"), str(tmp_path / "out"))


def test_the_lease_works_on_object_storage(s3_endpoint):
    fs = s3_endpoint.filesystem()
    _lease_rules(fs, f"{s3_endpoint.make_bucket()}/out")


def test_a_killed_local_run_does_not_block_its_rerun(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lease_record(fs, out, pid=dead.pid, pid_start="1")  # fresh heartbeat, but its process is gone
    lease = OutputLease.acquire(fs, out, settle_s=0)
    lease.release()


def test_of_two_runs_taking_the_lease_at_once_exactly_one_wins(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    barrier, results = threading.Barrier(2), []

    def take():
        barrier.wait()
        try:
            results.append(OutputLease.acquire(fs, out, settle_s=0.5))
        except OutputBusyError as exc:
            results.append(exc)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, OutputLease)]
    assert len(winners) == 1 and len(results) == 2
    winners[0].release()


def test_a_run_that_lost_its_lease_fails_when_it_ends(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    lease = OutputLease.acquire(fs, out, ttl_s=0.4, settle_s=0)
    _lease_record(fs, out)  # another run took over while this one stalled
    time.sleep(0.3)  # a renewal (every ttl/8) sees the foreign owner
    with pytest.raises(OutputBusyError, match="lost its lease"):
        lease.release()
    assert output_lease.read_lease(fs, out)["owner"] == "someone-else"  # not deleted


# --- the manifest fingerprint and local paths -----------------------------------------------

def _manifest(path, ids) -> None:
    pq.write_table(pa.table({"id": ids, "uri": [f"/m/{i}.png" for i in ids], "prompt": ["p"] * len(ids)}), path)


def test_a_manifest_edited_at_the_same_path_is_a_different_job(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    manifest = tmp_path / "m.parquet"
    _manifest(manifest, ["a", "b"])
    cfg = normalised_config(JobConfig(manifest=str(manifest), out=out, model=ModelConfig(model="m")))
    job = job_record(cfg)
    create_output(fs, out, job, "{}")
    _commit_a_file(out)
    assert check_output(fs, out, job_record(cfg), "{}") is True  # unchanged: resumes
    _manifest(manifest, ["a", "b", "c"])
    with pytest.raises(OutputMismatchError, match=r"the manifest files changed since the first run "
                                                   r"\(1 files, \d+ bytes -> 1 files, \d+ bytes"):
        check_output(fs, out, job_record(cfg), "{}")
    # Same size, new content (mtime changes): still a different job.
    _manifest(manifest, ["a", "b"])
    os.utime(manifest, (1, 1))
    with pytest.raises(OutputMismatchError, match="manifest files changed"):
        check_output(fs, out, job_record(cfg), "{}")


def test_a_relative_manifest_path_is_the_same_job_as_the_absolute_one(tmp_path, monkeypatch):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    (tmp_path / "data").mkdir()
    _manifest(tmp_path / "data" / "m.parquet", ["a"])
    absolute = JobConfig(manifest=str(tmp_path / "data" / "m.parquet"), out=out, model=ModelConfig(model="m"))
    create_output(fs, out, job_record(normalised_config(absolute)), "{}")
    _commit_a_file(out)
    monkeypatch.chdir(tmp_path / "data")
    relative = normalised_config(absolute.model_copy(update={"manifest": "m.parquet", "out": "../out"}))
    assert relative.manifest == absolute.manifest and relative.out == out  # stored normalised
    assert check_output(fs, out, job_record(relative), "{}") is True
    # Compared normalised too: a job.json that holds the relative path matches the absolute one.
    old = json.loads(absolute.model_dump_json()) | {"manifest": "m.parquet"}
    assert result_differences(old, json.loads(absolute.model_dump_json()), {}, {}) == []
    # Negative control: another file is another job.
    _manifest(tmp_path / "data" / "n.parquet", ["a"])
    other = normalised_config(absolute.model_copy(update={"manifest": "n.parquet"}))
    with pytest.raises(OutputMismatchError, match=r"manifest: '.*m\.parquet' -> '.*n\.parquet'"):
        check_output(fs, out, job_record(other), "{}")


def test_a_hub_model_id_is_not_taken_for_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalise_local_path("Qwen/Qwen2-VL-2B-Instruct", must_exist=True) == "Qwen/Qwen2-VL-2B-Instruct"
    (tmp_path / "ckpt").mkdir()
    assert normalise_local_path("ckpt", must_exist=True) == str(tmp_path / "ckpt")
    assert normalise_local_path("s3://b/m.parquet") == "s3://b/m.parquet"
    assert normalise_local_path("file:///x/m.parquet") == "/x/m.parquet"


def test_job_json_without_its_checkpoint_is_refused_not_rescored(tmp_path):
    fs, out = fsspec.filesystem("file"), tmp_path / "out"
    job = _job().model_dump_json()
    create_output(fs, str(out), job, "{}")
    assert check_output(fs, str(out), job, "{}") is True  # started, nothing written yet: resumes
    (out / "scores").mkdir()
    (out / "scores" / "part-0.parquet").write_bytes(b"rows")
    (out / "_checkpoint").mkdir()
    (out / "_checkpoint" / "part-0.parquet").write_bytes(b"ids")
    assert check_output(fs, str(out), job, "{}") is True
    shutil.rmtree(out / "_checkpoint")
    with pytest.raises(OutputMismatchError, match=r"_checkpoint/ \(which rows they hold\) is missing"):
        check_output(fs, str(out), job, "{}")


def test_vrscore_score_into_an_output_another_run_holds_is_refused_before_any_work(tmp_path, capsys, demo_model_dir):
    from jobs import cli as vrscore_cli

    _manifest(tmp_path / "m.parquet", ["a"])
    out = tmp_path / "out"
    other_run = OutputLease.acquire(fsspec.filesystem("file"), str(out), settle_s=0)
    try:
        # a real model: its config is read (for its resize rule) before the output is checked
        args = ["score", "--manifest", str(tmp_path / "m.parquet"), "--model", str(demo_model_dir),
                "--out", str(out), "--quiet"]
        assert vrscore_cli.main(args) == 2
    finally:
        other_run.release()
    err = capsys.readouterr().err
    assert f"vrscore score: error: {out}: another run is writing here" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written


def test_vrscore_score_refuses_an_edited_manifest_before_any_work(tmp_path, capsys, demo_model_dir):
    from jobs import cli as vrscore_cli
    from pipeline.model_family import resolve_decode
    from schemas.checklist_set import checklists_to_json, resolve_checklists

    manifest, out = tmp_path / "m.parquet", tmp_path / "out"
    _manifest(manifest, ["a", "b"])
    first = normalised_config(JobConfig(manifest=str(manifest), out=str(out), model=ModelConfig(model=str(demo_model_dir))))
    first = first.model_copy(update={"decode": resolve_decode(first.model, first.decode, first.storage)})
    create_output(fsspec.filesystem("file"), str(out), job_record(first),
                  checklists_to_json(resolve_checklists(["default"])))  # what the first run left
    _commit_a_file(out)
    _manifest(manifest, ["a", "b", "c"])
    assert vrscore_cli.main(["score", "--manifest", str(manifest), "--model", str(demo_model_dir), "--out", str(out),
                             "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds scores of a different job (the manifest files changed since the first run" in err
    assert sorted(p.name for p in out.iterdir()) == ["_checkpoint", "checklist.json", "job.json", "scores"]


# --- an output whose run failed before any row: a corrected job takes it over -----------------

def _failed_start(fs, out, job: str) -> None:
    """What a run that died before finishing a file leaves: its job, a pending checkpoint and the
    data file it was writing (neither committed)."""
    create_output(fs, str(out), job, '{"image": "old"}')
    (out / "_checkpoint").mkdir()
    (out / "_checkpoint" / "w0.pending.parquet").write_bytes(b"ids")
    (out / "scores").mkdir()
    (out / "scores" / "w0-0.parquet").write_bytes(b"rows")
    (out / "stats.json").write_text('{"runs": []}')


def test_a_changed_job_takes_over_an_output_without_committed_rows(tmp_path):
    fs, out = fsspec.filesystem("file"), tmp_path / "out"
    _failed_start(fs, out, _job().model_dump_json())
    fixed = _job(decode=DecodeConfig(resize_factor=32)).model_dump_json()
    assert check_output(fs, str(out), fixed, '{"image": "new"}') is False  # a new job here, not a mismatch
    lease, resumed = open_output(fs, str(out), fixed, '{"image": "new"}')
    lease.release()
    assert resumed is False
    assert (out / "job.json").read_text() == fixed and (out / "checklist.json").read_text() == '{"image": "new"}'
    assert not (out / "stats.json").exists()  # the runs of the job taken over are not this job's
    assert check_output(fs, str(out), fixed, '{"image": "new"}') is True  # and it now resumes as itself


@pytest.mark.parametrize("rows", ["committed checkpoint", "data without checkpoint"])
def test_a_changed_job_is_refused_where_a_committed_row_exists(tmp_path, rows):
    fs, out = fsspec.filesystem("file"), tmp_path / "out"
    old = _job(decode=DecodeConfig(resize_factor=28)).model_dump_json()
    _failed_start(fs, out, old)
    if rows == "committed checkpoint":
        (out / "_checkpoint" / "w1.parquet").write_bytes(b"ids")  # one file committed
    else:
        shutil.rmtree(out / "_checkpoint")
    fixed = _job(decode=DecodeConfig(resize_factor=32)).model_dump_json()
    with pytest.raises(OutputMismatchError, match=r"holds scores of a different job \(decode\.resize_factor: 28 -> 32\)"):
        check_output(fs, str(out), fixed, '{"image": "old"}')
    with pytest.raises(OutputMismatchError):
        open_output(fs, str(out), fixed, '{"image": "old"}')
    assert (out / "job.json").read_text() == old and (out / "stats.json").exists()  # untouched
    assert output_lease.read_lease(fs, str(out)) is None  # the refused run left no lease
