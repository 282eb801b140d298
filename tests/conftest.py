"""Shared fixtures: tiny random-weight checkpoints built once per test session."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from actors.demo_model import build_demo_model


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
