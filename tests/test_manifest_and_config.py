"""Manifest column checks, per-row validation and job-config assembly (no Ray, no model)."""
import numpy as np
import pyarrow as pa
import pytest

from jobs.job_config_loading import ConfigError, build_job_config
from pipeline.score_pipeline import validate_rows
from schemas import status
from schemas.manifest import ManifestError, columns_to_read, infer_media_type


def test_missing_required_column_is_named():
    schema = pa.schema([("id", pa.string()), ("path", pa.string())])
    with pytest.raises(ManifestError, match="'uri'"):
        columns_to_read(schema, needs_prompt=False, keep_columns=[])
    schema = pa.schema([("id", pa.string()), ("uri", pa.string())])
    with pytest.raises(ManifestError, match="'prompt'"):
        columns_to_read(schema, needs_prompt=True, keep_columns=[])
    with pytest.raises(ManifestError, match="aesthetic"):
        columns_to_read(schema, needs_prompt=False, keep_columns=["aesthetic"])


def test_only_needed_columns_are_read():
    schema = pa.schema([(c, pa.string()) for c in ["id", "uri", "prompt", "caption", "big_blob", "source"]])
    assert columns_to_read(schema, needs_prompt=True, keep_columns=["source"]) == ["id", "uri", "prompt", "source"]


@pytest.mark.parametrize("uri,kind", [
    ("a/b.PNG", "image"), ("s3://bucket/x/y.mp4", "video"), ("https://h/x.webm?sig=1", "video"),
    ("file:///tmp/a.jpeg", "image"), ("clip.xyz", None), ("noext", None)])
def test_media_type_inference(uri, kind):
    assert infer_media_type(uri) == kind


def test_validate_rows_gives_status_per_row():
    batch = {
        "id": np.array([1, 2, 3, 4, 5, 6], dtype=object),
        "uri": np.array(["a.png", None, "c.xyz", "d.mp4", "e.mp4", " "], dtype=object),
        "media_type": np.array([None, None, None, "video", "audio", None], dtype=object),
        "prompt": np.array(["p", "p", "p", None, "p", "p"], dtype=object),
    }
    out = validate_rows(batch, prompt_needed_for={"image": True, "video": True})
    assert out["status"].tolist() == [status.OK, status.INVALID_ROW, status.UNSUPPORTED_MEDIA,
                                      status.INVALID_ROW, status.UNSUPPORTED_MEDIA, status.INVALID_ROW]
    assert out["media_type"][0] == "image" and out["id"][0] == "1"
    assert "uri is null" in out["error"][1] and "'.xyz'" in out["error"][2] and "prompt" in out["error"][3]
    assert out["group"].tolist() == ["p", "p", "p", None, "p", "p"]  # group defaults to the prompt
    no_video = validate_rows(batch, prompt_needed_for={"image": False})
    assert no_video["status"][3] == status.UNSUPPORTED_MEDIA and "no checklist for videos" in no_video["error"][3]


def test_job_config_precedence_and_errors(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("manifest: m.parquet\nout: o\nmodel: {model: m1, dtype: bfloat16}\nresources: {batch_size: 4}\n")
    cfg = build_job_config(str(f), {"model.model": "m2", "out": None}, ["resources.batch_size=32", "decode.frames=uniform:4"])
    assert cfg.model.model == "m2" and cfg.model.dtype == "bfloat16" and cfg.out == "o"
    assert cfg.resources.batch_size == 32 and cfg.decode.frames == "uniform:4"
    assert cfg.checklist == ["default"] and cfg.model.trust_remote_code is False
    with pytest.raises(ConfigError, match="frames"):
        build_job_config(str(f), {}, ["decode.frames=every:3"])
    with pytest.raises(ConfigError, match="batch_sise"):
        build_job_config(str(f), {}, ["resources.batch_sise=3"])
    with pytest.raises(ConfigError, match="key=value"):
        build_job_config(str(f), {}, ["resources.batch_size"])
