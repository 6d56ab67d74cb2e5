"""The candidate's calls as Cloud Monitoring counts them: the observability work's log-based call metric.

The filters are contract.telemetry's, which the dashboard and the availability SLO are built from too: the
gate's server-side failure is the SLO's. The Monitoring API's `projects.timeSeries.list`
(google-cloud-monitoring's MetricServiceClient) rather than its PromQL endpoint: the Python client is
Google's own, typed, with retries; PromQL would be a raw HTTP call.
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

from contract.telemetry import error_ratio_filters
from release.gates import CallCountsError

# Monitoring aligns over at least a minute.
MIN_ALIGNMENT_SECONDS = 60


class MonitoringError(CallCountsError):
    """Cloud Monitoring could not be read; the message names the metric and why."""


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
        seconds = max(MIN_ALIGNMENT_SECONDS, math.ceil(end - start))
        interval = monitoring_v3.TimeInterval(
            start_time=datetime.fromtimestamp(end - seconds, tz=UTC),
            end_time=datetime.fromtimestamp(end, tz=UTC),
        )
        # One aligned point per series over the whole span, and one series for all methods and codes.
        aggregation = monitoring_v3.Aggregation(
            alignment_period=duration_pb2.Duration(seconds=seconds),
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
            cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
        )
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self._project}",
            filter=filter_,
            interval=interval,
            aggregation=aggregation,
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        try:
            series = self._client.list_time_series(request=request, timeout=self._timeout)
            return sum(int(point.value.int64_value) for one in series for point in one.points)
        except api_exceptions.GoogleAPICallError as error:
            raise MonitoringError(
                f"cannot read {self._metric} in projects/{self._project}: {error.code} {error.message} "
                "(the release needs monitoring.timeSeries.list there)"
            ) from error
