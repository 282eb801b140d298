"""The decode child is untrusted: it gets no credentials, and its replies are data, never pickles."""
from __future__ import annotations

import pickle
from multiprocessing import Pipe
from pathlib import Path

import pytest

from actors import decode_protocol as wire
from actors.decode_worker import DecodeWorker, child_environment
from actors.media_io import MediaError
from actors.synthetic_media import write_image
from schemas import status as st
from schemas.job_config import DecodeConfig

CFG = DecodeConfig().model_dump()


class HostileWorker(DecodeWorker):
    child_module = "tests.hostile_decode_child"


def test_child_gets_no_credentials_and_still_decodes(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-parent-only")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPARENTONLY")
    monkeypatch.setenv("HF_TOKEN", "hf_parent_only")
    write_image(tmp_path / "a.png", (112, 56), seed=2)
    worker = DecodeWorker(CFG, {})
    try:
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
        assert worker.decode(str(tmp_path / "a.png"), "image", timeout_s=10).shape == (1, 56, 112, 3)
    finally:
        worker.close()
    names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
    assert not names & {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "HF_TOKEN"}
    assert b"s3cr3t-parent-only" not in environ and "PYTHONPATH" in names


def test_child_environment_is_an_allowlist():
    env = child_environment({"PATH": "/bin", "LC_ALL": "C", "AWS_SESSION_TOKEN": "x", "GOOGLE_APPLICATION_CREDENTIALS": "/k",
                             "PYTHONPATH": "/extra"})
    assert set(env) == {"PATH", "LC_ALL", "PYTHONPATH"} and env["PYTHONPATH"].endswith("/extra")


def test_a_pickled_reply_is_refused_not_loaded(tmp_path):
    marker = tmp_path / "pwned"
    worker = HostileWorker(CFG, {})
    try:
        with pytest.raises(MediaError) as info:
            worker.decode_bytes(str(marker).encode(), "image", timeout_s=10)
    finally:
        worker.close()
    assert not marker.exists()  # the pickle's payload never ran
    assert info.value.status == st.DECODE_ERROR and "malformed reply" in info.value.message
    # Control: the same bytes, loaded as the old pickle framing did, run the payload.
    parent, child = Pipe()
    from tests.hostile_decode_child import _Payload

    child.send_bytes(pickle.dumps(_Payload(str(marker))))
    parent.recv()
    assert marker.exists()


@pytest.mark.parametrize("header", [
    {"ok": True, "shape": [1, 2, 2], "fps": None},           # not four sides
    {"ok": True, "shape": [1, 2, 2, 4], "fps": None},        # not RGB
    {"ok": True, "shape": [1, -2, 2, 3], "fps": None},       # negative side
    {"ok": True, "shape": [1, 2.0, 2, 3], "fps": None},      # not an int
    {"ok": True, "shape": [1, 2, 2, 3], "fps": "fast"},
    {"ok": True, "shape": [1, 2, 2, 3], "fps": 2.0, "duration": "long"},
    {"ok": True, "shape": [1, 2, 2, 3], "fps": 2.0, "duration": -3.0},  # not a length
    {"ok": True, "shape": [1, 2, 2, 3], "fps": 2.0, "duration": float("inf")},
    {"ok": True, "shape": [2, 2, 2, 3], "fps": 2.0, "times": [0.0]},        # one time short
    {"ok": True, "shape": [2, 2, 2, 3], "fps": 2.0, "times": [0.0, -0.5]},  # negative time
    {"ok": True, "shape": [2, 2, 2, 3], "fps": 2.0, "times": [0.0, "1"]},   # not a number
    {"ok": False, "status": "pwned", "message": "x"},       # not a status kind
    {"ok": False, "status": st.OK, "message": "x"},
    {"status": st.DECODE_ERROR},
])
def test_malformed_reply_headers_are_refused(header):
    with pytest.raises(wire.ProtocolError):
        wire.parse_reply(header)


def test_reply_framing_round_trip_and_length_check():
    parent, child = Pipe()
    wire.send(child, {"ok": True, "shape": [1, 2, 2, 3], "fps": 2.5, "duration": 10.0, "times": [0.0]},
              bytes(range(12)))
    shape, fps, duration, times = wire.parse_reply(wire.recv_header(parent))
    assert (shape, fps, duration, times) == ((1, 2, 2, 3), 2.5, 10.0, (0.0,))
    assert wire.recv_payload(parent, 12) == bytes(range(12))
    wire.send(child, {"ok": True, "shape": [1, 2, 2, 3], "fps": None}, bytes(11))
    wire.recv_header(parent)
    with pytest.raises(wire.ProtocolError, match="promised 12"):
        wire.recv_payload(parent, 12)
    child.send_bytes(pickle.dumps({"ok": True}))
    with pytest.raises(wire.ProtocolError, match="not JSON"):
        wire.recv_header(parent)
