"""The latency gate: a slow candidate is rolled back, judged against the stable revision over the same span.

Drills run the real release against the in-process Cloud Run and Cloud Monitoring fakes (served from the
libraries' own protos), through the real Monitoring client; time is the drill's clock.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from catalog import UNARY_METHODS
from release import rollout
from release.gates import Candidate, Latency, LatencyBounds, LatencyGate, Verdict
from release.monitoring import MonitoringLatencies, connect
from tests.release.conftest import NEW, OLD, REF, Drill
from tests.release.test_release import (
    FAILED_AT_50,
    Clock,
    Pauses,
    assert_rolled_back,
    gates,
    written_splits,
)


def latencies(drill: Drill) -> MonitoringLatencies:
    return MonitoringLatencies(connect(drill.monitoring_api, insecure=True), REF.project, UNARY_METHODS)


def served(drill: Drill, clock: Clock, new_seconds: float, calls: int = 200) -> Callable[[], None]:
    """Both revisions' calls during a pause: the stable one at 2 ms, the candidate at `new_seconds`."""

    def record() -> None:
        drill.monitoring.record(clock.now - 1, OLD, "OK", calls, seconds=0.002)
        drill.monitoring.record(clock.now - 1, NEW, "OK", calls, seconds=new_seconds)

    return record


def release_with_latency(
    drill: Drill, pauses: Pauses, bounds: LatencyBounds, log: list[str]
) -> rollout.Outcome:
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    clock = pauses.clock
    checks = [
        *gates(drill.edge, clock, drill.counts),
        LatencyGate(
            latencies(drill),
            bounds,
            min_calls=20,
            ingestion_delay=120,
            evidence_timeout=60,
            sleep=clock.sleep,
            clock=clock,
            log=log.append,
        ),
    ]
    return rollout.release([drill.run], (10, 50, 100), 30, checks, log=log.append, sleep=pauses, clock=clock)


def test_a_candidate_that_slows_down_at_the_second_step_is_rolled_back(drill: Drill) -> None:
    clock = Clock()
    log: list[str] = []
    # As fast as stable at 10%; at 50% its calls take 60 ms against stable's 2 ms, with no errors at all.
    pauses = Pauses(clock, at={1: served(drill, clock, 0.002), 2: served(drill, clock, 0.06)})
    outcome = release_with_latency(drill, pauses, LatencyBounds(max_ratio=1.5), log)

    assert not outcome.ok
    assert outcome.line.startswith(f"release of {NEW} failed in us-central1: check latency at 50%: p95 ")
    assert "the stable revision's (at most 1.5x)" in outcome.line
    assert f"stable {OLD}" in outcome.line  # the figures of both revisions, in the command's output
    assert [split[:2] for split in written_splits(drill.fake)] == FAILED_AT_50
    assert_rolled_back(drill.fake)
    # It waited for Monitoring's ingestion delay before judging, and said so.
    assert any("waiting" in line and "ingestion delay" in line for line in log)
    # Each revision was read over the same span, by the unary methods' durations.
    reads = [
        request.filter
        for request in drill.monitoring.requests
        if "grpc.server.call.duration" in request.filter
    ]
    assert any(f'metric.label.revision = "{OLD}"' in f for f in reads)
    assert any(f'metric.label.revision = "{NEW}"' in f for f in reads)
    assert all('"catalog.ProductCatalog/GetProduct"' in f for f in reads)


def test_a_candidate_as_fast_as_stable_is_released(drill: Drill) -> None:
    clock = Clock()
    log: list[str] = []
    healthy = served(drill, clock, 0.002)
    pauses = Pauses(clock, at={1: healthy, 2: healthy, 3: healthy})
    outcome = release_with_latency(drill, pauses, LatencyBounds(max_ratio=1.5, max_p95_seconds=0.1), log)

    assert outcome.ok, outcome.line
    assert any(line.startswith("  us-central1 latency: ok, p95 ") and "within bounds" in line for line in log)


