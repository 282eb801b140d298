"""`vrscore judge` reads manifests of media URIs. A manifest holding the media bytes, or WebDataset
shards, is refused with one clear line (a UserError: exit 2) before anything is written, rather
than judged wrongly; a URI manifest passes this check (tests/test_judge_job.py judges one)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.synthetic_media import write_image
from jobs.judge_job import JudgeOptions, run_judge_job
from schemas.job_config import JobConfig, ModelConfig
from schemas.user_error import UserError
from tests.job_process import REPO

CHECKLIST = REPO / "schemas" / "checklists" / "image_pair_rank.yaml"


def _config(manifest: Path, out: Path) -> JobConfig:
    return JobConfig(manifest=str(manifest), checklist=[str(CHECKLIST)], out=str(out),
                     model=ModelConfig(model=str(out.parent / "never-loaded")))


def _pictures(tmp_path: Path) -> dict[str, bytes]:
    return {f"p{k}": write_image(tmp_path / f"p{k}.png", size=(32, 32), seed=k).read_bytes() for k in range(2)}


def test_a_manifest_holding_the_bytes_is_refused_before_any_work(tmp_path):
    raw = _pictures(tmp_path)
    pq.write_table(pa.table({"id": list(raw), "image": pa.array(list(raw.values()), pa.binary()),
                             "group": ["g", "g"], "prompt": ["a fox"] * 2}), tmp_path / "m.parquet")
    with pytest.raises(UserError, match="manifest holding the media bytes, or WebDataset shards, is not supported"):
        run_judge_job(_config(tmp_path / "m.parquet", tmp_path / "out"), JudgeOptions(), quiet=True)
    assert not (tmp_path / "out").exists()


def test_webdataset_shards_are_refused_before_any_work(tmp_path):
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "00000.tar", mode="w") as tar:
        for key, data in _pictures(tmp_path).items():
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match="manifest holding the media bytes, or WebDataset shards, is not supported"):
        run_judge_job(_config(tmp_path / "shards", tmp_path / "out"), JudgeOptions(), quiet=True)
    assert not (tmp_path / "out").exists()
