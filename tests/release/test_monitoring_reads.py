"""What the release reads from Cloud Monitoring, value by value: percentiles, spans, regions, deadlines.

The drills (test_release, test_latency) show a slow or failing candidate rolled back; these pin the numbers
the gates compare, since an estimate off by one bucket passes a drill and still lets a slow release through.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import google.auth
import grpc
import pytest
from google.api import distribution_pb2  # type: ignore[import-untyped]
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3

from catalog import UNARY_METHODS
from contract.server_metrics import DURATION_TYPE
from release import cloudrun, monitoring
from release.gates import Latency
from release.monitoring import (
    MIN_ALIGNMENT_SECONDS,
    MonitoringCallCounts,
    MonitoringError,
    MonitoringLatencies,
    percentile,
)
from tests.release.conftest import CALLS_METRIC, NEW, REF
from tests.release.fake_monitoring import FakeMonitoring

# Three bounds, four buckets: [0, 1], (1, 2], (2, 4], above 4.
BOUNDS = [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("counts", "share", "expected"),
    [
        # In the first bucket: from 0 up to its bound, by rank.
        ([4, 0, 0, 0], 0.5, 0.5),
        ([4, 0, 0, 0], 1.0, 1.0),
        # In the second: from the first bound (1) up to the second (2).
        ([2, 2, 0, 0], 0.75, 1.5),
        # In the third, after two buckets: the ranks below it are skipped, its own spread over (2, 4].
        ([1, 1, 4, 0], 0.5, 2.5),
        ([1, 1, 4, 0], 1.0, 4.0),
        # Exactly all of the first bucket's values: its bound, not the next non-empty bucket's start.
        ([2, 0, 2, 0], 0.5, 1.0),
        # Empty buckets first: the values start in the third.
        ([0, 0, 8, 0], 0.25, 2.5),
        # In the overflow bucket the estimate cannot go past the last bound.
        ([1, 0, 0, 3], 0.5, 4.0),
        ([1, 0, 0, 3], 0.99, 4.0),
    ],
)
def test_a_percentile_is_read_linearly_within_its_bucket(
    counts: list[int], share: float, expected: float
) -> None:
    assert percentile(BOUNDS, counts, share) == pytest.approx(expected)


def test_the_p95_and_p99_of_a_tail_differ_from_the_last_bound() -> None:
    # 100 calls: 90 under a second, 10 in (2, 4]: p95 is halfway into the tail's bucket, p99 near its end.
    counts = [90, 0, 10, 0]
    assert percentile(BOUNDS, counts, 0.95) == pytest.approx(3.0)
    assert percentile(BOUNDS, counts, 0.99) == pytest.approx(3.8)


def test_a_distribution_without_values_has_no_percentile() -> None:
    with pytest.raises(ValueError, match=r"^no values$"):
        percentile(BOUNDS, [0, 0, 0, 0], 0.95)


# The readers against the fake, through the real client.


@pytest.fixture
def fake() -> FakeMonitoring:
    return FakeMonitoring(project=REF.project, metric_type=CALLS_METRIC, service=REF.service)


@pytest.fixture
def client(fake: FakeMonitoring) -> Iterator[monitoring_v3.MetricServiceClient]:
    from tests.release import fake_monitoring  # noqa: PLC0415

    with fake_monitoring.serve(fake) as address:
        yield monitoring.connect(address, insecure=True)


NOW = 1_780_000_000.0


def test_the_latency_of_one_region_leaves_out_the_same_revision_elsewhere(
    fake: FakeMonitoring, client: monitoring_v3.MetricServiceClient
) -> None:
    # The same revision name in two regions (same image and settings): only the asked region counts.
    fake.record(NOW - 1, NEW, "OK", 98, seconds=0.0015)
    fake.record(NOW - 1, NEW, "OK", 2, seconds=0.15)
    fake.record(NOW - 1, NEW, "OK", 500, seconds=7.0, region="europe-west1")
    latency = MonitoringLatencies(client, REF.project, UNARY_METHODS).latency(
        REF.service, REF.region, NEW, NOW - 60, NOW
    )
    assert latency.calls == 100
    # p95: rank 95 of 98 in (0.001, 0.002]; p99: rank 99, the first of 2 in (0.13, 0.16].
    assert latency.p95 == pytest.approx(0.001 + 0.001 * 95 / 98)
    assert latency.p99 == pytest.approx(0.13 + 0.03 * 1 / 2)


def test_a_revision_without_calls_has_no_latency(client: monitoring_v3.MetricServiceClient) -> None:
    latency = MonitoringLatencies(client, REF.project, UNARY_METHODS).latency(
        REF.service, REF.region, NEW, NOW - 60, NOW
    )
    assert latency == Latency(calls=0, p95=0.0, p99=0.0)


def test_the_calls_of_one_region_leave_out_the_same_revision_elsewhere(
    fake: FakeMonitoring, client: monitoring_v3.MetricServiceClient
) -> None:
    fake.record(NOW - 1, NEW, "OK", 40)
    fake.record(NOW - 1, NEW, "INTERNAL", 2)
    fake.record(NOW - 1, NEW, "INTERNAL", 300, region="europe-west1")
    counts = MonitoringCallCounts(client, REF.project, CALLS_METRIC)
    assert counts.calls(REF.service, REF.region, NEW, NOW - 60, NOW) == (42, 2)


def test_a_failed_read_names_the_metric_the_project_and_the_permission(
    fake: FakeMonitoring, client: monitoring_v3.MetricServiceClient
) -> None:
    fake.fail_with = grpc.StatusCode.PERMISSION_DENIED
    counts = MonitoringCallCounts(client, REF.project, CALLS_METRIC)
    with pytest.raises(MonitoringError) as error:
        counts.calls(REF.service, REF.region, NEW, NOW - 60, NOW)
    assert str(error.value) == (
        f"cannot read {CALLS_METRIC} in projects/{REF.project}: 403 the fake refuses "
        "(the release needs monitoring.timeSeries.list there)"
    )


# What each request asks, read by a client that records it.


@dataclass
class RecordingClient:
    """Stands for MetricServiceClient: keeps each request and its deadline, answers with `series`."""

    series: Sequence[monitoring_v3.TimeSeries] = ()
    requests: list[tuple[monitoring_v3.ListTimeSeriesRequest, Any]] = field(default_factory=list)
    # Raised instead of answering: what the client raises when Monitoring refuses or stays unavailable.
    error: Exception | None = None

    def list_time_series(self, *, request: monitoring_v3.ListTimeSeriesRequest, timeout: Any) -> Any:
        self.requests.append((request, timeout))
        if self.error is not None:
            raise self.error
        return list(self.series)


def read(reader: str, client: RecordingClient, **options: float) -> object:
    """One read of the candidate's last minute by the calls reader or the latency reader."""
    if reader == "calls":
        counts = MonitoringCallCounts(client, REF.project, CALLS_METRIC, **options)  # type: ignore[arg-type]
        return counts.calls(REF.service, REF.region, NEW, NOW - 60, NOW)
    latencies = MonitoringLatencies(client, REF.project, UNARY_METHODS, **options)  # type: ignore[arg-type]
    return latencies.latency(REF.service, REF.region, NEW, NOW - 60, NOW)


