"""The OpenTelemetry SDK side of the server's telemetry: providers, readers and exporters.

Imported by service.telemetry's `start` only when an exporter is on: the SDK costs about a tenth of a second
to import, which a server with telemetry off (locally, by default) does not pay before SERVING.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from service.telemetry import METER_NAME, CallMetrics, CallTracing, DurationHistogram, Telemetry


class _AddsCallMetrics(MetricReader):
    """A reader that adds a DurationHistogram's series to every collection it receives."""

    calls: DurationHistogram | None = None  # set once the provider's instruments exist

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if self.calls is not None:
            metrics_data = with_call_metrics(metrics_data, self.calls)
        # The concrete reader's method: this class is only ever mixed in before one.
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)  # type: ignore[safe-super]


def with_call_metrics(metrics_data: MetricsData, calls: DurationHistogram) -> MetricsData:
    """`metrics_data` with the calls' series added under this server's instrumentation scope."""
    added = calls.metrics()
    if not added:
        return metrics_data
    resources = list(metrics_data.resource_metrics)
    scope = ScopeMetrics(InstrumentationScope(METER_NAME), added, "")
    if not resources:
        return metrics_data
    first = resources[0]
    resources[0] = ResourceMetrics(first.resource, [*first.scope_metrics, scope], first.schema_url)
    return MetricsData(resources)


def detect_resource(env: Mapping[str, str]) -> Resource:
    """The service, region, revision and instance (Cloud Run), or just the service name locally."""
    if env.get("K_SERVICE"):
        from opentelemetry.resourcedetector.gcp_resource_detector import (  # noqa: PLC0415
            GoogleCloudResourceDetector,
        )

        return for_cloud_run(GoogleCloudResourceDetector(raise_on_error=False).detect())
    return Resource.create({"service.name": "catalog"})


def for_cloud_run(detected: Resource) -> Resource:
    """The detector's Cloud Run attributes, with the service and instance named as the exporter maps them.

    The SDK's own defaults (an unknown service, a random instance id) would otherwise win the monitored
    resource's `job` and `task_id` labels over the service's name and Cloud Run's instance id.
    """
    attributes = detected.attributes
    names = {
        "service.name": str(attributes.get("faas.name", "catalog")),
        "service.instance.id": str(attributes.get("faas.instance", "")),
    }
    return Resource.create(names).merge(detected)


class PeriodicReader(_AddsCallMetrics, PeriodicExportingMetricReader):
    """The SDK's periodic reader, exporting the call metrics too (Cloud Monitoring, console)."""


class InMemoryReader(_AddsCallMetrics, InMemoryMetricReader):
    """The SDK's in-memory reader with the call metrics too (tests)."""


def metric_reader(
    exporter: str, project_id: str | None, export_seconds: float, prometheus_port: int
) -> MetricReader:
    """The reader for METRICS_EXPORTER's value (not "none")."""
    interval_ms = export_seconds * 1000
    if exporter == "gcp":
        from opentelemetry.exporter.cloud_monitoring import (  # noqa: PLC0415
            CloudMonitoringMetricsExporter,
        )

        # A label of its own per process (`opentelemetry_id`): several server processes on one instance
        # (SERVER_PROCESSES) would otherwise write the same series, which Monitoring refuses.
        monitoring = CloudMonitoringMetricsExporter(project_id=project_id, add_unique_identifier=True)
        return PeriodicReader(monitoring, export_interval_millis=interval_ms)
    if exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter  # noqa: PLC0415

        return PeriodicReader(ConsoleMetricExporter(), export_interval_millis=interval_ms)
    if exporter == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        from prometheus_client import start_http_server  # noqa: PLC0415

        class PrometheusReader(_AddsCallMetrics, PrometheusMetricReader):
            """Prometheus's reader with the call metrics too (scraped on 127.0.0.1:PROMETHEUS_PORT)."""

        start_http_server(prometheus_port, addr="127.0.0.1")
        return PrometheusReader()
    raise ValueError(f"unknown metrics exporter {exporter!r}")


def call_metrics(
    resource: Resource, readers: Sequence[MetricReader], revision: str
) -> tuple[CallMetrics, MeterProvider]:
    """The call metrics, collected by `readers` (each an _AddsCallMetrics) through a provider of their own."""
    provider = MeterProvider(resource=resource, metric_readers=list(readers))
    durations = DurationHistogram(revision)
    for reader in readers:
        if isinstance(reader, _AddsCallMetrics):
            reader.calls = durations
    return CallMetrics(provider.get_meter(METER_NAME), durations), provider


def start(settings: Any, env: Mapping[str, str], metrics_exporter: str, trace_exporter: str) -> Telemetry:
    """Telemetry with the exporters service.telemetry.start resolved (at least one is not "none")."""
    resource = detect_resource(env)
    revision = env.get("K_REVISION", "local")
    metrics = provider = None
    if metrics_exporter != "none":
        reader = metric_reader(
            metrics_exporter, settings.project_id, settings.metrics_export_seconds, settings.prometheus_port
        )
        metrics, provider = call_metrics(resource, [reader], revision)
    tracing = tracer_provider = None
    if trace_exporter != "none":
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(trace_exporter, settings)))
        tracing = CallTracing(tracer_provider.get_tracer(METER_NAME), settings.trace_sample_rate)
    return Telemetry(metrics, tracing, provider, tracer_provider)


def _span_exporter(exporter: str, settings: Any) -> Any:
    if exporter == "gcp":
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter  # noqa: PLC0415

        return CloudTraceSpanExporter(project_id=settings.project_id)  # type: ignore[no-untyped-call]
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

    return ConsoleSpanExporter()
