"""Test helpers: synthetic catalogs, catalog files, and `python -m service` as a real process."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from catalog import catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from service.config import Settings
from service.server import run_server
from service.store import CatalogStore

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on port (\d+)")


def make_products(count: int, categories: Sequence[str] = ("tools", "toys", "books")) -> list[Product]:
    """`count` valid products, categories in rotation, ids "p0".."p{count-1}"."""
    return [
        Product(
            id=f"p{i}",
            name=f"Item {i}",
            description=f"Description of item {i}",
            price=float(i),
            category=categories[i % len(categories)],
            in_stock=i % 2 == 0,
        )
        for i in range(count)
    ]


@contextmanager
def serving(store: CatalogStore) -> Iterator[catalog_pb2_grpc.ProductCatalogStub]:
    """A catalog stub to an in-process server over `store` on a free port; both close on exit."""
    with (
        run_server(Settings(port=0), store) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        yield catalog_pb2_grpc.ProductCatalogStub(channel)


def write_catalog(path: Path, products: Sequence[Mapping[str, Any]]) -> Path:
    """Write a catalog file in the server's format and return its path."""
    path.write_text(json.dumps({"products": list(products)}), encoding="utf-8")
    return path


class ServerProcess:
    """`python -m service` in a subprocess, its JSON log lines collected as they arrive."""

    def __init__(self, env: Mapping[str, str]) -> None:
        full_env = {**os.environ, "PORT": "0", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._arrivals: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._arrivals.put(line)
        self._arrivals.put(None)

    def wait_for_log(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """Block until a log line matches `pattern`; fail if the process ends or time runs out first."""
        compiled = re.compile(pattern)
        for line in list(self.lines):
            if match := compiled.search(line):
                return match
        while True:
            arrival = self._arrivals.get(timeout=timeout)
            if arrival is None:
                raise AssertionError(f"server exited before logging {pattern!r}:\n" + "\n".join(self.lines))
            if match := compiled.search(arrival):
                return match

    def wait_serving(self) -> int:
        """The bound port, once the catalog is served."""
        port = int(self.wait_for_log(_LISTENING.pattern).group(1))
        self.wait_for_log("serving")
        return port

    def records(self) -> list[dict[str, Any]]:
        """Every log line, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.lines if line.strip()]

    def stop(self) -> None:
        """Kill the process if it is still running (test clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def run_to_exit(env: Mapping[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run `python -m service` with `env` until it exits by itself (start-up failures)."""
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={**os.environ, "PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
