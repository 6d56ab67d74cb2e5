"""The gates at their limits: each threshold a user sets, at, just below and just above it.

`canaryMaxErrorRatio: 0` and `canaryMinCalls` are accepted by config and the CLI; a gate that compared with
`>=` where it means `>` (or waited one poll too few) would pass the other tests and roll back, or wave
through, every release. The ready gate is checked against a health server that answers the service's name
and the empty name differently, so it can show which one the gate asks for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import SERVICE_NAME
from client.smoke import CheckResult
from release.gates import (
    CallCountsError,
    Candidate,
    ErrorRatioGate,
    ReadyGate,
    SmokeGate,
    Verdict,
    candidate_channel,
    wait_for_ingestion,
)

CANDIDATE = Candidate(
    service="catalog-grpc", revision="catalog-grpc-4e74e74e74", uri="", percent=10, since=1000.0, region="r1"
)


@dataclass
class Clock:
    """Time that moves only when the gate sleeps."""

    now: float = 5000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Counts:
    """Answers (total, failed) from a script, one per read, and records what each read asked."""

    answers: list[tuple[int, int]]
    asked: list[tuple[str, str, str, float, float]] = field(default_factory=list)

    def calls(self, service: str, region: str, revision: str, start: float, end: float) -> tuple[int, int]:
        self.asked.append((service, region, revision, start, end))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


def gate(
    counts: Counts, clock: Clock, *, max_ratio: float, min_calls: int, logs: list[str] | None = None
) -> ErrorRatioGate:
    return ErrorRatioGate(
        counts,
        max_ratio=max_ratio,
        min_calls=min_calls,
        evidence_timeout=60.0,
        poll_seconds=15.0,
        sleep=clock.sleep,
        clock=clock,
        log=(logs if logs is not None else []).append,
    )


@pytest.mark.parametrize(
    ("max_ratio", "failed", "total", "passes"),
    [
        (0.0, 0, 10, True),  # at a zero limit: no failure is allowed, none happened
        (0.0, 1, 10, False),  # just above a zero limit
        (0.1, 1, 10, True),  # at the limit: "at or under" passes
        (0.1, 2, 10, False),  # just above
        (0.1, 1, 11, True),  # just below
        (1.0, 10, 10, True),  # a limit of 100% lets everything through
    ],
)
def test_the_error_ratio_passes_at_or_under_the_limit_and_fails_above_it(
    max_ratio: float, failed: int, total: int, passes: bool
) -> None:
    clock = Clock()
    verdict = gate(Counts([(total, failed)]), clock, max_ratio=max_ratio, min_calls=1).check(CANDIDATE)
    assert verdict.passed is passes, verdict
    if passes:
        assert verdict.line == f"{failed} of {total} calls failed ({failed / total:.1%})"
    else:
        assert verdict.line == (
            f"{failed} of {total} calls failed ({failed / total:.1%}) since it got 10%, "
            f"above the {max_ratio:.1%} allowed"
        )


def test_the_gate_reads_the_candidate_s_calls_in_its_region_since_its_step_began() -> None:
    clock = Clock()
    counts = Counts([(10, 0)])
    gate(counts, clock, max_ratio=0.0, min_calls=1).check(CANDIDATE)
    assert counts.asked == [("catalog-grpc", "r1", "catalog-grpc-4e74e74e74", 1000.0, 5000.0)]


@pytest.mark.parametrize(
    ("min_calls", "total", "reads"),
    [(10, 9, None), (10, 10, 1), (10, 11, 1), (1, 1, 1), (1, 0, None)],
)
def test_the_gate_judges_from_min_calls_on_and_waits_below_it(
    min_calls: int, total: int, reads: int | None
) -> None:
    clock = Clock()
    counts = Counts([(total, 0), (min_calls, 0)])
    logs: list[str] = []
    verdict = gate(counts, clock, max_ratio=0.0, min_calls=min_calls, logs=logs).check(CANDIDATE)
    assert verdict.passed
    if reads == 1:
        assert len(counts.asked) == 1
        assert clock.sleeps == []
        assert logs == []
        assert verdict.line == f"0 of {total} calls failed (0.0%)"
    else:
        # Too few: read again after one poll, which now has enough.
        assert len(counts.asked) == 2
        assert clock.sleeps == [15.0]
        assert logs[0] == f"  error-ratio: {total} of {min_calls} calls needed; reading again"


def test_too_few_calls_fail_at_the_evidence_deadline_not_a_poll_earlier() -> None:
    # evidence_timeout 60, polls of 15: reads at 0, 15, 30, 45 and 60 s; the one at 60 is the deadline.
    clock = Clock()
    counts = Counts([(3, 0)])
    verdict = gate(counts, clock, max_ratio=0.0, min_calls=4).check(CANDIDATE)
    assert len(counts.asked) == 5
    assert clock.sleeps == [15.0] * 4
    assert verdict.passed is False
    assert verdict.line == (
        "only 3 calls since it got 10%, fewer than the 4 needed to judge its error ratio "
        "(waited 60 s): no evidence"
    )


def test_min_calls_zero_lets_a_step_without_calls_pass_and_says_so() -> None:
    clock = Clock()
    logs: list[str] = []
    verdict = gate(Counts([(0, 0)]), clock, max_ratio=0.0, min_calls=0, logs=logs).check(CANDIDATE)
    assert verdict.passed
    assert clock.sleeps == []
    assert verdict.line == "no calls since it got 10%, nothing to judge"


def test_min_calls_zero_still_judges_the_calls_there_are() -> None:
    verdict = gate(Counts([(1, 1)]), Clock(), max_ratio=0.0, min_calls=0).check(CANDIDATE)
    assert not verdict.passed
    assert verdict.line.startswith("1 of 1 calls failed (100.0%)")


@pytest.mark.parametrize(("percent", "judged"), [(0, False), (1, True)])
def test_the_gate_judges_from_the_first_step_on(percent: int, judged: bool) -> None:
    counts = Counts([(10, 10)])
    logs: list[str] = []
    candidate = Candidate(**{**CANDIDATE.__dict__, "percent": percent})
    verdict = gate(counts, Clock(), max_ratio=0.0, min_calls=1, logs=logs).check(candidate)
    assert verdict.passed is not judged
    assert (counts.asked != []) is judged
    if not judged:
        assert verdict.line == "not judged at 0% (the smoke check judges its own calls)"


def test_unreadable_calls_fail_the_step_with_the_source_s_reason() -> None:
    class Broken:
        def calls(
            self, service: str, region: str, revision: str, start: float, end: float
        ) -> tuple[int, int]:
            raise CallCountsError("Cloud Monitoring refused the read: PERMISSION_DENIED")

    verdict = ErrorRatioGate(Broken(), max_ratio=0.5, min_calls=1, log=lambda _: None).check(CANDIDATE)
    assert verdict == Verdict(False, "Cloud Monitoring refused the read: PERMISSION_DENIED")


# The ready gate, against a health server whose names answer independently.


@pytest.fixture
def health_server() -> Iterator[tuple[health.HealthServicer, str]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def ready_gate(clock: Clock, timeout: float = 3.0) -> ReadyGate:
    return ReadyGate(
        grpc.insecure_channel,
        timeout=timeout,
        call_timeout=2.0,
        sleep=clock.sleep,
        clock=clock,
    )


def test_the_ready_gate_asks_for_the_catalog_service_not_the_server_as_a_whole(
    health_server: tuple[health.HealthServicer, str],
) -> None:
    servicer, address = health_server
    candidate = Candidate(service="catalog-grpc", revision="r", uri=address)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    clock = Clock()
    assert ready_gate(clock).check(candidate) == Verdict(
        False, f"{SERVICE_NAME} not SERVING after 3 s (last answer: NOT_SERVING)"
    )
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    assert ready_gate(Clock()).check(candidate) == Verdict(True, f"{SERVICE_NAME} SERVING")


def test_the_ready_gate_polls_once_a_second_until_its_timeout_and_not_after(
    health_server: tuple[health.HealthServicer, str],
) -> None:
    servicer, address = health_server
    servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    clock = Clock()
    ready_gate(clock, timeout=3.0).check(Candidate(service="s", revision="r", uri=address))
    # Asked at 0, 1, 2 and 3 s: the answer at the deadline still counts, none after it.
    assert clock.sleeps == [1.0, 1.0, 1.0]


def test_the_ready_gate_reports_an_unreachable_candidate_by_its_status_code() -> None:
    clock = Clock()
    gate_ = ReadyGate(grpc.insecure_channel, timeout=0.0, call_timeout=0.5, sleep=clock.sleep, clock=clock)
    verdict = gate_.check(Candidate(service="s", revision="r", uri="127.0.0.1:1"))
    assert verdict == Verdict(False, f"{SERVICE_NAME} not SERVING after 0 s (last answer: UNAVAILABLE)")


class SlowHealth(health_pb2_grpc.HealthServicer):
    """Answers NOT_SERVING, but only after `delay` seconds: longer than the gate's per-call timeout."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.done = threading.Event()

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        self.done.wait(self.delay)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)


