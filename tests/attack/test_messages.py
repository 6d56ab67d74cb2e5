"""Attacks through what a call carries: oversized, announced-but-never-sent and compressed messages,
oversized metadata, and request bytes that do not parse, for every method."""

from __future__ import annotations

import grpc
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from catalog import GET_PRODUCT_METHOD, HEALTH_CHECK_METHOD, LIST_PRODUCTS_METHOD, SEARCH_PRODUCTS_METHOD
from service.limits import MAX_REQUEST_BYTES
from tests.attack import attackers
from tests.attack.harness import ATTACK_SECONDS, AttackRun, Probe, TargetServer, assert_unharmed, under_attack

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


@pytest.mark.parametrize("kind", ["huge-declared", "oversized", "gzip-bomb", "huge-metadata"])
def test_oversized_requests_are_refused_before_they_cost_memory(
    server: TargetServer, probe: Probe, kind: str
) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.bad_calls, server.port, ATTACK_SECONDS, kind, 200)
    statuses = run.report["statuses"]
    # Every call is answered RESOURCE_EXHAUSTED, the one announcing 100 MiB included: it is refused from
    # its 5-byte message header, while it waits for the rest (None here: no answer within 2 s).
    assert statuses, "no call was made"
    assert set(statuses) == {RESOURCE_EXHAUSTED}, statuses
    assert_unharmed(server, probe, run, rss)


_METHODS = [
    GET_PRODUCT_METHOD,
    LIST_PRODUCTS_METHOD,
    SEARCH_PRODUCTS_METHOD,
    HEALTH_CHECK_METHOD,
]
# What bytes that do not parse (or parse into a request the API refuses) may get; never INTERNAL or UNKNOWN,
# which would blame the server for the client's bytes, and never a dead server.
_CLIENT_FAULTS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.mark.parametrize("method", _METHODS)
def test_request_bytes_that_do_not_parse(server: TargetServer, probe: Probe, method: str) -> None:
    rss = server.rss_mib()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    streaming = method == SEARCH_PRODUCTS_METHOD
    unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)
    latencies: list[float] = []

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=64) | st.binary(min_size=MAX_REQUEST_BYTES - 8, max_size=MAX_REQUEST_BYTES + 8))
    def send(body: bytes) -> None:
        code = grpc.StatusCode.OK
        try:
            if streaming:
                list(stream(body, timeout=10))
            else:
                unary(body, timeout=10)
        except grpc.RpcError as error:
            code = error.code()
        assert code in _CLIENT_FAULTS, code
        latencies.append(probe.call())  # the well-behaved client, between every two bad requests

    try:
        send()
    finally:
        channel.close()
    assert_unharmed(server, probe, AttackRun({}, latencies), rss)
