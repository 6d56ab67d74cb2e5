"""Server metrics and traces: OpenTelemetry instruments recorded by the call guard, exported by a setting.

Metrics cost per time series and minute, not per call: each call adds one measurement to a histogram in
memory (`grpc.server.call.duration`, gRFC A66's name and labels), and a reader exports the series every
METRICS_EXPORT_SECONDS. On Cloud Run the exporter is OpenTelemetry's Cloud Monitoring exporter, with the
resource detector naming the service, region and instance (the monitored resource `generic_task`); the
revision, which that resource lacks, is a label of every point, so the release can tell revisions apart.

The server records its own instruments rather than running gRPC's OpenTelemetry plugin
(grpcio-observability): the plugin pins grpcio to its own version (1.83.1 against the server's 1.83.2), and
on grpc.aio it names every method "other" when handlers come from a generic handler, as this server's do
(docs/observability.md has the measurements).

Traces: a call is traced when its incoming context (`traceparent` or `x-cloud-trace-context`) says the caller
sampled it, or else with probability TRACE_SAMPLE_RATE; an untraced call costs no span at all.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as MetricHistogram
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contract.server_metrics import (
    CALL_DURATION,
    CALLS,
    METHOD_ATTRIBUTE,
    REVISION_ATTRIBUTE,
    STATUS_ATTRIBUTE,
)

# gRFC A66's latency buckets (seconds), so percentiles read the same as other gRPC services' do.
DURATION_BUCKETS = (
    0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008,
    0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.65, 0.8, 1, 2, 5, 10, 20, 50, 100,
)  # fmt: skip
METER_NAME = "catalog.server"

_log = logging.getLogger(__name__)
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), CloudTraceFormatPropagator()])


class DurationHistogram:
    """gRFC A66's call-duration histogram, kept per (method, status) in plain lists: a bisect and three adds.

    The SDK's own Histogram.record cleans and hashes the attributes of every measurement, which measured
    as much CPU as the access line this replaces (docs/observability.md); here the attributes are built
    once per series, and the readers below add the series to each collection as the SDK's own data
    points (cumulative, gRFC A66's buckets), for whichever exporter is configured.
    Recorded on the event loop's thread and read on the exporter's: a read racing a call may miss it
    until the next export (cumulative points catch up), never corrupt a series.
    """

    def __init__(self, revision: str, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._revision = revision
        self._start = time.time_ns()
        # Per series: its attributes, bucket counts, [sum, min, max].
        self._series: dict[tuple[str, str], tuple[Mapping[str, str], list[int], list[float]]] = {}

    def record(self, method: str, code: str, seconds: float) -> None:
        """One call to `method` that ended with status `code` (its name) after `seconds`."""
        series = self._series.get((method, code))
        if series is None:
            attributes = {
                METHOD_ATTRIBUTE: method.lstrip("/"),
                STATUS_ATTRIBUTE: code,
                REVISION_ATTRIBUTE: self._revision,
            }
            series = self._series[(method, code)] = (
                attributes,
                [0] * (len(self.bounds) + 1),
                [0.0, seconds, seconds],
            )
        _, counts, stats = series
        counts[bisect.bisect_left(self.bounds, seconds)] += 1
        stats[0] += seconds
        if seconds < stats[1]:
            stats[1] = seconds
        elif seconds > stats[2]:
            stats[2] = seconds

    def counts(self) -> list[tuple[Mapping[str, str], int]]:
        """Each series' attributes and its calls so far."""
        return [(attributes, sum(counts)) for attributes, counts, _ in list(self._series.values())]

    def metrics(self) -> list[Metric]:
        """The duration histogram as the SDK's metric data (cumulative since the server started)."""
        now = time.time_ns()
        durations = []
        for attributes, counts, stats in list(self._series.values()):
            counted = list(counts)
            total = sum(counted)
            durations.append(
                HistogramDataPoint(
                    attributes=attributes,
                    start_time_unix_nano=self._start,
                    time_unix_nano=now,
                    count=total,
                    sum=stats[0],
                    bucket_counts=counted,
                    explicit_bounds=self.bounds,
                    min=stats[1],
                    max=stats[2],
                )
            )
        if not durations:
            return []
        return [
            Metric(
                CALL_DURATION,
                "Time from a call's start to its status (gRFC A66).",
                "s",
                MetricHistogram(durations, AggregationTemporality.CUMULATIVE),
            )
        ]


class CallMetrics:
    """What the call guard records into: the duration histogram, and the SDK's counter of calls read from it.

    The counter is an observable one, read once per collection: a call costs only the histogram's adds.
    Its observations are also what makes each collection non-empty, so the histogram rides along.
    """

    def __init__(self, meter: Meter, durations: DurationHistogram) -> None:
        self.durations = durations
        meter.create_observable_counter(
            CALLS, callbacks=[self._observe], unit="{call}", description="Calls ended, by status."
        )

    def finished(self, method: str, code: str, seconds: float) -> None:
        """Record one call to `method` ending with status `code` (its name) after `seconds`."""
        self.durations.record(method, code, seconds)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, attributes) for attributes, count in self.durations.counts()]


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


