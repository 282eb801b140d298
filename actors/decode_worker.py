"""Read + decode one item at a time in a child process, so a bad file costs one row.

Why a child process and not a thread: decord and FFmpeg can hang or segfault on some
corrupt inputs. A hung thread cannot be stopped (it would keep a core and its memory for
the life of the actor) and a segfault in a thread kills the whole Ray actor, losing its
batch. A child process can be killed at `timeout_s` and its crash is an exit code; either
way the row gets a status and a fresh child serves the next row.

The child is started once per stage instance (`python -m actors.decode_worker`: 0.5 s,
mostly imports) and kept between rows; it is restarted only after a timeout or a crash.
Per row it costs one round trip on a local socket plus one copy of the decoded frames:
measured on 2 cores, 0.3 ms for a tiny image, 1 ms for a 504x504 image, 4 ms for 8 video
frames of 448x448 (4.8 MB), against 15-25 ms to decode those and 1-1.5 s for 8 frames of a
1080p video; `benchmarks/decode.py` compares the whole stage with a bare decord loop.
Requests and replies go over a `multiprocessing.connection` socket pair; credentials in
the storage options travel over it too, never on the command line (where `ps` shows them).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import numpy as np

from actors.media_io import MediaError
from schemas import status as st

_STARTUP_TIMEOUT_S = 120.0
_CODE_ROOT = str(Path(__file__).resolve().parents[1])


class DecodedFrames(NamedTuple):
    data: bytes  # uint8 RGB frames, C order
    shape: tuple[int, int, int, int]  # (T, H, W, 3)
    fps: float


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class DecodeWorker:
    """Parent side: `decode(uri, media_type, timeout_s)` runs read + decode in the child."""

    def __init__(self, decode: dict, storage_options: dict[str, dict] | None):
        self._setup = (decode, storage_options or {})
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a crash and the next row)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        conn, child_end = Pipe()
        # The child must import this same code, also where the package is not installed
        # (a Ray working_dir, a source checkout).
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_CODE_ROOT, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "actors.decode_worker", str(child_end.fileno()), str(os.getpid())],
            pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, env=env,
        )
        child_end.close()
        self._conn = conn
        try:
            conn.send(self._setup)
            if conn.poll(_STARTUP_TIMEOUT_S) and conn.recv() == "ready":
                return
        except (EOFError, OSError):
            pass
        code = self.close()
        raise RuntimeError(f"the decode worker process failed to start ({_describe_exit(code)}); see its stderr")

    def decode(self, uri: str, media_type: str, timeout_s: float) -> DecodedFrames:
        """Frames of one item, or MediaError (its own failures, timeout, or a crash)."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        assert self._conn is not None
        try:
            self._conn.send((uri, media_type))
            if not self._conn.poll(timeout_s):
                self.close()
                raise MediaError(st.TIMEOUT, f"reading and decoding took longer than {timeout_s:g} s "
                                 "(timeout_s); abandoned")
            reply = self._conn.recv()
            if reply[0] == "error":
                raise MediaError(reply[1], reply[2])
            data = self._conn.recv_bytes()
        except (EOFError, OSError):
            code = self.close()
            raise MediaError(st.DECODE_ERROR, f"the decoder crashed on this file ({_describe_exit(code)}); "
                             "the file is likely corrupt") from None
        return DecodedFrames(data, reply[1], reply[2])

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
    # A child blocked on a hung read would outlive a killed actor; ask Linux to kill it too.
    # (Linux sends the signal when the parent *thread* that started the child ends; Ray
    # runs a stage's calls on long-lived threads, and a child lost early is restarted.)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def _serve(conn: Connection) -> None:
    from actors.frame_decode import decode_image, decode_video
    from actors.media_io import read_media_bytes, uri_protocol
    from pipeline.frame_sampling import parse_frames_spec
    from schemas.job_config import DecodeConfig

    decode, storage_options = conn.recv()
    cfg = DecodeConfig.model_validate(decode)
    spec = parse_frames_spec(cfg.frames)
    if cfg.worker_nice:
        os.nice(cfg.worker_nice)
    # decord logs the whole input on some open failures (megabytes of binary) and FFmpeg
    # warns per bad packet; the row's error message carries the reason instead.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    conn.send("ready")
    while True:
        try:
            uri, media_type = conn.recv()
        except EOFError:
            return
        try:
            if media_type not in ("image", "video"):
                raise MediaError(st.UNSUPPORTED_MEDIA, f"media_type must be 'image' or 'video', got {media_type!r}")
            data = read_media_bytes(uri, allowed_schemes=cfg.allowed_schemes, max_bytes=cfg.max_bytes,
                                    storage_options=storage_options.get(uri_protocol(uri)))
            out = decode_image(data, cfg) if media_type == "image" else decode_video(data, cfg, spec)
        except MediaError as exc:
            conn.send(("error", exc.status, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen library error: one row, not the job
            conn.send(("error", st.DECODE_ERROR, f"unexpected {type(exc).__name__} while decoding: {exc}"[:500]))
            continue
        conn.send(("ok", out.frames.shape, out.fps))
        conn.send_bytes(np.ascontiguousarray(out.frames).reshape(-1))  # 1-D: send_bytes slices bytes


if __name__ == "__main__":
    _die_with_parent(int(sys.argv[2]))
    _serve(Connection(int(sys.argv[1])))
