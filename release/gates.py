"""The checks a candidate must pass before (and after) each traffic step, behind one small Protocol.

A gate answers a Verdict: passed or not, and one line with its figures (what it measured) or with what
failed. The release names the gate and the step in its failure line, prints every verdict, and records them
on the service (release/decisions.py). Gates reach the candidate through its tag URL: the real edge, TLS,
and an ID token when the service is private, over a channel the caller opens (ChannelFactory).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from catalog import SERVICE_NAME
from client.channel import health_check
from client.smoke import CheckResult, run_smoke

# Opens a channel to a tag's https URL (TLS and credentials are the factory's business).
ChannelFactory = Callable[[str], grpc.Channel]
# The client's smoke check (client.smoke.run_smoke): a channel and a per-call deadline in, one result per
# check out.
Smoke = Callable[[grpc.Channel, float], Sequence[CheckResult]]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """What a gate checks: the service, the candidate revision and its tag URL, in one region.

    `percent` is the candidate's share of requests now, and `since` when (Unix time) it got that share:
    the window of calls a step is judged on. `region` is the service's ("" where it does not matter);
    `stable` the revision serving the rest of the traffic ("" when unknown). `metadata` goes with every
    check call: behind a front door, the header that routes to this candidate.
    """

    service: str
    revision: str
    uri: str
    percent: int = 0
    since: float = 0.0
    region: str = ""
    stable: str = ""  # the revision that serves the rest: the latency gate's yardstick
    metadata: tuple[tuple[str, str], ...] = ()


class _WithMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds fixed metadata to every call on a channel (the smoke check's calls are not ours to change)."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


@contextlib.contextmanager
def candidate_channel(channels: ChannelFactory, candidate: Candidate) -> Iterator[grpc.Channel]:
    """A channel to the candidate's URI that sends its metadata with every call."""
    with channels(candidate.uri) as channel:
        yield (
            grpc.intercept_channel(channel, _WithMetadata(candidate.metadata))
            if candidate.metadata
            else channel
        )


@dataclass(frozen=True)
class Verdict:
    """A gate's answer: `passed`, and one line: its figures when it passed, what failed when not."""

    passed: bool
    line: str = ""


class Gate(Protocol):
    """One check of a candidate; `name` is what a failure line calls it."""

    @property
    def name(self) -> str:
        """Short name: "ready", "smoke", "error-ratio"."""
        ...

    def check(self, candidate: Candidate) -> Verdict:
        """Whether the candidate passes, with the figures or the reason on one line."""
        ...


@dataclass(frozen=True)
class ReadyGate:
    """The candidate reports SERVING for the catalog through its tag URL within `timeout` seconds.

    Polls once a second: a revision still starting, or an instance its readiness probe has taken out of
    rotation, answers UNAVAILABLE or NOT_SERVING for a while.
    """

    channels: ChannelFactory
    timeout: float = 120.0
    call_timeout: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    name: str = "ready"

    def check(self, candidate: Candidate) -> Verdict:
        """Wait for SERVING; the last answer seen when it never comes."""
        deadline = self.clock() + self.timeout
        with candidate_channel(self.channels, candidate) as channel:
            health = health_check(channel)
            while True:
                try:
                    status = health(
                        health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self.call_timeout
                    )
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return Verdict(True, f"{SERVICE_NAME} SERVING")
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
                except grpc.RpcError as error:
                    last = error.code().name if isinstance(error, grpc.Call) else str(error)
                if self.clock() >= deadline:
                    return Verdict(
                        False, f"{SERVICE_NAME} not SERVING after {self.timeout:g} s (last answer: {last})"
                    )
                self.sleep(1.0)


@dataclass(frozen=True)
class SmokeGate:
    """The smoke check through the candidate's tag URL; every failed check on one line."""

    channels: ChannelFactory
    smoke: Smoke = run_smoke
    call_timeout: float = 10.0
    name: str = "smoke"

    def check(self, candidate: Candidate) -> Verdict:
        """Run the smoke check once."""
        with candidate_channel(self.channels, candidate) as channel:
            results = list(self.smoke(channel, self.call_timeout))
        failures = [f"{result.name}: {result.detail}" for result in results if not result.passed]
        if failures:
            return Verdict(False, "; ".join(failures))
        return Verdict(True, f"{len(results)} checks passed")


