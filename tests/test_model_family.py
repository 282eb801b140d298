"""The model's resize rule and factor, resolved on the driver before any work
(`pipeline/model_family.py`), applied by the decode stage, and kept comparable in job.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.decode_worker import DecodeWorker
from actors.frame_decode import decode_image
from actors.synthetic_media import make_picture, write_image, write_video
from pipeline.output_dir import result_differences
from pipeline.model_family import ModelFamilyError, resolve_decode
from pipeline.resize_policy import RESIZE_RULES
from schemas.job_config import DecodeConfig, JobConfig, ModelConfig, StorageConfig
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)
from tests.test_model_store import s3_model  # noqa: F401  (fixture)

QWEN3 = ({"model_type": "qwen3_vl"}, {"patch_size": 16, "merge_size": 2})


def checkpoint(tmp_path: Path, config: dict, preprocessor: dict | None = None) -> str:
    """A folder with only the JSON files the driver reads."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if preprocessor is not None:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return str(tmp_path)


def resolve(model: str, **decode) -> DecodeConfig:
    return resolve_decode(ModelConfig(model=model), DecodeConfig(**decode), StorageConfig())


def test_the_factor_is_the_models_patch_times_merge_or_a_multiple_of_it(tmp_path):
    qwen3 = checkpoint(tmp_path, *QWEN3)
    assert (resolve(qwen3).resize_rule, resolve(qwen3).resize_factor) == ("smart_resize", 32)
    assert resolve(qwen3, resize_factor=64).resize_factor == 64
    with pytest.raises(ModelFamilyError, match=r"resize_factor=28 is not a multiple of 32 \(patch size x spatial merge"):
        resolve(qwen3, resize_factor=28)  # the old default: refused here, not inside a Ray actor


def test_settings_the_model_does_not_take_are_refused(tmp_path):
    internvl = checkpoint(tmp_path / "i", {"model_type": "internvl"})
    assert (resolve(internvl).resize_rule, resolve(internvl).resize_factor) == ("fit_within", None)
    with pytest.raises(ModelFamilyError, match="resize_factor=28 does not apply to .*resizes the source image itself"):
        resolve(internvl, resize_factor=28)
    with pytest.raises(ModelFamilyError, match=r"resize_rule='smart_resize' is not the rule of .* \('fit_within'\)"):
        resolve(internvl, resize_rule="smart_resize", resize_factor=28)
    glm = checkpoint(tmp_path / "g", {"model_type": "glm4v"})  # no preprocessor config: no grid to size by
    with pytest.raises(ModelFamilyError, match="has no preprocessor_config.json"):
        resolve(glm)


def test_unsupported_model_types_are_refused_with_the_supported_ones(tmp_path):
    with pytest.raises(ModelFamilyError, match=r"model_type 'bert', which vrscore cannot score; supported model "
                                               r"types: gemma3, glm4v, .*qwen2_vl.*or any image-text-to-text"):
        resolve(checkpoint(tmp_path / "b", {"model_type": "bert"}))
    # image-text-to-text models without a family module: the generic path, whose processor resizes
    assert resolve(checkpoint(tmp_path / "p", {"model_type": "paligemma"})).resize_rule == "fit_within"
    remote_code = {"model_type": "custom_vlm", "auto_map": {"AutoModelForImageTextToText": "m.Model"}}
    assert resolve(checkpoint(tmp_path / "r", remote_code)).resize_rule == "fit_within"


def test_a_model_at_an_s3_uri_is_read_without_downloading_it(s3_model):  # noqa: F811
    uri, storage = s3_model
    decode = resolve_decode(ModelConfig(model=uri), DecodeConfig(), storage)
    assert (decode.resize_rule, decode.resize_factor) == ("smart_resize", 28)