@pytest.mark.parametrize("reader", ["calls", "latency"])
def test_monitoring_unavailable_until_the_retries_run_out_is_a_failed_read(reader: str) -> None:
    """The client raises RetryError then, which is no GoogleAPICallError: the gate must still see a failed
    read (and roll the step back), not let the release crash with traffic left on the candidate."""
    unavailable = api_exceptions.ServiceUnavailable("connection refused")  # type: ignore[no-untyped-call]
    retries_ran_out = api_exceptions.RetryError("Timeout of 90.0s exceeded", unavailable)  # type: ignore[no-untyped-call]
    client = RecordingClient(error=retries_ran_out)
    with pytest.raises(MonitoringError) as error:
        read(reader, client)
    metric = CALLS_METRIC if reader == "calls" else DURATION_TYPE
    assert str(error.value) == (
        f"cannot read {metric} in projects/{REF.project}: Timeout of 90.0s exceeded, "
        "last exception: 503 connection refused"
    )


@pytest.mark.parametrize(("span", "aligned"), [(1.0, 60), (59.5, 60), (60.0, 60), (60.5, 61), (61.0, 61)])
def test_a_span_is_aligned_over_at_least_a_minute(span: float, aligned: int) -> None:
    client = RecordingClient()
    MonitoringCallCounts(client, REF.project, CALLS_METRIC).calls(  # type: ignore[arg-type]
        REF.service, REF.region, NEW, NOW - span, NOW
    )
    for request, _ in client.requests:
        raw = monitoring_v3.ListTimeSeriesRequest.pb(request)
        assert raw.aggregation.alignment_period.seconds == aligned
        assert raw.interval.end_time.seconds - raw.interval.start_time.seconds == aligned
    assert MIN_ALIGNMENT_SECONDS == 60


