"""Start a catalog server as its own process, time it to SERVING, read its memory and access log, stop it.

The bench and the tests (tests/servers.py) both run server processes with this module's ServerProcess.
"""

from __future__ import annotations

import compileall
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2

from catalog import SERVICE_NAME
from client.channel import health_check

ROOT = Path(__file__).resolve().parents[1]
# The packages the servers import from the repository: compiled before any server starts, as the image
# compiles them (Dockerfile), so a start is timed as on Cloud Run and not with its sources compiled too
# (PYTHONDONTWRITEBYTECODE, set on the development and CI machines, would have every start compile them).
SERVER_PACKAGES = ("catalog", "service", "contract", "bench")
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
    # Arguments after `python -m module` (a bare server's model).
    args: tuple[str, ...] = ()


OURS = ServerKind("ours", "service", has_access_log=True)
SEED = ServerKind("seed", "bench.seed_server", has_access_log=False)
# Each server model bare (bench/bare.py): the ceiling our server's CPU per call is compared with.
BARE_AIO = ServerKind("bare-aio", "bench.bare", has_access_log=False, args=("aio",))
BARE_SYNC = ServerKind("bare-sync", "bench.bare", has_access_log=False, args=("sync",))
BARE_GRPCLIB = ServerKind("bare-grpclib", "bench.bare", has_access_log=False, args=("grpclib",))
# Bare grpc.aio with our server's gRPC options: what core's share of our cost is (bench/instructions.py).
BARE_AIO_OPTIONS = ServerKind("bare-aio-options", "bench.bare", has_access_log=False, args=("aio-options",))
# Our per-call work on the thread-pool model (bench/thread_pool.py): the other model, measured with our work,
# on the seed's 10 threads, and on a thread for every call slot (what refusing stalled streams needs).
POOL_WORK = ServerKind("pool-work", "bench.thread_pool", has_access_log=False, args=("shared",))
POOL_SLOTS = ServerKind("pool-slots", "bench.thread_pool", has_access_log=False, args=("per-slot",))
OUR_WORK_MODELS = (POOL_WORK, POOL_SLOTS)

# One trace and its caller's span, as W3C's traceparent writes them (version, trace id, span id), before
# the flags that say whether the caller sampled it.
_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_TRACEPARENT = f"00-{_TRACE_ID}-00f067aa0ba902b7"
# The trace headers Cloud Run's front end adds to each request it forwards, unsampled (flags 00, o=0) as for
# all but the few it samples. The bench's load sends them to every server: on Cloud Run, gRPC reads them for
# every call, whatever the server does with them.
CLOUD_RUN_TRACE_HEADERS = (
    f"traceparent: {_TRACEPARENT}-00",
    f"x-cloud-trace-context: {_TRACE_ID}/67667974448284343;o=0",
)
# A trace context its caller sampled (flags 01): our server traces a call that carries it.
SAMPLED_TRACE_METADATA = (("traceparent", f"{_TRACEPARENT}-01"),)
# Our server's telemetry as every Cloud Run deploy has it: the "auto" exporters turn on there, and the
# program sets the project. Each call's duration is recorded and its trace sampling decided, and 0.1% of
# calls are traced. The console's exporters stand in for Google Cloud's: metrics printed to the server's
# log once a minute, sampled spans as they end.
CLOUD_RUN_TELEMETRY = {
    "GOOGLE_CLOUD_PROJECT": "bench-project",
    "METRICS_EXPORTER": "console",
    "TRACE_EXPORTER": "console",
}


class StartError(RuntimeError):
    """The server exited or did not report SERVING in time."""


