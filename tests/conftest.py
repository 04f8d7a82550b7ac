"""Shared fixtures: one real local Ray per test session, a real S3-protocol server (moto) on
127.0.0.1, and storage URLs for both backends."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Shared fixtures: `storage` over each backend, the real app on Ray Serve once per test
# session (`serve_config`, `serve_tracker`) and one headless Chromium per module (`browser`).
pytest_plugins = ["support", "serve_support", "browser_support"]

S3_BUCKET = "tracker-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, with a bucket, and the AWS_* variables pointing at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=S3_BUCKET
    )
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def ray_session(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the whole test session (2 CPUs), workers seeing the S3 endpoint."""
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    ray.init(
        address="local",  # always a fresh cluster of our own, even when another one runs here
        num_cpus=2,
        namespace="tracker-tests",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()


def file_url(path: Path) -> str:
    return f"file://{path}"


@pytest.fixture
def file_storage(tmp_path: Path) -> str:
    return file_url(tmp_path / "data")


@pytest.fixture
def s3_storage(s3_endpoint: str) -> str:
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture(params=["file", "s3"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return file_url(tmp_path / "data")
    request.getfixturevalue("s3_endpoint")
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def make_tracker(ray_session: None) -> Iterator[Callable[..., Any]]:
    """Connect trackers in fresh namespaces; kill their actors afterwards."""
    from tracker.api import connect, shutdown
    from tracker.config import Config

    made: list[Config] = []

    def make(**overrides: Any) -> Any:
        overrides.setdefault("namespace", f"t-{uuid.uuid4().hex[:12]}")
        config = Config.from_env({}, **overrides)
        made.append(config)
        return connect(config=config)

    yield make
    for config in made:
        shutdown(config)


def stored_items(storage: str | Path) -> dict[str, bytes]:
    """Everything storage holds, by name: every file under a local root (a `file://` URL or a
    path), hidden ones (a crash's temporary files) and empty ones too, or every object of an
    `s3://bucket/prefix` URL. Read directly (the filesystem, boto3), not through the code
    under test."""
    if isinstance(storage, str) and storage.startswith("s3://"):
        import boto3

        bucket, _, prefix = storage.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                found[entry["Key"]] = body
        return found
    from tracker.storage import local_root

    root = local_root(storage) if isinstance(storage, str) else storage
    found = {}
    for dirpath, dirs, files in os.walk(root):
        folder = Path(dirpath)
        for name in files:
            found[(folder / name).relative_to(root).as_posix()] = (folder / name).read_bytes()
        if not dirs and not files and folder != root:  # an empty folder's name is stored too
            found[folder.relative_to(root).as_posix() + "/"] = b""
    return found


def user_traces(user_id: str, *extra: str | bytes) -> list[bytes]:
    """What would name a user in storage: their ID, the hash naming their folder (and, in the
    per-user placement, their host and its journal), and `extra` (their event IDs, say)."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    return [user_id.encode(), digest[2:40].encode()] + [
        x.encode() if isinstance(x, str) else x for x in extra
    ]


def holders(storage: str | Path, needles: list[bytes]) -> list[str]:
    """The names of what storage holds (`stored_items`) whose name or bytes hold a needle."""
    return [
        name
        for name, data in stored_items(storage).items()
        if any(n in data or n in name.encode() for n in needles)
    ]


def record_folder_syncs(monkeypatch: pytest.MonkeyPatch, root: str | Path) -> list[str]:
    """Record each folder `storage.fsync_dir` syncs from now on, relative to `root` (the
    syncs still happen): a crash losing a folder's entry cannot run here, its sync can."""
    from tracker.storage import files as storage_module

    synced: list[str] = []
    real = storage_module.fsync_dir

    def recording(path: str | os.PathLike[str]) -> None:
        synced.append(os.path.relpath(path, root))
        real(path)

    monkeypatch.setattr(storage_module, "fsync_dir", recording)
    return synced
