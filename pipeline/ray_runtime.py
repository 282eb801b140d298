"""Connect to a Ray cluster or start a local one in process."""
from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)

# Workers import this package; the driver's environment decides how loud they are.
_QUIET_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_DATA_LOG_LEVEL": "ERROR", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def init_ray(address: str | None = None, *, quiet: bool = False, num_cpus: int | None = None,
             verbose: bool | None = None) -> None:
    """`address` (or RAY_ADDRESS) joins an existing cluster; otherwise a local Ray starts here.

    A local Ray gets at least 4 logical CPUs: decode and scoring actors each hold one, and
    Ray Data's read tasks need one more, so on a 2-core machine a strict count would stall
    the pipeline (the actors hold the budget the reads need). Threads, not logical CPUs,
    decide the real compute use.

    The console shows warnings and errors only: Ray's INFO lines, Ray Data's progress log
    (written when stdout is no terminal) and the workers' output stay in Ray's log
    directory (`<ray temp dir>/session_*/logs`) unless `verbose` (None = when debug logging
    is on, as `vrscore -v COMMAND` sets it). `quiet` also hides Ray Data's progress bars.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if verbose is None:
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    env = dict(_QUIET_ENV) if quiet else {}
    kwargs = dict(
        include_dashboard=False,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.WARNING,
        runtime_env={"env_vars": env} if quiet else None,
    )
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, **kwargs)
    else:
        # A local in-process Ray needs no token; without this Ray writes one into $HOME and warns.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus or max(4, os.cpu_count() or 1), **kwargs)
    from ray.data import DataContext

    if not verbose:
        _ray_data_console(logging.WARNING)
    if quiet:
        DataContext.get_current().enable_progress_bars = False


def _ray_data_console(level: int) -> None:
    """Ray Data logs to its own file (ray-data.log) and to the console (a stream handler):
    raise the console's threshold only."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)