class ServerProcess:
    """`python -m <kind.module>` on a free port: the one way the bench and the tests run a server process.

    Its stdout and stderr go to `log_path` when given (the bench: a file costs the server nothing to write
    and this process no work per line while it measures), else into `lines` as they arrive, read by a
    thread (the tests: the log in memory, quoted when the server fails). An inherited CATALOG_PATH is
    dropped: the catalog served is the one `env` names, or the embedded one.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        kind: ServerKind = OURS,
        log_path: Path | None = None,
        stop_grace_seconds: float = 0,
        cpus: str | None = None,
        under: Sequence[str] = (),
    ) -> None:
        env = dict(env or {})
        self.kind = kind
        self.port = int(env["PORT"]) if "PORT" in env else _free_port()
        self.log_path = log_path
        # What stop() gives the process between SIGTERM and SIGKILL; 0 kills at once (test clean-up).
        self.stop_grace_seconds = stop_grace_seconds
        inherited = {name: value for name, value in os.environ.items() if name != "CATALOG_PATH"}
        # Every OK call's line too, unless `env` says otherwise: the bench and tests count answers by them.
        full_env = {**inherited, "PORT": str(self.port), "OK_LOG_SAMPLE_RATE": "1", **env}
        self._lines: list[str] = []
        self._log_offset = 0  # bytes of log_path, or entries of _lines, that new_status_codes() has read
        self._log: IO[bytes] | None = log_path.open("wb") if log_path is not None else None
        self.started = time.perf_counter()
        self._started_wall = time.time()
        self._serving_seconds: float | None = None
        # Pinned (`taskset -c CPUS`), as a 1-vCPU instance runs; the processes it starts inherit it.
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        # `under`: a command that runs Python in its own process (valgrind), so `process.pid` is the server's.
        self.process = subprocess.Popen(
            [*pin, *under, sys.executable, "-m", kind.module, *kind.args],
            cwd=ROOT,
            env=full_env,
            stdout=self._log if self._log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader: threading.Thread | None = None
        if self._log is None:
            self._reader = threading.Thread(target=self._read, name=f"{kind.name}-log", daemon=True)
            self._reader.start()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    @property
    def lines(self) -> list[str]:
        """Every line the server has written so far."""
        if self._log is None:
            return list(self._lines)
        self._log.flush()
        assert self.log_path is not None
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def records(self) -> list[dict[str, Any]]:
        """Every log line, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.lines if line.strip()]

    def wait_serving(self, timeout: float = 60) -> int:
        """The port, once the health service answers SERVING for the whole server ("")."""
        self.seconds_to_serving(timeout)
        return self.port

    def trace_one_call(self) -> None:
        """Make one call its caller sampled, so the server traces it (ours; any other just answers).

        The first span pays one-off work (the exporter's first use, lazy imports): millions of
        instructions. Done before the measured calls, they cost what they do in a server long up.
        """
        request = health_pb2.HealthCheckRequest(service="")
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health_check(channel)(request, metadata=SAMPLED_TRACE_METADATA, timeout=10)

    def seconds_to_serving(self, timeout: float = 60) -> float:
        """Seconds from process start until its health service answers SERVING.

        Waits for the port with plain TCP connects first, 1 ms apart: a gRPC channel that finds the port
        closed retries on its own backoff schedule, which would add up to tens of milliseconds of its own.
        """
        if self._serving_seconds is not None:
            return self._serving_seconds
        deadline = self.started + timeout
        while not self._accepts_connections():
            self._check_alive(deadline, timeout)
            time.sleep(0.001)
        request = health_pb2.HealthCheckRequest(service="")
        with grpc.insecure_channel(f"127.0.0.1:{self.port}", options=_FAST_RECONNECT) as channel:
            check = health_check(channel)
            while True:
                try:
                    if check(request, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                        self._serving_seconds = time.perf_counter() - self.started
                        return self._serving_seconds
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
            raise StartError(f"{self.kind.name} exited {self.process.returncode}: {self._where_logged()}")
        if time.perf_counter() > deadline:
            raise StartError(f"{self.kind.name} not SERVING after {timeout:g} s: {self._where_logged()}")

    def _where_logged(self) -> str:
        if self.log_path is not None:
            return f"see {self.log_path}"
        if self._reader is not None and self.process.poll() is not None:
            self._reader.join(timeout=5)  # the last lines, up to the end of the pipe
        return "its log:\n" + "\n".join(self._lines)

    def wait_for_log(
        self, pattern: str, timeout: float = 60, *, json_only: bool = False, count: int = 1
    ) -> re.Match[str]:
        """The `count`-th log line matching `pattern` (of the JSON lines only, if asked), waiting for it.

        `count` above 1 waits for as many server processes (SERVER_PROCESSES) to log it. StartError if the
        process ends or `timeout` passes first.
        """
        compiled = re.compile(pattern)
        deadline = time.perf_counter() + timeout
        while True:
            exited = self.process.poll() is not None
            if exited and self._reader is not None:
                self._reader.join(timeout=5)
            matches = 0
            for line in self.lines:
                if (not json_only or line.startswith("{")) and (match := compiled.search(line)):
                    matches += 1
                    if matches == count:
                        return match
            if exited or time.perf_counter() > deadline:
                raise StartError(
                    f"{self.kind.name} logged {pattern!r} {matches} of {count} times: {self._where_logged()}"
                )
            time.sleep(0.01)

    def seconds_to_log(self, pattern: str, timeout: float = 60) -> float:
        """Seconds from process start to the `time` of the first JSON log line whose message matches."""
        line = self.wait_for_log(pattern, timeout, json_only=True).string
        return datetime.fromisoformat(json.loads(line)["time"]).timestamp() - self._started_wall

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/PID/status")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server has used so far: its process and every live descendant.

        From /proc/PID/stat, so it counts every thread, gRPC's own included. A server of several processes
        (service/processes.py) is measured whole.
        """
        return sum(_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def new_status_codes(self, method: str | None = None) -> Counter[str]:
        """Status codes of the catalog calls (or `method`'s) logged since the last call (ours only)."""
        if not self.kind.has_access_log:
            return Counter()
        codes: Counter[str] = Counter()
        for line in self._new_lines():
            if (f'"method": "{method}"' if method else f'"method": "/{SERVICE_NAME}/') not in line:
                continue
            try:
                codes[json.loads(line)["code"]] += 1
            except (ValueError, KeyError):
                codes["unreadable log line"] += 1
        return codes

    def _new_lines(self) -> list[str]:
        """The complete lines logged since the last call; from the file by offset, not re-read whole."""
        if self._log is None:
            lines = list(self._lines)
            new, self._log_offset = lines[self._log_offset :], len(lines)
            return new
        assert self.log_path is not None
        self._log.flush()
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            text = log.read()
        complete = text[: text.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        return complete.decode("utf-8", "replace").splitlines()

    def stop(self) -> None:
        """SIGTERM, as Cloud Run does, then SIGKILL after `stop_grace_seconds` (at once when 0)."""
        if self.process.poll() is None:
            if self.stop_grace_seconds > 0:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=self.stop_grace_seconds)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            else:
                self.process.kill()
        self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()


def bench_server(
    kind: ServerKind,
    catalog: Path | None,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cpus: str | None = None,
    *,
    under: Sequence[str] = (),
) -> ServerProcess:
    """A server as the bench runs it: on `catalog` (None: the embedded one), its log in `log_path`.

    It is stopped as Cloud Run stops an instance: SIGTERM, and SIGKILL 15 s later.
    """
    compile_server_packages()
    catalog_env = {"CATALOG_PATH": str(catalog)} if catalog is not None else {}
    return ServerProcess(
        {**(env or {}), **catalog_env},
        kind=kind,
        log_path=log_path,
        stop_grace_seconds=15,
        cpus=cpus,
        under=under,
    )


@functools.cache
def compile_server_packages() -> None:
    """Write the bytecode of SERVER_PACKAGES (once per process; up-to-date files are left as they are)."""
    for package in SERVER_PACKAGES:
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise RuntimeError(f"cannot compile {ROOT / package}")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces), field 3 first."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # ended meanwhile
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _free_port() -> int:
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])
