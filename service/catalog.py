"""The catalog-file checker: `python -m service.catalog check FILE` loads a file as the server would.

Not to be confused with the top-level `catalog` package, which is the generated gRPC API. This module
is for people and CI (and the Pulumi program, which runs it before it ships a file):

    python -m service.catalog check products.json          # exit 0: one summary line
    python -m service.catalog check products.json --json   # the same as one JSON object
    python -m service.catalog save products.json           # products.json.saved-v3, beside it: read at start

It exits 1 with the server's own message (the file, `products[3] (id '42')`, the field) for a file the
server would refuse, because it is the server's loader (service.catalog_file) that reads it. Like that
module, it imports protobuf but not grpc.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import BinaryIO

from service import saved_catalog
from service.catalog_file import CatalogError, CatalogUnreadableError, load_catalog
from service.saved_catalog import SAVED_SUFFIX, saved_catalog_path
from service.store import CatalogStore

MIB = 2**20
# What the server needs to load a catalog, from `python -m bench.memory` (docs/catalog.md has the table).
# The peak is from the file alone (no saved catalog beside it, or not this file's), once the search index
# is built: the products serialized in one buffer, their lower-cased text in another, and the index's
# arrays (the file is read a window at a time, so loading peaks lower). The saved catalog peaks lower.
# It grows with the number of products (offsets, id and category entries, postings) and with their text;
# the model takes whichever of the two measured rates gives more, so a catalog of long descriptions is
# not judged by the benchmark's short ones.
BASELINE_BYTES = 48 * MIB  # the server on the embedded catalog: 41 MiB measured
PEAK_BYTES_PER_PRODUCT = 600  # measured 402 (1M products) to 494 (100k); at 10k, 1553 of mostly fixed cost
PEAK_BYTES_PER_FILE_BYTE = 3.5  # measured 1.7 to 2.4 (~210 bytes of JSON a product), 2.9 (2.7 KB each)
# Cloud Storage FUSE runs inside the instance's memory: a 32 MB stat cache, a 4 MiB type cache and a
# 1 MiB buffer per file read (cloud.google.com/run/docs/configuring/services/cloud-storage-volume-mounts).
FUSE_BYTES = 40 * MIB
# Headroom over the model for what it does not see: calls in flight, allocator fragmentation.
MARGIN = 1.25


def memory_needed(products: int, file_bytes: int) -> int:
    """Bytes of instance memory a catalog of this size needs to load and serve, with the margin."""
    peak = max(products * PEAK_BYTES_PER_PRODUCT, file_bytes * PEAK_BYTES_PER_FILE_BYTE)
    return int((BASELINE_BYTES + FUSE_BYTES + peak) * MARGIN)


@dataclass(frozen=True)
class CatalogSummary:
    """What a valid catalog file holds."""

    path: str
    products: int
    categories: int
    bytes: int
    sha256: str
    memory_needed: int

    def line(self) -> str:
        """The one summary line a person reads."""
        return (
            f"{self.path}: OK, {self.products} products, {self.categories} categories, {self.bytes} bytes, "
            f"sha256 {self.sha256}; needs about {self.memory_needed // MIB}Mi of memory to serve"
        )


class CheckedCatalog:
    """A catalog file loaded by the server's own loader: its summary, and what `save` writes from it.

    Checking and saving a file take one parse between them: a preview of a changed catalog of a million
    products parses it once (3 s) where checking, then saving, parsed it twice.
    """

    def __init__(self, summary: CatalogSummary, store: CatalogStore) -> None:
        self.summary = summary
        self._store = store

    def save(self, target: str | os.PathLike[str]) -> str:
        """Save this catalog ready to serve in `target` (kept if it holds this catalog already); return it."""
        target = os.fspath(target)
        if not _already_saved(target, self._store.fingerprint):
            _write_saved(self._store, target, self.summary.path)
        return target


def load_checked(path: str, *, root: str | os.PathLike[str] = "") -> CheckedCatalog:
    """Load `path` as the server does (without the search index); raise CatalogError as it would.

    `path` is relative to `root`; errors and the summary name it as given, not joined to `root`.
    """
    file = os.path.join(root, path)
    store = load_catalog(file, search_index="never", name=path, saved=False)
    # The store's fingerprint is the SHA-256 of the bytes it parsed, so the size is read from the same
    # file right after: a file replaced meanwhile is caught by the server's CATALOG_SHA256 check.
    size = os.path.getsize(file)
    summary = CatalogSummary(
        path=path,
        products=len(store),
        categories=len(store.categories),
        bytes=size,
        sha256=store.fingerprint.hex(),
        memory_needed=memory_needed(len(store), size),
    )
    return CheckedCatalog(summary, store)


def check(path: str, *, root: str | os.PathLike[str] = "") -> CatalogSummary:
    """The summary of `path` loaded as the server does (`load_checked`); CatalogError as it would refuse."""
    return load_checked(path, root=root).summary


def save(path: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> str:
    """Save the catalog file at `path` ready to serve (loaded as `check` does, then indexed); return where.

    Into `target`, or beside the file (`saved_catalog_path`), where a server started on the file reads it
    instead of parsing the file and building its search index (service.catalog_file.load_catalog). A
    catalog already saved there from these very bytes is kept as it is: saving again would write the same.
    """
    target = os.fspath(saved_catalog_path(path) if target is None else target)
    # Checked against the file's digest, not a loaded catalog: saving an unchanged catalog of a million
    # products then hashes the file (0.2 s) instead of parsing it (3 s).
    try:
        with open(path, "rb") as catalog_file:
            fingerprint = hashlib.file_digest(catalog_file, "sha256").digest()
    except OSError as error:
        raise CatalogUnreadableError(f"{path}: cannot read: {error}") from None
    if _already_saved(target, fingerprint):
        return target
    store = load_catalog(path, search_index="never", saved=False)
    if store.fingerprint != fingerprint:
        raise CatalogError(f"{path}: the file changed while it was saved; save it again")
    _write_saved(store, target, os.fspath(path))
    return target


def _already_saved(target: str, fingerprint: bytes) -> bool:
    """Whether `target` is a whole saved catalog of the catalog file of SHA-256 `fingerprint`."""
    try:
        with open(target, "rb") as file:
            return saved_catalog.holds(file, fingerprint)
    except OSError:
        return False  # none yet (or unreadable): write it


def _write_saved(store: CatalogStore, target: str, path: str) -> None:
    """Build `store`'s search index and write it all to `target`, as `saved_catalog.save` lays it out."""
    records, index = store.parts()
    try:
        _write_aside(target, lambda file: saved_catalog.save(file, records, index, store.fingerprint))
    except OSError as error:
        raise CatalogError(f"{path}: cannot save it in {target}: {error}") from None


def _write_aside(target: str, write: Callable[[BinaryIO], None]) -> None:
    """`write` a file aside, then rename it `target`: a reader never sees half a file."""
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(partial, 0o644)  # as the catalog file is: readable by a server running as another user
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 valid, 1 refused, 2 usage)."""
    parser = argparse.ArgumentParser(
        prog="python -m service.catalog", description="Check catalog files as the server loads them."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check_command = commands.add_parser("check", help="load FILE as the server would; exit 1 if it refuses")
    check_command.add_argument("file", help="the catalog file (JSON, the server's CATALOG_PATH format)")
    check_command.add_argument("--json", action="store_true", help="print one JSON object instead")
    save_command = commands.add_parser(
        "save", help=f"save FILE ready to serve as FILE{SAVED_SUFFIX}, which servers read instead of FILE"
    )
    save_command.add_argument("file", help="the catalog file (JSON, the server's CATALOG_PATH format)")
    save_command.set_defaults(json=False)
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            print(f"{args.file}: saved ready to serve in {save(args.file)}")
            return 0
        summary = check(args.file)
    except CatalogError as error:
        if args.json:
            print(json.dumps({"ok": False, "error": str(error)}))
        else:
            print(error, file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, **asdict(summary)}) if args.json else summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
