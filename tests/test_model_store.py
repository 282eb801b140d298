"""Models at an S3 URI (moto on loopback): downloaded once into the node's cache, shared
under a lock, re-downloaded when an entry is partial or corrupted, refused when the objects
changed under a job. No Ray, no model load: the cache itself."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from actors.checkpoint_files import checkpoint_files
from actors.file_fingerprint import digest
from actors.model_store import DOWNLOAD_LOG, MARKER, ModelChangedError, fetch_model, local_model, pin_model
from pipeline.output_dir import result_differences
from schemas.job_config import ModelConfig, StorageConfig
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)


@pytest.fixture
def s3_model(s3_endpoint, demo_model_dir, monkeypatch):  # noqa: F811
    """(uri, storage): the demo checkpoint uploaded to a new bucket, plus a pickled weight file."""
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)  # the standard AWS chain of this process, for s3fs
    bucket = s3_endpoint.make_bucket()
    for f in Path(demo_model_dir).iterdir():
        s3_endpoint.upload(f, f"s3://{bucket}/ckpt/{f.name}")
    (Path(demo_model_dir).parent / "pytorch_model.bin").write_bytes(b"pickle")
    s3_endpoint.upload(Path(demo_model_dir).parent / "pytorch_model.bin", f"s3://{bucket}/ckpt/pytorch_model.bin")
    return f"s3://{bucket}/ckpt", StorageConfig(endpoint_url=s3_endpoint.url)


def _downloads(cache: Path) -> list[dict]:
    log = cache / DOWNLOAD_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _weights(entry: Path) -> Path:
    return next(entry.glob("*.safetensors"))


def test_downloads_once_and_only_what_is_loaded(s3_model, demo_model_dir, tmp_path):
    uri, storage = s3_model
    entry = fetch_model(uri, storage, str(tmp_path / "cache"))
    again = fetch_model(uri, storage, str(tmp_path / "cache"))
    assert again == entry and len(_downloads(tmp_path / "cache")) == 1
    local = {p.name for p in Path(demo_model_dir).iterdir()}
    assert {p.name for p in entry.iterdir()} == local | {MARKER}  # no pytorch_model.bin
    for name in local:
        assert (entry / name).read_bytes() == (Path(demo_model_dir) / name).read_bytes()
    cfg = local_model(ModelConfig(model=uri, cache_dir=str(tmp_path / "cache")), storage)
    assert cfg.model == str(entry) and len(_downloads(tmp_path / "cache")) == 1


def test_concurrent_callers_share_one_download(s3_model, tmp_path):
    uri, storage = s3_model
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_model(uri, storage, str(tmp_path / "cache")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert len(_downloads(tmp_path / "cache")) == 1


def test_partial_and_corrupted_entries_are_downloaded_again(s3_model, tmp_path):
    uri, storage = s3_model
    cache = tmp_path / "cache"
    entry = fetch_model(uri, storage, str(cache))
    good = _weights(entry).read_bytes()

    # A download killed before its marker: an entry without a completion marker.
    (entry / MARKER).unlink()
    assert fetch_model(uri, storage, str(cache)) == entry and len(_downloads(cache)) == 2
    assert (entry / MARKER).exists()

    # Corrupted in place, same size: the file's mtime no longer matches the marker.
    _weights(entry).write_bytes(bytes(len(good)))
    assert fetch_model(uri, storage, str(cache)) == entry and len(_downloads(cache)) == 3
    assert _weights(entry).read_bytes() == good

    # Truncated.
    _weights(entry).write_bytes(good[:100])
    fetch_model(uri, storage, str(cache))
    assert len(_downloads(cache)) == 4 and _weights(entry).read_bytes() == good

    # Leftovers of a killed download beside the entry are cleaned up on the next download.
    (cache / f"{entry.name}.partial-dead").mkdir()
    (entry / MARKER).unlink()
    fetch_model(uri, storage, str(cache))
    assert not list(cache.glob("*.partial-*"))

    # Negative control: an intact entry is not downloaded again.
    fetch_model(uri, storage, str(cache))
    assert len(_downloads(cache)) == 5


def test_changed_objects_are_refused(s3_model, s3_endpoint, tmp_path):  # noqa: F811
    uri, storage = s3_model
    pinned = pin_model(ModelConfig(model=uri), storage)
    assert pinned.fingerprint == digest(checkpoint_files(uri, storage))
    assert pin_model(pinned, storage) == pinned  # unchanged objects: same fingerprint

    (tmp_path / "config.json").write_text(json.dumps({**json.loads(
        s3_endpoint.filesystem().cat_file(f"{uri}/config.json")), "note": "retrained"}))
    s3_endpoint.upload(tmp_path / "config.json", f"{uri}/config.json")
    with pytest.raises(ModelChangedError, match="changed"):
        pin_model(pinned, storage)
    with pytest.raises(ModelChangedError, match="changed since the job started"):
        fetch_model(uri, storage, str(tmp_path / "cache"), expect=pinned.fingerprint)
    # A resume compares job.json's model section: a new fingerprint is a different job.
    repinned = pin_model(ModelConfig(model=uri), storage)
    diffs = result_differences({"model": pinned.model_dump()}, {"model": repinned.model_dump()}, {}, {})
    assert [d for d in diffs if d.startswith(f"the model files at {uri} changed since the first run")]


def test_local_models_are_fingerprinted_and_loaded_in_place(demo_model_dir):
    cfg = ModelConfig(model=str(demo_model_dir))
    assert pin_model(cfg, StorageConfig()).fingerprint == digest(checkpoint_files(str(demo_model_dir), StorageConfig()))
    assert local_model(cfg, StorageConfig()) == cfg
    hub = ModelConfig(model="Org/not-a-local-folder")  # a hub id: nothing to fingerprint, nothing to fetch
    assert pin_model(hub, StorageConfig()) == hub and local_model(hub, StorageConfig()) == hub


def test_a_folder_without_safetensors_is_refused(s3_endpoint, monkeypatch, tmp_path):  # noqa: F811
    for k, v in s3_endpoint.env.items():
        monkeypatch.setenv(k, v)
    bucket = s3_endpoint.make_bucket()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    for name in ("config.json", "pytorch_model.bin"):
        s3_endpoint.upload(tmp_path / name, f"s3://{bucket}/old/{name}")
    with pytest.raises(ValueError, match="safetensors"):
        checkpoint_files(f"s3://{bucket}/old", StorageConfig(endpoint_url=s3_endpoint.url))
    with pytest.raises(FileNotFoundError, match="config.json"):
        checkpoint_files(f"s3://{bucket}/nothing", StorageConfig(endpoint_url=s3_endpoint.url))


def test_job_json_of_a_version_without_local_fingerprints_still_resumes(demo_model_dir):
    template = str(Path(demo_model_dir) / "chat_template.jinja")
    now = pin_model(ModelConfig(model=str(demo_model_dir), chat_template=template), StorageConfig()).model_dump()
    older = {k: v for k, v in now.items() if k != "chat_template_fingerprint"} | {"fingerprint": None}
    assert result_differences({"model": older}, {"model": now}, {}, {}) == []
    # negative control: a recorded fingerprint that differs refuses, naming the file
    recorded = now | {"chat_template_fingerprint": "0" * 64}
    assert result_differences({"model": recorded}, {"model": now}, {}, {}) == [
        f"the chat template file {template} changed since the first run (model.chat_template_fingerprint "
        f"000000000000... -> {now['chat_template_fingerprint'][:12]}...): the same path now holds other files"]
