"""What observability costs the server per call: access lines, gRPC's OpenTelemetry plugin, our own metrics.

Runs as Cloud Run runs the server: the server pinned to CPU 0 (one vCPU), h2load to CPU 1. Each variant's
cost is the server's CPU per GetProduct call (utime + stime from /proc/PID/stat over a fixed number of calls,
divided by them) and the bytes it wrote to its log per call. The machine is shared, so variants are compared
in pairs, taking turns, and each figure is the median of the rounds.

    python -m bench.telemetry [--calls N] [--rounds R] [--plugin-python PATH]

It exits 0 when both targets are met and 3 when one is missed, as `python -m bench` does.

`--plugin-python` names a Python whose environment has grpcio-observability and the grpcio it pins (1.83.1:
it refuses the server's 1.83.2); its pair is measured against the same environment without the plugin.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from bench import EXIT_TARGET_MISSED
from bench.h2load import grpc_frame
from bench.servers import ROOT, _free_port
from catalog import SERVICE_NAME, catalog_pb2
from client.channel import health_check

METHOD = f"/{SERVICE_NAME}/GetProduct"
REQUEST = catalog_pb2.GetProductRequest(id="1")  # the embedded catalog's first product
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Metrics without a network: the Prometheus reader is collected only when scraped, so a call costs the same
# histogram measurement as with Cloud Monitoring's exporter, and nothing is written to the log.
_QUIET = {"LOG_LEVEL": "WARNING", "METRICS_EXPORTER": "none", "TRACE_EXPORTER": "none"}


@dataclass(frozen=True)
class Variant:
    """One way of running the server: its environment, and the Python (and plugin) it runs with."""

    name: str
    env: Mapping[str, str]
    python: str = sys.executable
    plugin: bool = False


@dataclass
class Figures:
    """Per-call figures of one variant over its rounds."""

    cpu_us: list[float] = field(default_factory=list)
    log_bytes: list[float] = field(default_factory=list)
    calls_per_second: list[float] = field(default_factory=list)

    def median(self, values: Sequence[float]) -> float:
        """The median (rounds are few and the machine is shared: the middle, not the mean)."""
        return statistics.median(values) if values else float("nan")


def variants(prometheus_port: int) -> dict[str, Variant]:
    """The variants measured: today's design, no observability at all, and the new design."""
    return {
        "no telemetry": Variant("no telemetry", _QUIET),
        "access line per call (today)": Variant(
            "access line per call (today)", {**_QUIET, "LOG_LEVEL": "INFO", "OK_LOG_SAMPLE_RATE": "1"}
        ),
        "metrics + sampled lines (new)": Variant(
            "metrics + sampled lines (new)",
            {
                **_QUIET,
                "LOG_LEVEL": "INFO",
                "METRICS_EXPORTER": "prometheus",
                "PROMETHEUS_PORT": str(prometheus_port),
                "TRACE_EXPORTER": "console",  # a traced call would print its span: none is sampled here
                "TRACE_SAMPLE_RATE": "0",
            },
        ),
        "metrics + sampled lines, tracing off": Variant(
            "metrics + sampled lines, tracing off",
            {
                **_QUIET,
                "LOG_LEVEL": "INFO",
                "METRICS_EXPORTER": "prometheus",
                "PROMETHEUS_PORT": str(prometheus_port + 1),
            },
        ),
    }


