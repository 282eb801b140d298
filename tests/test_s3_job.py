"""`vrscore score` with manifest, media and output all on S3 (moto on loopback), credentials
from an AWS profile named by `--profile`: every row accounted for, and the secret key
nowhere in what the job wrote or logged. `vrscore pairs` then reads those scores with the
very same storage flags."""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from schemas import status
from tests.job_process import cli, job_env, ray_tmp, run_job  # noqa: F401  (fixture)
from tests.s3_fixtures import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # a job in a process of its own, with its own Ray
SECRET = DUMMY_SECRET_ACCESS_KEY.encode()


def test_score_job_on_s3_keeps_every_row_and_no_secret(tmp_path, demo_model_dir, s3_endpoint, ray_tmp):  # noqa: F811
    bucket = s3_endpoint.make_bucket()
    expect, rows = {}, []
    for k, name in enumerate(["a.png", "b.jpg", "c.webp"]):
        uri = s3_endpoint.upload(write_image(tmp_path / name, size=(96, 64), seed=k), f"s3://{bucket}/media/{name}")
        rows.append({"id": f"img{k}", "uri": uri, "prompt": "a fox"})
        expect[f"img{k}"] = status.OK
    uri = s3_endpoint.upload(write_video(tmp_path / "v.mp4", n_frames=8, size=(96, 64)), f"s3://{bucket}/media/v.mp4")
    rows.append({"id": "vid", "uri": uri, "prompt": "a fox"})
    expect["vid"] = status.OK
    (tmp_path / "zero.png").write_bytes(b"")
    rows.append({"id": "empty", "uri": s3_endpoint.upload(tmp_path / "zero.png", f"s3://{bucket}/media/zero.png"),
                 "prompt": "a fox"})
    expect["empty"] = status.EMPTY_FILE
    rows.append({"id": "absent", "uri": f"s3://{bucket}/media/absent.png", "prompt": "a fox"})
    expect["absent"] = status.MISSING_FILE
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    manifest = s3_endpoint.upload(tmp_path / "manifest.parquet", f"s3://{bucket}/in/manifest.parquet")
    out = f"s3://{bucket}/out/run1"

    env = job_env(ray_tmp, s3_endpoint.profile_env(tmp_path, "vrscore-test"))
    assert not any(DUMMY_SECRET_ACCESS_KEY in v for k, v in env.items() if k != "AWS_SHARED_CREDENTIALS_FILE")
    storage_flags = ["--endpoint-url", s3_endpoint.url, "--profile", "vrscore-test"]  # one set for every command
    proc = run_job(cli("score", "--manifest", manifest, "--model", str(demo_model_dir), "--out", out,
                       "--frames", "uniform:2", *storage_flags,
                       "--set", "resources.batch_size=4", "--set", "resources.rows_per_file=4"), env)
    assert proc.returncode == 0, proc.stderr[-4000:]

    pairs = run_job(cli("pairs", "--scores", out, "--out", f"s3://{bucket}/out/pairs1", "--strategy", "all",
                        *storage_flags), env)
    assert pairs.returncode == 0, pairs.stderr[-4000:]

    fs = s3_endpoint.filesystem()
    summary = json.loads(fs.cat_file(f"{bucket}/out/pairs1/pairs.json"))
    assert summary["scores"].endswith(f"{bucket}/out/run1/scores")
    pair_files = [f for f in fs.find(f"{bucket}/out/pairs1/pairs") if f.endswith(".parquet")]
    pairs_table = pa.concat_tables(pq.read_table(fs.open(f, "rb")) for f in pair_files)
    assert pairs_table.num_rows == summary["pairs"] > 0  # 4 ok rows of one prompt: pairs over margin 0
    files = fs.find(f"{bucket}/out/run1")
    data_files = [f for f in files if f.startswith(f"{bucket}/out/run1/scores/")]
    assert data_files and all(f.endswith(".parquet") for f in data_files)
    table = pa.concat_tables(pq.read_table(fs.open(f, "rb")) for f in data_files)
    assert sorted(table["id"].to_pylist()) == sorted(expect)  # each row exactly once
    assert dict(zip(table["id"].to_pylist(), table["status"].to_pylist())) == expect
    errors = dict(zip(table["id"].to_pylist(), table["error"].to_pylist()))
    assert f"s3://{bucket}/media/absent.png" in errors["absent"] and "empty" in errors["empty"]
    summary = re.search(r"rows in = ok \+ errors: (\d+) = (\d+) \+ (\d+)", proc.stdout)
    assert summary and tuple(map(int, summary.groups())) == (6, 4, 2), proc.stdout

    job = json.loads(fs.cat_file(f"{bucket}/out/run1/job.json"))
    assert job["storage"] == {"endpoint_url": s3_endpoint.url, "region": None, "profile": "vrscore-test", "anon": False}
    # Nowhere: every object the job wrote (scores with their Parquet metadata, job.json,
    # checklist.json, checkpoint files), its stdout/stderr, every file of its Ray session (logs).
    written = {f: fs.cat_file(f) for f in files}
    assert {f"{bucket}/out/run1/job.json", f"{bucket}/out/run1/checklist.json"} <= set(written)
    assert any("/_checkpoint/" in f for f in written)
    for name, blob in written.items():
        assert SECRET not in blob and DUMMY_ACCESS_KEY_ID.encode() not in blob, name
    assert pq.read_schema(fs.open(data_files[0], "rb")).metadata[b"vrscore.job"] == fs.cat_file(
        f"{bucket}/out/run1/job.json")
    assert DUMMY_SECRET_ACCESS_KEY not in proc.stdout + proc.stderr
    logs = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name.startswith("raylet") for p in logs)  # the session's logs are really here
    leaks = [str(p) for p in logs if SECRET in p.read_bytes()]
    assert not leaks
