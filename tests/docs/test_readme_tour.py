"""The README's first run and tour, run as written: `make run`, then every command block after it.

The only change is the port: the server listens on a free one, not 8080, and the blocks' `localhost:8080`
follow it. The blocks run in one shell with a bare system PATH, as a newcomer's second terminal has, so a
command the README does not first make reachable (grpcurl lives in .venv/bin) fails here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.docs.markdown import REPO_ROOT, Page

README = Page.read(REPO_ROOT / "README.md")
SHELL_BLOCKS = [block.lines for block in README.code_blocks if block.language == "bash"]
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"


def tour_blocks() -> list[tuple[str, ...]]:
    """The blocks after `make run` and before the Deploy section's (which `tests/tools` runs)."""
    deploy = next(i for i, lines in enumerate(SHELL_BLOCKS) if any("pulumi login" in line for line in lines))
    return SHELL_BLOCKS[1:deploy]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served_port() -> Iterator[int]:
    """`make run` as the README's first block writes it, on a free port; stopped with Ctrl-C (SIGINT)."""
    (first,) = SHELL_BLOCKS[0]
    command = first.split("#", 1)[0].split()
    assert command == ["make", "run"]
    port = _free_port()
    server = subprocess.Popen(
        [*command, f"PORT={port}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        lines.append(line)
        if f"products on port {port}" in line or not line:
            break
    try:
        assert f"products on port {port}" in lines[-1], "".join(lines)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.communicate(timeout=30)


def test_the_tour_runs_as_written(served_port: int) -> None:
    script = "\n".join(line for block in tour_blocks() for line in block)
    script = script.replace("localhost:8080", f"localhost:{served_port}")
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = BARE_PATH
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "catalog.ProductCatalog" in result.stdout  # grpcurl list
    assert '"status": "SERVING"' in result.stdout  # grpcurl's health check
    assert "FAIL" not in result.stdout  # the smoke check's lines


def test_the_tour_has_the_blocks_it_promises() -> None:
    blocks = tour_blocks()
    assert blocks[0] == ("make client", ". .venv/bin/activate")
    assert any(line.startswith("grpcurl ") for block in blocks for line in block)
    assert any(line.startswith("python -m client ") for block in blocks for line in block)
