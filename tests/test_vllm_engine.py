"""model.engine=vllm against our engine: the same p_yes, answer mass and absolute readout on tiny
checkpoints of every family vLLM loads, for images and videos, and a job with the same schema.

Runs only where vLLM is installed (`pytest -m vllm` in .ci/vllm_env.sh's venv). Every vLLM engine
start costs tens of seconds on 2 cores: one engine per checkpoint for the whole module (the vLLM
engine keeps one LLM per model config in the process), and one more in the job's scorer actor.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.adapters import MediaInput, load_adapter
from actors.adapters.base import YES_NO, AnswerKind
from actors.adapters.vllm_support import VLLM_MODEL_TYPES
from actors.demo_model import build_demo_model
from actors.synthetic_media import write_image, write_video
from pipeline.output_dir import JOB_FILE, SCORES_DIR
from jobs.score_job import run_score_job
from schemas import status as st
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.test_resume_changes import _drop_last_committed_file

pytestmark = pytest.mark.vllm
TOL = 1e-4
QUESTIONS = ["Is the lighting natural?", "Does the image look sharp and clear?", "Is there a cat?"]
ANSWERS = [YES_NO, YES_NO, AnswerKind(absolute=True)]  # the absolute readout is read from the same logprobs
# (family, preset, frame height and width the family's rule keeps as they are); Qwen2-VL's `tiny` has
# 16-wide heads, which vLLM's CPU attention refuses
FAMILIES = [("qwen2_vl", "tiny_hd32", 56, 84), ("qwen2_5_vl", "tiny_hd32", 56, 84), ("qwen3_vl", "tiny", 64, 96),
            ("internvl", "tiny", 56, 112), ("glm4v", "tiny", 56, 84)]
VLLM = dict(engine="vllm", vllm_cpu_kv_cache_gib=1, vllm_max_model_len=4096)


def model_config(path: Path, **extra) -> ModelConfig:
    return ModelConfig(model=str(path), device="cpu", dtype="float32", **extra)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm_models")
    return {f: build_demo_model(root / f, preset=p, family=f) for f, p, _, _ in FAMILIES}


def items(h: int, w: int, seed: int = 0) -> list[MediaInput]:
    """An image and a 4-frame video at a size the decode stage would have produced (`resized`)."""
    rng = np.random.default_rng(seed)
    return [MediaInput(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8), "image", resized=True),
            MediaInput(rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8), "video", fps=2.0, resized=True)]


def test_every_family_vllm_loads_is_tested():
    assert sorted(VLLM_MODEL_TYPES) == sorted(f for f, _, _, _ in FAMILIES)


@pytest.mark.parametrize("family,h,w", [(f, h, w) for f, _, h, w in FAMILIES])
def test_vllm_p_yes_equals_ours(checkpoints, family, h, w):
    ours = load_adapter(model_config(checkpoints[family]), DecodeConfig())
    vllm = load_adapter(model_config(checkpoints[family], **VLLM), DecodeConfig())
    cases = items(h, w)
    want = ours.readout(cases, [QUESTIONS] * len(cases), ANSWERS)
    got = vllm.readout(cases, [QUESTIONS] * len(cases), ANSWERS)  # all questions of both items in one call
    for g, o, item in zip(got, want, cases):
        np.testing.assert_allclose(g.p_yes, o.p_yes, atol=TOL, rtol=0, err_msg=f"{family} {item.media_type} p_yes")
        np.testing.assert_allclose(g.answer_mass, o.answer_mass, atol=TOL, rtol=0, err_msg=f"{family} {item.media_type}")
    spread = np.ptp(np.concatenate([o.p_yes[:2] for o in want]))
    assert spread > 20 * TOL, f"{family}: answers hardly differ ({spread}); agreement would be vacuous"
    # negative controls: another image, and another question, move vLLM's p_yes away from ours
    other = vllm.readout(items(h, w, seed=1)[:1], [QUESTIONS], ANSWERS)[0]
    assert np.abs(other.p_yes[:2] - want[0].p_yes[:2]).max() > 10 * TOL
    moved = vllm.readout(cases[:1], [["Is the sky green?"]])[0]
    assert abs(moved.p_yes[0] - want[0].p_yes[0]) > 10 * TOL
    # one question at a time (nothing batched) reads the same
    alone = vllm.readout_reference(cases[:1], [QUESTIONS], ANSWERS)[0]
    np.testing.assert_allclose(alone.p_yes, want[0].p_yes, atol=TOL, rtol=0)


def test_frames_the_decode_stage_did_not_resize_are_brought_to_its_size(checkpoints):
    """As the scorer's start-up canary arrives: our family resizes it by `decode.*`, vLLM's processor
    would bound it by the checkpoint's own pixel settings (a prompt of another length); the vLLM
    engine first sizes it as the decode stage would, so both score the same frames."""
    decode = DecodeConfig()  # video_min_pixels 128 x 28 x 28: above the checkpoint's 56 x 56
    ours = load_adapter(model_config(checkpoints["qwen2_vl"]), decode)
    vllm = load_adapter(model_config(checkpoints["qwen2_vl"], **VLLM), decode)
    video = MediaInput(items(56, 84)[1].frames, "video", fps=2.0)
    want, got = ours.readout([video], [QUESTIONS])[0], vllm.readout([video], [QUESTIONS])[0]
    np.testing.assert_allclose(got.p_yes, want.p_yes, atol=TOL, rtol=0)


def _job(tmp_path: Path, model: Path, engine: str) -> JobConfig:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    rows = [{"id": f"i{k}", "uri": str(write_image(media / f"i{k}.png", size=(90, 60), seed=k))} for k in range(3)]
    rows.append({"id": "v0", "uri": str(write_video(media / "v0.mp4", n_frames=4, size=(84, 56), fps=2.0))})
    rows.append({"id": "missing", "uri": str(media / "missing.png")})
    (media / "empty.png").write_bytes(b"")
    rows.append({"id": "empty", "uri": str(media / "empty.png")})
    for k, row in enumerate(rows):
        row["prompt"] = f"a fox in scene {k}"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    extra = VLLM if engine == "vllm" else {}
    return JobConfig(manifest=str(tmp_path / "m.parquet"), out=str(tmp_path / f"out_{engine}"),
                     model=model_config(model, **extra), decode=DecodeConfig(frames="uniform:4"),
                     resources=ResourcesConfig(batch_size=4, rows_per_file=2))


@pytest.mark.usefixtures("ray_session")
def test_a_vllm_job_resumes_keeps_bad_rows_and_writes_our_schema(tmp_path, checkpoints):
    model = checkpoints["qwen2_vl"]
    ours_cfg, vllm_cfg = _job(tmp_path, model, "transformers"), _job(tmp_path, model, "vllm")
    assert run_score_job(ours_cfg, quiet=True).rows == 6
    first = run_score_job(vllm_cfg, quiet=True)
    assert (first.rows, first.ok) == (6, 4)
    out = Path(vllm_cfg.out)
    assert json.loads((out / JOB_FILE).read_text())["model"]["engine"] == "vllm"
    dropped = _drop_last_committed_file(out)
    assert dropped and run_score_job(vllm_cfg, quiet=True).rows == 6  # the dropped rows are scored again
    ours = pq.read_table(Path(ours_cfg.out) / SCORES_DIR)
    theirs = pq.read_table(out / SCORES_DIR)
    # the same columns and types; the schema metadata records each job's own config
    assert theirs.schema.remove_metadata() == ours.schema.remove_metadata()
    a, b = (t.sort_by("id").to_pydict() for t in (ours, theirs))
    assert a["id"] == b["id"] and len(set(b["id"])) == 6
    assert a["status"] == b["status"]
    assert {i: s for i, s in zip(b["id"], b["status"])}["missing"] != st.OK
    for pa_, pb in zip(a["p_yes"], b["p_yes"]):
        assert (pa_ is None) == (pb is None)
        if pa_ is not None:
            np.testing.assert_allclose(pb, pa_, atol=TOL, rtol=0)