@pytest.mark.parametrize("reader", ["calls", "latency"])
def test_every_read_carries_the_readers_deadline(reader: str) -> None:
    """A Monitoring call that hangs must not hang the release: each read is bounded."""
    client = RecordingClient()
    read(reader, client, timeout=7.5)
    assert client.requests
    assert [timeout for _, timeout in client.requests] == [7.5] * len(client.requests)


def _distribution_point(counts: list[int]) -> monitoring_v3.Point:
    value = distribution_pb2.Distribution(
        count=sum(counts),
        bucket_options=distribution_pb2.Distribution.BucketOptions(
            explicit_buckets=distribution_pb2.Distribution.BucketOptions.Explicit(bounds=BOUNDS)
        ),
        bucket_counts=counts,
    )
    return monitoring_v3.Point(value=monitoring_v3.TypedValue(distribution_value=value))


def test_an_empty_point_before_the_one_with_calls_is_skipped() -> None:
    """Monitoring may answer a point with no values (an aligned period without calls) before the one with."""
    series = monitoring_v3.TimeSeries(
        points=[_distribution_point([0, 0, 0, 0]), _distribution_point([90, 0, 10, 0])]
    )
    client = RecordingClient(series=[series])
    latency = MonitoringLatencies(client, REF.project, UNARY_METHODS).latency(  # type: ignore[arg-type]
        REF.service, REF.region, NEW, NOW - 60, NOW
    )
    assert latency.calls == 100
    assert latency.p95 == pytest.approx(3.0)
    assert latency.p99 == pytest.approx(3.8)


# Which endpoint each client talks to, and how.


@pytest.fixture
def anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    """No application default credentials here: the clients are built with anonymous ones."""
    monkeypatch.setattr(google.auth, "default", lambda *_, **__: (AnonymousCredentials(), None))  # type: ignore[no-untyped-call]


@pytest.mark.usefixtures("anonymous")
@pytest.mark.parametrize(
    ("connect", "default"),
    [(monitoring.connect, "monitoring.googleapis.com"), (cloudrun.connect, "run.googleapis.com")],
)
def test_a_client_talks_to_googles_endpoint_or_the_one_named(connect: Any, default: str) -> None:
    assert connect().api_endpoint == default
    assert connect("127.0.0.1:8443").api_endpoint == "127.0.0.1:8443"


@pytest.mark.usefixtures("anonymous")
def test_a_named_endpoint_is_spoken_to_over_tls_unless_told_otherwise(fake: FakeMonitoring) -> None:
    """The fake speaks cleartext: a TLS client cannot reach it, a client told insecure can."""
    from tests.release import fake_monitoring  # noqa: PLC0415

    request = monitoring_v3.ListTimeSeriesRequest(name=f"projects/{REF.project}", filter="bad")
    with fake_monitoring.serve(fake) as cleartext:
        with pytest.raises(api_exceptions.ServiceUnavailable, match=r"(?i)ssl|handshake"):
            monitoring.connect(cleartext).list_time_series(request=request, retry=None, timeout=5)
        with pytest.raises(api_exceptions.InvalidArgument, match="cannot parse filter"):
            monitoring.connect(cleartext, insecure=True).list_time_series(
                request=request, retry=None, timeout=5
            )
