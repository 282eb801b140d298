"""Shared fixtures: tiny random-weight checkpoints built once per test session. And no wait
between writing an output lease and reading it back (pipeline/output_lease.py): a run of this
suite has its output to itself, except the runs that race for one, which set the real wait
(tests/test_one_run_per_out.py). Each command that writes an output waited a second: some
30 in the fast tests' own process, more in the slow ones and in every job process."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from actors.demo_model import build_demo_model
from pipeline.output_lease import SETTLE_ENV


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(SETTLE_ENV, "0")  # before any job starts: processes of jobs inherit it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `vllm` run only where vLLM is installed (.ci/vllm_env.sh's venv): elsewhere they
    are deselected, so the main suite neither runs nor counts them."""
    if importlib.util.find_spec("vllm") is not None:
        return
    dropped = [item for item in items if item.get_closest_marker("vllm")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("vllm")]


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL checkpoint (~0.2M parameters)."""
    return build_demo_model(tmp_path_factory.mktemp("demo_qwen2_vl"), preset="tiny", family="qwen2_vl")


@pytest.fixture(scope="session")
def demo_model_dir_25(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2.5-VL checkpoint."""
    return build_demo_model(tmp_path_factory.mktemp("demo_qwen2_5_vl"), preset="tiny", family="qwen2_5_vl")
