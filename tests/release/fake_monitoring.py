"""An in-process Cloud Monitoring (MetricService.ListTimeSeries) built from google-cloud-monitoring's protos.

It keeps points of one counter (the log-based call metric's labels: method, code, revision, on a
cloud_run_revision resource) and answers list requests the way the release asks them: a filter of
`key="value"` / `key = "value"` / `key = one_of(...)` clauses joined by AND, an interval, and an aggregation
aligned with ALIGN_DELTA and reduced with REDUCE_SUM, which it checks rather than assumes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from tests.release.fake_api import serve_fake

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from google.cloud import monitoring_v3

_CLAUSE = re.compile(r'(?P<key>[a-z_.]+)\s*=\s*(?:"(?P<value>[^"]*)"|one_of\((?P<values>[^)]*)\))')
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer


@dataclass(frozen=True)
class Point:
    """`count` calls at `time` (Unix seconds) with these labels."""

    time: float
    count: int
    labels: dict[str, str]


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
    ) -> None:
        """`count` calls of `revision` in `region` answered with `code` at `time`."""
        labels = {
            "metric.type": self.metric_type,
            "resource.type": "cloud_run_revision",
            "resource.label.service_name": self.service,
            "resource.label.location": region,
            "resource.label.revision_name": revision,
            "metric.label.revision": revision,
            "metric.label.code": code,
            "metric.label.method": f"/catalog.ProductCatalog/{method}",
        }
        self.points.append(Point(time, count, labels))

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
        total = sum(point.count for point in matching)
        series = monitoring_v3.TimeSeries(
            points=[
                monitoring_v3.Point(
                    interval=monitoring_v3.TimeInterval(
                        start_time=request.interval.start_time, end_time=request.interval.end_time
                    ),
                    value=monitoring_v3.TypedValue(int64_value=total),
                )
            ],
        )
        return monitoring_v3.ListTimeSeriesResponse(time_series=[series])


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
