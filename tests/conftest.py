"""Shared fixtures: tiny random-weight checkpoints built once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from actors.demo_model import build_demo_model


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL checkpoint (~0.2M parameters)."""
    return build_demo_model(tmp_path_factory.mktemp("demo_qwen2_vl"), preset="tiny", family="qwen2_vl")


@pytest.fixture(scope="session")
def demo_model_dir_25(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2.5-VL checkpoint."""
    return build_demo_model(tmp_path_factory.mktemp("demo_qwen2_5_vl"), preset="tiny", family="qwen2_5_vl")