class CallCountsError(Exception):
    """The calls could not be read (the source says why): the step fails, as without evidence."""


class CallCounts(Protocol):
    """How many calls a revision answered in a time span, and how many ended in a server-side failure."""

    def calls(self, service: str, region: str, revision: str, start: float, end: float) -> tuple[int, int]:
        """(all calls, failed calls) of `revision` in `region` ("": all) between `start` and `end` (Unix)."""
        ...


@dataclass(frozen=True)
class ErrorRatioGate:
    """The candidate's share of failed calls in its region since its step began stays at or under `max_ratio`.

    Judged per region: a revision has the same name in every region (it runs the same image and settings),
    and one region's failures (its own dependency, a bad zone) would be diluted by the others' calls.

    It judges only with evidence: at least `min_calls` calls. With fewer it waits (exported metrics arrive
    a minute or so late, and real traffic takes time), reading again every `poll_seconds`, for up to
    `evidence_timeout` seconds; still too few fails the step, because a release that was never observed is
    what this gate exists to stop. `min_calls` 0 judges whatever calls there are and lets a step with none
    pass, saying so (a quiet dev service). At 0% (before the first step) the candidate has only the smoke
    check's calls, which the smoke gate judges: nothing to read yet.
    """

    counts: CallCounts
    max_ratio: float
    min_calls: int
    ingestion_delay: float = 0.0
    evidence_timeout: float = 300.0
    poll_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    log: Log = print
    name: str = "error-ratio"

    def check(self, candidate: Candidate) -> Verdict:
        """Read the candidate's calls since its step began until there is evidence, then compare."""
        if candidate.percent == 0:
            return Verdict(True, "not judged at 0% (the smoke check judges its own calls)")

        def read(now: float) -> tuple[int, int]:
            return self.counts.calls(
                candidate.service, candidate.region, candidate.revision, candidate.since, now
            )

        def judge(counts: tuple[int, int]) -> Verdict:
            total, failed = counts
            ratio = failed / total
            if ratio > self.max_ratio:
                return Verdict(
                    False,
                    f"{failed} of {total} calls failed ({ratio:.1%}) since it got {candidate.percent}%, "
                    f"above the {self.max_ratio:.1%} allowed",
                )
            return Verdict(True, f"{failed} of {total} calls failed ({ratio:.1%})")

        return _judge_on_evidence(self, candidate, "error ratio", read, lambda counts: counts[0], judge)


_Reading = TypeVar("_Reading")


def _judge_on_evidence(  # noqa: PLR0917 (the gate and its three steps)
    gate: ErrorRatioGate | LatencyGate,
    candidate: Candidate,
    what: str,
    read: Callable[[float], _Reading],
    calls: Callable[[_Reading], int],
    judge: Callable[[_Reading], Verdict],
) -> Verdict:
    """The evidence loop both metric gates share: enough calls read, then judged, or the step fails.

    Waits for the ingestion delay, then `read`s (up to now) until the reading holds `gate.min_calls`
    calls, and `judge`s it; without that evidence by the gate's deadline the step fails (`what` names
    what could not be judged). A read that fails fails the step with the source's reason.
    """
    wait_for_ingestion(gate.name, candidate, gate.ingestion_delay, gate.clock, gate.sleep, gate.log)
    deadline = gate.clock() + gate.evidence_timeout
    while True:
        try:
            reading = read(gate.clock())
        except CallCountsError as error:
            return Verdict(False, str(error))
        seen = calls(reading)
        if seen and seen >= gate.min_calls:
            return judge(reading)
        if gate.min_calls == 0:
            return Verdict(True, f"no calls since it got {candidate.percent}%, nothing to judge")
        if gate.clock() >= deadline:
            return Verdict(
                False,
                f"only {seen} calls since it got {candidate.percent}%, fewer than the {gate.min_calls} "
                f"needed to judge its {what} (waited {gate.evidence_timeout:g} s): no evidence",
            )
        gate.log(f"  {gate.name}: {seen} of {gate.min_calls} calls needed; reading again")
        gate.sleep(gate.poll_seconds)


