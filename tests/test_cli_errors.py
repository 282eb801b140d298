"""What `vrscore` prints when a command fails: a user's mistake is one line (exit 2); a bug
shows its traceback (exit 1), plain ValueErrors included; a scorer that stopped on a broken
model says so by name, also through Ray's wrapping of a stage's error."""
from __future__ import annotations

import pytest

from actors.systemic_failure import FailureStreak
from jobs import cli as vrscore_cli
from jobs import report_command
from jobs.job_config_loading import ConfigError
from pipeline.output_dir import OutputMismatchError
from schemas.user_error import UserError
from tests.ray_fixtures import ray_session  # noqa: F401  (session fixture)

REPORT = ["report", "--scores", "s", "--out", "r.html"]


def _fail_with(monkeypatch, exc: BaseException) -> None:
    def run(args):
        raise exc

    monkeypatch.setattr(report_command, "run", run)


@pytest.mark.parametrize("exc", [UserError("--top-k must be >= 0"), ConfigError("invalid job config: x"),
                                 OutputMismatchError("out holds scores of a different job"),
                                 FileNotFoundError("no scores at s")])
def test_user_errors_are_one_line(monkeypatch, capsys, exc):
    _fail_with(monkeypatch, exc)
    assert vrscore_cli.main(REPORT) == 2
    assert capsys.readouterr().err == f"vrscore report: error: {exc}\n"


@pytest.mark.parametrize("exc", [ValueError("could not broadcast shapes (3,) (4,)"), KeyError("p_yes"),
                                 ZeroDivisionError("division by zero")])
def test_internal_errors_show_their_traceback(monkeypatch, capsys, exc):
    _fail_with(monkeypatch, exc)
    assert vrscore_cli.main(REPORT) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in run\n    raise exc" in err
    assert err.rstrip().endswith(f"vrscore report: failed (traceback above): {type(exc).__name__}: {exc}")


def test_a_systemic_stop_raised_in_a_ray_stage_is_named(monkeypatch, capsys, ray_session):  # noqa: F811
    def run(args):
        # A lambda: pickled by value (Ray's workers cannot import a test module).
        ray_session.data.range(4).map_batches(lambda b: FailureStreak(1).observe(RuntimeError("boom"))).materialize()

    monkeypatch.setattr(report_command, "run", run)
    assert vrscore_cli.main(REPORT) == 1
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("vrscore report: stopped: the scorer failed on every item of 1 consecutive batches "
                               "with RuntimeError: boom") for line in lines)


def test_a_bad_config_from_the_command_line_is_one_line(capsys):
    assert vrscore_cli.main(["score", "--manifest", "m.parquet", "--model", "m", "--out", "o",
                             "--set", "resources.batch_size=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vrscore score: error: invalid job config: resources.batch_size") and "Traceback" not in err
