"""The checks a candidate must pass before (and after) each traffic step, behind one small Protocol.

A gate answers None when the candidate passes, else one line saying what failed. The release names the
gate and the step in its failure line. Gates reach the candidate through its tag URL: the real edge, TLS,
and an ID token when the service is private, over a channel the caller opens (ChannelFactory).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
    the window of calls a step is judged on. `region` is the service's ("" where it does not matter).
    `metadata` goes with every check call: behind a front door, the header that routes to this candidate.
    """

    service: str
    revision: str
    uri: str
    percent: int = 0
    since: float = 0.0
    region: str = ""
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


class Gate(Protocol):
    """One check of a candidate; `name` is what a failure line calls it."""

    @property
    def name(self) -> str:
        """Short name: "ready", "smoke", "error-ratio"."""
        ...

    def check(self, candidate: Candidate) -> str | None:
        """None if the candidate passes, else why not (one line)."""
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

    def check(self, candidate: Candidate) -> str | None:
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
                        return None
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
                except grpc.RpcError as error:
                    last = error.code().name if isinstance(error, grpc.Call) else str(error)
                if self.clock() >= deadline:
                    return f"{SERVICE_NAME} not SERVING after {self.timeout:g} s (last answer: {last})"
                self.sleep(1.0)


@dataclass(frozen=True)
class SmokeGate:
    """The smoke check through the candidate's tag URL; every failed check on one line."""

    channels: ChannelFactory
    smoke: Smoke = run_smoke
    call_timeout: float = 10.0
    name: str = "smoke"

    def check(self, candidate: Candidate) -> str | None:
        """Run the smoke check once."""
        with candidate_channel(self.channels, candidate) as channel:
            results = list(self.smoke(channel, self.call_timeout))
        failures = [f"{result.name}: {result.detail}" for result in results if not result.passed]
        return "; ".join(failures) if failures else None


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

    It judges only with evidence: at least `min_calls` calls. With fewer it waits (log-based metrics arrive
    a minute or so late, and real traffic takes time), reading again every `poll_seconds`, for up to
    `evidence_timeout` seconds; still too few fails the step, because a release that was never observed is
    what this gate exists to stop. `min_calls` 0 judges whatever calls there are and lets a step with none
    pass, saying so (a quiet dev service). At 0% (before the first step) the candidate has only the smoke
    check's calls, which the smoke gate judges: nothing to read yet.
    """

    counts: CallCounts
    max_ratio: float
    min_calls: int
    evidence_timeout: float = 300.0
    poll_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    log: Log = print
    name: str = "error-ratio"

    def check(self, candidate: Candidate) -> str | None:
        """Read the candidate's calls since its step began until there is evidence, then compare."""
        if candidate.percent == 0:
            self.log("  error-ratio: not judged at 0% (the smoke check judges its own calls)")
            return None
        deadline = self.clock() + self.evidence_timeout
        while True:
            try:
                total, failed = self.counts.calls(
                    candidate.service, candidate.region, candidate.revision, candidate.since, self.clock()
                )
            except CallCountsError as error:
                return str(error)
            if total and total >= self.min_calls:
                ratio = failed / total
                if ratio > self.max_ratio:
                    return (
                        f"{failed} of {total} calls failed ({ratio:.1%}) since it got {candidate.percent}%, "
                        f"above the {self.max_ratio:.1%} allowed"
                    )
                self.log(f"  error-ratio: {failed} of {total} calls failed ({ratio:.1%})")
                return None
            if self.min_calls == 0:
                self.log(f"  error-ratio: no calls since it got {candidate.percent}%, nothing to judge")
                return None
            if self.clock() >= deadline:
                return (
                    f"only {total} calls since it got {candidate.percent}%, fewer than the {self.min_calls} "
                    f"needed to judge its error ratio (waited {self.evidence_timeout:g} s): no evidence"
                )
            self.log(f"  error-ratio: {total} of {self.min_calls} calls needed; reading again")
            self.sleep(self.poll_seconds)
