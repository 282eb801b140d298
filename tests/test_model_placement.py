"""Where and in which precision the scorer runs is decided once, on the driver, from the job's
resources, and recorded in job.json: a resume that would score in another precision is refused
(with the settings that continue it), a value the user set is kept, an output begun by a version
that recorded 'auto' still resumes (with a warning), and an actor told cuda that sees no GPU
fails at start instead of scoring on its CPU in float32."""
from __future__ import annotations

import json
import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from actors.adapters.devices import GpuUnavailableError
from actors.checklist_scorer import ChecklistScorer
from actors.synthetic_media import write_image
from jobs import cli as vrscore_cli
from jobs.judge_job import JudgeOptions, run_judge_job
from jobs.score_job import run_score_job
from pipeline.output_dir import OutputMismatchError
from schemas.checklist_set import checklists_to_json, resolve_checklists
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.model_placement import PlacementError, resolve_model_placement
from tests.job_process import REPO
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)


def _placed(gpus: float, **model) -> tuple[str, str]:
    placed = resolve_model_placement(ModelConfig(model="m", **model), gpus)
    return placed.device, placed.dtype


def test_auto_follows_the_gpus_the_scorer_reserves_and_a_set_value_wins():
    assert _placed(1) == ("cuda", "bfloat16") and _placed(0.5) == ("cuda", "bfloat16")
    assert _placed(0) == ("cpu", "float32")
    assert _placed(1, dtype="float32") == ("cuda", "float32")  # the user's dtype, on the GPU it reserved
    assert _placed(0, dtype="bfloat16") == ("cpu", "bfloat16")
    assert _placed(1, device="cpu") == ("cpu", "float32")  # the user's device decides what 'auto' dtype is
    assert _placed(2, device="cuda", dtype="float16") == ("cuda", "float16")
    with pytest.raises(PlacementError, match=r"model.device=cuda, but resources.num_gpus_per_actor=0 reserves no GPU"):
        resolve_model_placement(ModelConfig(model="m", device="cuda"), 0)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, demo_model_dir, ray_session) -> JobConfig:  # noqa: F811
    """One finished job on the CPU (no GPU reserved): two images."""
    tmp = tmp_path_factory.mktemp("placement")
    rows = [{"id": f"i{k}", "uri": str(write_image(tmp / f"i{k}.png", size=(64, 48), seed=k)), "prompt": "a fox"}
            for k in range(2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "m.parquet")
    cfg = JobConfig(manifest=str(tmp / "m.parquet"), out=str(tmp / "out"), model=ModelConfig(model=str(demo_model_dir)),
                    decode=DecodeConfig(image_max_pixels=64 * 28 * 28), resources=ResourcesConfig(batch_size=2))
    assert run_score_job(cfg, quiet=True).ok == 2
    return cfg


def _begun_as(first_run: JobConfig, tmp_path, gpus: float | None = None, **model) -> JobConfig:
    """A copy of the first run's output whose job.json says it ran with `model` values (and
    `gpus` per scorer actor): as a run elsewhere, or an older version, would have recorded it."""
    out = tmp_path / "out"
    shutil.copytree(first_run.out, out)
    job = json.loads((out / "job.json").read_text())
    job["model"].update(model)
    if gpus is not None:
        job["resources"]["num_gpus_per_actor"] = gpus
    (out / "job.json").write_text(json.dumps(job))
    return first_run.model_copy(update={"out": str(out)})


def _rows(cfg: JobConfig) -> int:
    return pq.read_table(f"{cfg.out}/scores").num_rows


def test_job_json_records_the_device_and_dtype_the_scorer_ran_with(first_run):
    job = json.loads(open(f"{first_run.out}/job.json").read())
    assert (job["model"]["device"], job["model"]["dtype"]) == ("cpu", "float32")  # not 'auto'


def test_a_resume_that_resolves_to_another_precision_is_refused(first_run, tmp_path):
    # begun on GPU nodes (cuda, bfloat16 from one GPU per actor), continued where no GPU is reserved
    cfg = _begun_as(first_run, tmp_path, gpus=1.0, device="cuda", dtype="bfloat16")
    with pytest.raises(OutputMismatchError) as refused:
        run_score_job(cfg, quiet=True)
    message = str(refused.value)
    assert "model.device: 'cuda' -> 'cpu'" in message and "model.dtype: 'bfloat16' -> 'float32'" in message
    assert "pass --set model.device=cuda --set model.dtype=bfloat16 with GPUs reserved" in message
    assert _rows(cfg) == 2  # nothing was added


def test_a_set_dtype_is_kept_and_refused_where_the_output_has_another(first_run, tmp_path):
    cfg = _begun_as(first_run, tmp_path)  # cpu, float32 as resolved
    bf16 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"dtype": "bfloat16"})})
    with pytest.raises(OutputMismatchError, match=r"model\.dtype: 'float32' -> 'bfloat16'\)\. .* pass "
                                                  r"--set model\.dtype=float32\. Use a new --out"):
        run_score_job(bf16, quiet=True)
    assert run_score_job(cfg, quiet=True).rows == 2  # negative control: as resolved, it resumes


