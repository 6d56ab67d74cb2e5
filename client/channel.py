"""The one channel an invocation uses: transport security, call credentials, retries and keepalive."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from catalog import HEALTH_CHECK_METHOD, HEALTH_SERVICE_NAME, SERVICE_NAME

# Retry what a call could not even start: UNAVAILABLE is what a cold start, a revision roll-out or a dropped
# connection at Cloud Run's edge looks like. Every method here is a read, so a retry is always safe; the
# deadline of the call (--timeout) bounds all attempts together. RESOURCE_EXHAUSTED (the server is at its
# concurrency limit) and INVALID_ARGUMENT are never retried: a retry would only add load, or fail again.
# gRPC core honours the server's `grpc-retry-pushback-ms` trailer: it waits as long as the server asks
# instead of the backoff below, and a negative pushback stops the retries.
MAX_ATTEMPTS = 4
# Retry throttling (gRFC A6), per channel: every failed attempt costs a token, every success gives back
# RETRY_TOKEN_RATIO of one, and no call is retried while the tokens are at or below half of RETRY_MAX_TOKENS.
# A service that fails every call thus gets retries from a channel only until its first few failures
# (RETRY_MAX_TOKENS / 2 tokens), then no more than its callers' own traffic; retries resume only while at
# most about one attempt in ten fails (1 / RETRY_TOKEN_RATIO successes pay for one failure).
RETRY_MAX_TOKENS = 10
RETRY_TOKEN_RATIO = 0.1

SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}, {"service": HEALTH_SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": MAX_ATTEMPTS,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
    "retryThrottling": {"maxTokens": RETRY_MAX_TOKENS, "tokenRatio": RETRY_TOKEN_RATIO},
}

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    # Retries are on by default in gRPC core; said here because the GOAWAYs below rely on them.
    ("grpc.enable_retries", 1),
    # Our config is the whole truth: do not take one from DNS.
    ("grpc.service_config_disable_resolution", 1),
    # Ping only while calls are open (a long search stream), at most every 30 s: Google's front ends limit
    # keepalive pings to one per 30 s and answer more with GOAWAY (too_many_pings); Google's own client
    # libraries use the same 30 s / 10 s. A connection dropped mid-stream is noticed within 40 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.primary_user_agent", "catalog-client/0.1"),
]
# A server with a maximum connection age (this project's does, to spread load as Cloud Run scales out) sends
# GOAWAY and lets in-flight calls finish within its grace period. Calls the server had not yet seen are
# retried on a new connection by gRPC core itself (transparent retries, outside MAX_ATTEMPTS); a call
# caught in the race as the connection closes fails with UNAVAILABLE and is retried by the policy above.
# Either way the caller sees no error: tests/client/test_retries.py drives a server with a 0.2 s age.


@dataclass(frozen=True)
class Transport:
    """How to reach the server: cleartext, or TLS trusting the system roots or `ca_cert` (PEM bytes)."""

    plaintext: bool = False
    ca_cert: bytes | None = None


def read_ca_cert(path: Path) -> bytes:
    """Read a PEM CA bundle; OSError and ValueError carry a message for the user."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{path} holds no PEM certificate")
    return data


def open_channel(
    address: str, transport: Transport, call_credentials: grpc.CallCredentials | None
) -> grpc.Channel:
    """Open the channel; close it when the invocation ends (it is a context manager)."""
    if transport.plaintext and call_credentials is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    if transport.plaintext:
        # gRPC attaches call credentials only to connections it considers secure. Local credentials speak
        # cleartext HTTP/2, exactly like an insecure channel, but only to a loopback peer: a token goes to a
        # local server (or `gcloud run services proxy`) and never in the clear across a network.
        channel_credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        channel_credentials = grpc.ssl_channel_credentials(root_certificates=transport.ca_cert)
    if call_credentials is not None:
        channel_credentials = grpc.composite_channel_credentials(channel_credentials, call_credentials)
    return grpc.secure_channel(address, channel_credentials, options=CHANNEL_OPTIONS)


def health_check(
    channel: grpc.Channel,
) -> grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """grpc.health.v1.Health/Check on `channel`.

    Built by hand rather than with health_pb2_grpc.HealthStub, whose type stub declares no methods.
    """
    return channel.unary_unary(
        HEALTH_CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


def serving_status(
    check: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
    name: str,
    timeout: float,
) -> str:
    """The serving status of health name `name`, as its enum name; SERVICE_UNKNOWN for a name never set."""
    try:
        response = check(health_pb2.HealthCheckRequest(service=name), timeout=timeout)
    except grpc.RpcError as error:
        # The server is up but does not know this name: not serving it, rather than a failed call.
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.NOT_FOUND:
            return "SERVICE_UNKNOWN"
        raise
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def status_line(error: grpc.RpcError) -> str:
    """`CODE: message`, the one line a failed call prints."""
    if isinstance(error, grpc.Call):
        details = " ".join((error.details() or "(no message)").splitlines())
        return f"{error.code().name}: {details}"
    return f"UNKNOWN: {error}"
