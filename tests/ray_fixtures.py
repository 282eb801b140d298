"""One local Ray for the downstream-job tests (filter, pairs, eval, report), quiet.

Import `ray_session` into a test module to use it. Starting Ray costs seconds, so the
cluster lives for the whole session; a Ray already started by another fixture is reused.
"""
from __future__ import annotations

import os

import pytest

QUIET_ENV = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "ERROR",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


@pytest.fixture(scope="session")
def ray_session():
    os.environ.update(QUIET_ENV)  # before ray.init: workers inherit the driver's environment
    import ray
    from ray.data import DataContext

    from pipeline.ray_runtime import init_ray

    started = not ray.is_initialized()
    init_ray(num_cpus=4, quiet=True)  # as the commands start it: loopback, private token
    DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()
