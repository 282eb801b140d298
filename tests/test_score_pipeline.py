"""`vrscore score` end to end on a local Ray: synthetic and real media, the tiny demo model,
every manifest row accounted for, scores recomputable from the written p_yes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image, write_video
from pipeline.output_dir import OutputMismatchError
from jobs.score_job import run_score_job
from pipeline.weighting import aggregate
from schemas import status
from schemas.checklist_set import all_dimensions, resolve_checklists
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, ResourcesConfig
from schemas.scores import read_checklists_metadata, scores_schema
from tests.paths import MEDIA, VR_DIMS, VR_VIDEO_QA, VR_VIDEO_W
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("ray_session")


def _manifest(tmp: Path) -> tuple[Path, dict[str, str]]:
    """Rows with their expected status."""
    media = tmp / "media"
    media.mkdir()
    rows, expect = [], {}

    def add(id_, uri, want, prompt="a red fox in the snow", **extra):
        rows.append({"id": id_, "uri": str(uri), "prompt": prompt, "group": extra.get("group", "g1"),
                     "source": extra.get("source", "synthetic")})
        expect[id_] = want

    for k, fmt in enumerate(["png", "jpeg", "webp"]):
        p = media / f"img{k}.{fmt}"
        write_image(p, size=(160 + 16 * k, 120), seed=k)
        add(f"img{k}", p, status.OK)
    p = media / "clip.mp4"
    write_video(p, n_frames=20, size=(128, 96), fps=10, seed=5)
    add("vid0", p, status.OK, group="g2")
    if MEDIA.exists():
        add("real_webp", MEDIA / "imagereward_1.webp", status.OK)
        add("real_mp4", MEDIA / "curator_test_video.mp4", status.OK, group="g2")
        add("corrupt", MEDIA / "decord_corrupted.mp4", status.DECODE_ERROR, group="g2")
    add("missing", media / "nope.png", status.MISSING_FILE)
    add("unknown_ext", media / "x.abc", status.UNSUPPORTED_MEDIA)
    add("no_prompt", media / "img0.png", status.INVALID_ROW, prompt=None)
    path = tmp / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)
    return path, expect


def _config(manifest: Path, out: Path, model: Path, **kw) -> JobConfig:
    return JobConfig(
        manifest=str(manifest), out=str(out), model=ModelConfig(model=str(model)), keep_columns=["source"],
        decode=DecodeConfig(frames="uniform:4", image_max_pixels=128 * 28 * 28, video_max_pixels=64 * 28 * 28),
        resources=ResourcesConfig(batch_size=4, decode_batch_size=3), **kw,
    )


def test_every_row_scored_once_with_explicit_schema(tmp_path, demo_model_dir):
    manifest, expect = _manifest(tmp_path)
    cfg = _config(manifest, tmp_path / "out", demo_model_dir)
    summary = run_score_job(cfg, quiet=True)

    table = pq.read_table(tmp_path / "out" / "scores")
    got = dict(zip(table["id"].to_pylist(), table["status"].to_pylist()))
    assert sorted(table["id"].to_pylist()) == sorted(expect)  # each row exactly once
    assert got == expect
    assert summary.rows == len(expect) == summary.ok + summary.errors
    assert summary.ok == sum(v == status.OK for v in expect.values())

    checklists = resolve_checklists(["default"])
    want_schema = scores_schema(all_dimensions(checklists), [pa.field("source", pa.string())])
    assert table.schema.remove_metadata().equals(want_schema.remove_metadata())
    meta = pq.read_schema(next((tmp_path / "out" / "scores").glob("*.parquet"))).metadata
    assert json.loads(meta[b"vrscore.job"])["model"]["model"] == str(demo_model_dir)
    assert read_checklists_metadata(table.schema) == checklists
    assert json.loads((tmp_path / "out" / "checklist.json").read_text())["image"]["name"] == checklists["image"].name
    assert json.loads((tmp_path / "out" / "job.json").read_text())["manifest"] == str(manifest)

    rows = table.to_pylist()
    # The frames the model saw: uniform:4 of 20 frames at 10 fps = frames 0, 6, 13, 19.
    vid0 = next(r for r in rows if r["id"] == "vid0")
    assert vid0["frame_count"] == 4 and vid0["frame_times"] == pytest.approx([0, 0.6, 1.3, 1.9], abs=1e-6)
    for r in rows:
        if r["media_type"] == "video" and r["status"] == status.OK:
            assert r["frame_count"] == len(r["frame_times"]) > 0
        else:  # images and failed rows saw no video frames
            assert r["frame_count"] is None and r["frame_times"] is None, r["id"]
        if r["status"] != status.OK:
            assert r["error"] and r["p_yes"] is None and r["answer_mass"] is None and r["score"] is None
            continue
        c = checklists[r["media_type"]]
        assert r["checklist"] == c.name and r["source"] == "synthetic" or r["id"].startswith("real")
        p, mass = np.array(r["p_yes"]), np.array(r["answer_mass"])
        assert p.shape == mass.shape == (len(c.questions),) and np.all((p >= 0) & (p <= 1))
        assert np.all((mass > 0) & (mass < 1))
        agg = aggregate(c, p[None, :])
        assert r["answers"] == agg.answers[0].tolist()
        assert r["score"] == pytest.approx(agg.score[0]) and r["score_soft"] == pytest.approx(agg.score_soft[0])
        for dim, values in agg.dimensions.items():
            assert r[f"dim_{dim}"] == pytest.approx(values[0])
    assert {r["group"] for r in rows} == {"g1", "g2"}

    # Summary means are per media type (image and video scores live on different scales).
    for kind in ("image", "video"):
        ok = [r for r in rows if r["status"] == status.OK and r["media_type"] == kind]
        assert ok and summary.means[kind]["score"] == pytest.approx(np.mean([r["score"] for r in ok]))
    printed = summary.format()
    assert re.search(r"^mean\s+image\s+video$", printed, re.M)
    assert re.search(rf"^score\s+{summary.means['image']['score']:+.4f}\s+{summary.means['video']['score']:+.4f}$",
                     printed, re.M)
    # mean answer mass per question, and the random-weight model's low mass flagged in one line
    for kind in ("image", "video"):
        ok = [r["answer_mass"] for r in rows if r["status"] == status.OK and r["media_type"] == kind]
        want = np.mean(ok, axis=0)
        assert list(summary.answer_mass[kind]) == checklists[kind].question_ids
        np.testing.assert_allclose(list(summary.answer_mass[kind].values()), want, rtol=1e-6)
        first = checklists[kind].question_ids[0]
        assert re.search(rf"^  {kind}:  {first} {want[0]:.3f}", printed, re.M)
    assert len([line for line in printed.splitlines() if line.startswith("warning:")]) == 1
    assert "have a mean answer mass under 0.5" in printed and "model.chat_template_kwargs" in printed


def test_visionreward_video_checklist_and_refusal_to_overwrite(tmp_path, demo_model_dir):
    media = tmp_path / "m"
    media.mkdir()
    rows = []
    for k in range(3):
        write_video(media / f"v{k}.mp4", n_frames=30, size=(96, 96), fps=10, seed=k)
        rows.append({"id": f"v{k}", "uri": str(media / f"v{k}.mp4"), "prompt": f"prompt {k % 2}"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    cfg = _config(tmp_path / "m.parquet", tmp_path / "out", demo_model_dir,
                  checklist=[str(VR_VIDEO_QA)], weights=[str(VR_VIDEO_W)], dimensions=str(VR_DIMS))
    cfg.keep_columns = []
    cfg.decode.frames = "visionreward"
    run_score_job(cfg, quiet=True)
    table = pq.read_table(tmp_path / "out" / "scores")
    assert table.num_rows == 3 and set(table["status"].to_pylist()) == {status.OK}
    weight = np.array(json.loads(VR_VIDEO_W.read_text()))
    for r in table.to_pylist():
        answers = np.where(np.array(r["p_yes"]) >= 0.5, 1, -1)
        assert r["score"] == pytest.approx(float(np.mean(answers * weight)))
        assert r["group"] == r["prompt"]
    files = sorted(p.name for p in (tmp_path / "out" / "scores").iterdir())
    again = run_score_job(cfg, quiet=True)  # a finished job rerun: resumes, writes nothing new
    assert again.rows == 3 and sorted(p.name for p in (tmp_path / "out" / "scores").iterdir()) == files
    changed = cfg.model_copy(update={"decode": cfg.decode.model_copy(update={"frames": "uniform:2"})})
    with pytest.raises(OutputMismatchError, match="decode.frames: 'visionreward' -> 'uniform:2'"):
        run_score_job(changed, quiet=True)
