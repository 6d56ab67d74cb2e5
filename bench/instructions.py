"""Instructions per GetProduct, counted by callgrind: ours beside bare grpc.aio, with our options and without.

    python -m bench.instructions                            # 100,000 products, 3,000 calls after 1,000
    python -m bench.instructions --products 10000 --calls 500

`make bench` times server CPU per call, and the host moves that by a tenth or more between runs of the same
code (docs/performance.md). The instructions a server executes for a call do not move with the host: this
counts them, for every thread of the process, under valgrind's callgrind. Each server runs alone, with
counting off while it starts and while h2load warms it up (`--instr-atstart=no`); counting is on for
exactly --calls GetProduct calls (`callgrind_control --instr=on`, then `off`), and the count is divided by
them. Two counts of one server differ by well under 1%.

Four servers, each call carrying the trace headers Cloud Run's front end adds (bench/servers.py), as
`make bench` loads them:
- ours (`python -m service`) as `make bench` runs it, as on Cloud Run: production's settings and its
  telemetry, the catalog loaded from the file;
- bare-aio (bench/bare.py): the ceiling `make bench` judges ours by, one fixed answer and no options;
- bare-aio-options: the same bare server with our server's gRPC options (service/server.py). Its count
  over bare-aio's is gRPC core's work for those options (its connection limits add a filter to every call);
- ours-without-telemetry: ours with the "auto" exporters left off, as anywhere but Cloud Run. Its count over
  bare-aio-options' is our own work (the call guard, the servicer and the store), and ours over it is
  what telemetry costs a call.

It prints each count and the ratios; it judges nothing. Instructions are not time: the kernel's share of a
call (about a third of its CPU here) and cache misses are not in them. It exits 1 when a server does not
start or a call fails, and 2 on bad arguments or without valgrind or h2load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench import cases, h2load
from bench.catalog import generate_products, write_catalog
from bench.servers import (
    BARE_AIO,
    BARE_AIO_OPTIONS,
    CLOUD_RUN_TELEMETRY,
    CLOUD_RUN_TRACE_HEADERS,
    OURS,
    ServerKind,
    ServerProcess,
    bench_server,
)
from catalog import catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from service.config import Settings

# Under callgrind a server runs 50 to 100 times slower: loading 100,000 products takes a minute or more.
START_TIMEOUT_SECONDS = 900
# How long callgrind_control waits for the server to take a command: callgrind reads it between blocks.
CONTROL_TIMEOUT_SECONDS = 120
_TOTALS = re.compile(r"^totals: (\d+)$", re.MULTILINE)


class CountError(RuntimeError):
    """A count that would be wrong: a call failed, or callgrind did not do as told."""


@dataclass(frozen=True)
class Counted:
    """A server to count: which one, and its settings."""

    name: str
    kind: ServerKind
    env: Mapping[str, str] = field(default_factory=dict)


def servers() -> tuple[Counted, ...]:
    """The servers counted, in the order they are reported (the module's docstring says why each)."""
    # Production's sampled OK lines: ServerProcess logs every OK call unless told otherwise.
    production = {"OK_LOG_SAMPLE_RATE": f"{Settings().ok_log_sample_rate:g}"}
    return (
        Counted("ours", OURS, {**production, **CLOUD_RUN_TELEMETRY}),
        Counted("bare-aio", BARE_AIO),
        Counted("bare-aio-options", BARE_AIO_OPTIONS),
        Counted("ours-without-telemetry", OURS, production),
    )


@dataclass(frozen=True)
class Count:
    """One server's instructions over the counted calls."""

    server: str
    instructions: int
    calls: int

    @property
    def per_call(self) -> float:
        """Instructions per call, the server's background work (timers, log batches) included."""
        return self.instructions / self.calls


def main(argv: list[str] | None = None) -> int:
    """Count each server's instructions per GetProduct and print them; see the module's docstring."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.streams % args.clients:
        parser.error(f"--streams {args.streams} do not split evenly over --clients {args.clients}")
    missing = [tool for tool in ("valgrind", "callgrind_control", "h2load") if shutil.which(tool) is None]
    if missing:
        print(f"needs {', '.join(missing)}: install Debian's valgrind and nghttp2-client", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="catalog-instructions-"))
    workdir.mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(workdir / f"catalog-{args.products}.json", args.products)
    products = generate_products(args.products)
    counts = []
    for server in servers():
        print(f"counting {server.name} under callgrind ...", file=sys.stderr, flush=True)
        try:
            counts.append(count(server, catalog, products, workdir, args))
        except (RuntimeError, cases.WrongAnswerError) as error:  # CountError, StartError, H2loadError
            print(f"{server.name}: {error}", file=sys.stderr)
            return 1
    print(render(counts, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m bench.instructions`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--products", type=_positive, default=100_000, help="catalog size (default 100000)")
    parser.add_argument(
        "--calls", type=_positive, default=3000, help="GetProduct calls counted (default 3000)"
    )
    parser.add_argument(
        "--warm-up-calls", type=_positive, default=1000, help="calls before counting starts (default 1000)"
    )
    parser.add_argument("--streams", type=_positive, default=80, help="concurrent streams (default 80)")
    parser.add_argument("--clients", type=_positive, default=4, help="HTTP/2 connections (default 4)")
    parser.add_argument(
        "--workdir", help="where the catalog, logs and callgrind files go (default: a temp dir)"
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} counts nothing: give 1 or more")
    return value


def count(
    counted: Counted, catalog: Path, products: list[Product], workdir: Path, args: argparse.Namespace
) -> Count:
    """`counted`'s instructions over `args.calls` GetProduct calls, counted under callgrind."""
    kind = counted.kind
    out = workdir / f"{counted.name}.callgrind"
    under = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
    log = workdir / f"{counted.name}.log"
    with bench_server(kind, catalog if kind is OURS else None, log, dict(counted.env), under=under) as server:
        server.wait_serving(timeout=START_TIMEOUT_SECONDS)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            case = cases.build("get", products, kind, stub)
            if kind is OURS:  # a bare server answers one fixed product, whatever is asked
                case.check(stub)
        server.trace_one_call()
        _load(server, case, workdir, args, args.warm_up_calls)
        _control(server, "--instr=on")
        _load(server, case, workdir, args, args.calls)
        _control(server, "--instr=off")
        _control(server, "--dump")
        dumps = sorted(workdir.glob(f"{out.name}.{server.process.pid}.*"))
        if not dumps:
            raise CountError(f"callgrind wrote no dump: see {log}")
        instructions = sum(_instructions(dump) for dump in dumps)
    return Count(counted.name, instructions, args.calls)


def _load(
    server: ServerProcess, case: cases.Case, workdir: Path, args: argparse.Namespace, calls: int
) -> None:
    result = h2load.run_requests(
        server.port,
        case.method,
        case.request,
        workdir,
        requests=calls,
        streams=args.streams,
        clients=args.clients,
        headers=CLOUD_RUN_TRACE_HEADERS,
    )
    if result.requests != calls or result.failed or result.non_200:
        raise CountError(
            f"{result.requests} of {calls} calls done, {result.failed} failed, {result.non_200} not HTTP 200"
        )
    codes = server.new_status_codes()  # ours logs every call that is not OK
    if set(codes) - {"OK"}:
        raise CountError(f"calls ended {dict(codes)}")


def _control(server: ServerProcess, command: str) -> None:
    """Tell the server's callgrind `command`; it takes it between blocks, so while the server is busy."""
    try:
        finished = subprocess.run(
            ["callgrind_control", command, str(server.process.pid)],
            capture_output=True,
            text=True,
            timeout=CONTROL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CountError(f"callgrind_control {command}: no answer in {CONTROL_TIMEOUT_SECONDS} s") from None
    if finished.returncode != 0 or "Error" in finished.stdout:
        raise CountError(f"callgrind_control {command} failed: {finished.stdout}{finished.stderr}")


def _instructions(dump: Path) -> int:
    """The instructions a callgrind dump counted: its `totals:` line (its `summary:` line may say 0)."""
    found = _TOTALS.search(dump.read_text(errors="replace"))
    if found is None:
        raise CountError(f"{dump} has no totals line: not a callgrind dump")
    return int(found.group(1))


def render(counts: list[Count], args: argparse.Namespace) -> str:
    """Each server's count, ours against each of the others, and how ours' extra over bare-aio splits.

    `counts` has every server of `servers()`: main reports nothing when one could not be counted.
    """
    lines = [
        f"Instructions per GetProduct under callgrind: {args.products:,} products, {args.calls:,} calls "
        f"after {args.warm_up_calls:,}, {args.streams} streams over {args.clients} connections, "
        "Cloud Run's trace headers on each",
    ]
    by_server = {count.server: count.per_call for count in counts}
    ours, bare = by_server["ours"], by_server["bare-aio"]
    with_options, untelemetered = by_server["bare-aio-options"], by_server["ours-without-telemetry"]
    for count in counts:
        ratio = "" if count.server == "ours" else f"   ours is {ours / count.per_call:.3f}x this"
        lines.append(f"  {count.server:<22} {count.per_call:>10,.0f}{ratio}")
    lines.append(
        f"  ours over bare-aio, {ours - bare:+,.0f}: gRPC core's work for our options "
        f"{with_options - bare:+,.0f}, our own work {untelemetered - with_options:+,.0f}, "
        f"telemetry {ours - untelemetered:+,.0f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
