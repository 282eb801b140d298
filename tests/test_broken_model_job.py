"""A model broken from the start, through `vrscore score`: the job stops with one clear message
and exit code 1, and no row is marked `score_error` (nor checkpointed as done).

The model is the demo checkpoint with one config value corrupted: its rotary sections no
longer sum to half the head size. It loads without complaint and fails in every forward, as a
model on a broken device does."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs import cli as vrscore_cli
from tests.job_process import few_shuffle_partitions  # noqa: F401  (fixture)
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow


def _broken_copy(model_dir, dest):
    shutil.copytree(model_dir, dest)
    config = json.loads((dest / "config.json").read_text())
    rope = config["text_config"]["rope_parameters"]
    rope["mrope_section"] = [*rope["mrope_section"][:-1], rope["mrope_section"][-1] + 1]
    (dest / "config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.usefixtures("ray_session", "few_shuffle_partitions")
def test_a_broken_model_stops_the_job_with_one_message_and_no_row_marked(tmp_path, demo_model_dir, capsys):
    model = _broken_copy(demo_model_dir, tmp_path / "broken")
    rows = [{"id": f"i{k}", "uri": str(write_image(tmp_path / f"i{k}.png", size=(96, 64), seed=k)), "prompt": "a cat"}
            for k in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    out = tmp_path / "out"
    rc = vrscore_cli.main(["score", "--manifest", str(tmp_path / "manifest.parquet"), "--model", str(model),
                           "--out", str(out), "--quiet", "--set", "model.dtype=float32"])
    err = capsys.readouterr().err
    assert rc == 1
    stops = [line for line in err.splitlines() if line.startswith("vrscore score: stopped: ")]
    assert len(stops) == 1, err[-3000:]
    assert "cannot score a synthetic image at start-up" in stops[0] and "RuntimeError: split_with_sizes" in stops[0]
    written = list((out / "scores").glob("*.parquet")) if (out / "scores").exists() else []
    statuses = ds.dataset(written).to_table(columns=["status"])["status"].to_pylist() if written else []
    assert "score_error" not in statuses and statuses == []  # nothing scored, nothing blamed on the rows
