"""An in-process Cloud Monitoring (MetricService.ListTimeSeries) built from google-cloud-monitoring's protos.

It keeps points of the server's two metrics as OpenTelemetry's exporter writes them from Cloud Run
(contract/server_metrics.py): the call counter and the duration distribution, labelled by grpc_method,
grpc_status and revision, on a generic_task resource. It answers list requests the way the release asks
them: a filter of `key="value"` / `key = "value"` / `key = one_of(...)` clauses joined by AND, an interval,
and an aggregation aligned with ALIGN_DELTA and reduced with REDUCE_SUM (counts added, a distribution's
buckets added), which it checks rather than assumes.
"""

from __future__ import annotations

import bisect
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from google.api import distribution_pb2  # type: ignore[import-untyped]

from contract.server_metrics import (
    DURATION_TYPE,
    METHOD_LABEL,
    MONITORED_RESOURCE,
    REGION_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
    STATUS_LABEL,
)
from service.telemetry import DURATION_BUCKETS
from tests.release.fake_api import serve_fake

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from google.cloud import monitoring_v3

_CLAUSE = re.compile(r'(?P<key>[a-z_.]+)\s*=\s*(?:"(?P<value>[^"]*)"|one_of\((?P<values>[^)]*)\))')
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer


@dataclass(frozen=True)
class Point:
    """`count` calls at `time` (Unix seconds) with these labels, each taking `seconds` if a duration."""

    time: float
    count: int
    labels: dict[str, str]
    seconds: float | None = None


@dataclass
class FakeMonitoring:
    """The points of one metric type for one project, and every request it was asked."""

    project: str
    metric_type: str
    service: str
    points: list[Point] = field(default_factory=list)
    requests: list[monitoring_v3.ListTimeSeriesRequest] = field(default_factory=list)
    # Set to a status code to make every list fail (an outage, a missing permission).
    fail_with: grpc.StatusCode | None = None

    def record(
        self,
        time: float,
        revision: str,
        code: str,
        count: int,
        *,
        method: str = "GetProduct",
        region: str = "us-central1",
        seconds: float = 0.002,
    ) -> None:
        """`count` calls of `revision` in `region` answered with `code` at `time`, each taking `seconds`."""
        labels = {
            "resource.type": MONITORED_RESOURCE,
            SERVICE_LABEL: self.service,
            REGION_LABEL: region,
            REVISION_LABEL: revision,
            STATUS_LABEL: code,
            METHOD_LABEL: f"catalog.ProductCatalog/{method}",
        }
        self.points.append(Point(time, count, {**labels, "metric.type": self.metric_type}))
        self.points.append(Point(time, count, {**labels, "metric.type": DURATION_TYPE}, seconds))

    def list_time_series(
        self, request: monitoring_v3.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> monitoring_v3.ListTimeSeriesResponse:
        self.requests.append(request)
        if self.fail_with is not None:
            context.abort(self.fail_with, "the fake refuses")
        if request.name != f"projects/{self.project}":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no project {request.name}")
        clauses = _parse(request.filter)
        if clauses is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot parse filter {request.filter!r}")
        # The raw message: proto-plus's datetime views of its timestamps are not in the type stubs.
        raw = monitoring_v3.ListTimeSeriesRequest.pb(request)
        aggregation = request.aggregation
        period = raw.aggregation.alignment_period.seconds
        if (
            aggregation.per_series_aligner != Aligner.ALIGN_DELTA
            or aggregation.cross_series_reducer != Reducer.REDUCE_SUM
            or period < 60
        ):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unexpected aggregation {aggregation}")
        start = raw.interval.start_time.ToNanoseconds() / 1e9
        end = raw.interval.end_time.ToNanoseconds() / 1e9
        if end - start > period + 0.001:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the interval is longer than one alignment period"
            )
        matching = [
            point
            for point in self.points
            if start < point.time <= end and all(point.labels.get(key) in values for key, values in clauses)
        ]
        if not matching:
            return monitoring_v3.ListTimeSeriesResponse()  # Monitoring lists no series without points
        if all(point.seconds is None for point in matching):
            value = monitoring_v3.TypedValue(int64_value=sum(point.count for point in matching))
        elif all(point.seconds is not None for point in matching):
            value = monitoring_v3.TypedValue(distribution_value=_distribution(matching))
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the filter mixes metrics of different kinds")
        series = monitoring_v3.TimeSeries(
            points=[
                monitoring_v3.Point(
                    interval=monitoring_v3.TimeInterval(
                        start_time=request.interval.start_time, end_time=request.interval.end_time
                    ),
                    value=value,
                )
            ],
        )
        return monitoring_v3.ListTimeSeriesResponse(time_series=[series])


def _distribution(points: list[Point]) -> distribution_pb2.Distribution:
    """The points' durations summed into one distribution with the server's buckets (gRFC A66's)."""
    bounds = list(DURATION_BUCKETS)
    counts = [0] * (len(bounds) + 1)
    for point in points:
        assert point.seconds is not None
        counts[bisect.bisect_left(bounds, point.seconds)] += point.count
    return distribution_pb2.Distribution(
        count=sum(counts),
        bucket_options=distribution_pb2.Distribution.BucketOptions(
            explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=bounds)
        ),
        bucket_counts=counts,
    )


def _parse(text: str) -> list[tuple[str, set[str]]] | None:
    """The filter's clauses as (key, accepted values), None when one is not understood."""
    clauses = []
    for part in text.split(" AND "):
        match = _CLAUSE.fullmatch(part.strip())
        if match is None:
            return None
        if match["values"] is not None:
            values = {value.strip().strip('"') for value in match["values"].split(",")}
        else:
            values = {match["value"]}
        clauses.append((match["key"], values))
    return clauses


@contextmanager
def serve(fake: FakeMonitoring) -> Iterator[str]:
    """Serve `fake` on a free loopback port; yields host:port."""
    handlers = {
        "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake.list_time_series,
            request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
            response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
        ),
    }
    with serve_fake("google.monitoring.v3.MetricService", handlers, workers=2) as address:
        yield address