def _carrier(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    return {key: value for key, value in metadata if isinstance(value, str)}


def caller_sampled(metadata: Iterable[tuple[str, str | bytes]]) -> bool:
    """Whether the incoming trace context asks for this call to be traced (its sampled flag)."""
    for key, value in metadata:
        if isinstance(value, bytes):
            continue
        if key == "traceparent":
            return value.strip().endswith("-01")
        if key == "x-cloud-trace-context":
            return value.rstrip().endswith(";o=1")
    return False


class CallTracing:
    """Server spans for the sampled calls, children of the caller's span when it sent one."""

    def __init__(self, tracer: Tracer, sample_rate: float, rng: random.Random | None = None) -> None:
        self._tracer = tracer
        self._rate = sample_rate
        self._random = (rng or random.Random()).random  # noqa: S311 (sampling, not secrets)

    def start(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> Span | None:
        """A started span for the call, or None when it is not sampled (no work beyond this test)."""
        metadata = tuple(metadata)
        if not (caller_sampled(metadata) or (self._rate and self._random() < self._rate)):
            return None
        parent: OtelContext = _PROPAGATOR.extract(_carrier(metadata))
        return self._tracer.start_span(method.lstrip("/"), context=parent, kind=SpanKind.SERVER)

    @staticmethod
    def end(span: Span, code: str) -> None:
        """End the call's span with its gRPC status."""
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            span.set_status(trace.StatusCode.ERROR, code)
        span.end()


def trace_id(span: Span) -> str:
    """The span's trace id as Cloud Trace and Cloud Logging write it (32 hex digits)."""
    return trace.format_trace_id(span.get_span_context().trace_id)


@dataclass
class Telemetry:
    """What the call guard records into, and what the server shuts down when it stops."""

    metrics: CallMetrics | None
    tracing: CallTracing | None
    meter_provider: MeterProvider | None = None
    tracer_provider: TracerProvider | None = None

    def shutdown(self) -> None:
        """Export what is pending (a last point per series, the last spans) and stop the exporters."""
        for provider in (self.meter_provider, self.tracer_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception:  # an exporter failing at exit must not hide the shutdown's own errors
                    _log.exception("telemetry did not shut down cleanly")


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


def start(settings: Any, env: Mapping[str, str] | None = None) -> Telemetry:
    """Telemetry as the settings ask (service/config.py: METRICS_EXPORTER, TRACE_SAMPLE_RATE, ...)."""
    env = os.environ if env is None else env
    resource = detect_resource(env)
    revision = env.get("K_REVISION", "local")
    on_cloud_run = bool(env.get("K_SERVICE"))
    exporter = _resolve(settings.metrics_exporter, on_cloud_run)
    metrics = provider = None
    if exporter != "none":
        reader = metric_reader(
            exporter, settings.project_id, settings.metrics_export_seconds, settings.prometheus_port
        )
        metrics, provider = call_metrics(resource, [reader], revision)
    tracing = tracer_provider = None
    trace_exporter = _resolve(settings.trace_exporter, on_cloud_run)
    if trace_exporter != "none":
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(trace_exporter, settings)))
        tracing = CallTracing(tracer_provider.get_tracer(METER_NAME), settings.trace_sample_rate)
    return Telemetry(metrics, tracing, provider, tracer_provider)


def _resolve(exporter: str, on_cloud_run: bool) -> str:
    """Google Cloud's exporter on Cloud Run and none elsewhere for "auto"; else `exporter` itself."""
    if exporter == "auto":
        return "gcp" if on_cloud_run else "none"
    return exporter


def _span_exporter(exporter: str, settings: Any) -> Any:
    if exporter == "gcp":
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter  # noqa: PLC0415

        return CloudTraceSpanExporter(project_id=settings.project_id)  # type: ignore[no-untyped-call]
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

    return ConsoleSpanExporter()
