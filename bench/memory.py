"""What a product costs in the running server: memory and time to SERVING at 10k, 100k and 1M products.

    python -m bench.memory                      # 10,000, 100,000 and 1,000,000 products
    python -m bench.memory --products 10000,50000

Each size runs `python -m service` (as in production) on a generated catalog (bench.catalog), saved ready
to serve beside it and named by CATALOG_SHA256 as the Pulumi program deploys it, and reads /proc/PID/status:
VmHWM, the peak, and VmRSS once the search index is ready (what the server keeps). A second start without
the saved catalog times loading the file itself and building its index, as a server does on a file deployed
without one; the peak is the higher of the two.
"Per product" subtracts the server's memory on the embedded five-product catalog. The seed's server
(bench.seed_server) starts on the same file for its time to SERVING. The last column is what
`service.catalog.memory_needed` says the catalog needs, the figure the Pulumi program compares with the
`memory` setting: it must stay above the measured peak, and the exit status is 3 when it does not (the
model's constants are stale). From TARGET_PRODUCTS products on, the targets below apply too, and the exit
status is 4 when one is missed. Memory figures repeat to the MiB; times move with the machine's load.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench.catalog import write_catalog
from bench.servers import CLOUD_RUN_TELEMETRY, OURS, SEED, bench_server
from service.catalog import memory_needed, save
from service.saved_catalog import saved_catalog_path

MIB = 2**20
INDEX_READY = r"search index over \d+ products ready"  # built, after loading the file
SAVED_READ = r"catalog of \d+ products and its search index read from "  # the saved catalog read
EXIT_MODEL_TOO_LOW = 3
EXIT_TARGET_MISSED = 4
# The targets, for catalogs of TARGET_PRODUCTS or more, deployed as the program deploys them: peak RSS with
# the search index built, SERVING no later than the seed's server on the same file, and the search index
# ready at SERVING or within half the 9 s it took when products were protobuf objects.
TARGET_PRODUCTS = 1_000_000
TARGET_PEAK_BYTES = 500 * MIB
TARGET_INDEX_READY_S = 9.0 / 2


@dataclass(frozen=True)
class Measurement:
    """One server start on one catalog."""

    products: int
    file_bytes: int
    serving_s: float  # as deployed: the saved catalog beside the file
    index_ready_s: float
    peak_bytes: int
    steady_bytes: int
    seed_serving_s: float = 0.0  # the seed's server on the same file (0: not measured)
    file_serving_s: float = 0.0  # a start without the saved catalog: SERVING from the file alone
    index_built_s: float = 0.0  # and when the index it builds is ready


def measure(
    catalog: Path | None,
    products: int,
    workdir: Path,
    index_line: str = INDEX_READY,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Start the server on `catalog` (None: the embedded one), wait for its index, read its memory.

    `index_line` is the log line that says the index is ready (SAVED_READ: read with the saved catalog).
    The server runs with its telemetry as on Cloud Run, whose SDK is part of its memory and start-up there.
    """
    log = workdir / f"server-{products}.log"
    with bench_server(OURS, catalog, log, {**CLOUD_RUN_TELEMETRY, **(env or {})}) as server:
        serving = server.seconds_to_serving(timeout=300)
        index_ready = server.seconds_to_log(index_line, timeout=300) if catalog is not None else serving
        status = _status(server.process.pid)
    return Measurement(
        products=products,
        file_bytes=catalog.stat().st_size if catalog is not None else 0,
        serving_s=serving,
        index_ready_s=index_ready,
        peak_bytes=status["VmHWM"],
        steady_bytes=status["VmRSS"],
    )


def as_deployed(catalog: Path, products: int, workdir: Path) -> Measurement:
    """A start on `catalog` as the program deploys it: saved beside it, its digest in CATALOG_SHA256."""
    with catalog.open("rb") as file:  # a chunk at a time: the file is 200 MB at a million products
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return measure(catalog, products, workdir, SAVED_READ, {"CATALOG_SHA256": sha256})


def with_file_alone(row: Measurement, catalog: Path, workdir: Path) -> Measurement:
    """`row` with a second start on `catalog` whose saved catalog is moved away: the file loaded."""
    saved = Path(saved_catalog_path(catalog))
    aside = saved.rename(saved.with_name(saved.name + ".aside"))
    try:
        alone = measure(catalog, row.products, workdir)
    finally:
        aside.rename(saved)
    return replace(
        row,
        file_serving_s=alone.serving_s,
        index_built_s=alone.index_ready_s,
        peak_bytes=max(row.peak_bytes, alone.peak_bytes),
    )


