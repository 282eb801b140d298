"""`vrscore score --ray-address` on a two-node Ray cluster simulated on this machine
(`ray.cluster_utils.Cluster`, in a process of its own so it never meets the test session's
Ray): the output is complete and the scorer pool spread over both nodes.

Placement is made deterministic by resources, not left to the scheduler: each node has 4
logical CPUs and a scorer actor reserves 3 (`resources.num_cpus_per_actor`), so two scorer
actors can only run on two different nodes, the way one actor per GPU node would. The CPU
left on each node serves the read, decode and write tasks (a pool holding every CPU would
starve them).
"""
from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from tests.job_process import job_env, ray_tmp, run_job  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # a job in a process of its own, with its own Ray
N_ROWS = 24

# Runs in the job process: start the cluster, run the CLI against it, then report which
# node every scorer actor of the job lived on (Ray's actor table, kept after they exit).
SCRIPT = """
import json, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
worker = cluster.add_node(num_cpus=4)
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


def test_job_spreads_over_two_nodes(tmp_path, demo_model_dir, ray_tmp):  # noqa: F811
    rows = []
    for k in range(N_ROWS):
        uri = (write_video(tmp_path / f"v{k}.mp4", n_frames=4, size=(64, 48), seed=k) if k % 3 == 2
               else write_image(tmp_path / f"i{k}.png", size=(96, 64), seed=k))
        rows.append({"id": f"r{k}", "uri": str(uri), "prompt": "a boat"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    out = tmp_path / "out"
    args = ["score", "--manifest", str(tmp_path / "manifest.parquet"), "--model", str(demo_model_dir),
            "--out", str(out), "--quiet", "--frames", "uniform:2",
            "--set", "resources.scorer_actors=2", "--set", "resources.num_cpus_per_actor=3",
            "--set", "resources.decode_cpus=0.5", "--set", "resources.batch_size=4",
            "--set", "resources.decode_batch_size=4", "--set", "resources.rows_per_file=4"]
    proc = run_job([sys.executable, "-c", SCRIPT, json.dumps(args)], job_env(ray_tmp), timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))

    assert result["rc"] == 0
    assert sorted(result["nodes"]) == sorted([result["head"], result["worker"]])
    assert len(result["scorer_nodes"]) == 2  # the pool of two, never restarted
    assert sorted(result["scorer_nodes"]) == sorted([result["head"], result["worker"]])
    table = pq.read_table(out / "scores")
    assert sorted(table["id"].to_pylist()) == sorted(r["id"] for r in rows)
    assert set(table["status"].to_pylist()) == {"ok"}
