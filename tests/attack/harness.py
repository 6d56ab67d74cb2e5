"""The attack suite's harness: the real server as a process, a well-behaved client that times it, and
attackers in processes of their own (so their Python work never holds up the well-behaved client's).

Every attack ends the same way: the server is still running, its resident memory grew by a bounded amount
(read from /proc), and the well-behaved client, on a connection of its own, got correct answers throughout,
with a p99 latency within a generous multiple of its own p99 on the idle server measured just before.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from bench.servers import ServerProcess
from catalog import SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from client.channel import health_check

CATALOG_PRODUCTS = 3000
# Small, so the slot tests fill the limit with a few streams; the limits under test do not depend on it.
MAX_CONCURRENT_RPCS = 8
STALLED_STREAM_SECONDS = 2
# The well-behaved client's p99 under attack may be this many times its idle p99: generous, because the
# attacker's process shares this machine's two cores with the server and the client, but a server that an
# attack stalls (a blocked loop, a connection it spins on) misses it by orders of magnitude. The idle p99 is
# the larger of the one measured before the attack and the one right after it: other work on the machine
# slows both alike, and a server the attack left slow is also caught by the after-one (AFTER_RATIO).
P99_RATIO = 40
# The idle p99 right after an attack may be this many times the one before: other work on the machine moves
# it by a few times; a server still busy with the attacker's leftovers, by orders of magnitude.
AFTER_RATIO = 40
# Resident memory the server may gain during one attack; buffering one 100 MiB message would not fit. Most
# attacks add a few MiB; a CONTINUATION flood adds 20 to 60 MiB of core's read buffers, which plateaus
# (four floods of 8 to 256 MiB in a row grew the server by 63 MiB in all, the last by none).
RSS_GROWTH_MIB = 80
ATTACK_SECONDS = 2.0
_BASELINE_CALLS = 150
_MAX_PROBE_CALLS = 5000


def p99(latencies: list[float]) -> float:
    """The 99th percentile of `latencies`."""
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


class TargetServer:
    """`python -m service` on a free port with the attack suite's catalog and limits."""

    def __init__(self, catalog: Path, env: Mapping[str, str] | None = None) -> None:
        self.process = ServerProcess(
            {
                "CATALOG_PATH": str(catalog),
                "MAX_CONCURRENT_RPCS": str(MAX_CONCURRENT_RPCS),
                "STALLED_STREAM_SECONDS": str(STALLED_STREAM_SECONDS),
                **(env or {}),
            }
        )
        self.port = self.process.wait_serving()
        self.process.wait_for_log(r"search index over \d+ products ready")  # steady state, as in production

    def rss_mib(self) -> float:
        """The server's resident memory now, in MiB."""
        for line in Path(f"/proc/{self.process.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc/PID/status: the server has exited")

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process.process.poll() is None

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


class Probe:
    """The well-behaved client: GetProduct over its own connection, every answer checked."""

    def __init__(self, port: int, products: list[Product]) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = catalog_pb2_grpc.ProductCatalogStub(self.channel)
        self._products = products
        self._next = 0
        self.health = health_check(self.channel)
        for _ in range(30):  # connect and warm up
            self.call()
        self.baseline_p99 = self.idle_p99()

    def idle_p99(self) -> float:
        """The p99 of a run of calls with nothing else on the server (seconds)."""
        return p99([self.call() for _ in range(_BASELINE_CALLS)])

    def call(self) -> float:
        """One GetProduct, checked against the catalog; returns its latency in seconds."""
        expected = self._products[self._next % len(self._products)]
        self._next += 7
        started = time.perf_counter()
        answer = self.stub.GetProduct(catalog_pb2.GetProductRequest(id=expected.id), timeout=10)
        latency = time.perf_counter() - started
        assert answer == expected
        return latency

    def serving(self) -> bool:
        """Whether the health service reports SERVING for the catalog."""
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        return bool(self.health(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Close the client's channel."""
        self.channel.close()


@dataclass
class AttackRun:
    """What one attack reported, and the well-behaved client's latencies while it ran."""

    report: dict[str, Any]
    latencies: list[float] = field(default_factory=list)


def under_attack(probe: Probe, attack: Callable[..., None], *args: Any) -> AttackRun:
    """Run `attack(queue, *args)` in a process of its own, calling GetProduct with `probe` until it ends.

    The attack puts "started" on the queue once under way, then its report (a dict) when done.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC's threads
    queue = context.Queue()
    process = context.Process(target=attack, args=(queue, *args), daemon=True)
    process.start()
    try:
        assert queue.get(timeout=60) == "started"
        latencies: list[float] = []
        while process.is_alive() and len(latencies) < _MAX_PROBE_CALLS:
            latencies.append(probe.call())
            if not queue.empty():
                break
        report = queue.get(timeout=60)
        latencies += [probe.call() for _ in range(max(0, 100 - len(latencies)))]
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return AttackRun(report, latencies)


def assert_unharmed(server: TargetServer, probe: Probe, run: AttackRun, rss_before: float) -> None:
    """The server survived, its memory stayed bounded, and the well-behaved client was served in time."""
    assert server.alive()
    grown = server.rss_mib() - rss_before
    assert grown < RSS_GROWTH_MIB, f"the server's memory grew by {grown:.0f} MiB"
    worst = p99(run.latencies)
    before, after = probe.baseline_p99, probe.idle_p99()
    assert after < AFTER_RATIO * before, (
        f"idle p99 {after * 1000:.2f} ms after the attack vs {before * 1000:.2f} ms before it"
    )
    idle = max(before, after)
    assert worst < P99_RATIO * idle, (
        f"p99 {worst * 1000:.1f} ms under attack vs {idle * 1000:.2f} ms idle "
        f"({before * 1000:.2f} ms before, {after * 1000:.2f} ms after)"
    )
    probe.call()  # and still right afterwards
    assert probe.serving()
