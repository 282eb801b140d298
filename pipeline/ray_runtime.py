"""Connect to a Ray cluster or start a local one in process.

A cluster a command starts for itself is private to the user running it: its servers (GCS,
raylet, object manager, workers, agents) listen on loopback only, and every connection must
carry Ray's authentication token (`RAY_AUTH_MODE=token`). The token is made for this process
alone: a random 256-bit secret in a 0600 file inside a private (0700) temporary folder,
passed to the Ray processes through `RAY_AUTH_TOKEN_PATH` and deleted at exit. The shared
`~/.ray/auth_token` is neither read nor written. Its files (logs, sockets, spilled objects) live
under a folder only the user can enter, `<RAY_TMPDIR or TMPDIR or /tmp>/vrscore-<uid>/ray`: Ray
makes every folder it creates world-writable (0777), `/tmp/ray` included.

Joining a cluster (`address` or RAY_ADDRESS) leaves authentication to that cluster, as Ray
documents it: token mode comes from `RAY_AUTH_MODE=token`, the token from `RAY_AUTH_TOKEN`,
the file named by `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`.
"""
from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ray

log = logging.getLogger(__name__)

# Workers import this package; the driver's environment decides how loud they are.
_QUIET_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_DATA_LOG_LEVEL": "ERROR", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_token_dir: Path | None = None  # this process's private token, made once, reused by every local start
_caller_auth_env: dict[str, str | None] | None = None  # the caller's auth settings while ours are in force


def init_ray(address: str | None = None, *, quiet: bool = False, num_cpus: int | None = None,
             verbose: bool | None = None) -> None:
    """`address` (or RAY_ADDRESS) joins an existing cluster; otherwise a local Ray starts here,
    on loopback and with a private token (see the module docstring).

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
        _restore_caller_auth()
        ray.init(address=address, **kwargs)
    else:
        _use_private_token()
        with _loopback_node():
            ray.init(num_cpus=num_cpus or max(4, os.cpu_count() or 1), _temp_dir=private_temp_dir(), **kwargs)
        _check_loopback()
    from ray.data import DataContext

    if not verbose:
        _ray_data_console(logging.WARNING)
    if quiet:
        DataContext.get_current().enable_progress_bars = False


def private_temp_dir() -> str:
    """Ray's temp folder for a cluster of ours, inside `vrscore-<uid>` (0700, owned by this user).

    Ray chmods every folder it makes to 0777, so the privacy must come from a parent it does
    not make. The parent sits where Ray's own default would (RAY_TMPDIR, then TMPDIR on Linux,
    then /tmp): its name is predictable, so one that exists is used only if it is a real folder
    of this user that no one else can enter; anything else (another user's folder, a link) fails
    closed."""
    if "RAY_TMPDIR" in os.environ:
        root = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        root = os.environ["TMPDIR"]
    else:
        root = "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()
    base = Path(root) / f"vrscore-{os.getuid()}"
    try:
        base.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise RuntimeError(f"{base} is not a private folder of this user (mode {stat.S_IMODE(info.st_mode):o}, "
                           f"owner uid {info.st_uid}); remove it, or set RAY_TMPDIR to a folder of your own")
    return str(base / "ray")


def _use_private_token() -> None:
    """Token authentication with this process's own token, for the Ray processes it starts
    (they inherit the environment). Set even over a caller's RAY_AUTH_MODE=disabled: nothing
    but this process needs to reach its cluster."""
    global _token_dir, _caller_auth_env
    if _token_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="vrscore-ray-auth-"))  # 0700, a fresh name
        fd = os.open(folder / "auth_token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        _token_dir = folder
        atexit.register(_remove_token, folder)
    if _caller_auth_env is None:
        _caller_auth_env = {k: os.environ.get(k) for k in _AUTH_ENV}
    os.environ.pop("RAY_AUTH_TOKEN", None)  # Ray prefers it to the file
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(_token_dir / "auth_token"))
    _reload_ray_auth()


def _restore_caller_auth() -> None:
    """Undo `_use_private_token` before joining another cluster (a library caller may start a
    local Ray, shut it down, then join theirs): that cluster takes the caller's settings."""
    global _caller_auth_env
    if _caller_auth_env is None:
        return
    for key, value in _caller_auth_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _caller_auth_env = None
    _reload_ray_auth()


def _reload_ray_auth() -> None:
    """Ray caches its config (auth mode included) and the token per process: re-read both from
    the environment, as Ray does itself when it turns token mode on."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _remove_token(folder: Path) -> None:
    """At exit, after Ray is down: a Ray process that re-read a missing token would abort."""
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Ray's servers bind every interface unless the node's address is loopback, and ray.init
    turns an explicit `_node_ip_address="127.0.0.1"` into the host's outward address. Ray's
    single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the default on macOS and
    Windows) gives the node a loopback address; Ray reads that setting into a constant at
    import, so it is switched here for the start only."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _check_loopback() -> None:
    """Fail closed: a Ray version that ignores `_loopback_node` must not serve the network."""
    host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0].strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"the local Ray cluster came up on {host}, not on loopback; refusing to run "
                           f"(join a cluster with --ray-address instead)")


def _ray_data_console(level: int) -> None:
    """Ray Data logs to its own file (ray-data.log) and to the console (a stream handler):
    raise the console's threshold only."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)
