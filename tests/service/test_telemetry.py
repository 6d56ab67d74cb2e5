"""The server's metrics, traces and sampled access lines (service/telemetry.py, the call guard's hook).

Metrics are read from an in-memory reader after real calls to a real server; the Cloud Monitoring
exporter's requests are read by an in-process fake of Monitoring's MetricService served from its own protos,
and matched against the filters the SLOs and the release gate use.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from catalog import catalog_pb2, catalog_pb2_grpc
from contract.server_metrics import CALL_DURATION, CALLS
from contract.telemetry import calls_filter, error_ratio_filters, latency_filter
from service.config import ConfigError, Settings
from service.store import CatalogStore
from service.telemetry import (
    DURATION_BUCKETS,
    CallTracing,
    DurationHistogram,
    Telemetry,
    caller_sampled,
)
from service.telemetry_export import InMemoryReader, PeriodicReader, call_metrics, for_cloud_run
from tests.release.fake_api import serve_fake
from tests.servers import in_process
from tests.service.helpers import make_products

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from google.cloud import monitoring_v3
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
    from google.protobuf import empty_pb2
    from opentelemetry.exporter.cloud_monitoring import CloudMonitoringMetricsExporter

GET = "catalog.ProductCatalog/GetProduct"
LIST = "catalog.ProductCatalog/ListProducts"
SEARCH = "catalog.ProductCatalog/SearchProducts"
# What the resource detector gives on Cloud Run (without asking the metadata server, which tests have not).
CLOUD_RUN = for_cloud_run(
    Resource(
        {
            "cloud.provider": "gcp",
            "cloud.platform": "gcp_cloud_run",
            "cloud.region": "europe-west1",
            "faas.name": "catalog-grpc",
            "faas.version": "catalog-grpc-00007-abc",
            "faas.instance": "instance-1",
        }
    )
)


def calls_of_each_kind(port: int) -> None:
    """OK, NOT_FOUND and INVALID_ARGUMENT unary calls, and a stream."""
    with grpc.insecure_channel(f"localhost:{port}") as channel:
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        stub.GetProduct(catalog_pb2.GetProductRequest(id="p0"), timeout=5)
        stub.GetProduct(catalog_pb2.GetProductRequest(id="p0"), timeout=5)
        with pytest.raises(grpc.RpcError):
            stub.GetProduct(catalog_pb2.GetProductRequest(id="missing"), timeout=5)
        with pytest.raises(grpc.RpcError):
            stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=-1), timeout=5)
        list(stub.SearchProducts(catalog_pb2.SearchRequest(query="product"), timeout=5))


def points(reader: InMemoryReader, name: str) -> dict[tuple[str, str], Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (
            str(dict(point.attributes or {})["grpc.method"]),
            str(dict(point.attributes or {})["grpc.status"]),
        ): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    }


@pytest.fixture
def recorded() -> InMemoryReader:
    reader = InMemoryReader()
    metrics, provider = call_metrics(Resource.create({}), [reader], "rev-1")
    telemetry = Telemetry(metrics, None, provider)
    with in_process(Settings(port=0), CatalogStore(make_products(3)), telemetry=telemetry) as server:
        calls_of_each_kind(server.port)
    return reader


def test_each_method_and_code_is_counted_and_timed(recorded: InMemoryReader) -> None:
    expected = {(GET, "OK"): 2, (GET, "NOT_FOUND"): 1, (LIST, "INVALID_ARGUMENT"): 1, (SEARCH, "OK"): 1}
    durations = points(recorded, CALL_DURATION)
    assert {key: point.count for key, point in durations.items()} == expected
    assert {key: point.value for key, point in points(recorded, CALLS).items()} == expected
    for point in durations.values():
        assert point.attributes["revision"] == "rev-1"
        assert list(point.explicit_bounds) == list(DURATION_BUCKETS)
        assert sum(point.bucket_counts) == point.count
        assert 0 < point.min <= point.max < 5  # seconds, as gRFC A66 has them
        assert point.sum >= point.min * point.count


def test_a_health_check_is_timed_under_its_own_method() -> None:
    reader = InMemoryReader()
    metrics, provider = call_metrics(Resource.create({}), [reader], "rev-1")
    with in_process(
        Settings(port=0), CatalogStore(make_products(1)), telemetry=Telemetry(metrics, None, provider)
    ) as server:
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

        with grpc.insecure_channel(f"localhost:{server.port}") as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert ("grpc.health.v1.Health/Check", "OK") in points(reader, CALL_DURATION)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.001, 7), (0.0010001, 8), (100.0, 40), (100.1, 41)],
)
def test_a_duration_lands_in_its_a66_bucket(seconds: float, bucket: int) -> None:
    # Upper bounds are inclusive, as OpenTelemetry's explicit buckets are: (previous, bound].
    durations = DurationHistogram("r")
    durations.record("/m", "OK", seconds)
    (metric,) = durations.metrics()
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert [index for index, count in enumerate(point.bucket_counts) if count] == [bucket]


# ---- Cloud Monitoring's exporter against a fake MetricService ----


class FakeMetricService:
    """Keeps every CreateTimeSeries request (and accepts the exporter's metric descriptors)."""

    def __init__(self) -> None:
        self.series: list[monitoring_v3.TimeSeries] = []
        self.descriptors: list[str] = []

    def create_time_series(self, request: monitoring_v3.CreateTimeSeriesRequest, _context: Any) -> Any:
        assert request.name == "projects/my-project"
        self.series.extend(request.time_series)
        return empty_pb2.Empty()

    def create_metric_descriptor(
        self, request: monitoring_v3.CreateMetricDescriptorRequest, _context: Any
    ) -> Any:
        self.descriptors.append(request.metric_descriptor.type)
        return request.metric_descriptor


@pytest.fixture
def exported() -> Iterator[FakeMetricService]:
    fake = FakeMetricService()
    handlers = {
        "CreateTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake.create_time_series,
            request_deserializer=monitoring_v3.CreateTimeSeriesRequest.deserialize,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
        "CreateMetricDescriptor": grpc.unary_unary_rpc_method_handler(
            fake.create_metric_descriptor,
            request_deserializer=monitoring_v3.CreateMetricDescriptorRequest.deserialize,
            response_serializer=lambda descriptor: descriptor.SerializeToString(),
        ),
    }
    with serve_fake("google.monitoring.v3.MetricService", handlers, workers=2) as address:
        client = monitoring_v3.MetricServiceClient(
            transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(address))
        )
        exporter = CloudMonitoringMetricsExporter(project_id="my-project", client=client)
        reader = PeriodicReader(exporter, export_interval_millis=3_600_000)  # exported on shutdown only
        metrics, provider = call_metrics(CLOUD_RUN, [reader], "catalog-grpc-00007-abc")
        with in_process(
            Settings(port=0), CatalogStore(make_products(3)), telemetry=Telemetry(metrics, None, provider)
        ) as server:
            calls_of_each_kind(server.port)
        yield fake


