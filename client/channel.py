"""The one channel an invocation uses: transport security, call credentials, retries and keepalive."""

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from catalog import catalog_pb2

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["ProductCatalog"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

# Retry what a call could not even start: UNAVAILABLE is what a cold start, a revision roll-out or a dropped
# connection at Cloud Run's edge looks like. Every method here is a read, so a retry is always safe; the
# deadline of the call (--timeout) bounds all attempts together.
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}, {"service": HEALTH_SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
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
