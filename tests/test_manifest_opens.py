"""A score job opens its manifest's files once per purpose that needs their bytes: the footers
(columns, types, row count, on the driver), the ids (the unique-id check) and the rows (the
read), never once per step that asks about the manifest. Counted on a real filesystem that logs
every open in every process (tests/counting_fs.py), for each kind of manifest; the job runs in a
process of its own so that its Ray workers log their opens too."""
from __future__ import annotations

import io
import json
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from tests.counting_fs import LOG_ENV, PROTOCOL, opens
from tests.job_process import job_env, ray_tmp, run_job  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # a job in a process of its own, with its own Ray
PROMPT = "a red fox in the snow"

# Runs in the job process: the protocol is registered there (and in each worker, which imports
# tests.counting_fs when it unpickles the filesystem), then the CLI runs every job in one Ray.
SCRIPT = """
import json, sys
import tests.counting_fs
from jobs import cli
for args in json.loads(sys.argv[1]):
    rc = cli.main(args)
    print("RESULT", rc, flush=True)
"""


def _images(tmp_path, n: int) -> list:
    return [write_image(tmp_path / f"img{k}.png", size=(64 + 16 * k, 48), seed=k) for k in range(n)]


def _uri_manifest(tmp_path, images) -> str:
    root = tmp_path / "uri_manifest"
    root.mkdir()
    for part in range(2):
        rows = [{"id": f"u{k}", "uri": str(p), "prompt": PROMPT} for k, p in enumerate(images) if k % 2 == part]
        pq.write_table(pa.Table.from_pylist(rows), root / f"part-{part}.parquet")
    return str(root)


def _embedded_manifest(tmp_path, images) -> str:
    root = tmp_path / "embedded_manifest"
    root.mkdir()
    for part in range(2):
        rows = [{"id": f"e{k}", "image": p.read_bytes(), "prompt": PROMPT} for k, p in enumerate(images)
                if k % 2 == part]
        pq.write_table(pa.Table.from_pylist(rows), root / f"part-{part}.parquet")  # one row group each
    return str(root)


def _shards(tmp_path, images) -> str:
    root = tmp_path / "shards"
    root.mkdir()
    for part in range(2):
        with tarfile.open(root / f"{part:05d}.tar", mode="w") as tar:
            for k, p in enumerate(images):
                if k % 2 == part:
                    for name, data in ((f"w{k}.png", p.read_bytes()), (f"w{k}.txt", PROMPT.encode())):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
    return str(root)


def test_each_manifest_file_is_opened_once_per_purpose(tmp_path, demo_model_dir, ray_tmp):  # noqa: F811
    images = _images(tmp_path, 4)
    manifests = {"uri": _uri_manifest(tmp_path, images), "embedded": _embedded_manifest(tmp_path, images),
                 "webdataset": _shards(tmp_path, images)}
    jobs = [["score", "--manifest", f"{PROTOCOL}://{path}", "--model", str(demo_model_dir),
             "--out", str(tmp_path / f"out_{kind}"), "--quiet", "--set", "resources.decode_batch_size=2",
             "--set", "resources.rows_per_file=2"]
            for kind, path in manifests.items()]
    log = tmp_path / "opens.log"
    proc = run_job([sys.executable, "-c", SCRIPT, json.dumps(jobs)], job_env(ray_tmp, {LOG_ENV: str(log)}),
                   timeout=400)
    assert proc.returncode == 0 and proc.stdout.count("RESULT 0") == 3, proc.stdout[-2000:] + proc.stderr[-4000:]
    for kind in manifests:  # every row scored once: the counts below are of a complete job
        table = pq.read_table(tmp_path / f"out_{kind}" / "scores")
        assert table.num_rows == len(set(table["id"].to_pylist())) == 4 and set(table["status"].to_pylist()) == {"ok"}

    counted = opens(str(log))
    by_kind = {kind: {p: n for p, n in counted.items() if p.startswith(path + "/")} for kind, path in manifests.items()}
    # footers (driver), ids (unique-id check), rows (the read): 3 per file
    assert by_kind["uri"] == {f"{manifests['uri']}/part-{k}.parquet": 3 for k in range(2)}, by_kind["uri"]
    assert by_kind["embedded"] == {f"{manifests['embedded']}/part-{k}.parquet": 3 for k in range(2)}, by_kind
    # shards have no footer, and their keys are not checked up front: the read alone
    assert by_kind["webdataset"] == {f"{manifests['webdataset']}/{k:05d}.tar": 1 for k in range(2)}, by_kind
