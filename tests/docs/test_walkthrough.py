"""docs/your-own-service.md's steps work: applied to a copy of this repository, a greeter is served.

Steps 2 to 6 run on a copy (the files `git ls-files` lists): the page's proto, `make proto`'s generator, the
page's servicer and smoke check, the constants deleted, the page's `rm -r`. Then `python -m service` starts
there and answers the greeter, its health names and reflection; the release tool's smoke check passes.
The page's code passes buf, ruff and mypy there. Not run: the Pulumi program (no `pulumi` here), which
follows the derived names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.markdown import REPO_ROOT, Page

PAGE = Page.read(REPO_ROOT / "docs" / "your-own-service.md")
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
START_TIMEOUT_SECONDS = 30


def block(language: str, index: int) -> str:
    """The page's `index`-th fenced block in `language`."""
    return "\n".join([b for b in PAGE.code_blocks if b.language == language][index].lines) + "\n"


def run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def greeter_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with the page's steps 2 to 6 applied."""
    repo = tmp_path_factory.mktemp("greeter")
    files = run(["git", "ls-files"], REPO_ROOT).splitlines()
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    # Step 2: the proto, generated as `make proto` does.
    (repo / "proto" / "catalog" / "catalog.proto").write_text(block("proto", 0), encoding="utf-8")
    run([sys.executable, "-m", "tools.genproto"], repo)
    # Steps 3 and 4: the servicer with SERVED, the smoke check.
    (repo / "service" / "servicer.py").write_text(block("python", 0), encoding="utf-8")
    (repo / "client" / "smoke.py").write_text(block("python", 1), encoding="utf-8")
    # Step 5: the catalog's method constants deleted.
    names = repo / "catalog" / "__init__.py"
    kept, deleted = re.subn(
        r"^(GET_PRODUCT|LIST_PRODUCTS|SEARCH_PRODUCTS)_METHOD: .*\n", "", names.read_text(), flags=re.M
    )
    assert deleted == 3
    names.write_text(kept, encoding="utf-8")
    # Step 6: the page's command, as typed.
    (command,) = [line for line in PAGE.shell_commands() if line.startswith("rm -r ")]
    run(["bash", "-c", command], repo)
    return repo


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def greeter_server(greeter_repo: Path) -> Iterator[str]:
    """`python -m service` in the copy, serving; yields its target. It must stop cleanly on SIGTERM."""
    port = free_port()
    # Without PYTHONSAFEPATH: the working directory, the copy, must come first on sys.path.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSAFEPATH"}
    env |= {"PORT": str(port), "ENABLE_REFLECTION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=greeter_repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "serving the API on port" in line:
                break
        else:
            pytest.fail("the greeter server exited before serving:\n" + "".join(lines))
        yield f"localhost:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=START_TIMEOUT_SECONDS)
    assert process.returncode == 0, "".join(lines) + rest


def grpcurl(target: str, *arguments: str) -> str:
    return run([GRPCURL, "-plaintext", *arguments[:-1], target, arguments[-1]], REPO_ROOT)


def test_the_greeter_answers(greeter_server: str) -> None:
    reply = json.loads(grpcurl(greeter_server, "-d", '{"name": "Ada"}', "greeter.Greeter/SayHello"))
    assert reply == {"message": "Hello, Ada!"}


def test_reflection_lists_the_greeter_and_not_the_catalog(greeter_server: str) -> None:
    services = grpcurl(greeter_server, "list").split()
    assert "greeter.Greeter" in services
    assert "catalog.ProductCatalog" not in services


@pytest.mark.parametrize("name", ["", "greeter.Greeter"])
def test_health_reports_serving_on_the_greeters_names(greeter_server: str, name: str) -> None:
    request = json.dumps({"service": name})
    answer = json.loads(grpcurl(greeter_server, "-d", request, "grpc.health.v1.Health/Check"))
    assert answer == {"status": "SERVING"}


def test_the_release_tools_smoke_check_passes(greeter_repo: Path, greeter_server: str) -> None:
    script = (
        "import grpc, release.gates\n"
        "from client.smoke import run_smoke\n"
        f"results = run_smoke(grpc.insecure_channel({greeter_server!r}), 5.0)\n"
        "print('\\n'.join(map(str, results)))\n"
        "raise SystemExit(0 if results and all(r.passed for r in results) else 1)\n"
    )
    assert "PASS say-hello" in run([sys.executable, "-c", script], greeter_repo)


def test_the_pages_code_passes_the_linters(greeter_repo: Path) -> None:
    """As `make lint` checks them: the proto with buf, the Python with ruff and mypy."""
    buf = str(REPO_ROOT / "node_modules" / ".bin" / "buf")
    run([buf, "lint"], greeter_repo)
    run([buf, "format", "--diff", "--exit-code"], greeter_repo)
    written = ["service/servicer.py", "client/smoke.py"]
    tools = Path(sys.executable).parent
    run([str(tools / "ruff"), "check", *written], greeter_repo)
    run([str(tools / "ruff"), "format", "--check", *written], greeter_repo)
    run([str(tools / "mypy"), "--strict", *written], greeter_repo)


def test_the_names_the_program_uses_are_the_greeters(greeter_repo: Path) -> None:
    script = "from catalog import SERVICE_NAME, UNARY_METHODS; print(SERVICE_NAME, *UNARY_METHODS)"
    assert run([sys.executable, "-c", script], greeter_repo).split() == [
        "greeter.Greeter",
        "/greeter.Greeter/SayHello",
    ]
