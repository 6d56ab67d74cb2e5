"""The candidate's calls and latency as Cloud Monitoring has them: the metrics the server exports itself.

The server exports a count of calls by `grpc.status` and gRFC A66's duration histogram, by revision, once a
minute (service/telemetry.py; names in contract/server_metrics.py). The filters are contract.telemetry's,
which the dashboard and the SLOs are built from too: the gate's server-side failure is the SLO's. The
Monitoring API's
`projects.timeSeries.list` (google-cloud-monitoring's MetricServiceClient) rather than its PromQL endpoint:
the Python client is Google's own, typed, with retries; PromQL would be a raw HTTP call.
"""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime

from google.protobuf import duration_pb2

with warnings.catch_warnings():
    # As in release/cloudrun.py: the grpcio < 1.83 warning of Google's client libraries, pinned on purpose.
    warnings.simplefilter("ignore", FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.cloud import monitoring_v3
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

import grpc

from contract.telemetry import error_ratio_filters, latency_filter
from release.gates import CallCountsError, Latency

# Monitoring aligns over at least a minute.
MIN_ALIGNMENT_SECONDS = 60


class MonitoringError(CallCountsError):
    """Cloud Monitoring could not be read; the message names the metric and why."""


def percentile(bounds: list[float], counts: list[int], share: float) -> float:
    """The value below which `share` of a distribution's values fall, read from its bucket counts.

    Linear within the bucket that holds it, as Monitoring's own percentile reducers estimate; a value in
    the overflow bucket reads as the last bound (the estimate cannot say more).
    """
    total = sum(counts)
    if not total:
        raise ValueError("no values")
    rank = share * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = bounds[index - 1] if index > 0 else 0.0
            high = bounds[index] if index < len(bounds) else bounds[-1]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


def connect(endpoint: str | None = None, *, insecure: bool = False) -> monitoring_v3.MetricServiceClient:
    """A client for the real API (application default credentials), or cleartext to `endpoint` (tests)."""
    if endpoint and insecure:
        return monitoring_v3.MetricServiceClient(
            transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
        )
    if endpoint:
        return monitoring_v3.MetricServiceClient(client_options={"api_endpoint": endpoint})
    return monitoring_v3.MetricServiceClient()


class MonitoringCallCounts:
    """release.gates.CallCounts from Cloud Monitoring: each filter aligned over the whole span and summed."""

    def __init__(
        self,
        client: monitoring_v3.MetricServiceClient,
        project: str,
        calls_metric: str,
        timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._project = project
        self._metric = calls_metric
        self._timeout = timeout

    def calls(self, service: str, region: str, revision: str, start: float, end: float) -> tuple[int, int]:
        """(all calls, failed calls) of `revision` in `region` over [start, end], at least a minute."""
        # With the region: a revision has the same name in every region (same image and settings).
        total_filter, bad_filter = error_ratio_filters(self._metric, service, revision, region)
        return self._sum(total_filter, start, end), self._sum(bad_filter, start, end)

    def _sum(self, filter_: str, start: float, end: float) -> int:
        series = _list_summed(self._client, self._project, filter_, start, end, self._timeout)
        return sum(int(point.value.int64_value) for one in series for point in one.points)


class MonitoringLatencies:
    """release.gates.Latencies from Cloud Monitoring: one revision's durations merged over a span."""

    def __init__(
        self,
        client: monitoring_v3.MetricServiceClient,
        project: str,
        methods: tuple[str, ...],
        timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._project = project
        self._methods = methods
        self._timeout = timeout

    def latency(self, service: str, region: str, revision: str, start: float, end: float) -> Latency:
        """p95 and p99 (seconds) of `revision`'s calls to the methods over [start, end], and their count."""
        filter_ = latency_filter(service, self._methods, revision=revision, region=region)
        series = _list_summed(self._client, self._project, filter_, start, end, self._timeout)
        bounds: list[float] = []
        counts: list[int] = []
        for one in series:
            for point in one.points:
                value = point.value.distribution_value
                if not value.count:
                    continue
                bounds = list(value.bucket_options.explicit_buckets.bounds)
                counts = list(value.bucket_counts)
        total = sum(counts)
        if not total:
            return Latency(calls=0, p95=0.0, p99=0.0)
        return Latency(
            calls=total, p95=percentile(bounds, counts, 0.95), p99=percentile(bounds, counts, 0.99)
        )


def _list_summed(  # noqa: PLR0917 (the reader's fields, passed on)
    client: monitoring_v3.MetricServiceClient,
    project: str,
    filter_: str,
    start: float,
    end: float,
    timeout: float,
) -> list[monitoring_v3.TimeSeries]:
    """The series of `filter_` aligned over the whole span (at least a minute) and summed into one."""
    seconds = max(MIN_ALIGNMENT_SECONDS, math.ceil(end - start))
    interval = monitoring_v3.TimeInterval(
        start_time=datetime.fromtimestamp(end - seconds, tz=UTC),
        end_time=datetime.fromtimestamp(end, tz=UTC),
    )
    # One aligned point per series over the whole span, and one series for all methods and codes (a
    # distribution's buckets are summed alike).
    aggregation = monitoring_v3.Aggregation(
        alignment_period=duration_pb2.Duration(seconds=seconds),
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
    )
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=filter_,
        interval=interval,
        aggregation=aggregation,
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
    )
    try:
        return list(client.list_time_series(request=request, timeout=timeout))
    except api_exceptions.GoogleAPICallError as error:
        raise MonitoringError(
            f"cannot read {_metric(filter_)} in projects/{project}: {error.code} {error.message} "
            "(the release needs monitoring.timeSeries.list there)"
        ) from error
    except api_exceptions.RetryError as error:
        # Monitoring answered UNAVAILABLE until the client's retries ran out: not a GoogleAPICallError, and
        # the gate must still see it as a failed read (and roll back) rather than let the release crash.
        raise MonitoringError(f"cannot read {_metric(filter_)} in projects/{project}: {error}") from error


def _metric(filter_: str) -> str:
    """The metric type a filter names first (`metric.type = "TYPE" AND ...`)."""
    return filter_.split('"', 2)[1]
