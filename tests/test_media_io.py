"""read_media_bytes: local paths, HTTP and S3 (moto on loopback), every failure kind."""
from __future__ import annotations

import functools
import http.server
import socket
import threading

import fsspec
import pytest

from actors.media_io import MediaError, read_media_bytes, redact_uri, uri_protocol
from schemas import status as st

ALL_SCHEMES = ["file", "s3", "http", "https", "memory"]
read = functools.partial(read_media_bytes, allowed_schemes=ALL_SCHEMES, max_bytes=1000, storage_options=None)


def _fails(status: str, uri: str, **kwargs) -> str:
    with pytest.raises(MediaError) as info:
        read(uri, **kwargs)
    assert info.value.status == status, info.value.message
    return info.value.message


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    (root / "clip.bin").write_bytes(b"0123456789")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def s3_options():
    """s3fs options for a moto S3 server on loopback holding s3://media/a/clip.bin."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    creds = {"aws_access_key_id": "AKIDMOTO", "aws_secret_access_key": "moto-secret-value"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    client.create_bucket(Bucket="media")
    client.put_object(Bucket="media", Key="a/clip.bin", Body=b"s3 bytes")
    yield {"key": "AKIDMOTO", "secret": "moto-secret-value", "endpoint_url": endpoint,
           "client_kwargs": {"region_name": "us-east-1"}}
    server.stop()


def test_reads_plain_path_and_file_uri(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert read(str(path)) == b"abc"
    assert read(f"file://{path}") == b"abc"


def test_reads_http(http_root):
    assert read(f"{http_root}/clip.bin") == b"0123456789"


def test_reads_s3_with_storage_options(s3_options):
    assert read("s3://media/a/clip.bin", storage_options=s3_options) == b"s3 bytes"


@pytest.mark.parametrize("uri", ["ftp://host/x.mp4", "gopher://x", "simplecache::s3://media/a/clip.bin"])
def test_invalid_uri_is_refused_before_any_io(uri, monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("I/O attempted for a refused scheme")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_io)
    message = _fails(st.INVALID_URI, uri)
    assert "not allowed" in message or "chained" in message


def test_file_scheme_can_be_disallowed(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    message = _fails(st.INVALID_URI, str(tmp_path / "a.bin"), allowed_schemes=["s3"])
    assert "'file'" in message and "allowed: s3" in message


def test_missing_files(tmp_path, http_root, s3_options):
    assert str(tmp_path / "nope.mp4") in _fails(st.MISSING_FILE, str(tmp_path / "nope.mp4"))
    _fails(st.MISSING_FILE, "memory://nowhere/x.mp4")
    _fails(st.MISSING_FILE, f"{http_root}/nope.mp4")
    assert "s3://media/nope.mp4" in _fails(st.MISSING_FILE, "s3://media/nope.mp4", storage_options=s3_options)
    _fails(st.MISSING_FILE, "s3://no-such-bucket/x.mp4", storage_options=s3_options)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty (0 bytes)" in _fails(st.EMPTY_FILE, str(tmp_path / "empty.mp4"))


def test_too_large(tmp_path, s3_options):
    (tmp_path / "big.bin").write_bytes(b"x" * 1001)
    message = _fails(st.TOO_LARGE, str(tmp_path / "big.bin"))
    assert "1001 bytes" in message and "max_bytes" in message
    assert read(str(tmp_path / "big.bin"), max_bytes=1001) == b"x" * 1001
    _fails(st.TOO_LARGE, "s3://media/a/clip.bin", storage_options=s3_options, max_bytes=3)


def test_directory_is_a_read_error(tmp_path):
    assert "is a directory" in _fails(st.READ_ERROR, str(tmp_path))


def test_unreachable_server_is_a_read_error_without_credentials():
    # Port 1 on loopback refuses at once; fsspec wraps that in FileNotFoundError.
    message = _fails(st.READ_ERROR, "http://alice:hunter2@127.0.0.1:1/x.mp4")
    assert "hunter2" not in message and "alice" not in message
    assert "http://***@127.0.0.1:1/x.mp4" in message and "connect" in message.lower()
    presigned = "https://127.0.0.1:1/x.mp4?X-Amz-Credential=AKID&X-Amz-Security-Token=tok3n&X-Amz-Signature=s1gn"
    message = _fails(st.READ_ERROR, presigned)
    assert not any(s in message for s in ("AKID", "tok3n", "s1gn"))


class _LeakyFileSystem(fsspec.AbstractFileSystem):
    """A backend whose errors echo its credentials, as some client libraries' do."""

    protocol = "leaky"

    def __init__(self, token: str = "", **kwargs):
        super().__init__(**kwargs)
        self.token = token

    def _open(self, path, mode="rb", **kwargs):
        raise PermissionError(f"access denied for token={self.token} on {path} with {self.storage_options}")


def test_backend_errors_never_show_storage_secrets():
    fsspec.register_implementation("leaky", _LeakyFileSystem, clobber=True)
    options = {"token": "tok-very-secret", "client_kwargs": {"aws_secret_access_key": "nested-secret"}}
    message = _fails(st.READ_ERROR, "leaky://bucket/x.mp4", allowed_schemes=["leaky"], storage_options=options)
    assert "PermissionError: access denied for token=***" in message and "leaky://bucket/x.mp4" in message
    assert "tok-very-secret" not in message and "nested-secret" not in message


@pytest.mark.parametrize(
    ("uri", "protocol"),
    [("/a/b.mp4", "file"), ("rel/b.mp4", "file"), ("file:///a.mp4", "file"), ("S3://b/k", "s3"),
     ("https://h/x", "https"), ("C:\\media\\x.mp4", "file")],
)
def test_uri_protocol(uri, protocol):
    assert uri_protocol(uri) == protocol


def test_redact_uri():
    assert redact_uri("https://u:p@host/a.mp4?sig=1") == "https://***@host/a.mp4?<redacted>"
    assert redact_uri("s3://bucket/a.mp4") == "s3://bucket/a.mp4"
    assert redact_uri("/local/a.mp4") == "/local/a.mp4"


def test_an_ipv6_literal_host_is_read_and_chains_stay_refused(tmp_path):
    (tmp_path / "clip.bin").write_bytes(b"over ipv6")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    try:
        server = V6Server(("::1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert uri_protocol("http://[2001:db8::1]/x.png") == "http"
        assert read(f"http://[::1]:{server.server_port}/clip.bin") == b"over ipv6"
    finally:
        server.shutdown()
    # Colons outside the bracketed host are still a chain; broken brackets are a bad URI.
    for uri in ("simplecache::s3://media/a/clip.bin", "zip://a::s3://b", "http://[::1]/a::s3://b",
                "http://[::1]::s3://b", "http://h/a::b"):
        assert "chained" in _fails(st.INVALID_URI, uri), uri
    for uri in ("http://[::1/x", "http://[zz::1]/x"):
        assert "malformed URL" in _fails(st.INVALID_URI, uri), uri
