"""Rows name their checklist, so two different checklists of one name in one scores output
make every reader that finds a row's checklist by name (filter's q.<id>, report) read one
media type's p_yes at the other's question positions. `rescore` must not write such an
output, and readers must refuse one written before this was checked; `rescore` itself reads
by media type, so it can still repair one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.cli import main
from schemas.scores import META_CHECKLISTS
from tests.ray_fixtures import ray_session  # noqa: F401 - fixture
from tests.scores_fixtures import CHECKLISTS, random_rows, scores_table, write_scores

VIDEO_NAME = CHECKLISTS["video"].name


def _image_checklist_named(tmp_path: Path, name: str) -> str:
    data = json.loads(CHECKLISTS["image"].model_copy(update={"name": name}).to_json())
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return str(tmp_path / f"{name}.yaml")


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    return random_rows(rng, 3, (2, 3)) + random_rows(rng, 2, (2, 2), media_type="video", prefix="v")


def test_rescore_refuses_to_give_one_media_type_another_ones_checklist_name(tmp_path: Path, capsys):
    write_scores(tmp_path / "s", _rows())
    renamed = _image_checklist_named(tmp_path, VIDEO_NAME)
    assert main(["rescore", "--scores", str(tmp_path / "s"), "--checklist", renamed, "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"two different checklists are named {VIDEO_NAME!r}" in err and renamed in err
    assert not (tmp_path / "r" / "scores").exists()


def _collided(tmp_path: Path) -> Path:
    """A scores output as `rescore` wrote it before the check: both checklists under one name."""
    table = scores_table(_rows())
    both = {k: json.loads(c.model_copy(update={"name": VIDEO_NAME}).to_json()) for k, c in CHECKLISTS.items()}
    meta = {**table.schema.metadata, META_CHECKLISTS: json.dumps(both).encode()}
    (tmp_path / "c" / "scores").mkdir(parents=True)
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "c" / "scores" / "part-0.parquet")
    (tmp_path / "c" / "checklist.json").write_text(json.dumps(both))
    return tmp_path / "c"


@pytest.mark.parametrize("command", [["filter", "--where", "q.sharp >= 0.5"], ["report"], ["eval", "--judgments", "x"],
                                     ["pairs"]], ids=lambda c: c[0])
def test_readers_refuse_scores_whose_checklists_share_a_name(tmp_path: Path, capsys, command):
    scores = _collided(tmp_path)
    out = ["--out", str(tmp_path / ("o.html" if command[0] == "report" else "o"))] if command[0] != "eval" else []
    assert main([command[0], "--scores", str(scores), *command[1:], *out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"two different checklists are named {VIDEO_NAME!r}" in err and "vrscore rescore" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.html").exists()


def test_rescore_repairs_scores_whose_checklists_share_a_name(tmp_path: Path, ray_session, capsys):
    scores = _collided(tmp_path)
    video = CHECKLISTS["video"].model_copy(update={"name": VIDEO_NAME})
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(json.loads(video.to_json())))
    assert main(["rescore", "--scores", str(scores), "--checklist", _image_checklist_named(tmp_path, "mine"),
                 "--checklist", str(tmp_path / "v.yaml"), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["filter", "--scores", str(tmp_path / "r"), "--where", "q.sharp >= 0.5", "--out",
                 str(tmp_path / "f"), "--quiet"]) == 0
    # q.sharp is read at each media type's own position of `sharp`.
    kept = pq.read_table(tmp_path / "f" / "scores")
    position = {c.name: c.question_ids.index("sharp") for c in (CHECKLISTS["image"], video)}
    position["mine"] = position.pop(CHECKLISTS["image"].name)
    source = {r["id"]: r for r in pq.read_table(scores / "scores").to_pylist()}
    expected = sorted(k for k, r in source.items()
                      if r["p_yes"] is not None
                      and r["p_yes"][position["mine" if r["media_type"] == "image" else VIDEO_NAME]] >= 0.5)
    assert sorted(kept["id"].to_pylist()) == expected and 0 < len(expected) < len(source)