class Fixed:
    """Latencies that are the same at every read, per revision."""

    def __init__(self, by_revision: dict[str, Latency]) -> None:
        self.by_revision = by_revision
        self.reads: list[tuple[str, str, float, float]] = []

    def latency(self, service: str, region: str, revision: str, start: float, end: float) -> Latency:
        self.reads.append((region, revision, start, end))
        return self.by_revision[revision]


def check(latency: Latency, stable: Latency, bounds: LatencyBounds) -> Verdict:
    fixed = Fixed({NEW: latency, OLD: stable})
    gate = LatencyGate(
        fixed, bounds, min_calls=10, sleep=lambda _: None, clock=lambda: 1000.0, log=lambda _: None
    )
    return gate.check(Candidate("s", NEW, "uri", percent=10, since=900.0, stable=OLD))


STABLE = Latency(calls=100, p95=0.010, p99=0.020)


@pytest.mark.parametrize(
    ("p95", "p99", "passes"),
    [
        (0.015, 0.030, True),  # exactly 1.5x both: at the limit
        (0.01501, 0.030, False),  # just above on p95
        (0.015, 0.03001, False),  # just above on p99
        (0.0149, 0.0299, True),  # just below
    ],
)
def test_the_ratio_is_judged_at_its_limit(p95: float, p99: float, passes: bool) -> None:
    verdict = check(Latency(100, p95, p99), STABLE, LatencyBounds(max_ratio=1.5))
    assert verdict.passed is passes, verdict


@pytest.mark.parametrize(("p95", "passes"), [(0.050, True), (0.0501, False)])
def test_the_absolute_bound_holds_even_when_stable_is_as_slow(p95: float, passes: bool) -> None:
    slow = Latency(100, p95, p95)
    verdict = check(slow, slow, LatencyBounds(max_ratio=2, max_p95_seconds=0.05))
    assert verdict.passed is passes, verdict
    if not passes:
        assert "p95 above the 50 ms allowed" in verdict.line


def test_both_revisions_are_read_over_the_same_span_in_the_candidate_s_region() -> None:
    fixed = Fixed({NEW: STABLE, OLD: STABLE})
    gate = LatencyGate(fixed, LatencyBounds(1.5), min_calls=0, clock=lambda: 1000.0, log=lambda _: None)
    assert gate.check(Candidate("s", NEW, "uri", percent=50, since=900.0, region="r1", stable=OLD)).passed
    assert fixed.reads == [("r1", NEW, 900.0, 1000.0), ("r1", OLD, 900.0, 1000.0)]


def test_too_few_calls_fail_the_step_once_the_evidence_timeout_passes() -> None:
    clock = Clock()
    fixed = Fixed({NEW: Latency(3, 0.001, 0.001), OLD: STABLE})
    gate = LatencyGate(
        fixed, LatencyBounds(1.5), min_calls=10, evidence_timeout=60, sleep=clock.sleep, clock=clock,
        log=lambda _: None,
    )  # fmt: skip
    verdict = gate.check(Candidate("s", NEW, "uri", percent=10, since=clock.now, stable=OLD))
    assert not verdict.passed
    assert "fewer than the 10 needed to judge its latency" in verdict.line


def latency_gate(fixed: Fixed, bounds: LatencyBounds, log: list[str] | None = None) -> LatencyGate:
    return LatencyGate(
        fixed, bounds, min_calls=10, sleep=lambda _: None, clock=lambda: 1000.0, log=(log or []).append
    )


def test_a_failure_names_every_bound_broken_with_both_revisions_figures() -> None:
    mine, stable = Latency(100, 0.0123, 0.0456), Latency(80, 0.0061, 0.0122)
    bounds = LatencyBounds(max_ratio=1.5, max_p95_seconds=0.010, max_p99_seconds=0.040)
    verdict = latency_gate(Fixed({NEW: mine, OLD: stable}), bounds).check(
        Candidate("s", NEW, "uri", percent=10, since=900.0, stable=OLD)
    )
    assert verdict == Verdict(
        False,
        "p95 above the 10 ms allowed; p99 above the 40 ms allowed; "
        "p95 2.02x the stable revision's (at most 1.5x); p99 3.74x the stable revision's (at most 1.5x) "
        f"since it got 10% (p95 12.3 ms, p99 45.6 ms over 100 calls; stable {OLD}: p95 6.1 ms, p99 12.2 ms "
        "over 80 calls)",
    )