def wait_for_ingestion(  # noqa: PLR0917 (a gate's own fields, passed on)
    gate: str,
    candidate: Candidate,
    delay: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    log: Log,
) -> None:
    """Sleep until `delay` seconds after the step began, saying so: Monitoring has the step's points by then.

    The server exports once a minute and Cloud Monitoring takes a while more to make points readable;
    judged sooner, a step would be read on the calls before it, or on none.
    """
    left = candidate.since + delay - clock()
    if left > 0:
        log(
            f"  {gate}: waiting {left:.0f} s for Cloud Monitoring's ingestion delay ({delay:g} s after the "
            f"step began) before judging {candidate.percent}%"
        )
        sleep(left)


@dataclass(frozen=True)
class Latency:
    """A revision's calls in a span, and their 95th and 99th percentile durations (seconds)."""

    calls: int
    p95: float
    p99: float


class Latencies(Protocol):
    """How long a revision's calls took in a time span."""

    def latency(self, service: str, region: str, revision: str, start: float, end: float) -> Latency:
        """`revision`'s calls in `region` ("": all) between `start` and `end` (Unix)."""
        ...


@dataclass(frozen=True)
class LatencyBounds:
    """How slow the candidate may be: against the stable revision's over the same span, and absolutely.

    `max_ratio`: the candidate's p95 and p99 each at most this many times the stable revision's.
    `max_p95_seconds` / `max_p99_seconds`: absolute bounds (0: none).
    """

    max_ratio: float
    max_p95_seconds: float = 0.0
    max_p99_seconds: float = 0.0


@dataclass(frozen=True)
class LatencyGate:
    """The candidate's p95 and p99 since its step began, against the stable revision's and absolute bounds.

    Both revisions are read over the same span, so a slow hour slows both and only the candidate's own
    slowness fails it. It waits for Monitoring's ingestion delay first, and judges only with at least
    `min_calls` of the candidate's calls (like the error-ratio gate; 0 lets a quiet step pass, saying so).
    Every verdict is one line with the figures, for the command's output.
    """

    latencies: Latencies
    bounds: LatencyBounds
    min_calls: int
    ingestion_delay: float = 0.0
    evidence_timeout: float = 300.0
    poll_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    log: Log = print
    name: str = "latency"

    def check(self, candidate: Candidate) -> Verdict:
        """Read both revisions' latency since the step began until there is evidence, then compare."""
        if candidate.percent == 0:
            return Verdict(True, "not judged at 0% (no traffic of its own yet)")

        def read(now: float) -> tuple[Latency, Latency | None]:
            mine = self.latencies.latency(
                candidate.service, candidate.region, candidate.revision, candidate.since, now
            )
            stable = None
            if candidate.stable and candidate.stable != candidate.revision:
                stable = self.latencies.latency(
                    candidate.service, candidate.region, candidate.stable, candidate.since, now
                )
            return mine, stable

        return _judge_on_evidence(
            self,
            candidate,
            "latency",
            read,
            lambda both: both[0].calls,
            lambda both: self._judge(candidate, *both),
        )

    def _judge(self, candidate: Candidate, mine: Latency, stable: Latency | None) -> Verdict:
        figures = f"p95 {mine.p95 * 1000:.1f} ms, p99 {mine.p99 * 1000:.1f} ms over {mine.calls} calls"
        if stable is not None and stable.calls:
            figures += (
                f"; stable {candidate.stable}: p95 {stable.p95 * 1000:.1f} ms, "
                f"p99 {stable.p99 * 1000:.1f} ms over {stable.calls} calls"
            )
        failures = []
        limit = self.bounds
        if limit.max_p95_seconds and mine.p95 > limit.max_p95_seconds:
            failures.append(f"p95 above the {limit.max_p95_seconds * 1000:g} ms allowed")
        if limit.max_p99_seconds and mine.p99 > limit.max_p99_seconds:
            failures.append(f"p99 above the {limit.max_p99_seconds * 1000:g} ms allowed")
        if stable is not None and stable.calls:
            for name, own, theirs in (("p95", mine.p95, stable.p95), ("p99", mine.p99, stable.p99)):
                if theirs > 0 and own > theirs * limit.max_ratio:
                    failures.append(
                        f"{name} {own / theirs:.2f}x the stable revision's (at most {limit.max_ratio:g}x)"
                    )
        if failures:
            return Verdict(False, f"{'; '.join(failures)} since it got {candidate.percent}% ({figures})")
        return Verdict(True, f"{figures}: within bounds")