def test_an_output_begun_by_a_version_that_recorded_auto_resumes(first_run, tmp_path, caplog):
    cfg = _begun_as(first_run, tmp_path, device="auto", dtype="auto")
    with caplog.at_level(logging.WARNING, logger="pipeline.output_dir"):
        assert run_score_job(cfg, quiet=True).rows == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "'auto'" in r.getMessage()]
    assert len(warnings) == 1 and "continuing it with model.device=cpu, model.dtype=float32" in warnings[0], warnings
    assert _rows(cfg) == 2
    # negative control: an 'auto' record begun with GPUs reserved (bfloat16 there) is no CPU run's to continue
    shutil.rmtree(tmp_path / "out")
    gpu = _begun_as(first_run, tmp_path, gpus=1.0, device="auto", dtype="auto")
    with pytest.raises(OutputMismatchError, match=r"resources\.num_gpus_per_actor: 1\.0 -> 0\.0"):
        run_score_job(gpu, quiet=True)


def test_a_judge_job_records_and_keeps_its_precision_too(tmp_path, demo_model_dir, ray_session):  # noqa: F811
    rows = [{"id": f"i{k}", "uri": str(write_image(tmp_path / f"i{k}.png", size=(64, 48), seed=k)), "group": "g",
             "prompt": "a fox"} for k in range(2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    cfg = JobConfig(manifest=str(tmp_path / "m.parquet"), out=str(tmp_path / "first" / "out"),
                    checklist=[str(REPO / "schemas" / "checklists" / "image_pair_rank.yaml")],
                    model=ModelConfig(model=str(demo_model_dir)), decode=DecodeConfig(image_max_pixels=64 * 28 * 28))
    assert run_judge_job(cfg, JudgeOptions(), quiet=True).pairs == 1
    job = json.loads((tmp_path / "first" / "out" / "job.json").read_text())
    assert (job["model"]["device"], job["model"]["dtype"]) == ("cpu", "float32")
    gpu = _begun_as(cfg, tmp_path, gpus=1.0, device="cuda", dtype="bfloat16")
    with pytest.raises(OutputMismatchError, match=r"model\.dtype: 'bfloat16' -> 'float32'.* pass --set "
                                                  r"model\.device=cuda --set model\.dtype=bfloat16"):
        run_judge_job(gpu, JudgeOptions(), quiet=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_job_that_reserves_a_gpu_scores_in_bfloat16_and_keeps_to_it(first_run, tmp_path):
    on_gpu = first_run.model_copy(update={"out": str(tmp_path / "out"), "resources": ResourcesConfig(
        batch_size=2, num_gpus_per_actor=1)})
    assert run_score_job(on_gpu, quiet=True).ok == 2
    job = json.loads((tmp_path / "out" / "job.json").read_text())
    assert (job["model"]["device"], job["model"]["dtype"]) == ("cuda", "bfloat16")
    with pytest.raises(OutputMismatchError, match=r"model\.dtype: 'bfloat16' -> 'float32'"):
        run_score_job(on_gpu.model_copy(update={"resources": first_run.resources}), quiet=True)  # no GPU reserved


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_scorer_told_cuda_without_a_gpu_fails_at_start(demo_model_dir):
    checklists = checklists_to_json(resolve_checklists(["default"]))
    model = ModelConfig(model=str(demo_model_dir), device="cuda", dtype="bfloat16")
    with pytest.raises(GpuUnavailableError, match=r"model\.device is cuda, but this process sees no GPU"):
        ChecklistScorer(model.model_dump(), DecodeConfig().model_dump(), checklists)
    # what `vrscore` prints when Ray hands the actor's error over as the text of its traceback
    raised = RuntimeError(f"ray.exceptions.ActorDiedError: ...\n{GpuUnavailableError.__module__}."
                          "GpuUnavailableError: model.device is cuda, but this process sees no GPU (...)")
    assert vrscore_cli._systemic_stop(raised) == "model.device is cuda, but this process sees no GPU (...)"