def seed_seconds_to_serving(catalog: Path, workdir: Path) -> float:
    """Start the seed's server on `catalog`; seconds until its health service says SERVING."""
    with bench_server(SEED, catalog, workdir / "seed.log") as server:
        return server.seconds_to_serving(timeout=300)


def missed_targets(row: Measurement) -> list[str]:
    """What `row` misses of the targets (none below TARGET_PRODUCTS products)."""
    if row.products < TARGET_PRODUCTS:
        return []
    missed = []
    if row.peak_bytes > TARGET_PEAK_BYTES:
        missed.append(f"peak RSS {row.peak_bytes / MIB:.0f} MiB > {TARGET_PEAK_BYTES / MIB:.0f} MiB")
    if row.serving_s > row.seed_serving_s:
        missed.append(f"SERVING after {row.serving_s:.2f} s, the seed's after {row.seed_serving_s:.2f} s")
    if row.index_ready_s > max(row.serving_s, TARGET_INDEX_READY_S):
        missed.append(f"search index ready at {row.index_ready_s:.2f} s > {TARGET_INDEX_READY_S:.2f} s")
    return [f"{row.products:,} products: {text}" for text in missed]


def _status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) * 1024
    return found


def render(base: Measurement, rows: list[Measurement]) -> tuple[str, bool]:
    """The table (then any missed target), and whether the model covers every measured peak."""
    lines = [
        f"baseline (embedded catalog): peak {base.peak_bytes / MIB:.0f} MiB, "
        f"steady {base.steady_bytes / MIB:.0f} MiB, SERVING in {base.serving_s:.2f} s",
        "",
        "| products | file | SERVING | index ready | seed's SERVING | file alone: SERVING | index built "
        "| peak RSS | steady RSS | per product (steady) | per product (peak) | model (memory_needed) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    covered = True
    for row in rows:
        model = memory_needed(row.products, row.file_bytes)
        covered = covered and model >= row.peak_bytes
        lines.append(
            f"| {row.products:,} | {row.file_bytes / MIB:.1f} MiB | {row.serving_s:.2f} s "
            f"| {row.index_ready_s:.2f} s | {row.seed_serving_s:.2f} s "
            f"| {row.file_serving_s:.2f} s | {row.index_built_s:.2f} s "
            f"| {row.peak_bytes / MIB:.0f} MiB "
            f"| {row.steady_bytes / MIB:.0f} MiB "
            f"| {(row.steady_bytes - base.steady_bytes) / row.products:.0f} B "
            f"| {(row.peak_bytes - base.peak_bytes) / row.products:.0f} B "
            f"| {model / MIB:.0f} MiB{'' if model >= row.peak_bytes else ' (below the peak!)'} |"
        )
    missed = [text for row in rows for text in missed_targets(row)]
    lines.extend(f"target missed: {text}" for text in missed)
    return "\n".join(lines), covered


def main(argv: list[str] | None = None) -> int:
    """Measure each size and print the table; the exit status (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--products", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument("--workdir", help="where catalogs and logs go (default: a new temporary directory)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(size) for size in args.products.split(",")]
    except ValueError:
        parser.error("--products must be whole numbers separated by commas")
    if any(size < 1 for size in sizes):
        parser.error("--products must be at least 1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="catalog-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base = measure(None, 5, workdir)
    rows = []
    for size in sizes:
        catalog = write_catalog(workdir / f"catalog-{size}.json", size)
        saved = Path(save(catalog))  # as the Pulumi program deploys a catalog (docs/catalog.md)
        print(
            f"measuring {size:,} products ({catalog.stat().st_size / MIB:.0f} MiB, "
            f"saved {saved.stat().st_size / MIB:.0f} MiB)",
            file=sys.stderr,
        )
        row = with_file_alone(as_deployed(catalog, size, workdir), catalog, workdir)
        rows.append(replace(row, seed_serving_s=seed_seconds_to_serving(catalog, workdir)))
        catalog.unlink()
        saved.unlink()
    table, covered = render(base, rows)
    print(table)
    if not covered:
        return EXIT_MODEL_TOO_LOW
    return EXIT_TARGET_MISSED if any(missed_targets(row) for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
