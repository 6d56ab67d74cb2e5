"""The checks a candidate must pass before (and after) each traffic step, behind one small Protocol.

A gate answers None when the candidate passes, else one line saying what failed. The release names the
gate and the step in its failure line. Gates reach the candidate through its tag URL: the real edge, TLS,
and an ID token when the service is private, over a channel the caller opens (ChannelFactory).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2

from catalog import HEALTH_SERVICE_NAME, SERVICE_NAME

# Opens a channel to a tag's https URL (TLS and credentials are the factory's business).
ChannelFactory = Callable[[str], grpc.Channel]
# The client's smoke check: a channel and a per-call deadline in, one line per failed check out.
Smoke = Callable[[grpc.Channel, float], Sequence[str]]


@dataclass(frozen=True)
class Candidate:
    """What a gate checks: the service, the candidate revision and its tag URL."""

    service: str
    revision: str
    uri: str


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
        with self.channels(candidate.uri) as channel:
            health = channel.unary_unary(
                f"/{HEALTH_SERVICE_NAME}/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
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
    smoke: Smoke
    call_timeout: float = 10.0
    name: str = "smoke"

    def check(self, candidate: Candidate) -> str | None:
        """Run the smoke check once."""
        with self.channels(candidate.uri) as channel:
            failures = list(self.smoke(channel, self.call_timeout))
        return "; ".join(failures) if failures else None


class ErrorRatioSource(Protocol):
    """Where the candidate's gRPC error ratio comes from (the observability work's log-based metric)."""

    def error_ratio(self, service: str, revision: str, window_seconds: float) -> float | None:
        """Failed calls / all calls of `revision` over the last `window_seconds`; None without calls."""
        ...


@dataclass(frozen=True)
class ErrorRatioGate:
    """The candidate's error ratio stays at or under `max_ratio`; no calls yet passes (smoke gates that)."""

    source: ErrorRatioSource
    max_ratio: float = 0.01
    window_seconds: float = 60.0
    name: str = "error-ratio"

    def check(self, candidate: Candidate) -> str | None:
        """Compare the ratio over the window with the limit."""
        ratio = self.source.error_ratio(candidate.service, candidate.revision, self.window_seconds)
        if ratio is None:
            return None
        if ratio > self.max_ratio:
            return (
                f"{ratio:.1%} of calls failed over {self.window_seconds:g} s (allowed {self.max_ratio:.1%})"
            )
        return None
