"""The decode child's wire format: a JSON header, then (when it says so) one raw payload.

Data only, in both directions: nothing on this channel is ever unpickled, so a decoder
exploited by a hostile file can at worst send a wrong answer, which the parent checks
(status kind known, shape of four positive ints, payload of exactly that many bytes).

  setup    parent -> child  {"decode": DecodeConfig as JSON}
  ready    child -> parent  {"ready": true}
  request  parent -> child  {"media_type": "image"|"video", "nbytes": n}  + n file bytes
  reply    child -> parent  {"ok": true, "shape": [T, H, W, 3], "fps": x|null, "duration": s|null,
                             "times": [T seconds]|null}
                            + T*H*W*3 bytes
           child -> parent  {"ok": false, "status": kind, "message": text}
"""
from __future__ import annotations

import json
import math
from multiprocessing.connection import Connection
from typing import Any

from schemas import status as st

# A header carries one time per video frame (about 10 characters each): room for 50,000 frames.
MAX_HEADER_BYTES = 1024 * 1024
# A reply's frames are bounded by what the config lets a decode produce; this is only a
# backstop against a garbage length (max_source_pixels never reach the wire: frames are resized).
MAX_PAYLOAD_BYTES = 8 * 1024**3


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


def send(conn: Connection, header: dict[str, Any], payload: bytes | memoryview | None = None) -> None:
    conn.send_bytes(json.dumps(header, allow_nan=False).encode())
    if payload is not None:
        conn.send_bytes(payload)


def recv_header(conn: Connection) -> dict[str, Any]:
    try:
        raw = conn.recv_bytes(MAX_HEADER_BYTES)
    except OSError as exc:  # "bad message length": over the cap, or garbage
        raise ProtocolError(f"header not readable: {exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    return header


def recv_payload(conn: Connection, nbytes: int) -> bytes:
    try:
        data = conn.recv_bytes(max(1, nbytes))
    except OSError as exc:
        raise ProtocolError(f"payload not readable: {exc}") from None
    if len(data) != nbytes:
        raise ProtocolError(f"payload of {len(data)} bytes, header promised {nbytes}")
    return data


def _seconds(header: dict[str, Any], key: str) -> float:
    """A positive number of the header, NaN where it is null or absent."""
    value = header.get(key)
    if value is None:
        return math.nan
    if type(value) not in (int, float) or not 0 < value < math.inf:
        raise ProtocolError(f"bad {key} {value!r}")
    return float(value)


def _frame_times(times: Any, n_frames: int) -> tuple[float, ...]:
    """The reply's frame times: null (images) or one finite, non-negative number per frame."""
    if times is None:
        return ()
    if (not isinstance(times, list) or len(times) != n_frames
            or not all(type(t) in (int, float) and 0 <= t < math.inf for t in times)):
        raise ProtocolError(f"bad frame times (want {n_frames} seconds >= 0)")
    return tuple(float(t) for t in times)


def parse_reply(
    header: dict[str, Any],
) -> tuple[tuple[int, int, int, int], float, float, tuple[float, ...]] | tuple[str, str]:
    """A checked reply header: ((T, H, W, 3), fps, duration, frame times) for frames (NaN, ()
    where unknown), or (status, message) for a row error."""
    if header.get("ok") is True:
        shape = header.get("shape")
        if (not isinstance(shape, list) or len(shape) != 4 or shape[3] != 3
                or not all(type(v) is int and v > 0 for v in shape)):
            raise ProtocolError(f"bad frame shape {shape!r}")
        if math.prod(shape) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"frames of shape {shape} are over the payload cap")
        times = _frame_times(header.get("times"), shape[0])
        return tuple(shape), _seconds(header, "fps"), _seconds(header, "duration"), times  # type: ignore[return-value]
    if header.get("ok") is False:
        status, message = header.get("status"), header.get("message")
        if status not in st.ALL or status == st.OK or not isinstance(message, str):
            raise ProtocolError(f"bad error reply (status {status!r})")
        return status, message[:1000]
    raise ProtocolError("reply header has no 'ok' field")
