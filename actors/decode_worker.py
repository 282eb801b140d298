"""Decode one item at a time in a child process, so a bad file costs one row.

Why a child process and not a thread: decord and FFmpeg can hang or segfault on some
corrupt inputs. A hung thread cannot be stopped (it would keep a core and its memory for
the life of the actor) and a segfault in a thread kills the whole Ray actor, losing its
batch. A child process can be killed at `timeout_s` and its crash is an exit code; either
way the row gets a status and a fresh child serves the next row.

What the child may do is kept small, since it is the process that parses hostile files:
- it gets bytes, never a URI: the parent reads (actors/media_fetch.py), so the child needs
  and gets no credentials. Its environment is an allowlist (`child_environment`): no
  AWS_*, tokens or other secrets of the actor's environment reach it;
- it answers in a data-only framing (actors/decode_protocol.py: a JSON header plus raw
  frame bytes). The parent never unpickles what the child sends, so an exploit in a
  decoder cannot become code execution in the actor.

The child is started once per stage instance (`python -m actors.decode_worker`: 0.5 s,
mostly imports) and kept between rows; it is restarted only after a timeout or a crash.
Per row it costs one round trip on a local socket, one copy of the file's bytes and one
of the decoded frames (`benchmarks/decode.py` compares the stage with a bare loop).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import numpy as np

from actors import decode_protocol as wire
from actors.media_fetch import PendingRead
from actors.media_io import MediaError
from pipeline.resize_policy import check_rule
from schemas import status as st
from schemas.job_config import DecodeConfig

_STARTUP_TIMEOUT_S = 120.0
_CODE_ROOT = str(Path(__file__).resolve().parents[1])
# What a Python process needs to start and find its libraries; nothing else is passed on.
_ENV_ALLOWED = {"PATH", "LD_LIBRARY_PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONDONTWRITEBYTECODE",
                "PYTHONNOUSERSITE", "PYTHONPATH"}


class DecodedFrames(NamedTuple):
    data: bytes  # uint8 RGB frames, C order
    shape: tuple[int, int, int, int]  # (T, H, W, 3)
    fps: float  # NaN: unknown (images)
    duration: float = float("nan")  # the video's length in seconds; NaN: unknown (images)
    times: tuple[float, ...] = ()  # seconds from the first frame, one per frame; () for images


def child_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The decode child's environment: the allowlisted variables of `parent` (locale
    LC_* included) and a PYTHONPATH that finds this code also where it is not installed."""
    env = {k: v for k, v in parent.items() if k in _ENV_ALLOWED or k.startswith("LC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_CODE_ROOT, parent.get("PYTHONPATH")]))
    return env


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class DecodeWorker:
    """Parent side: `decode(uri, ...)` reads here and decodes in the child;
    `decode_bytes(data, ...)` decodes bytes already read."""

    child_module = "actors.decode_worker"  # the program the child runs (tests put a hostile one here)

    def __init__(self, decode: dict, storage_options: dict[str, dict] | None = None, threads: int = 1):
        self._cfg = DecodeConfig.model_validate(decode)
        check_rule(self._cfg.resize_rule, self._cfg.resize_factor)  # here, not per row in the child
        self._storage_options = storage_options or {}
        self._setup = {"decode": self._cfg.model_dump(mode="json"), "threads": int(threads)}
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a crash and the next row)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        conn, child_end = Pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.child_module, str(child_end.fileno()), str(os.getpid())],
            pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, env=child_environment(os.environ),
        )
        child_end.close()
        self._conn = conn
        try:
            wire.send(conn, self._setup)
            if conn.poll(_STARTUP_TIMEOUT_S) and wire.recv_header(conn) == {"ready": True}:
                return
        except (EOFError, OSError, wire.ProtocolError):
            pass
        code = self.close()
        raise RuntimeError(f"the decode worker process failed to start ({_describe_exit(code)}); see its stderr")

    def read(self, uri: str) -> PendingRead:
        """Start reading `uri` (on a thread of this process, with this worker's storage options)."""
        return PendingRead(uri, self._cfg, self._storage_options)

    def decode(self, uri: str, media_type: str, timeout_s: float) -> DecodedFrames:
        """Frames of one item, or MediaError (its own failures, timeout, or a crash)."""
        data, read_s = self.read(uri).result(timeout_s)
        return self.decode_bytes(data, media_type, max(0.001, timeout_s - read_s))

    def decode_bytes(self, data: bytes, media_type: str, timeout_s: float) -> DecodedFrames:
        """Frames of one item's bytes, or MediaError."""
        if media_type not in ("image", "video"):
            raise MediaError(st.UNSUPPORTED_MEDIA, f"media_type must be 'image' or 'video', got {media_type!r}")
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        assert self._conn is not None
        try:
            wire.send(self._conn, {"media_type": media_type, "nbytes": len(data)}, data)
            if not self._conn.poll(timeout_s):
                self.close()
                raise MediaError(st.TIMEOUT, f"reading and decoding took longer than {timeout_s:g} s "
                                 "(timeout_s); abandoned")
            reply = wire.parse_reply(wire.recv_header(self._conn))
            if isinstance(reply[0], str):
                raise MediaError(*reply)  # type: ignore[arg-type]
            shape, fps, duration, times = reply
            frames = wire.recv_payload(self._conn, int(np.prod(shape)))
        except (EOFError, OSError):
            code = self.close()
            raise MediaError(st.DECODE_ERROR, f"the decoder crashed on this file ({_describe_exit(code)}); "
                             "the file is likely corrupt") from None
        except wire.ProtocolError as exc:
            self.close()  # its state is unknown: a fresh child serves the next row
            raise MediaError(st.DECODE_ERROR, f"the decoder sent a malformed reply ({exc}); "
                             "the file is likely hostile or corrupt") from None
        return DecodedFrames(frames, shape, fps, duration, times)  # type: ignore[arg-type]

    def close(self) -> int | None:
        """Stop the child (killed: it may be stuck in a decode); returns its exit code."""
        code = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            code = self._proc.wait()
            self._proc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return code

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self.close()


