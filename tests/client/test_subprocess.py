"""`python -m client` as a real process: exit statuses, stdout, one clean line (no traceback) on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from client.commands import EXIT_OK, EXIT_RPC_ERROR, EXIT_SETUP, EXIT_SMOKE_FAILED, EXIT_USAGE
from service.config import Settings
from tests.client.servers import SelfSignedCert, many_products, serve
from tests.servers import in_process

ROOT = Path(__file__).resolve().parents[2]


def run_client(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("GRPC_VERBOSITY", "CATALOG_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "client", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_success(seed_target: str) -> None:
    result = run_client("--plaintext", seed_target, "search", "desk", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == ["Standing Desk", "Desk Lamp"]
    assert result.stderr == ""


def test_smoke_exit_statuses(seed_target: str) -> None:
    passed = run_client("--plaintext", seed_target, "smoke")
    assert passed.returncode == EXIT_OK, passed.stdout
    assert passed.stdout.splitlines()[-1] == "smoke: all 7 checks passed"
    with serve(health_names=("",)) as server:
        failed = run_client("--plaintext", server.target, "smoke")
    assert failed.returncode == EXIT_SMOKE_FAILED
    assert failed.stdout.splitlines()[-1] == "smoke: 1 of 7 checks failed: health"
    assert failed.stderr == ""


def test_not_found_is_one_line(seed_target: str) -> None:
    result = run_client("--plaintext", seed_target, "get", "nope")
    assert result.returncode == EXIT_RPC_ERROR
    assert result.stdout == ""
    assert result.stderr == "NOT_FOUND: product nope not found\n"


def test_untrusted_tls_is_one_line_without_grpc_core_logs(cert: SelfSignedCert) -> None:
    with serve(tls=cert) as server:
        result = run_client("--timeout", "5", server.target, "get", "1")
    assert result.returncode == EXIT_RPC_ERROR
    assert result.stderr.startswith("UNAVAILABLE: ")
    assert len(result.stderr.splitlines()) == 1


def test_usage_error() -> None:
    result = run_client("localhost:1", "get")
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("error: the following arguments are required: ID")


def test_setup_error(tmp_path: Path) -> None:
    result = run_client("--ca-cert", str(tmp_path / "missing.pem"), "localhost:1", "get", "1")
    assert result.returncode == EXIT_USAGE
    result = subprocess.run(
        [sys.executable, "-m", "client", "--stack", "dev", "get", "1"],
        cwd=ROOT,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_SETUP
    assert result.stderr.startswith("error: --stack needs the pulumi CLI")
    assert "Traceback" not in result.stderr


def test_output_cut_short_by_the_reader() -> None:
    # `python -m client ... | head -1`: the reader leaves early; the client stops without a traceback.
    with in_process(Settings(port=0), many_products(5000)) as server:
        target = f"localhost:{server.port}"
        command = [
            sys.executable,
            "-m",
            "client",
            "--plaintext",
            target,
            "list",
            "--page-size",
            "1000",
            "--all",
        ]
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            first = process.stdout.readline()
            process.stdout.close()  # 5000 lines do not fit in the pipe: the client's next writes fail
            errors = process.stderr.read().decode()
            status = process.wait(timeout=60)
    assert first.startswith(b"ID")
    assert "Traceback" not in errors
    assert status == EXIT_OK
