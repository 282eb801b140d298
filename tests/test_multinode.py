"""`vrscore score --ray-address` on a two-node Ray cluster simulated on this machine
(`ray.cluster_utils.Cluster`, in a process of its own so it never meets the test session's
Ray): the output is complete, the scorer pool spread over both nodes and stats.json holds the
stages' own windows; a model given as an S3 URI (moto on loopback) is downloaded once per node.

Placement is made deterministic by resources, not left to the scheduler: each node has 4
logical CPUs and a scorer actor reserves 3 (`resources.num_cpus_per_actor`), so two scorer
actors can only run on two different nodes, the way one actor per GPU node would. The CPU
left on each node serves the read, decode and write tasks (a pool holding every CPU would
starve them). One such job, its model at an S3 URI, serves both tests (a module fixture).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from actors.model_store import CACHE_ENV, DOWNLOAD_LOG, MARKER
from tests.job_process import job_env, kill_marked, run_job, wait_until_gone
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # a job in a process of its own, with its own Ray
N_ROWS = 24

# Runs in the job process: start the cluster, run the CLI against it, then report which
# node every scorer actor of the job lived on (Ray's actor table, kept after they exit).
SCRIPT = """
import json, sys
from ray.cluster_utils import Cluster

node_env = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}  # per-node environment (raylet and workers)
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False,
                                                        "env_vars": node_env.get("head")})
worker = cluster.add_node(num_cpus=4, env_vars=node_env.get("worker"))
cluster.wait_for_nodes()
from jobs import cli
rc = cli.main([*json.loads(sys.argv[1]), "--ray-address", cluster.address])
import ray
from ray._private.state import actors

scorers = [a for a in actors().values() if "ChecklistScorer" in a["ActorClassName"]]
print("RESULT " + json.dumps({
    "rc": rc,
    "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
    "head": cluster.head_node.node_id, "worker": worker.node_id,
    "scorer_nodes": [a["Address"]["NodeID"] for a in scorers],
}))
ray.shutdown()
cluster.shutdown()
"""


def _manifest(tmp_path) -> tuple[str, list[dict]]:
    rows = []
    for k in range(N_ROWS):
        uri = (write_video(tmp_path / f"v{k}.mp4", n_frames=4, size=(64, 48), seed=k) if k % 3 == 2
               else write_image(tmp_path / f"i{k}.png", size=(96, 64), seed=k))
        rows.append({"id": f"r{k}", "uri": str(uri), "prompt": "a boat"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    return str(tmp_path / "manifest.parquet"), rows


def _run_on_two_nodes(manifest: str, model: str, out, env: dict, node_env: dict | None = None,
                      extra: tuple[str, ...] = ()) -> dict:
    args = ["score", "--manifest", manifest, "--model", model,
            "--out", str(out), "--quiet", "--frames", "uniform:2", *extra,
            "--set", "resources.scorer_actors=2", "--set", "resources.num_cpus_per_actor=3",
            "--set", "resources.decode_cpus=0.5", "--set", "resources.batch_size=4",
            "--set", "resources.decode_batch_size=4", "--set", "resources.rows_per_file=4"]
    proc = run_job([sys.executable, "-c", SCRIPT, json.dumps(args), json.dumps(node_env or {})], env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["rc"] == 0, proc.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, demo_model_dir, s3_endpoint) -> dict:  # noqa: F811
    """One job on two nodes, its model at an S3 URI, each node with a cache of its own (as
    separate machines would have); both tests read what it did."""
    tmp = tmp_path_factory.mktemp("two_nodes")
    bucket = s3_endpoint.make_bucket()
    for f in demo_model_dir.iterdir():
        s3_endpoint.upload(f, f"s3://{bucket}/ckpt/{f.name}")
    model_uri = f"s3://{bucket}/ckpt/"
    manifest, rows = _manifest(tmp)
    caches = {"head": tmp / "cache-head", "worker": tmp / "cache-worker"}
    node_env = {node: {CACHE_ENV: str(path)} for node, path in caches.items()}
    out, ray_dir = tmp / "out", Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))  # short: Ray's socket paths
    try:
        result = _run_on_two_nodes(manifest, model_uri, out, job_env(ray_dir, s3_endpoint.env), node_env,
                                   ("--endpoint-url", s3_endpoint.url))
    finally:
        kill_marked(ray_dir)
        wait_until_gone(ray_dir, 10)
        shutil.rmtree(ray_dir, ignore_errors=True)
    return {"result": result, "rows": rows, "out": out, "caches": caches, "model_uri": model_uri,
            "model_dir": demo_model_dir}


def test_job_spreads_over_two_nodes(two_nodes):
    result, rows, out = two_nodes["result"], two_nodes["rows"], two_nodes["out"]
    assert sorted(result["nodes"]) == sorted([result["head"], result["worker"]])
    assert len(result["scorer_nodes"]) == 2  # the pool of two, never restarted
    assert sorted(result["scorer_nodes"]) == sorted([result["head"], result["worker"]])
    table = pq.read_table(out / "scores")
    assert sorted(table["id"].to_pylist()) == sorted(r["id"] for r in rows)
    assert set(table["status"].to_pylist()) == {"ok"}
    # stats.json: the pool stages' own windows, not the whole run (what two nodes fell back to)
    run = json.loads((out / "stats.json").read_text())["runs"][-1]
    decode, score = run["stages"]["decode"]["window_s"], run["stages"]["score"]["window_s"]
    assert 0 <= decode[0] < score[0] < score[1] <= run["seconds"], run  # scoring waits for the first frames
    assert run["decode_actors_max"] >= 1 and run["rows"] == len(rows), run


def test_model_from_s3_is_downloaded_once_per_node(two_nodes):
    result, rows, out, model_uri = two_nodes["result"], two_nodes["rows"], two_nodes["out"], two_nodes["model_uri"]
    assert sorted(result["scorer_nodes"]) == sorted([result["head"], result["worker"]])
    for node, cache in two_nodes["caches"].items():
        downloads = [json.loads(line) for line in (cache / DOWNLOAD_LOG).read_text().splitlines()]
        assert len(downloads) == 1, (node, downloads)  # one download per node
        assert downloads[0]["uri"] == model_uri
        entry = cache / downloads[0]["entry"]
        assert (entry / MARKER).exists() and (entry / "model.safetensors").read_bytes() == (
            two_nodes["model_dir"] / "model.safetensors").read_bytes()
    table = pq.read_table(out / "scores")
    assert sorted(table["id"].to_pylist()) == sorted(r["id"] for r in rows)
    assert set(table["status"].to_pylist()) == {"ok"}
    job = json.loads((out / "job.json").read_text())
    assert job["model"]["model"] == model_uri and len(job["model"]["fingerprint"]) == 64