def labels_of(series: monitoring_v3.TimeSeries) -> dict[str, str]:
    labels = {"metric.type": series.metric.type, "resource.type": series.resource.type}
    labels.update({f"metric.label.{key}": value for key, value in series.metric.labels.items()})
    labels.update({f"resource.label.{key}": value for key, value in series.resource.labels.items()})
    return labels


CLAUSE = re.compile(r'(?P<key>[a-z_.]+)\s*=\s*(?:"(?P<value>[^"]*)"|one_of\((?P<values>[^)]*)\))')


def selects(filter_: str, labels: dict[str, str]) -> bool:
    """Whether a filter of `key="v"` / `key = one_of(...)` clauses joined by AND selects `labels`."""
    for clause in filter_.split(" AND "):
        match = CLAUSE.fullmatch(clause.strip())
        assert match is not None, clause
        values = (
            {v.strip().strip('"') for v in match["values"].split(",")}
            if match["values"]
            else {match["value"]}
        )
        if labels.get(match["key"]) not in values:
            return False
    return True


def test_the_exporter_writes_each_series_on_the_cloud_run_resource(exported: FakeMetricService) -> None:
    by_type: dict[str, list[dict[str, str]]] = {}
    for series in exported.series:
        by_type.setdefault(series.metric.type, []).append(labels_of(series))
    assert set(by_type) == {
        "workload.googleapis.com/grpc.server.call.duration",
        "workload.googleapis.com/catalog.server.calls",
    }
    for labels in [labels for each in by_type.values() for labels in each]:
        assert labels["resource.type"] == "generic_task"
        assert labels["resource.label.job"] == "catalog-grpc"
        assert labels["resource.label.location"] == "europe-west1"
        assert labels["resource.label.task_id"] == "instance-1"
        assert labels["metric.label.revision"] == "catalog-grpc-00007-abc"
    statuses = {
        (each["metric.label.grpc_method"], each["metric.label.grpc_status"])
        for each in by_type["workload.googleapis.com/catalog.server.calls"]
    }
    assert statuses == {(GET, "OK"), (GET, "NOT_FOUND"), (LIST, "INVALID_ARGUMENT"), (SEARCH, "OK")}
    (duration,) = [
        s
        for s in exported.series
        if s.metric.type.endswith(CALL_DURATION) and s.metric.labels["grpc_status"] == "NOT_FOUND"
    ]
    assert duration.points[0].value.distribution_value.count == 1


