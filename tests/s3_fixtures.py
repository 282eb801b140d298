"""A real S3 endpoint on loopback for job tests: moto's server, as s3fs's own tests use it.

Import `s3_endpoint` into a test module to use it. The server lives for the whole session;
each test makes its own bucket. Credentials are distinctive dummies so a test can grep every
output and log for them; they are handed to clients explicitly and to job subprocesses (and
so to their Ray workers) through `S3Endpoint.env`, never put into this process's environment.
"""
from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DUMMY_ACCESS_KEY_ID = "AKIAVRSCOREDUMMY7Q2X"
DUMMY_SECRET_ACCESS_KEY = "vrscore-dummy-secret-Zq7wX3kP9mLd"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:PORT
    env: dict[str, str] = field(default_factory=dict)  # the standard AWS variables a job process needs

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=DUMMY_ACCESS_KEY_ID, aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY)

    def filesystem(self):
        """An s3fs filesystem on this endpoint (fresh instance: no cached listings)."""
        import s3fs

        return s3fs.S3FileSystem(key=DUMMY_ACCESS_KEY_ID, secret=DUMMY_SECRET_ACCESS_KEY, endpoint_url=self.url,
                                 client_kwargs={"region_name": REGION}, skip_instance_cache=True)

    def make_bucket(self, prefix: str = "vrscore") -> str:
        """A new empty bucket; returns its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def profile_env(self, folder: Path, profile: str) -> dict[str, str]:
        """`env` without credential variables: the keys live only in a shared-credentials file
        under `folder`, as profile `profile` (for jobs that name it in StorageConfig.profile)."""
        path = Path(folder) / "aws-credentials"
        path.write_text(f"[{profile}]\naws_access_key_id = {DUMMY_ACCESS_KEY_ID}\n"
                        f"aws_secret_access_key = {DUMMY_SECRET_ACCESS_KEY}\n")
        env = {k: v for k, v in self.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(path)}

    def upload(self, local: str | Path, uri: str) -> str:
        """Copy a local file to `uri` (s3://bucket/key); returns the uri."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self.client().upload_file(str(local), bucket, key)
        return uri


@pytest.fixture(scope="session")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    missing = "/nonexistent/vrscore-aws-config"  # never a developer's real profile or credentials
    env = {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
    }
    yield S3Endpoint(url=f"http://127.0.0.1:{port}", env=env)
    server.stop()
