"""When a rerun may continue an output directory: only changes that alter scores refuse it."""
from __future__ import annotations

import json

import fsspec
import pytest

from jobs.output_dir import OutputMismatchError, check_output, create_output, result_differences
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig


def _job(**kw) -> JobConfig:
    return JobConfig(manifest="m.parquet", out="o", model=ModelConfig(model="m"), **kw)


def test_speed_knobs_may_change_and_score_settings_may_not(tmp_path):
    fs, out = fsspec.filesystem("file"), str(tmp_path / "out")
    first = _job()
    assert check_output(fs, out, first.model_dump_json(), "{}") is False
    create_output(fs, out, first.model_dump_json(), "{}")
    faster = _job(resources=ResourcesConfig(batch_size=64, scorer_actors=3),
                  decode=DecodeConfig(worker_nice=0))
    assert check_output(fs, out, faster.model_dump_json(), "{}") is True
    other = _job(decode=DecodeConfig(frames="uniform:16"))
    with pytest.raises(OutputMismatchError, match=r"decode\.frames: 'uniform:8' -> 'uniform:16'"):
        check_output(fs, out, other.model_dump_json(), "{}")


def test_job_json_of_a_version_without_worker_nice_still_resumes():
    old = json.loads(_job().model_dump_json())
    del old["decode"]["worker_nice"]
    assert result_differences(old, json.loads(_job().model_dump_json()), {}, {}) == []