def test_the_ready_gate_gives_each_health_call_its_own_timeout() -> None:
    slow = SlowHealth(delay=5.0)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(slow, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        clock = Clock()
        gate_ = ReadyGate(
            grpc.insecure_channel, timeout=0.0, call_timeout=0.2, sleep=clock.sleep, clock=clock
        )
        verdict = gate_.check(Candidate(service="s", revision="r", uri=f"127.0.0.1:{port}"))
    finally:
        slow.done.set()
        server.stop(None)
    assert verdict == Verdict(False, f"{SERVICE_NAME} not SERVING after 0 s (last answer: DEADLINE_EXCEEDED)")


def test_the_smoke_gate_lists_every_failed_check_and_passes_its_call_timeout() -> None:
    seen: list[float] = []

    def smoke(channel: grpc.Channel, call_timeout: float) -> list[CheckResult]:
        seen.append(call_timeout)
        return [
            CheckResult("health", True, "SERVING"),
            CheckResult("get", False, "NOT_FOUND"),
            CheckResult("list", False, "empty page"),
        ]

    gate_ = SmokeGate(grpc.insecure_channel, smoke=smoke, call_timeout=7.0)
    assert gate_.check(Candidate(service="s", revision="r", uri="127.0.0.1:1")) == Verdict(
        False, "get: NOT_FOUND; list: empty page"
    )
    assert seen == [7.0]


def test_the_smoke_gate_passes_when_every_check_holds() -> None:
    def smoke(channel: grpc.Channel, call_timeout: float) -> list[CheckResult]:
        return [CheckResult("health", True, "SERVING")]

    assert SmokeGate(grpc.insecure_channel, smoke=smoke).check(
        Candidate(service="s", revision="r", uri="x:1")
    ) == Verdict(True, "1 checks passed")


# What the evidence loop and the channel to a candidate do at their edges.


@pytest.mark.parametrize(("left", "waits"), [(-1.0, False), (0.0, False), (1.0, True)])
def test_the_ingestion_wait_sleeps_only_while_time_is_left(left: float, waits: bool) -> None:
    clock = Clock()
    logs: list[str] = []
    candidate = Candidate(**{**CANDIDATE.__dict__, "since": clock.now - 120 + left})
    wait_for_ingestion("error-ratio", candidate, 120.0, clock, clock.sleep, logs.append)
    assert clock.sleeps == ([left] if waits else [])
    assert logs == (
        [
            "  error-ratio: waiting 1 s for Cloud Monitoring's ingestion delay (120 s after the step began) "
            "before judging 10%"
        ]
        if waits
        else []
    )


class Refusing:
    """A channel whose every call raises an RpcError that is not a grpc.Call (an interceptor's, say)."""

    def __enter__(self) -> Refusing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def unary_unary(self, *args: object, **kwargs: object) -> Any:
        def call(*args: object, **kwargs: object) -> Any:
            raise grpc.RpcError("refused before any call was made")

        return call


def test_the_ready_gate_reports_an_error_without_a_status_code_by_its_text() -> None:
    clock = Clock()
    ready = ReadyGate(lambda uri: Refusing(), timeout=0.0, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type, return-value]
    assert ready.check(Candidate(service="s", revision="r", uri="x:1")) == Verdict(
        False, f"{SERVICE_NAME} not SERVING after 0 s (last answer: refused before any call was made)"
    )


@pytest.fixture
def echo() -> Iterator[str]:
    """A server whose unary and server-streaming methods answer the x-route header they received."""

    def route(context: grpc.ServicerContext) -> bytes:
        return str(dict(context.invocation_metadata()).get("x-route", "")).encode()

    handlers = grpc.method_handlers_generic_handler(
        "t.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(lambda request, context: route(context)),
            "Stream": grpc.unary_stream_rpc_method_handler(lambda request, context: iter([route(context)])),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handlers])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@pytest.mark.parametrize(("metadata", "sent"), [((("x-route", "europe-west1"),), b"europe-west1"), ((), b"")])
def test_every_call_to_the_candidate_carries_its_metadata(
    echo: str, metadata: tuple[tuple[str, str], ...], sent: bytes
) -> None:
    """Behind a front door the header routes each check, unary or streaming, to that region's candidate."""
    candidate = Candidate(service="s", revision="r", uri=echo, metadata=metadata)
    with candidate_channel(grpc.insecure_channel, candidate) as channel:
        unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.Echo/Unary")
        stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/t.Echo/Stream")
        assert unary(b"", timeout=5) == sent
        assert list(stream(b"", timeout=5)) == [sent]
