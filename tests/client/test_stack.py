"""--stack NAME: the target comes from `pulumi stack output target`, here a stand-in script on PATH."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from client.cli import EXIT_OK, EXIT_SETUP, EXIT_USAGE
from tests.client.conftest import Cli
from tests.client.servers import SelfSignedCert, TokenCheck, serve
from tests.client.stubs import IdTokenStub

FakePulumi = Callable[..., Path]


@pytest.fixture
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    """Put a `pulumi` on PATH (and nothing else) that prints `stdout`, `stderr` and exits with `status`.

    Returns the file where it records its arguments and working directory.
    """

    def install(stdout: str = "", stderr: str = "", status: int = 0) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        record = tmp_path / "pulumi-call"
        script = bin_dir / "pulumi"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$PWD" > {shlex.quote(str(record))}\n'
            f'echo "$*" >> {shlex.quote(str(record))}\n'
            f"printf '%s' {shlex.quote(stdout)}\n"
            f"printf '%s' {shlex.quote(stderr)} >&2\n"
            f"exit {status}\n",
            encoding="utf-8",
        )
        script.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir))
        return record

    return install


def test_target_from_the_stack(cli: Cli, fake_pulumi: FakePulumi, seed_target: str) -> None:
    record = fake_pulumi(stdout=f"{seed_target}\n")
    result = cli("--stack", "dev", "--plaintext", "get", "1")
    assert result.code == EXIT_OK, result.err
    assert "Laptop Pro 16" in result.out
    workdir, arguments = record.read_text(encoding="utf-8").splitlines()
    assert arguments == "stack output target --stack dev"
    # Run beside Pulumi.yaml when the checkout has one, so the stack is found from any directory.
    root = Path(__file__).resolve().parents[2]
    if (root / "Pulumi.yaml").is_file():
        assert Path(workdir).resolve() == root


def test_stack_named_like_a_command(cli: Cli, fake_pulumi: FakePulumi, seed_target: str) -> None:
    record = fake_pulumi(stdout=seed_target)
    result = cli("--plaintext", "--stack", "list", "list", "--json")
    assert result.code == EXIT_OK, result.err
    assert record.read_text(encoding="utf-8").splitlines()[1] == "stack output target --stack list"


def test_stack_with_id_token_uses_the_stack_host_as_audience(
    cli: Cli, fake_pulumi: FakePulumi, id_tokens: IdTokenStub, cert: SelfSignedCert, ca_file: Path
) -> None:
    token_check = TokenCheck(accepted=lambda token: token == "id-1")
    with serve(tls=cert, interceptors=[token_check]) as server:
        fake_pulumi(stdout=f"{server.target}\n")
        result = cli("--stack", "prod", "--id-token", "--ca-cert", str(ca_file), "health")
    assert result.code == EXIT_OK, result.err
    assert id_tokens.audiences == ["https://localhost"]
    assert token_check.seen == ["Bearer id-1", "Bearer id-1"]


def test_missing_pulumi_cli(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err.startswith("error: --stack needs the pulumi CLI on PATH")
    assert len(result.err.splitlines()) == 1


def test_stack_without_a_target_output(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(stderr="error: current stack does not have output property 'target'\n", status=255)
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err == (
        "error: `pulumi stack output target --stack dev` failed: "
        "error: current stack does not have output property 'target'\n"
    )


def test_unknown_stack(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(stderr="error: no stack named 'nope' found\n", status=255)
    result = cli("--stack", "nope", "get", "1")
    assert result.code == EXIT_SETUP
    assert "no stack named 'nope' found" in result.err


def test_stack_printing_nothing(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(stdout="\n")
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert "has no `target` output" in result.err


def test_stack_printing_something_else(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(stdout="catalog.example.com\n")
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err.startswith("error: stack 'dev': target 'catalog.example.com' is not host:port")


def test_target_and_stack_together_is_a_usage_error(cli: Cli) -> None:
    result = cli("--stack", "dev", "localhost:8080", "get", "1")
    assert result.code == EXIT_USAGE
    assert "not both" in result.err
