"""The Python API and `vrscore compare` with the tiny random demo model: results, ranking,
failures as data, and scores equal to those of the batch pipeline on the same items."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from jobs.cli import main
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture

PROMPT = "a red fox in the snow"
FRAMES = "uniform:4"


@pytest.fixture(scope="module")
def model_dir(request) -> Path:
    try:
        return request.getfixturevalue("demo_model_dir")
    except pytest.FixtureLookupError:
        pytest.skip("the demo_model_dir fixture (tests/conftest.py) is not available")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("api_media")
    return {"a": write_image(d / "a.png", size=(160, 120), seed=1),
            "b": write_image(d / "b.jpg", size=(192, 128), seed=2),
            "c": write_image(d / "c.webp", size=(128, 128), seed=3),
            "v": write_video(d / "v.mp4", n_frames=12, size=(128, 96), fps=8, seed=4), "missing": d / "missing.png"}


@pytest.fixture(scope="module")
def reward(model_dir):
    from jobs.reward_api import ChecklistReward

    with ChecklistReward.load(str(model_dir), frames=FRAMES, device="cpu") as rm:
        yield rm


def test_score_keeps_input_order_and_reports_failures(reward, media):
    results = reward.score(PROMPT, [media["a"], media["missing"], media["v"]])
    assert [r.index for r in results] == [0, 1, 2]
    a, missing, v = results
    assert a.ok and a.checklist == "vrscore-image-default-v2" and v.checklist == "vrscore-video-default-v2"
    assert set(a.dimensions) == {"alignment", "composition", "quality", "fidelity", "safety_emotion"}
    assert list(a.p_yes) == reward.checklists["image"].question_ids and all(0 <= p <= 1 for p in a.p_yes.values())
    assert list(a.answer_mass) == list(a.p_yes) and all(0 < m < 1 for m in a.answer_mass.values())
    assert missing.answer_mass == {}
    assert (missing.status, missing.score, missing.dimensions) == ("missing_file", None, {})
    assert "missing.png" in missing.error


def test_rank_orders_by_score_and_puts_failures_last(reward, media):
    items = [media["a"], media["b"], media["missing"], media["c"]]
    ranked = reward.rank(PROMPT, items, by="score_soft")
    ok = [r for r in ranked if r.ok]
    assert [r.rank for r in ranked] == [1, 2, 3, None] and ranked[-1].uri == str(media["missing"])
    assert [r.score_soft for r in ok] == sorted((r.score_soft for r in ok), reverse=True)
    with pytest.raises(ValueError, match="different checklists"):
        reward.rank(PROMPT, [media["a"], media["v"]])


def test_api_scores_equal_the_pipeline(reward, media, model_dir, tmp_path: Path, ray_session):
    from jobs.score_job import run_score_job
    from schemas.job_config import DecodeConfig, JobConfig, ModelConfig

    names = ["a", "b", "v", "missing"]
    pq.write_table(pa.table({"id": names, "uri": [str(media[n]) for n in names], "prompt": [PROMPT] * 4}),
                   tmp_path / "manifest.parquet")
    cfg = JobConfig(manifest=str(tmp_path / "manifest.parquet"), out=str(tmp_path / "out"),
                    model=ModelConfig(model=str(model_dir), device="cpu"), decode=DecodeConfig(frames=FRAMES))
    run_score_job(cfg, quiet=True)
    batch = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "scores").to_pylist()}
    for name, api in zip(names, reward.score(PROMPT, [media[n] for n in names])):
        row = batch[name]
        assert (api.status, api.checklist) == (row["status"], row["checklist"])
        if api.ok:
            assert list(api.p_yes.values()) == pytest.approx(row["p_yes"], abs=1e-5)
            assert api.score_soft == pytest.approx(row["score_soft"], abs=1e-4)


def test_compare_command_says_which_is_better(model_dir, media, reward, capsys):
    argv = ["compare", "--model", str(model_dir), "--prompt", PROMPT, "--frames", FRAMES, "--device", "cpu",
            "--by", "score_soft", str(media["a"]), str(media["b"])]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a, b = reward.score(PROMPT, [media["a"], media["b"]])
    assert out["better"] == ("A" if a.score_soft > b.score_soft else "B")
    assert out["margin"] == pytest.approx(abs(a.score_soft - b.score_soft))
    assert out["difference"]["quality"] == pytest.approx(a.dimensions["quality"] - b.dimensions["quality"])
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "is better by" in table and "safety_emotion" in table
    assert main([*argv[:-1], str(media["v"])]) == 2  # an image against a video: refused, not compared