def measure(variant: Variant, calls: int, workdir: Path) -> tuple[float, float, float]:
    """(server CPU µs per call, log bytes per call, calls per second) of one run of `variant`."""
    port = _free_port()
    log_path = workdir / f"server-{port}.log"
    command = [variant.python, "-m", "bench.telemetry", "serve-with-plugin"] if variant.plugin else None
    command = command or [variant.python, "-m", "service"]
    env = {**os.environ, **variant.env, "PORT": str(port)}
    env.pop("CATALOG_PATH", None)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            ["taskset", "-c", "0", *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_serving(port, server)
        body = workdir / "request.bin"
        body.write_bytes(grpc_frame(REQUEST))
        _load(port, body, calls // 5)  # warm-up: caches, the first series of each instrument
        cpu_before, bytes_before = _cpu_seconds(server.pid), log_path.stat().st_size
        started = time.perf_counter()
        _load(port, body, calls)
        elapsed = time.perf_counter() - started
        time.sleep(0.1)  # the access log's last batch (written every 20 ms)
        cpu = _cpu_seconds(server.pid) - cpu_before
        written = log_path.stat().st_size - bytes_before
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:  # the plugin's threads can outlive the drain
            server.kill()
            server.wait(timeout=10)
    return cpu / calls * 1e6, written / calls, calls / elapsed


def _load(port: int, body: Path, calls: int) -> None:
    h2load = shutil.which("h2load")
    if h2load is None:
        raise SystemExit("h2load not found: install Debian's nghttp2-client")
    command = [
        "taskset", "-c", "1", h2load, f"-n{calls}", "-c4", "-m8", "-t1", f"--data={body}",
        "--header=content-type: application/grpc", "--header=te: trailers", f"http://127.0.0.1:{port}{METHOD}",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0 or f"{calls} succeeded" not in finished.stdout:
        raise RuntimeError(f"h2load failed:\n{finished.stdout}\n{finished.stderr}")


def _cpu_seconds(pid: int) -> float:
    # /proc/PID/stat: the command name may hold spaces, so count fields from its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _wait_serving(port: int, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_check(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}")
            try:
                if check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError("the server did not report SERVING")


def compare(
    first: Variant, second: Variant, calls: int, rounds: int, workdir: Path
) -> tuple[Figures, Figures]:
    """Both variants, taking turns `rounds` times (which goes first alternates)."""
    figures = (Figures(), Figures())
    for round_ in range(rounds):
        order = ((0, first), (1, second)) if round_ % 2 == 0 else ((1, second), (0, first))
        for index, variant in order:
            cpu_us, log_bytes, rate = measure(variant, calls, workdir)
            figures[index].cpu_us.append(cpu_us)
            figures[index].log_bytes.append(log_bytes)
            figures[index].calls_per_second.append(rate)
    return figures


def report_pair(first: Variant, second: Variant, figures: tuple[Figures, Figures]) -> list[str]:
    """Lines for one pair: each variant's median CPU per call, log bytes per call, and the difference."""
    lines = []
    for variant, figure in zip((first, second), figures, strict=True):
        lines.append(
            f"  {variant.name:<40} {figure.median(figure.cpu_us):7.1f} µs CPU/call "
            f"{figure.median(figure.log_bytes):7.1f} log B/call "
            f"{figure.median(figure.calls_per_second):7.0f} calls/s"
        )
    delta = figures[1].median(figures[1].cpu_us) - figures[0].median(figures[0].cpu_us)
    lines.append(f"  difference: {delta:+.1f} µs CPU per call")
    return lines


def serve_with_plugin() -> int:
    """`python -m service` with gRPC's OpenTelemetry plugin registered globally (an in-memory reader).

    At exit it prints the `grpc.method` values the plugin recorded, to show what it names each method.
    """
    import grpc_observability  # type: ignore[import-not-found]  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415

    from service.__main__ import main  # noqa: PLC0415

    reader = InMemoryMetricReader()
    plugin = grpc_observability.OpenTelemetryPlugin(meter_provider=MeterProvider(metric_readers=[reader]))
    plugin.register_global()

    def recorded_methods() -> None:
        data = reader.get_metrics_data()
        methods = {
            (metric.name, str(point.attributes.get("grpc.method")))
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
            if point.attributes
        }
        print(f"plugin recorded: {sorted(methods)}", file=sys.stderr, flush=True)

    atexit.register(recorded_methods)
    return main()


def main(argv: list[str] | None = None) -> int:
    """Measure the pairs and print them."""
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["serve-with-plugin"]:
        return serve_with_plugin()
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__)
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plugin-python", help="a Python with grpcio-observability installed")
    parser.add_argument("--only-new", action="store_true", help="only today's line against the new design")
    options = parser.parse_args(args)
    by_name = variants(_free_port())
    none, today, new, untraced = by_name.values()
    pairs = [(none, today), (today, new), (today, untraced)]
    if options.only_new:
        pairs = pairs[1:]
    if options.plugin_python:
        pairs.append(
            (
                Variant("no telemetry (plugin's grpcio)", _QUIET, python=options.plugin_python),
                Variant("grpcio-observability plugin", _QUIET, python=options.plugin_python, plugin=True),
            )
        )
    print(f"server CPU per GetProduct call, {options.calls} calls x {options.rounds} rounds per variant")
    met = True
    with tempfile.TemporaryDirectory() as tmp:
        for first, second in pairs:
            figures = compare(first, second, options.calls, options.rounds, Path(tmp))
            print("\n".join(report_pair(first, second, figures)), flush=True)
            if second.plugin:
                print("  " + _plugin_methods(Path(tmp)))
            if (first, second) == (today, new):
                lines, ok = targets(figures[0], figures[1])
                print("\n".join(lines), flush=True)
                met = met and ok
    return 0 if met else EXIT_TARGET_MISSED


# The targets: the log's bytes per OK call at most 2% of the access line's; CPU per call no more than it.
MAX_LOG_SHARE = 0.02


def targets(today: Figures, new: Figures) -> tuple[list[str], bool]:
    """The two targets' lines (met or not), from a pair of today's design and the new one."""
    old_bytes, new_bytes = today.median(today.log_bytes), new.median(new.log_bytes)
    old_cpu, new_cpu = today.median(today.cpu_us), new.median(new.cpu_us)
    share = new_bytes / old_bytes if old_bytes else float("inf")
    bytes_ok, cpu_ok = share <= MAX_LOG_SHARE, new_cpu <= old_cpu
    lines = [
        f"target: log bytes per 1M OK GetProduct calls {new_bytes:.1f} MB against {old_bytes:.1f} MB "
        f"({share:.1%}, at most {MAX_LOG_SHARE:.0%}): {'met' if bytes_ok else 'NOT met'}",
        f"target: server CPU per call {new_cpu:.1f} µs against the access line's {old_cpu:.1f} µs "
        f"(no more): {'met' if cpu_ok else 'NOT met'}",
    ]
    return lines, bytes_ok and cpu_ok


def _plugin_methods(workdir: Path) -> str:
    for log in sorted(workdir.glob("server-*.log"), key=lambda path: path.stat().st_mtime, reverse=True):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("plugin recorded:"):
                return line
    return "plugin recorded: (nothing printed)"


if __name__ == "__main__":
    sys.exit(main())