def test_a_pass_gives_the_figures_and_says_within_bounds() -> None:
    # Stable's figures large enough that a wrong unit (x1001) shows in the first decimal.
    verdict = latency_gate(Fixed({NEW: STABLE, OLD: Latency(80, 0.0951, 0.1952)}), LatencyBounds(1.5)).check(
        Candidate("s", NEW, "uri", percent=50, since=900.0, stable=OLD)
    )
    assert verdict == Verdict(
        True,
        f"p95 10.0 ms, p99 20.0 ms over 100 calls; stable {OLD}: p95 95.1 ms, p99 195.2 ms over 80 calls: "
        "within bounds",
    )


@pytest.mark.parametrize(("p99", "passes"), [(0.0399, True), (0.040, True), (0.0401, False)])
def test_the_absolute_p99_bound_is_judged_at_its_limit(p99: float, passes: bool) -> None:
    mine = Latency(100, 0.001, p99)
    verdict = latency_gate(Fixed({NEW: mine, OLD: mine}), LatencyBounds(100, max_p99_seconds=0.040)).check(
        Candidate("s", NEW, "uri", percent=10, since=900.0, stable=OLD)
    )
    assert verdict.passed is passes, verdict
    assert verdict.line.startswith("p99 above the 40 ms allowed since it got 10%") is not passes


@pytest.mark.parametrize("stable", ["", NEW])
def test_without_another_stable_revision_only_the_candidate_is_read_and_judged(stable: str) -> None:
    """A first deploy (stable is the candidate) or an unknown stable revision: absolute bounds only."""
    fixed = Fixed({NEW: Latency(100, 0.5, 0.9)})
    verdict = latency_gate(fixed, LatencyBounds(1.5)).check(
        Candidate("s", NEW, "uri", percent=10, since=900.0, stable=stable)
    )
    assert verdict == Verdict(True, "p95 500.0 ms, p99 900.0 ms over 100 calls: within bounds")
    assert [read[1] for read in fixed.reads] == [NEW]


@pytest.mark.parametrize("stable", [Latency(0, 0.001, 0.001), Latency(50, 0.0, 0.0)])
def test_a_stable_revision_without_calls_or_time_is_no_yardstick(stable: Latency) -> None:
    verdict = latency_gate(Fixed({NEW: Latency(100, 0.5, 0.9), OLD: stable}), LatencyBounds(1.5)).check(
        Candidate("s", NEW, "uri", percent=10, since=900.0, stable=OLD)
    )
    assert verdict.passed, verdict
    assert (f"stable {OLD}" in verdict.line) is bool(stable.calls)


def test_at_0_percent_latency_is_not_judged_nor_read() -> None:
    fixed = Fixed({})
    verdict = latency_gate(fixed, LatencyBounds(1.5)).check(Candidate("s", NEW, "uri", percent=0, stable=OLD))
    assert verdict == Verdict(True, "not judged at 0% (no traffic of its own yet)")
    assert fixed.reads == []


def test_the_gate_says_it_waits_for_the_ingestion_delay_under_its_own_name() -> None:
    clock = Clock()
    log: list[str] = []
    gate = LatencyGate(
        Fixed({NEW: STABLE, OLD: STABLE}), LatencyBounds(1.5), min_calls=1, ingestion_delay=120,
        sleep=clock.sleep, clock=clock, log=log.append,
    )  # fmt: skip
    assert gate.check(Candidate("s", NEW, "uri", percent=10, since=clock.now - 20, stable=OLD)).passed
    assert log == [
        "  latency: waiting 100 s for Cloud Monitoring's ingestion delay (120 s after the step began) "
        "before judging 10%"
    ]
    assert clock.slept == [100]
