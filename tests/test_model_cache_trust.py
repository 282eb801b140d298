"""The model cache cannot be used to write or plant files: names from a bucket never leave the
cache entry, the default cache is the user's own and private, and an entry is loaded only
while it is the job user's alone. S3 is moto on loopback; no model is loaded."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from actors.model_store import CACHE_ENV, DOWNLOAD_LOG, MARKER, default_cache_dir, fetch_model, local_model
from schemas.job_config import ModelConfig
from tests.s3_fixtures import s3_endpoint  # noqa: F401  (fixture)
from tests.test_model_store import s3_model  # noqa: F401  (fixture)


def _downloads(cache: Path) -> int:
    log = cache / DOWNLOAD_LOG
    return len(log.read_text().splitlines()) if log.exists() else 0


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


# --- names from a bucket ---------------------------------------------------------------------

def test_a_key_holding_dotdot_below_the_folder_is_never_written(s3_model, s3_endpoint, tmp_path):  # noqa: F811
    uri, storage = s3_model
    bucket, prefix = _bucket_and_prefix(uri)
    s3_endpoint.client().put_object(Bucket=bucket, Key=f"{prefix}/sub/../../../escape.json", Body=b"planted")
    cache = tmp_path / "node" / "cache"
    entry = fetch_model(uri, storage, str(cache))
    assert (entry / "config.json").exists()
    assert list(tmp_path.rglob("escape.json")) == []  # neither outside the cache nor in it


@pytest.mark.parametrize("where", ["top-level key", "index entry"])
def test_an_unsafe_name_is_refused_before_anything_is_downloaded(s3_model, s3_endpoint, tmp_path, where):  # noqa: F811
    uri, storage = s3_model
    bucket, prefix = _bucket_and_prefix(uri)
    client = s3_endpoint.client()
    if where == "top-level key":
        client.put_object(Bucket=bucket, Key=f"{prefix}/..", Body=b"planted")
    else:  # an index naming a shard outside the folder, which exists there
        client.put_object(Bucket=bucket, Key="escape.safetensors", Body=b"planted")
        index = {"metadata": {}, "weight_map": {"w": "../escape.safetensors"}}
        client.put_object(Bucket=bucket, Key=f"{prefix}/model.safetensors.index.json", Body=json.dumps(index).encode())
    cache = tmp_path / "node" / "cache"
    with pytest.raises(ValueError, match=r"file named '(\.\.|\.\./escape\.safetensors)', which would be written "
                                         r"outside the model cache folder"):
        fetch_model(uri, storage, str(cache))
    assert not cache.exists() or sorted(p.name for p in cache.iterdir()) == []  # nothing downloaded
    assert list(tmp_path.rglob("escape.safetensors")) == []


def test_checked_name_refuses_every_escape():
    from actors.checkpoint_files import UnsafeNameError, checked_name

    for name in ["model.safetensors", "shards/part-1.safetensors", "a..b.json"]:
        assert checked_name(name, "s3://b/m") == name
    for name in ["", "/etc/passwd", "..", "../x", "a/../../x", "a/../b", "./x", "a//b", "a/", "x\0y", None]:
        with pytest.raises(UnsafeNameError):
            checked_name(name, "s3://b/m")


# --- where the cache is, and what in it is trusted -------------------------------------------

def test_the_default_cache_is_the_users_own(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "vrscore" / "models")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "vrscore" / "models")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "node-wide"))  # the operator's choice still wins
    assert default_cache_dir() == str(tmp_path / "node-wide")


def test_a_model_fetched_to_the_default_cache_is_private(s3_model, tmp_path, monkeypatch):  # noqa: F811
    uri, storage = s3_model
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    old = os.umask(0o002)  # a umask that would leave files group-writable
    try:
        cfg = local_model(ModelConfig(model=uri), storage)
    finally:
        os.umask(old)
    root = tmp_path / "xdg" / "vrscore" / "models"
    entry = Path(cfg.model)
    assert entry.parent == root and stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in entry.iterdir()} == {0o600}


def test_an_entry_someone_else_could_have_written_is_downloaded_again(s3_model, tmp_path):  # noqa: F811
    uri, storage = s3_model
    cache = tmp_path / "cache"
    entry = fetch_model(uri, storage, str(cache))
    weights = entry / "model.safetensors"
    weights.chmod(0o620)  # group-writable: anyone in the group could have swapped the weights
    assert fetch_model(uri, storage, str(cache)) == entry and _downloads(cache) == 2
    assert stat.S_IMODE(weights.stat().st_mode) == 0o600
    entry.chmod(0o777)  # a folder others may write: they could have replaced any file in it
    fetch_model(uri, storage, str(cache))
    assert _downloads(cache) == 3 and stat.S_IMODE(entry.stat().st_mode) == 0o700
    fetch_model(uri, storage, str(cache))  # negative control: a private entry is used as it is
    assert _downloads(cache) == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_owned_by_another_user_is_downloaded_again(s3_model, tmp_path):  # noqa: F811
    uri, storage = s3_model
    cache = tmp_path / "cache"
    entry = fetch_model(uri, storage, str(cache))
    os.chown(entry / MARKER, 4242, -1)  # a planted marker, 0600 but not ours
    assert fetch_model(uri, storage, str(cache)) == entry and _downloads(cache) == 2
    assert (entry / MARKER).stat().st_uid == os.getuid()


def test_the_ownership_check_on_stat_results():
    from actors.private_cache import owned_privately

    def st(mode: int, uid: int) -> os.stat_result:
        return os.stat_result((stat.S_IFREG | mode, 1, 1, 1, uid, 0, 10, 0, 0, 0))

    me = os.getuid()
    assert owned_privately(st(0o600, me), me) and owned_privately(st(0o755, me), me)
    assert not owned_privately(st(0o600, me + 1), me)  # another user's
    assert not owned_privately(st(0o620, me), me) and not owned_privately(st(0o602, me), me)


def test_a_cache_folder_others_may_write_is_refused(s3_model, tmp_path):  # noqa: F811
    uri, storage = s3_model
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp: anyone may create the entry this job would load
    with pytest.raises(ValueError, match=r"model cache .*shared-cache is writable by group or others"):
        fetch_model(uri, storage, str(shared))
    assert sorted(p.name for p in shared.iterdir()) == []
