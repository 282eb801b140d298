"""model.engine and its vLLM options, checked where vLLM is not installed (the main suite): the
config refuses inconsistent settings, and a job asking for vLLM stops in one line before any work,
naming the install or the family vLLM does not run."""
from __future__ import annotations

import importlib.util
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from actors.adapters.vllm_support import vllm_missing
from jobs import cli as vrscore_cli
from pipeline.model_family import ModelFamilyError, resolve_decode
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig, StorageConfig
from tests.test_model_family import checkpoint

NO_VLLM = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
QWEN2_VL = {"model_type": "qwen2_vl"}
QWEN_PREPROCESSOR = {"patch_size": 14, "merge_size": 2}


def job(**model) -> JobConfig:
    gpus = model.pop("gpus", 0.0)
    return JobConfig(manifest="m.parquet", out="out", model=ModelConfig(model="m", **model),
                     resources=ResourcesConfig(num_gpus_per_actor=gpus))


def test_engine_defaults_to_ours_and_takes_only_known_engines():
    assert ModelConfig(model="m").engine == "transformers"
    with pytest.raises(ValidationError, match="engine"):
        ModelConfig(model="m", engine="sglang")


def test_tensor_parallel_needs_vllm_and_as_many_gpus_per_actor():
    with pytest.raises(ValidationError, match="tensor_parallel_size needs model.engine=vllm"):
        job(tensor_parallel_size=2, gpus=2)
    with pytest.raises(ValidationError, match=r"set resources.num_gpus_per_actor=4 \(got 1\)"):
        job(engine="vllm", tensor_parallel_size=4, gpus=1)
    with pytest.raises(ValidationError, match=r"num_gpus_per_actor=2 \(got 0\)"):
        job(engine="vllm", tensor_parallel_size=2)
    assert job(engine="vllm", tensor_parallel_size=4, gpus=4).resources.num_gpus_per_actor == 4
    assert job(engine="vllm", gpus=0.5).model.tensor_parallel_size == 1  # one GPU shared by two copies


def test_job_json_records_the_engine():
    assert json.loads(job(engine="vllm").model_dump_json())["model"]["engine"] == "vllm"


def test_a_family_vllm_does_not_run_is_refused_before_any_work(tmp_path):
    for model_type, why in [("gemma3", "processor fails"), ("llava_onevision", "does not load"),
                            ("smolvlm", "not been checked")]:
        model = checkpoint(tmp_path / model_type, {"model_type": model_type})
        with pytest.raises(ModelFamilyError, match=f"model.engine=vllm does not run .*{why}.*qwen2_vl"):
            resolve_decode(ModelConfig(model=model, engine="vllm"), DecodeConfig(), StorageConfig())
    # negative control: the same checkpoint with our engine resolves
    gemma = checkpoint(tmp_path / "gemma3", {"model_type": "gemma3"})
    assert resolve_decode(ModelConfig(model=gemma), DecodeConfig(), StorageConfig()).resize_rule is not None


@NO_VLLM
def test_vllm_not_installed_is_one_line_naming_the_install(tmp_path, capsys):
    pq.write_table(pa.table({"id": ["a"], "uri": [str(tmp_path / "a.png")], "prompt": ["p"]}), tmp_path / "m.parquet")
    model = checkpoint(tmp_path / "qwen", QWEN2_VL, QWEN_PREPROCESSOR)
    out = tmp_path / "out"
    args = ["score", "--manifest", str(tmp_path / "m.parquet"), "--model", model, "--out", str(out), "--quiet"]
    assert vrscore_cli.main(args + ["--set", "model.engine=vllm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.engine=vllm needs vLLM, which is not installed: pip install" in err
    assert not out.exists()
    assert "vrscore[vllm]" in vllm_missing()