def test_the_slos_and_the_gate_select_what_the_exporter_writes(exported: FakeMetricService) -> None:
    from tests.infra.harness import infra_module  # noqa: PLC0415

    observability = infra_module("observability")
    series = [labels_of(s) for s in exported.series]
    all_calls = [s for s in series if selects(calls_filter("catalog-grpc"), s)]
    assert len(all_calls) == 4
    faults = [s for s in series if selects(calls_filter("catalog-grpc", faults_only=True), s)]
    assert faults == []  # NOT_FOUND and INVALID_ARGUMENT are the caller's
    unary = observability.unary_latency_filter("catalog-grpc", ["/" + GET, "/" + LIST])
    assert {s["metric.label.grpc_method"] for s in series if selects(unary, s)} == {GET, LIST}
    total, _bad = error_ratio_filters(
        "workload.googleapis.com/catalog.server.calls",
        "catalog-grpc",
        "catalog-grpc-00007-abc",
        "europe-west1",
    )
    assert len([s for s in series if selects(total, s)]) == 4
    latency = latency_filter(
        "catalog-grpc", ("/" + GET,), revision="catalog-grpc-00007-abc", region="europe-west1"
    )
    assert len([s for s in series if selects(latency, s)]) == 2  # OK and NOT_FOUND


# ---- Traces and sampled lines ----


@pytest.mark.parametrize(
    ("metadata", "sampled"),
    [
        ((("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),), True),
        ((("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),), False),
        ((("x-cloud-trace-context", "0af7651916cd43dd8448eb211c80319c/1;o=1"),), True),
        ((("x-cloud-trace-context", "0af7651916cd43dd8448eb211c80319c/1;o=0"),), False),
        ((), False),
    ],
)
def test_the_callers_sampling_decision_is_honoured(
    metadata: tuple[tuple[str, str], ...], sampled: bool
) -> None:
    assert caller_sampled(metadata) is sampled


def test_a_sampled_call_is_a_child_of_the_callers_span_and_its_line_names_the_trace(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing = CallTracing(provider.get_tracer("test"), sample_rate=0.0)
    settings = Settings(port=0, project_id="my-project")
    trace = "0af7651916cd43dd8448eb211c80319c"
    with (
        in_process(settings, CatalogStore(make_products(1)), telemetry=Telemetry(None, tracing)) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        stub.GetProduct(
            catalog_pb2.GetProductRequest(id="p0"),
            metadata=(("traceparent", f"00-{trace}-b7ad6b7169203331-01"),),
            timeout=5,
        )
        stub.GetProduct(catalog_pb2.GetProductRequest(id="p0"), timeout=5)  # not sampled: no span
    (span,) = spans.get_finished_spans()
    assert span.name == GET
    assert format(span.context.trace_id, "032x") == trace
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    assert any(
        line.get("logging.googleapis.com/trace") == f"projects/my-project/traces/{trace}" for line in lines
    )


def test_ok_lines_are_sampled_and_every_other_line_is_kept(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    from service.call_guard import CallGuard  # noqa: PLC0415

    settings = Settings(port=0)
    with in_process(settings, CatalogStore(make_products(1))) as server:
        guard: CallGuard = server.server._guard
        guard._ok_log_rate = 0.0
        calls_of_each_kind(server.port)
    codes = [json.loads(line)["code"] for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    assert sorted(codes) == ["INVALID_ARGUMENT", "NOT_FOUND"]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("OK_LOG_SAMPLE_RATE", "1.5"),
        ("TRACE_SAMPLE_RATE", "-0.1"),
        ("METRICS_EXPORTER", "statsd"),
        ("METRICS_EXPORT_SECONDS", "5"),
    ],
)
def test_bad_telemetry_settings_are_named(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_an_exporter_that_cannot_start_leaves_the_server_serving_without_telemetry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # On Cloud Run without credentials (or a local run asking for "gcp"), the exporter's client refuses to
    # start: the server must still serve, and say why its telemetry is off.
    from service import telemetry, telemetry_export  # noqa: PLC0415

    def refuse(*_args: Any) -> telemetry.Telemetry:
        raise RuntimeError("no default credentials")

    monkeypatch.setattr(telemetry_export, "start", refuse)
    settings = Settings.from_env({"METRICS_EXPORTER": "gcp", "TRACE_EXPORTER": "none"})
    with caplog.at_level(logging.ERROR, logger="service.telemetry"):
        started = telemetry.start(settings, env={"K_SERVICE": "catalog"})
    assert (started.metrics, started.tracing) == (None, None)
    assert "telemetry is off: the gcp metrics / none trace exporter could not start" in caplog.text
    assert "no default credentials" in caplog.text
