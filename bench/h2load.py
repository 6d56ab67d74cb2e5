"""Drive one gRPC unary or server-streaming method with h2load and summarise what it measured.

h2load speaks HTTP/2, not gRPC: the body is the gRPC frame (0x00, a 4-byte big-endian length, the
message) and the headers are gRPC's. It counts every HTTP 200 as a success even when the trailers carry a
non-OK grpc-status, so callers check answers over gRPC separately.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

_FINISHED = re.compile(r"finished in ([\d.]+)m?s, ([\d.]+) req/s")  # "2.00s" or, below a second, "700.66ms"
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed")


class H2loadError(RuntimeError):
    """h2load is missing, failed, or printed something this module cannot read."""


@dataclass(frozen=True)
class LoadResult:
    """One h2load run: throughput, latency percentiles (ms) and HTTP-level failures."""

    requests_per_second: float
    requests: int
    failed: int
    non_200: int
    unfinished: int
    p50_ms: float
    p90_ms: float
    p99_ms: float


def grpc_frame(message: Message) -> bytes:
    """The message as one uncompressed gRPC length-prefixed frame."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def run(
    port: int,
    method: str,
    request: Message,
    workdir: Path,
    *,
    streams: int,
    clients: int,
    duration_seconds: float,
    warmup_seconds: float,
    cpus: str | None = None,
    headers: Sequence[str] = (),
) -> LoadResult:
    """Load `method` ("/package.Service/Method") with `streams` concurrent streams over `clients` connections.

    Counts and percentiles cover the measured period only, after the warm-up. `cpus` pins h2load
    (`taskset -c`), off the server's CPU. `headers` ("name: value") go on every request beside gRPC's own.
    """
    period = [
        f"--duration={round(duration_seconds * 1000)}ms",
        f"--warm-up-time={round(warmup_seconds * 1000)}ms",
    ]
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    return _run(
        port,
        method,
        request,
        workdir,
        streams=streams,
        clients=clients,
        load=period,
        pin=pin,
        headers=headers,
    )


def run_requests(
    port: int,
    method: str,
    request: Message,
    workdir: Path,
    *,
    requests: int,
    streams: int,
    clients: int,
    headers: Sequence[str] = (),
) -> LoadResult:
    """Send `method` exactly `requests` times, `streams` at once over `clients` connections.

    For counting what each call costs rather than timing a period (bench/instructions.py). `headers`
    ("name: value") go on every request beside gRPC's own.
    """
    load = [f"--requests={requests}"]
    return _run(
        port, method, request, workdir, streams=streams, clients=clients, load=load, pin=[], headers=headers
    )


def _run(
    port: int,
    method: str,
    request: Message,
    workdir: Path,
    *,
    streams: int,
    clients: int,
    load: list[str],
    pin: list[str],
    headers: Sequence[str],
) -> LoadResult:
    executable = shutil.which("h2load")
    if executable is None:
        raise H2loadError("h2load not found: install Debian's nghttp2-client")
    if streams % clients:
        raise H2loadError(f"{streams} streams do not split evenly over {clients} connections")
    body = workdir / "request.bin"
    body.write_bytes(grpc_frame(request))
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)
    command = [
        *pin,
        executable,
        f"--clients={clients}",
        f"--max-concurrent-streams={streams // clients}",
        "--threads=1",
        *load,
        f"--data={body}",
        "--header=content-type: application/grpc",
        "--header=te: trailers",
        *(f"--header={header}" for header in headers),
        f"--log-file={log}",
        f"http://127.0.0.1:{port}{method}",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise H2loadError(f"h2load exited {finished.returncode}:\n{finished.stdout}\n{finished.stderr}")
    return summarise(finished.stdout, log)


def summarise(output: str, log: Path) -> LoadResult:
    """h2load's figures from its printed output and its per-request log."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    if finished is None or requests is None:
        raise H2loadError(f"cannot read h2load's output:\n{output}")
    # The log has one line per request of the measured period: start (us), HTTP status, duration (us).
    # Status 0 marks a request still in flight when h2load stopped: not a latency, not an error.
    durations_ms, non_200, unfinished = [], 0, 0
    for line in log.read_text().splitlines():
        _start, status, micros = line.split("\t")
        if status == "0":
            unfinished += 1
            continue
        durations_ms.append(int(micros) / 1000)
        non_200 += status != "200"
    # A server starved by an attacker may finish almost nothing in a short run: that is a figure (its
    # throughput falls to about 0), not a failure of the benchmark; its latency is then unknown (infinite).
    cuts = (
        statistics.quantiles(durations_ms, n=100, method="inclusive")
        if len(durations_ms) >= 2
        else [math.inf] * 99
    )
    return LoadResult(
        requests_per_second=float(finished.group(2)),
        requests=int(requests.group(3)),
        failed=int(requests.group(5)),
        non_200=non_200,
        unfinished=unfinished,
        p50_ms=cuts[49],
        p90_ms=cuts[89],
        p99_ms=cuts[98],
    )
