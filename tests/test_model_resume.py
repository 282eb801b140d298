"""A resume never mixes two models, or two chat templates, in one output: a local checkpoint
re-exported at the same path, or a template file edited in place, is a different job."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.demo_model import build_demo_model
from actors.synthetic_media import write_image
from pipeline.output_dir import OutputMismatchError
from jobs.score_job import run_score_job
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("ray_session")


def test_a_resume_refuses_a_changed_model_or_template(tmp_path, demo_model_dir):
    model = tmp_path / "export"
    shutil.copytree(demo_model_dir, model)
    template = tmp_path / "template.jinja"
    shutil.copy(model / "chat_template.jinja", template)
    rows = []
    for k in range(2):
        write_image(tmp_path / f"i{k}.png", size=(64, 48), seed=k)
        rows.append({"id": f"i{k}", "uri": str(tmp_path / f"i{k}.png"), "prompt": "a fox"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    cfg = JobConfig(manifest=str(tmp_path / "m.parquet"), out=str(tmp_path / "out"),
                    model=ModelConfig(model=str(model), chat_template=str(template)),
                    decode=DecodeConfig(image_max_pixels=64 * 28 * 28), resources=ResourcesConfig(batch_size=2))
    assert run_score_job(cfg, quiet=True).ok == 2
    job = json.loads((tmp_path / "out" / "job.json").read_text())
    assert len(job["model"]["fingerprint"]) == 64 and len(job["model"]["chat_template_fingerprint"]) == 64
    assert run_score_job(cfg, quiet=True).rows == 2  # negative control: the same files resume

    template.write_text(template.read_text() + "\n")  # edited in place
    with pytest.raises(OutputMismatchError, match=rf"the chat template file {template} changed since the first run"):
        run_score_job(cfg, quiet=True)
    build_demo_model(model, preset="tiny", family="qwen2_vl", seed=1)  # another checkpoint exported at the same path
    with pytest.raises(OutputMismatchError, match=rf"the model files at {model} changed since the first run"):
        run_score_job(cfg, quiet=True)
    assert pq.read_table(tmp_path / "out" / "scores").num_rows == 2  # nothing was added
