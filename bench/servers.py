"""Start a catalog server as its own process, time it to SERVING, read its memory and access log, stop it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2

from client.channel import health_check

ROOT = Path(__file__).resolve().parents[1]
# Reconnect at once while the process starts, rather than after gRPC's default one-second backoff.
_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 20),
]


@dataclass(frozen=True)
class ServerKind:
    """How to run one of the servers under test."""

    name: str
    module: str
    # Our server writes one JSON access line per call to stdout; the seed's writes none.
    has_access_log: bool


OURS = ServerKind("ours", "service", has_access_log=True)
SEED = ServerKind("seed", "bench.seed_server", has_access_log=False)


class StartError(RuntimeError):
    """The server exited or did not report SERVING in time."""


class ServerProcess:
    """`python -m <kind.module>` on a free port, its stdout and stderr in `log_path`."""

    def __init__(
        self, kind: ServerKind, catalog: Path | None, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.kind = kind
        self.port = _free_port()
        self.log_path = log_path
        full_env = {**os.environ, "PORT": str(self.port), **(env or {})}
        full_env.pop("CATALOG_PATH", None)
        if catalog is not None:
            full_env["CATALOG_PATH"] = str(catalog)
        self._log = log_path.open("wb")
        self.started = time.perf_counter()
        self._started_wall = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", kind.module],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._log_offset = 0

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_serving(self, timeout: float = 60) -> float:
        """Seconds from process start until its health service answers SERVING.

        Waits for the port with plain TCP connects first, 1 ms apart: a gRPC channel that finds the port
        closed retries on its own backoff schedule, which would add up to tens of milliseconds of its own.
        """
        deadline = self.started + timeout
        while not self._accepts_connections():
            self._check_alive(deadline, timeout)
            time.sleep(0.001)
        request = health_pb2.HealthCheckRequest(service="")
        with grpc.insecure_channel(f"127.0.0.1:{self.port}", options=_FAST_RECONNECT) as channel:
            check = health_check(channel)
            while True:
                try:
                    status = check(request, timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - self.started
                except grpc.RpcError:
                    pass
                self._check_alive(deadline, timeout)
                time.sleep(0.001)

    def _accepts_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def _check_alive(self, deadline: float, timeout: float) -> None:
        if self.process.poll() is not None:
            raise StartError(f"{self.kind.name} exited {self.process.returncode}: see {self.log_path}")
        if time.perf_counter() > deadline:
            raise StartError(f"{self.kind.name} not SERVING after {timeout} s: see {self.log_path}")

    def wait_for_log(self, pattern: str, timeout: float = 60) -> float:
        """Seconds from process start to the `time` of the first JSON log line whose message matches."""
        compiled = re.compile(pattern)
        deadline = time.perf_counter() + timeout
        while True:
            self._log.flush()
            for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("{") and compiled.search(line):
                    logged = datetime.fromisoformat(json.loads(line)["time"]).timestamp()
                    return logged - self._started_wall
            if self.process.poll() is not None or time.perf_counter() > deadline:
                raise StartError(f"{self.kind.name} never logged {pattern!r}: see {self.log_path}")
            time.sleep(0.01)

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/PID/status")

    def new_status_codes(self) -> Counter[str]:
        """Status codes of the catalog calls logged since the last call (ours only; empty for the seed)."""
        if not self.kind.has_access_log:
            return Counter()
        self._log.flush()
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            text = log.read()
        complete = text[: text.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        codes: Counter[str] = Counter()
        for line in complete.decode("utf-8", "replace").splitlines():
            if '"method": "/catalog.' not in line:
                continue
            try:
                codes[json.loads(line)["code"]] += 1
            except (ValueError, KeyError):
                codes["unreadable log line"] += 1
        return codes

    def stop(self) -> None:
        """SIGTERM, as Cloud Run does; SIGKILL if it is still running 15 s later."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])