def _die_with_parent(parent_pid: int) -> None:
    # A child blocked in a hung decode would outlive a killed actor; ask Linux to kill it too.
    # (Linux sends the signal when the parent *thread* that started the child ends; Ray
    # runs a stage's calls on long-lived threads, and a child lost early is restarted.)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def _serve(conn: Connection) -> None:
    from actors.frame_decode import decode_image, decode_video
    from schemas.frames_spec import parse_frames_spec

    setup = wire.recv_header(conn)
    cfg = DecodeConfig.model_validate(setup["decode"])
    threads = int(setup.get("threads", 1))
    spec = parse_frames_spec(cfg.frames)
    if cfg.worker_nice:
        os.nice(cfg.worker_nice)
    # decord logs the whole input on some open failures (megabytes of binary) and FFmpeg
    # warns per bad packet; the row's error message carries the reason instead.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    wire.send(conn, {"ready": True})
    while True:
        try:
            request = wire.recv_header(conn)
        except EOFError:
            return
        data = wire.recv_payload(conn, int(request["nbytes"]))
        try:
            if request["media_type"] == "image":
                out = decode_image(data, cfg)
            else:
                out = decode_video(data, cfg, spec, threads=threads)
        except MediaError as exc:
            wire.send(conn, {"ok": False, "status": exc.status, "message": exc.message})
            continue
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen library error: one row, not the job
            message = f"unexpected {type(exc).__name__} while decoding: {exc}"[:500]
            wire.send(conn, {"ok": False, "status": st.DECODE_ERROR, "message": message})
            continue
        fps, duration = (None if np.isnan(v) else float(v) for v in (out.fps, out.duration))
        frames = np.ascontiguousarray(out.frames)
        # Not rounded: the scorer writes them into prompts exactly as the stock processors compute them.
        times = list(out.times) if out.times else None
        wire.send(conn, {"ok": True, "shape": [int(v) for v in frames.shape], "fps": fps, "duration": duration,
                         "times": times},
                  frames.reshape(-1))


if __name__ == "__main__":
    _die_with_parent(int(sys.argv[2]))
    _serve(Connection(int(sys.argv[1])))
