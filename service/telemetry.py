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

import logging
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
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


class CallMetrics:
    """The per-call instruments: a duration histogram (gRFC A66) and a count of calls by method and status.

    The attribute mappings are built once per (method, code) and reused: the SDK keys its series by them,
    and a dict built per call would cost as much again as the measurement. The count is a plain dict,
    read by an observable counter once per export, so it costs the call one increment.
    """

    def __init__(self, meter: Meter, revision: str) -> None:
        self._duration: Histogram = meter.create_histogram(
            CALL_DURATION, unit="s", description="Time from a call's start to its status (gRFC A66)."
        )
        meter.create_observable_counter(
            CALLS, callbacks=[self._observe_calls], unit="{call}", description="Calls ended, by status."
        )
        self._revision = revision
        self._attributes: dict[tuple[str, str], Mapping[str, str]] = {}
        self._calls: dict[tuple[str, str], int] = {}

    def finished(self, method: str, code: str, seconds: float) -> None:
        """Record one call to `method` ending with status `code` (its name) after `seconds`."""
        key = (method, code)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = {
                METHOD_ATTRIBUTE: method.lstrip("/"),
                STATUS_ATTRIBUTE: code,
                REVISION_ATTRIBUTE: self._revision,
            }
            self._calls[key] = 0
        self._calls[key] += 1
        self._duration.record(seconds, attributes)

    def _observe_calls(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Runs on the exporter's thread: a copy, so a call ending meanwhile cannot change the dict mid-read.
        return [Observation(count, self._attributes[key]) for key, count in list(self._calls.items())]


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

        return Resource.create().merge(GoogleCloudResourceDetector(raise_on_error=False).detect())
    return Resource.create({"service.name": "catalog"})


def metric_reader(
    exporter: str, project_id: str | None, export_seconds: float, prometheus_port: int
) -> MetricReader:
    """The reader for METRICS_EXPORTER's value (not "none")."""
    interval_ms = export_seconds * 1000
    if exporter == "gcp":
        from opentelemetry.exporter.cloud_monitoring import (  # noqa: PLC0415
            CloudMonitoringMetricsExporter,
        )

        return PeriodicExportingMetricReader(
            CloudMonitoringMetricsExporter(project_id=project_id), export_interval_millis=interval_ms
        )
    if exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter  # noqa: PLC0415

        return PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval_ms)
    if exporter == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        from prometheus_client import start_http_server  # noqa: PLC0415

        start_http_server(prometheus_port, addr="127.0.0.1")
        return PrometheusMetricReader()
    raise ValueError(f"unknown metrics exporter {exporter!r}")


def meter_provider(resource: Resource, readers: Iterable[MetricReader]) -> MeterProvider:
    """A provider whose call-duration histogram has gRFC A66's buckets."""
    return MeterProvider(
        resource=resource,
        metric_readers=list(readers),
        views=[
            View(
                instrument_name=CALL_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(boundaries=DURATION_BUCKETS),
            )
        ],
    )


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
        provider = meter_provider(resource, [reader])
        metrics = CallMetrics(provider.get_meter(METER_NAME), revision)
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
