"""What a model's inputs are read from: only the files `from_pretrained` reads (the folder's top
level and the shards an index names), for a folder in a bucket and a local one alike; and a
chat template in a bucket, read with the job's storage settings. S3 is moto on loopback."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from actors.model_store import MARKER, ModelChangedError, fetch_model, local_model, pin_model
from schemas.job_config import DecodeConfig, ModelConfig, StorageConfig
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)

SHARD = "shards/model-00001-of-00001.safetensors"


@pytest.fixture
def training_folder(s3_endpoint, demo_model_dir, tmp_path, monkeypatch):  # noqa: F811
    """(uri, storage, bucket): a training run's output folder in a bucket: the final checkpoint
    at the top level, its weights as a shard named by an index, beside an intermediate
    checkpoint and a log folder."""
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)  # credentials only: the endpoint comes from StorageConfig
    bucket = s3_endpoint.make_bucket()
    weights = Path(demo_model_dir) / "model.safetensors"
    for f in Path(demo_model_dir).iterdir():
        if f != weights:
            s3_endpoint.upload(f, f"s3://{bucket}/run/{f.name}")
    s3_endpoint.upload(weights, f"s3://{bucket}/run/{SHARD}")
    with safe_open(str(weights), "pt") as f:
        index = {"metadata": {}, "weight_map": {name: SHARD for name in f.keys()}}
    client = s3_endpoint.client()
    client.put_object(Bucket=bucket, Key="run/model.safetensors.index.json", Body=json.dumps(index).encode())
    s3_endpoint.upload(weights, f"s3://{bucket}/run/checkpoint-100/model.safetensors")
    s3_endpoint.upload(Path(demo_model_dir) / "config.json", f"s3://{bucket}/run/checkpoint-100/config.json")
    client.put_object(Bucket=bucket, Key="run/logs/train.log", Body=b"step 1\n")
    return f"s3://{bucket}/run", StorageConfig(endpoint_url=s3_endpoint.url), bucket


def test_only_the_checkpoint_is_downloaded_and_fingerprinted(training_folder, s3_endpoint, demo_model_dir,  # noqa: F811
                                                             tmp_path):
    from transformers import AutoModelForImageTextToText

    uri, storage, bucket = training_folder
    pinned = pin_model(ModelConfig(model=uri), storage)
    entry = fetch_model(uri, storage, str(tmp_path / "cache"), expect=pinned.fingerprint)
    got = sorted(str(p.relative_to(entry)) for p in entry.rglob("*") if p.is_file())
    top = {p.name for p in Path(demo_model_dir).iterdir()} - {"model.safetensors"}
    assert got == sorted(top | {"model.safetensors.index.json", SHARD, MARKER})  # no checkpoint-100/, no logs/
    assert (entry / SHARD).read_bytes() == (Path(demo_model_dir) / "model.safetensors").read_bytes()
    AutoModelForImageTextToText.from_pretrained(entry, use_safetensors=True)  # what it reads is there

    # A log still being written and an intermediate checkpoint rewritten: the same model.
    client = s3_endpoint.client()
    client.put_object(Bucket=bucket, Key="run/logs/train.log", Body=b"step 1\nstep 2\n")
    client.put_object(Bucket=bucket, Key="run/checkpoint-100/config.json", Body=b"{}")
    assert pin_model(pinned, storage) == pinned
    # Negative control: rewriting the shard the index names is another model.
    client.put_object(Bucket=bucket, Key=f"run/{SHARD}", Body=b"other weights")
    with pytest.raises(ModelChangedError, match="changed"):
        pin_model(pinned, storage)


def test_a_local_folder_is_fingerprinted_by_its_top_level_too(demo_model_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(demo_model_dir, folder)
    (folder / "logs").mkdir()
    (folder / "logs" / "train.log").write_text("step 1\n")
    pinned = pin_model(ModelConfig(model=str(folder)), StorageConfig())
    (folder / "logs" / "train.log").write_text("step 1\nstep 2\n")
    assert pin_model(pinned, StorageConfig()) == pinned
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")  # negative control
    with pytest.raises(ModelChangedError, match="changed"):
        pin_model(pinned, StorageConfig())


def test_a_template_in_a_bucket_is_read_with_the_jobs_storage_settings(s3_endpoint, demo_model_dir,  # noqa: F811
                                                                      tmp_path, monkeypatch):
    from actors.checklist_scorer import ChecklistScorer
    from pipeline.model_family import resolve_decode
    from schemas.checklist_set import checklists_to_json, resolve_checklists

    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)  # credentials only: the endpoint is not the default one
    bucket = s3_endpoint.make_bucket()
    text = "{#- the bucket's copy -#}" + (Path(demo_model_dir) / "chat_template.jinja").read_text()
    (tmp_path / "t.jinja").write_text(text)
    uri = s3_endpoint.upload(tmp_path / "t.jinja", f"s3://{bucket}/templates/t.jinja")
    storage = StorageConfig(endpoint_url=s3_endpoint.url)
    model = ModelConfig(model=str(demo_model_dir), chat_template=uri, cache_dir=str(tmp_path / "cache"), device="cpu")
    model = pin_model(model, storage)  # as `vrscore score` does on the driver
    decode = resolve_decode(model, DecodeConfig(), storage)
    checklists = checklists_to_json(resolve_checklists(["default"]))
    scorer = ChecklistScorer(model.model_dump(), decode.model_dump(), checklists, storage=storage.model_dump())
    assert {a.prompts.template for a in scorer.adapters.values()} == {text}
    assert model.chat_template_fingerprint is not None

    # The template rewritten in the bucket after the job started: an actor starting now refuses it.
    (tmp_path / "t.jinja").write_text(text + "\n")
    s3_endpoint.upload(tmp_path / "t.jinja", uri)
    with pytest.raises(ModelChangedError, match=r"the chat template s3://.* changed since the job started"):
        local_model(model, storage)
