"""The Ray cluster a command starts for itself is the user's alone: it listens on loopback only,
and a client without its token, on this very host, cannot submit a task to it.

The cluster runs in a process of its own (`pipeline.ray_runtime.init_ray`, as every command
starts it), with `RAY_AUTH_MODE=disabled` in its environment as the tests' used to be: a
cluster of ours ignores it. The intruder is a second process, a plain `ray.init(address=...)`
with no token; it is told to keep "127.0.0.1" as it is (Ray's single-machine switch) so that it
reaches the loopback servers and is refused by authentication, not by the address. The same
client given the token (as a user joins a token cluster with `--ray-address`) gets in.
"""
from __future__ import annotations

import ipaddress
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.job_process import REPO, job_env, kill_marked, ray_tmp, run_job, wait_until_gone  # noqa: F401

pytestmark = [pytest.mark.slow,  # Ray clusters in processes of their own
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net")]

HOST = """
import json, os, sys
from pipeline.ray_runtime import init_ray
init_ray(num_cpus=1, quiet=True)
import ray
@ray.remote
class Worker:  # an actor: its process lives as long as this handle
    def pid(self):
        return os.getpid()
worker = Worker.remote()
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "worker": ray.get(worker.pid.remote()),
                  "token": os.environ.get("RAY_AUTH_TOKEN_PATH"),
                  "session": ray._private.worker._global_node.get_session_dir_path()}), flush=True)
sys.stdin.read()  # serve until the test closes stdin
"""

INTRUDER = """
import os, sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
@ray.remote
def whoami():
    return os.getuid()
print("RAN AS", ray.get(whoami.remote(), timeout=60), flush=True)
"""


@pytest.fixture(scope="module")
def host():
    """A process holding vrscore's local Ray, what it printed once up, and `stop`."""
    marker = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    marker.chmod(0o1777)  # Ray's temp root is as open as /tmp is
    home = marker / "home"
    home.mkdir()
    env = job_env(marker, {"RAY_AUTH_MODE": "disabled", "HOME": str(home)})
    proc = subprocess.Popen([sys.executable, "-c", HOST], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def stop() -> int:
        if proc.poll() is None:
            proc.stdin.close()  # the host exits: Ray shuts down, the token is removed
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    ready, _, _ = select.select([proc.stdout], [], [], 180)
    line = proc.stdout.readline() if ready else ""
    if not line:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the Ray host did not start:\n{proc.stderr.read()[-4000:]}")
    yield dict(json.loads(line), pid=proc.pid, home=home, stop=stop)
    stop()
    kill_marked(marker)
    wait_until_gone(marker, 10)
    shutil.rmtree(marker, ignore_errors=True)


def test_a_client_without_the_token_cannot_run_a_task(host, ray_tmp):  # noqa: F811
    env = {k: v for k, v in job_env(ray_tmp).items() if not k.startswith("RAY_AUTH_")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", HOME=str(ray_tmp))  # no ~/.ray/auth_token to find
    proc = run_job([sys.executable, "-c", INTRUDER, host["gcs"]], env, timeout=180)
    assert "RAN AS" not in proc.stdout, f"an unauthenticated client ran a task on {host['gcs']}"
    assert proc.returncode != 0
    # Refused by authentication: the intruder did reach the servers.
    assert "InvalidAuthToken" in proc.stderr or "AuthenticationError" in proc.stderr, proc.stderr[-3000:]


def test_a_client_with_the_token_joins_through_ray_address(host, ray_tmp):  # noqa: F811
    # The control for the refusal above (the same client, given the token), and how a user
    # joins a token-authenticated cluster: init_ray(address) takes Ray's own settings.
    env = job_env(ray_tmp, {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "HOME": str(ray_tmp),
                            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": host["token"] or ""})
    joiner = INTRUDER.replace("ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)",
                              "from pipeline.ray_runtime import init_ray; init_ray(sys.argv[1], quiet=True)")
    assert joiner != INTRUDER
    proc = run_job([sys.executable, "-c", joiner, host["gcs"]], env, timeout=180)
    assert proc.returncode == 0 and f"RAN AS {os.getuid()}" in proc.stdout, proc.stderr[-3000:]


def test_the_token_is_private_and_not_in_home(host):
    token = Path(host["token"] or "")
    assert host["token"] and token.is_file(), "no private token file given to Ray"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.stat().st_uid == os.getuid()
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert len(token.read_text().strip()) >= 32
    assert not (host["home"] / ".ray").exists()  # Ray's shared default token was not written


def test_every_listening_socket_is_on_loopback(host):
    pids = _descendants(host["pid"])
    assert host["worker"] in pids  # the worker processes Ray started are among those checked
    listening = _listening(pids)
    gcs_port = int(host["gcs"].rsplit(":", 1)[1])
    assert gcs_port in {port for _, port in listening}, (host["gcs"], listening)  # found what we look for
    outward = [(str(ip), port) for ip, port in listening if not ip.is_loopback]
    assert not outward, f"the local Ray listens beyond loopback: {outward}"


def test_no_other_user_can_enter_the_ray_session_folder(host):
    # Ray makes its session folders 0777 (logs, sockets, spilled objects): some folder above
    # them must be this user's and closed to everyone else.
    session = Path(host["session"])
    assert (session / "logs").is_dir(), session  # the folder Ray really uses
    assert stat.S_IMODE(session.stat().st_mode) & 0o007  # what makes the parent necessary
    private = [p for p in session.parents
               if p.stat().st_uid == os.getuid() and not stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert private, f"every folder above {session} is open to other users"


@pytest.mark.parametrize("make", ["open", "link"])
def test_a_temp_folder_that_is_not_private_fails_closed(tmp_path, monkeypatch, make):
    from pipeline.ray_runtime import private_temp_dir

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert private_temp_dir() == str(tmp_path / f"vrscore-{os.getuid()}" / "ray")  # control: made private
    assert stat.S_IMODE((tmp_path / f"vrscore-{os.getuid()}").stat().st_mode) == 0o700
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(other))
    planted = other / f"vrscore-{os.getuid()}"
    if make == "open":
        planted.mkdir(mode=0o777)
        planted.chmod(0o777)
    else:
        planted.symlink_to(tmp_path)
    with pytest.raises(RuntimeError, match="not a private folder"):
        private_temp_dir()


def test_the_token_is_removed_at_exit(host):
    # Last in this file: it stops the host.
    assert host["token"], "no private token file given to Ray"
    assert host["stop"]() == 0
    assert not Path(host["token"]).parent.exists()


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else None
        except OSError:
            continue
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _listening(pids: set[int]) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every listening TCP socket the processes hold, IPv4-mapped addresses unwrapped."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # gone, or not ours
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            # /proc writes each 32-bit word of the address in host byte order.
            words = [bytes.fromhex(hex_ip[i:i + 8]) for i in range(0, len(hex_ip), 8)]
            raw = b"".join(w[::-1] if sys.byteorder == "little" else w for w in words)
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found.append((ip, int(hex_port, 16)))
    return found
