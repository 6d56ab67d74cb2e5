"""The server on a catalog in a read-only directory standing for a Cloud Storage mount (FUSE).

At start-up such a file can be missing, fail to read, or read short for a moment: the server retries for
CATALOG_READ_TIMEOUT_SECONDS, NOT_SERVING and saying why, then serves the catalog or exits 1 with the reason.
It never serves bytes other than those CATALOG_SHA256 names, and does not retry a file that is invalid.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from bench.servers import ServerProcess
from catalog import SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from tests.catalog_files import GOOD
from tests.servers import run_to_exit
from tests.service.helpers import assert_reason_comes_first
from tests.service.test_operations import check

PRODUCTS = [GOOD, {**GOOD, "id": "b", "name": "Bellows"}]
CONTENT = json.dumps({"products": PRODUCTS}).encode()
SHA256 = hashlib.sha256(CONTENT).hexdigest()
WAITING = "catalog not readable yet"
READ_ONLY = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    """A read-only directory (the mount) whose contents only `publish` changes."""
    directory = tmp_path / "mnt"
    directory.mkdir()
    directory.chmod(READ_ONLY)
    yield directory
    directory.chmod(stat.S_IRWXU)


@contextmanager
def writable(directory: Path) -> Iterator[None]:
    """What the mount's other side does: change the directory, then make it read-only again."""
    directory.chmod(stat.S_IRWXU)
    try:
        yield
    finally:
        directory.chmod(READ_ONLY)


def publish(directory: Path, name: str, content: bytes) -> None:
    """Put a file in the mount whole (written beside it, then renamed in)."""
    staged = directory.parent / f".{name}.staged"
    staged.write_bytes(content)
    with writable(directory):
        if (directory / name).is_dir():
            (directory / name).rmdir()
        os.replace(staged, directory / name)


def serving_product(port: int) -> str:
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        return stub.GetProduct(catalog_pb2.GetProductRequest(id="b"), timeout=5).name


def assert_not_serving(port: int) -> None:
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        assert check(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as raised:
            catalog_pb2_grpc.ProductCatalogStub(channel).GetProduct(
                catalog_pb2.GetProductRequest(id="b"), timeout=5
            )
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def env(path: Path, **extra: str) -> dict[str, str]:
    return {"CATALOG_PATH": str(path), "CATALOG_READ_TIMEOUT_SECONDS": "30", **extra}


def test_a_file_that_appears_late_is_served_once_there(mount: Path) -> None:
    with ServerProcess(env(mount / "catalog.json", CATALOG_SHA256=SHA256)) as process:
        port = int(process.wait_for_log(r"listening on port (\d+)").group(1))
        process.wait_for_log(WAITING)
        assert_not_serving(port)
        publish(mount, "catalog.json", CONTENT)
        process.wait_for_log("serving 2 products")
        assert serving_product(port) == "Bellows"
        waits = [r for r in process.records() if r["message"].startswith(WAITING)]
        assert waits
        assert all(r["severity"] == "WARNING" for r in waits)
        assert "catalog.json: cannot read: [Errno 2]" in waits[0]["message"]
    assert sorted(p.name for p in mount.iterdir()) == ["catalog.json"]  # the server wrote nothing there


def test_a_short_read_is_read_again_never_served(mount: Path) -> None:
    # An object read while its upload is still arriving: the bytes parse (a valid, shorter catalog), but
    # they are not the ones CATALOG_SHA256 names, so the server reads again instead of serving them.
    partial = json.dumps({"products": PRODUCTS[:1]}).encode()
    publish(mount, "catalog.json", partial)
    with ServerProcess(env(mount / "catalog.json", CATALOG_SHA256=SHA256)) as process:
        port = int(process.wait_for_log(r"listening on port (\d+)").group(1))
        waiting = process.wait_for_log(WAITING).string
        assert f"expected {SHA256}" in waiting
        assert f"read {len(partial)} bytes" in waiting
        assert_not_serving(port)
        publish(mount, "catalog.json", CONTENT)
        process.wait_for_log("serving 2 products")
        assert serving_product(port) == "Bellows"
        assert not any("serving 1 products" in line for line in process.lines)


def test_a_read_that_fails_then_succeeds(mount: Path) -> None:
    with writable(mount):
        (mount / "catalog.json").mkdir()  # open() fails with an OSError that is not "missing"
    with ServerProcess(env(mount / "catalog.json")) as process:
        process.wait_for_log(r"catalog not readable yet.*Is a directory")
        publish(mount, "catalog.json", CONTENT)
        port = process.wait_serving()
        assert serving_product(port) == "Bellows"


def test_a_read_that_keeps_failing_exits_1_with_the_reason(mount: Path) -> None:
    result = run_to_exit(env(mount / "catalog.json", CATALOG_READ_TIMEOUT_SECONDS="1"))
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(r["message"].startswith(WAITING) for r in records)
    assert not any(r["message"].startswith("serving ") for r in records)
    (failure,) = [r for r in records if r["severity"] == "CRITICAL"]
    assert failure["message"].startswith(f"cannot read the catalog, not serving: {mount / 'catalog.json'}: ")
    assert_reason_comes_first(records, failure)
    assert "cannot read: [Errno 2]" in failure["message"]
    assert "still failing after" in failure["message"]
    assert failure["message"].endswith(" reads in 1 s)")


def test_without_a_timeout_the_file_is_read_once(tmp_path: Path) -> None:
    result = run_to_exit({"CATALOG_PATH": str(tmp_path / "absent.json")})
    assert result.returncode == 1
    assert WAITING not in result.stdout
    assert "cannot read the catalog, not serving" in result.stdout


def test_an_invalid_file_read_whole_is_not_retried(mount: Path) -> None:
    content = json.dumps({"products": [{**GOOD, "id": "42", "price": "cheap"}]}).encode()
    publish(mount, "catalog.json", content)
    sha256 = hashlib.sha256(content).hexdigest()
    result = run_to_exit(env(mount / "catalog.json", CATALOG_SHA256=sha256), timeout=20)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert not any(r["message"].startswith(WAITING) for r in records)
    (failure,) = [r for r in records if r["severity"] == "CRITICAL"]
    assert failure["message"] == (
        f"invalid catalog, not serving: {mount / 'catalog.json'}: products[0] (id '42'): price: "
        'expected a number, got "cheap"'
    )


def test_sigterm_while_waiting_stops_at_once_with_exit_0(mount: Path) -> None:
    with ServerProcess(env(mount / "catalog.json")) as process:
        process.wait_for_log(WAITING)
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=10) == 0
        assert not any('"serving ' in line for line in process.lines)


def test_sigterm_while_a_read_hangs_stops_at_once_with_exit_0(tmp_path: Path) -> None:
    # A FIFO that no one writes: open() blocks for good, as a read from a hung Cloud Storage mount can.
    fifo = tmp_path / "catalog.json"
    os.mkfifo(fifo)
    with ServerProcess(env(fifo)) as process:
        port = int(process.wait_for_log(r"listening on port (\d+)").group(1))
        assert_not_serving(port)  # the loop answers while the read hangs on its thread
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=10) == 0
        process.wait_for_log('"message": "stopped"')
        messages = [r["message"] for r in process.records()]
    assert "received SIGTERM" in messages
    assert any(m.startswith("shutting down") for m in messages)
    assert not any(m.startswith(("serving ", WAITING)) for m in messages)
