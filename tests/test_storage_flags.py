"""One storage option set on every command: `--endpoint-url`, `--region`, `--profile` and
`--anon` parse to the same StorageConfig everywhere, and `vrscore score`'s `--set storage.*`
and config file keep working beside them (no Ray, no network)."""
from __future__ import annotations

import pytest

from jobs.cli import build_parser
from jobs.job_config_loading import build_job_config
from jobs.score_command import flags_of
from pipeline.storage import storage_from_args
from schemas.job_config import StorageConfig

FLAGS = ["--endpoint-url", "http://127.0.0.1:9", "--region", "eu-west-1", "--profile", "scoring", "--anon"]
EXPECTED = StorageConfig(endpoint_url="http://127.0.0.1:9", region="eu-west-1", profile="scoring", anon=True)
COMMAND_ARGS = {
    "filter": ["--scores", "s3://b/run", "--out", "s3://b/f", "--where", "score > 0"],
    "pairs": ["--scores", "s3://b/run", "--out", "s3://b/p"],
    "eval": ["--scores", "s3://b/run", "--judgments", "s3://b/j.parquet"],
    "report": ["--scores", "s3://b/run", "--out", "s3://b/r.html"],
    "compare": ["a.png", "b.png", "--prompt", "p", "--model", "s3://b/ckpt"],
}


def _score_config(*extra: str, config: str | None = None):
    args = build_parser().parse_args(["score", "--manifest", "s3://b/m.parquet", "--out", "s3://b/o",
                                      "--model", "s3://b/ckpt", *extra])
    return build_job_config(config, flags_of(args), args.set)


@pytest.mark.parametrize("command", sorted(COMMAND_ARGS))
def test_every_command_takes_the_same_storage_flags(command):
    args = build_parser().parse_args([command, *COMMAND_ARGS[command], *FLAGS])
    assert storage_from_args(args) == EXPECTED
    bare = build_parser().parse_args([command, *COMMAND_ARGS[command]])
    assert storage_from_args(bare) == StorageConfig()  # negative control: no flags, defaults


def test_score_takes_them_into_its_job_config():
    assert _score_config(*FLAGS).storage == EXPECTED
    assert _score_config().storage == StorageConfig()


def test_set_overrides_flags_and_flags_override_the_config_file(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("storage:\n  region: us-west-2\n  anon: true\n  profile: from-file\n")
    cfg = _score_config("--profile", "from-flag", "--set", "storage.endpoint_url=http://h:1", config=str(config))
    # Flags not given leave the file's values alone (anon stays true without --anon).
    assert cfg.storage == StorageConfig(endpoint_url="http://h:1", region="us-west-2", profile="from-flag", anon=True)
    cfg = _score_config("--region", "eu-west-1", "--set", "storage.region=ap-south-1")
    assert cfg.storage.region == "ap-south-1"
