"""`python -m service` as Cloud Run runs it: start-up, bad environment and catalogs, logs, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from bench.servers import ROOT, ServerProcess
from catalog import SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from service.__main__ import EXIT_PORT_IN_USE
from tests.servers import run_to_exit
from tests.service.helpers import assert_reason_comes_first, write_catalog
from tests.service.test_operations import health_stub

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    """The server on the embedded catalog, with a project id for trace fields."""
    process = ServerProcess({"GOOGLE_CLOUD_PROJECT": "demo-project", "ENABLE_REFLECTION": "true"})
    try:
        yield process
    finally:
        process.stop()


def test_serves_the_embedded_catalog_and_logs_json_access_lines(server_process: ServerProcess) -> None:
    port = server_process.wait_serving()
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        assert stub.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=5).name == "Laptop Pro 16"
        stub.GetProduct(
            catalog_pb2.GetProductRequest(id="2"),
            metadata=(("x-cloud-trace-context", f"{TRACE_ID}/1;o=1"),),
            timeout=5,
        )
        list(
            stub.SearchProducts(
                catalog_pb2.SearchRequest(query="desk"),
                metadata=(("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),),
                timeout=5,
            )
        )
        with pytest.raises(grpc.RpcError):
            stub.GetProduct(catalog_pb2.GetProductRequest(id="nope"), timeout=5)
    server_process.wait_for_log("NOT_FOUND")
    records = server_process.records()  # every line is a JSON object
    assert all({"severity", "message", "time"} <= record.keys() for record in records)
    access = [r for r in records if r.get("method", "").startswith("/catalog.")]
    assert [(r["method"].rsplit("/", 1)[1], r["code"]) for r in access] == [
        ("GetProduct", "OK"),
        ("GetProduct", "OK"),
        ("SearchProducts", "OK"),
        ("GetProduct", "NOT_FOUND"),
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in access)
    trace = f"projects/demo-project/traces/{TRACE_ID}"
    assert [r.get("logging.googleapis.com/trace") for r in access] == [None, trace, trace, None]


def test_no_trace_field_without_a_project(tmp_path: Path) -> None:
    process = ServerProcess({})
    try:
        port = process.wait_serving()
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            catalog_pb2_grpc.ProductCatalogStub(channel).GetProduct(
                catalog_pb2.GetProductRequest(id="1"),
                metadata=(("x-cloud-trace-context", f"{TRACE_ID}/1;o=1"),),
                timeout=5,
            )
        record = json.loads(process.wait_for_log("GetProduct OK").string)
        assert "logging.googleapis.com/trace" not in record
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "eighty"}, "PORT='eighty' is invalid"),
        ({"MAX_CONCURRENT_RPCS": "0"}, "MAX_CONCURRENT_RPCS='0' is invalid"),
        ({"ENABLE_REFLECTION": "maybe"}, "ENABLE_REFLECTION='maybe' is invalid"),
        ({"SHUTDOWN_GRACE_SECONDS": "30"}, "SHUTDOWN_GRACE_SECONDS='30' is invalid"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL='chatty' is invalid"),
    ],
)
def test_bad_environment_stops_start_up_with_exit_1(env: dict[str, str], expected: str) -> None:
    result = run_to_exit(env)
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["severity"] == "CRITICAL"
    assert expected in record["message"]


@pytest.mark.parametrize(
    ("products", "expected"),
    [
        ([{"id": "1", "name": "A"}, {"id": "1", "name": "B"}], "products[1] (id '1'): id: duplicates"),
        ([{"id": "1", "name": ""}], "products[0] (id '1'): name: must not be empty"),
        ([{"id": "", "name": "A"}], "products[0]: id: must not be empty"),
        ([{"id": "1", "name": "A", "price": -3}], "products[0] (id '1'): price: must be a finite"),
    ],
)
def test_bad_catalog_stops_start_up_before_serving(
    tmp_path: Path, products: list[dict[str, object]], expected: str
) -> None:
    path = write_catalog(tmp_path / "catalog.json", products)
    result = run_to_exit({"CATALOG_PATH": str(path)})
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    (failure,) = [r for r in records if r["severity"] == "CRITICAL"]
    assert str(path) in failure["message"]
    assert expected in failure["message"]
    assert_reason_comes_first(records, failure)
    assert not any(r["message"].startswith("serving ") for r in records)


def test_missing_catalog_file_stops_start_up(tmp_path: Path) -> None:
    result = run_to_exit({"CATALOG_PATH": str(tmp_path / "absent.json")})
    assert result.returncode == 1
    assert "absent.json: cannot read" in result.stdout


def test_port_in_use_is_a_clear_start_up_error(server_process: ServerProcess) -> None:
    port = server_process.wait_serving()
    for processes in ("1", "2"):
        result = run_to_exit({"PORT": str(port), "SERVER_PROCESSES": processes})
        assert result.returncode == EXIT_PORT_IN_USE
        # One JSON line that says what to do, not gRPC's own error from its core.
        (line,) = result.stdout.splitlines()
        assert json.loads(line)["message"].startswith(f"port {port} is in use; run with PORT=")
        assert "add_port" not in result.stderr
        assert not result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_stream_in_flight_finish_then_exits_0(tmp_path: Path, signum: int) -> None:
    # 1000 results of ~2 KB: far more than a flow-control window, so the stream is really in flight.
    products = [{"id": str(i), "name": f"Desk {i}", "description": "oak " * 500} for i in range(1000)]
    path = write_catalog(tmp_path / "big.json", products)
    process = ServerProcess({"CATALOG_PATH": str(path), "SHUTDOWN_GRACE_SECONDS": "6"})
    try:
        port = process.wait_serving()
        options = [("grpc.http2.bdp_probe", 0)]  # keep the receive window small
        with (
            grpc.insecure_channel(f"localhost:{port}", options=options) as channel,
            grpc.insecure_channel(f"localhost:{port}") as watch_channel,
        ):
            watch = health_stub(watch_channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=20
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stream = catalog_pb2_grpc.ProductCatalogStub(channel).SearchProducts(
                catalog_pb2.SearchRequest(query="desk", max_results=1000), timeout=20
            )
            received = [next(stream).id]
            process.process.send_signal(signum)
            # Health turns NOT_SERVING at once, while the stream goes on.
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            for product in stream:
                received.append(product.id)
                time.sleep(0.001)
            assert stream.code() is grpc.StatusCode.OK
        assert received == [str(i) for i in range(1000)]
        # It exits by itself once the stream is done: wait()'s timeout only keeps a hung test from hanging.
        assert process.process.wait(timeout=10) == 0
        messages = [r["message"] for r in process.records()]
        assert f"received {signal.Signals(signum).name}" in messages
        assert messages[-1] == "stopped"
    finally:
        process.stop()


def test_new_calls_are_refused_once_shutdown_begins(tmp_path: Path) -> None:
    products = [{"id": str(i), "name": f"Desk {i}", "description": "oak " * 500} for i in range(1000)]
    process = ServerProcess({"CATALOG_PATH": str(write_catalog(tmp_path / "big.json", products))})
    try:
        port = process.wait_serving()
        with grpc.insecure_channel(f"localhost:{port}", options=[("grpc.http2.bdp_probe", 0)]) as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            request = catalog_pb2.SearchRequest(query="desk", max_results=1000)
            stream = stub.SearchProducts(request, timeout=20)
            next(stream)  # keeps the server in its grace period
            process.process.send_signal(signal.SIGTERM)
            process.wait_for_log("shutting down")
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=5)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
            assert len(list(stream)) == 999
        assert process.process.wait(timeout=10) == 0
    finally:
        process.stop()


# Imported only when something asks for them: reflection (ENABLE_REFLECTION), OpenTelemetry (an exporter
# on), a rich error's details (the first invalid request). Together they were over a third of start-up.
# (`import grpc` imports the empty grpc_reflection package itself, not its services.)
DEFERRED_IMPORTS = ("grpc_reflection.", "opentelemetry", "google.rpc", "grpc_status")


def test_start_up_imports_nothing_that_waits_to_be_asked_for() -> None:
    code = "import sys, service.__main__; print('\\n'.join(sys.modules))"
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert "service.server" in imported
    assert [name for name in imported if name.startswith(DEFERRED_IMPORTS)] == []
