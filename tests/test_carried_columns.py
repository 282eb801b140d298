"""Manifest columns a job carries beside its own (`--keep-columns`, `--alignment-column`) never
share a name with a column vrscore writes: refused with the job config, before any work,
instead of failing at the write after the whole job was scored (a kept `dim_` column) or
being silently replaced on the way (a kept `fps`)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from actors.synthetic_media import write_image
from jobs import cli as vrscore_cli
from schemas.checklist_set import all_dimensions, resolve_checklists
from schemas.job_config import JobConfig, ModelConfig
from schemas.scores import dimension_columns

# Columns of the manifest below beside id, uri and prompt; each is a name vrscore writes.
TAKEN = {"dim_alignment": "a dimension of the default checklist", "dim_later": "no checklist in use has it",
         "fps": "the decode stage's", "video_duration": "the decode stage's", "score": "an output column"}


def _manifest(tmp_path) -> str:
    uris = []
    for i in range(2):
        write_image(tmp_path / f"{i}.png", (64, 48), seed=i)
        uris.append(str(tmp_path / f"{i}.png"))
    table = {"id": ["a", "b"], "uri": uris, "prompt": ["a cat", "a dog"], "source": ["x", "y"]}
    table |= {c: [0.5, 0.25] for c in TAKEN}
    pq.write_table(pa.table(table), tmp_path / "m.parquet")
    return str(tmp_path / "m.parquet")


def test_the_default_checklists_dimension_is_among_the_names_tested():
    dims = dimension_columns(all_dimensions(resolve_checklists(["default"])))
    assert "dim_alignment" in dims.values()  # so the first case below is a column the job writes


@pytest.mark.parametrize("flags,message", [
    (["--keep-columns", "source,dim_alignment"],
     "keep_columns 'dim_alignment' starts with 'dim_', which vrscore keeps for its dimension columns"),
    (["--keep-columns", "dim_later"], "keep_columns 'dim_later' starts with 'dim_'"),
    (["--keep-columns", "fps"], "keep_columns 'fps' is a column the decode stage adds to each row"),
    (["--keep-columns", "video_duration"], "keep_columns 'video_duration' is a column the decode stage adds"),
    (["--keep-columns", "source,source"], "keep_columns names 'source' twice"),
    (["--alignment-column", "score"], "alignment_column 'score' is a column vrscore writes"),
])
def test_vrscore_score_refuses_a_carried_column_vrscore_writes_before_any_work(tmp_path, capsys, demo_model_dir,
                                                                                flags, message):
    out = tmp_path / "out"
    args = ["score", "--manifest", _manifest(tmp_path), "--model", str(demo_model_dir), "--out", str(out), "--quiet"]
    assert vrscore_cli.main(args + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("vrscore score: error: invalid job config: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # refused before the output was started, let alone scored


def test_the_python_api_refuses_them_too_on_creation_and_on_assignment():
    model = ModelConfig(model="m")
    with pytest.raises(ValidationError, match="keep_columns 'dim_quality' starts with 'dim_'"):
        JobConfig(manifest="m.parquet", out="o", model=model, keep_columns=["dim_quality"])
    cfg = JobConfig(manifest="m.parquet", out="o", model=model, keep_columns=["source"], alignment_column="source")
    with pytest.raises(ValidationError, match="alignment_column 'group' is a column vrscore writes"):
        cfg.alignment_column = "group"
    # names that only look alike are the user's: the columns are case-sensitive, and 'dim' alone is no prefix
    assert JobConfig(manifest="m.parquet", out="o", model=model, keep_columns=["Dim_x", "dim", "Score"]).keep_columns
