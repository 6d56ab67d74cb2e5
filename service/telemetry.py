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
from typing import TYPE_CHECKING, Any

from contract.server_metrics import (
    CALL_DURATION,
    CALLS,
    METHOD_ATTRIBUTE,
    REVISION_ATTRIBUTE,
    STATUS_ATTRIBUTE,
)

if TYPE_CHECKING:
    # OpenTelemetry is imported only with telemetry on: the SDK (providers, readers, exporters) by
    # service.telemetry_export, about a tenth of a second; the API by the classes below that use it, about
    # a tenth of a server's start-up. A server with telemetry off pays neither before SERVING.
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import Metric
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

# gRFC A66's latency buckets (seconds), so percentiles read the same as other gRPC services' do.
DURATION_BUCKETS = (
    0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008,
    0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.65, 0.8, 1, 2, 5, 10, 20, 50, 100,
)  # fmt: skip
METER_NAME = "catalog.server"

_log = logging.getLogger(__name__)


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
        from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415  (only with an exporter on)
            AggregationTemporality,
            HistogramDataPoint,
            Metric,
        )
        from opentelemetry.sdk.metrics.export import Histogram as MetricHistogram  # noqa: PLC0415

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
        from opentelemetry.metrics import Observation  # noqa: PLC0415  (telemetry on: see above)

        self.durations = durations
        self._observation = Observation
        meter.create_observable_counter(
            CALLS, callbacks=[self._observe], unit="{call}", description="Calls ended, by status."
        )

    def finished(self, method: str, code: str, seconds: float) -> None:
        """Record one call to `method` ending with status `code` (its name) after `seconds`."""
        self.durations.record(method, code, seconds)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [self._observation(count, attributes) for attributes, count in self.durations.counts()]


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
        # Telemetry on (see above).
        from opentelemetry.propagators.cloud_trace_propagator import (  # noqa: PLC0415
            CloudTraceFormatPropagator,
        )
        from opentelemetry.propagators.composite import CompositePropagator  # noqa: PLC0415
        from opentelemetry.trace import SpanKind  # noqa: PLC0415
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        self._propagator = CompositePropagator(
            [TraceContextTextMapPropagator(), CloudTraceFormatPropagator()]
        )
        self._server_kind = SpanKind.SERVER
        self._tracer = tracer
        self._rate = sample_rate
        self._random = (rng or random.Random()).random  # noqa: S311 (sampling, not secrets)

    def sampled(self, metadata: Iterable[tuple[str, str | bytes]]) -> bool:
        """Whether to trace a call with this metadata: its caller sampled it, or the sample rate picks it.

        Every call asks (an untraced call costs nothing more); only the sampled ones `start` a span.
        """
        return caller_sampled(metadata) or (self._rate > 0 and self._random() < self._rate)

    def start(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> Span:
        """A started span for a sampled call, a child of the caller's span when it sent one."""
        parent = self._propagator.extract(_carrier(metadata))
        return self._tracer.start_span(method.lstrip("/"), context=parent, kind=self._server_kind)

    @staticmethod
    def end(span: Span, code: str) -> None:
        """End the call's span with its gRPC status."""
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            from opentelemetry.trace import StatusCode  # noqa: PLC0415  (a span exists: imported already)

            span.set_status(StatusCode.ERROR, code)
        span.end()


def trace_id(span: Span) -> str:
    """The span's trace id as Cloud Trace and Cloud Logging write it (32 hex digits)."""
    return f"{span.get_span_context().trace_id:032x}"  # as opentelemetry.trace.format_trace_id writes it


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


def _resolve(exporter: str, on_cloud_run: bool) -> str:
    """Google Cloud's exporter on Cloud Run and none elsewhere for "auto"; else `exporter` itself."""
    if exporter == "auto":
        return "gcp" if on_cloud_run else "none"
    return exporter


def start(settings: Any, env: Mapping[str, str] | None = None) -> Telemetry:
    """Telemetry as the settings ask (service/config.py: METRICS_EXPORTER, TRACE_SAMPLE_RATE, ...)."""
    env = os.environ if env is None else env
    on_cloud_run = bool(env.get("K_SERVICE"))
    metrics_exporter = _resolve(settings.metrics_exporter, on_cloud_run)
    trace_exporter = _resolve(settings.trace_exporter, on_cloud_run)
    if metrics_exporter == "none" and trace_exporter == "none":
        return Telemetry(None, None)
    from service import telemetry_export  # noqa: PLC0415  (the SDK, only when an exporter is on)

    try:
        return telemetry_export.start(settings, env, metrics_exporter, trace_exporter)
    except Exception as error:
        _log.error(
            "telemetry is off: the %s metrics / %s trace exporter could not start (%s: %s); give the "
            "service account credentials, or set METRICS_EXPORTER and TRACE_EXPORTER to none",
            metrics_exporter,
            trace_exporter,
            type(error).__name__,
            error,
        )
        return Telemetry(None, None)