def test_vrscore_score_refuses_an_unsupported_model_in_one_line_before_any_work(tmp_path, capsys):
    from jobs import cli as vrscore_cli

    pq.write_table(pa.table({"id": ["a"], "uri": [str(tmp_path / "a.png")], "prompt": ["p"]}), tmp_path / "m.parquet")
    model = checkpoint(tmp_path / "bert", {"model_type": "bert"})
    out = tmp_path / "out"
    assert vrscore_cli.main(["score", "--manifest", str(tmp_path / "m.parquet"), "--model", model,
                             "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_type 'bert', which vrscore cannot score; supported model types:" in err
    assert not out.exists()


@pytest.mark.parametrize(("rule", "factor", "expect"), [
    ("smart_resize", 28, (28, 1008)),  # Qwen rounds the 17-pixel side to one factor
    ("smart_resize_small_up", 28, (28, 1652)),  # GLM scales the frame up first: 1647x28, then rounds
    ("fit_within", None, (17, 1000)),  # the source, for processors that resize it themselves
    (None, None, (17, 1000)),  # no model's rule resolved: the source too
])
def test_the_decode_stage_applies_the_resolved_rule(tmp_path, rule, factor, expect):
    path = write_image(tmp_path / "wide.png", (1000, 17), seed=3)
    cfg = DecodeConfig(resize_rule=rule, resize_factor=factor)
    frames = decode_image(path.read_bytes(), cfg).frames
    assert frames.shape == (1, *expect, 3)
    assert expect == RESIZE_RULES[rule or "fit_within"](17, 1000, factor, cfg.image_min_pixels, cfg.image_max_pixels)
    if rule in ("fit_within", None):
        assert np.array_equal(frames[0], make_picture((1000, 17), 3))  # bit for bit the source


def test_fit_within_only_scales_down_to_the_max_pixels(tmp_path):
    path = write_image(tmp_path / "big.png", (400, 300), seed=1)
    frames = decode_image(path.read_bytes(), DecodeConfig(resize_rule="fit_within", image_max_pixels=30_000)).frames
    assert frames.shape == (1, 150, 200, 3)


def test_a_model_size_rule_without_its_factor_is_refused_before_any_row():
    with pytest.raises(ValueError, match="'smart_resize' needs a resize_factor"):
        DecodeWorker(DecodeConfig(resize_rule="smart_resize").model_dump())


def _job(decode: DecodeConfig) -> dict:
    return json.loads(JobConfig(manifest="/m.parquet", out="/o", model=ModelConfig(model="/m"), decode=decode)
                      .model_dump_json())


def test_an_older_job_json_resumes_where_the_models_rule_is_the_one_it_applied(tmp_path):
    older = _job(DecodeConfig(resize_factor=28))  # written before resize_rule existed
    del older["decode"]["resize_rule"]
    qwen2 = _job(resolve(checkpoint(tmp_path / "q", {"model_type": "qwen2_vl"}, {"patch_size": 14, "merge_size": 2})))
    assert result_differences(older, qwen2, {}, {}) == []
    internvl = _job(resolve(checkpoint(tmp_path / "i", {"model_type": "internvl"})))
    assert result_differences(older, internvl, {}, {}) == [
        "decode.resize_factor: 28 -> None", "decode.resize_rule: 'smart_resize' -> 'fit_within'"]
    older["decode"]["resize_factor"] = 32  # a Qwen3-VL job run with --set decode.resize_factor=32
    assert result_differences(older, _job(resolve(checkpoint(tmp_path / "q3", *QWEN3))), {}, {}) == []


@pytest.mark.slow
def test_vrscore_score_with_a_qwen3_vl_model_and_default_decode_settings(tmp_path, capsys, ray_session):  # noqa: F811
    from actors.demo_model import build_demo_model
    from jobs import cli as vrscore_cli

    model = build_demo_model(tmp_path / "qwen3_vl", family="qwen3_vl")
    uris = [str(write_image(tmp_path / f"{w}x{h}.png", (w, h), seed=k)) for k, (w, h) in enumerate([(37, 301), (90, 60)])]
    uris.append(str(write_video(tmp_path / "v.mp4", n_frames=6, size=(64, 48), fps=4.0, seed=3)))
    pq.write_table(pa.table({"id": ["i0", "i1", "v0"], "uri": uris, "prompt": ["a picture"] * 3}), tmp_path / "m.parquet")
    out = tmp_path / "out"
    assert vrscore_cli.main(["score", "--manifest", str(tmp_path / "m.parquet"), "--checklist", "default",
                             "--model", str(model), "--out", str(out), "--quiet",
                             "--set", "model.device=cpu"]) == 0, capsys.readouterr().err[-3000:]
    rows = pq.read_table(out / "scores").to_pylist()
    assert sorted((r["id"], r["status"]) for r in rows) == [("i0", "ok"), ("i1", "ok"), ("v0", "ok")]
    decode = json.loads((out / "job.json").read_text())["decode"]
    assert (decode["resize_rule"], decode["resize_factor"]) == ("smart_resize", 32)
