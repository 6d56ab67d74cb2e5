"""--stack NAME: target and audience from `pulumi stack output --json`, here a stand-in script on PATH."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from client.commands import EXIT_OK, EXIT_SETUP, EXIT_USAGE
from client.target import target_from_stack
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


def outputs(**values: object) -> str:
    """What `pulumi stack output --json` prints for a stack with these outputs."""
    return json.dumps(values, indent=4) + "\n"


def test_target_from_the_stack(cli: Cli, fake_pulumi: FakePulumi, seed_target: str) -> None:
    record = fake_pulumi(stdout=outputs(target=seed_target, uri="https://unused.example"))
    result = cli("--stack", "dev", "--plaintext", "get", "1")
    assert result.code == EXIT_OK, result.err
    assert "Laptop Pro 16" in result.out
    workdir, arguments = record.read_text(encoding="utf-8").splitlines()
    assert arguments == "stack output --json --stack dev"
    # Run beside Pulumi.yaml when the checkout has one, so the stack is found from any directory.
    root = Path(__file__).resolve().parents[2]
    if (root / "Pulumi.yaml").is_file():
        assert Path(workdir).resolve() == root


def test_stack_named_like_a_command(cli: Cli, fake_pulumi: FakePulumi, seed_target: str) -> None:
    record = fake_pulumi(stdout=outputs(target=seed_target))
    result = cli("--plaintext", "--stack", "list", "list", "--json")
    assert result.code == EXIT_OK, result.err
    assert record.read_text(encoding="utf-8").splitlines()[1] == "stack output --json --stack list"


def test_stack_with_id_token_uses_the_stack_host_as_audience(
    cli: Cli, fake_pulumi: FakePulumi, id_tokens: IdTokenStub, cert: SelfSignedCert, ca_file: Path
) -> None:
    token_check = TokenCheck(accepted=lambda token: token == "id-1")
    with serve(tls=cert, interceptors=[token_check]) as server:
        fake_pulumi(stdout=outputs(target=server.target))
        result = cli("--stack", "prod", "--id-token", "--ca-cert", str(ca_file), "health")
    assert result.code == EXIT_OK, result.err
    assert id_tokens.audiences == ["https://localhost"]
    assert token_check.seen == ["Bearer id-1", "Bearer id-1"]


def test_stack_audience_output_is_the_id_token_audience(
    cli: Cli, fake_pulumi: FakePulumi, id_tokens: IdTokenStub, cert: SelfSignedCert, ca_file: Path
) -> None:
    token_check = TokenCheck(accepted=lambda token: token == "id-1")
    with serve(tls=cert, interceptors=[token_check]) as server:
        fake_pulumi(stdout=outputs(target=server.target, audience="https://shop.example.com"))
        result = cli("--stack", "prod", "--id-token", "--ca-cert", str(ca_file), "get", "1")
        overridden = cli(
            "--stack",
            "prod",
            "--id-token",
            "--audience",
            "https://other.example",
            "--ca-cert",
            str(ca_file),
            "health",
        )
    assert result.code == EXIT_OK, result.err
    assert overridden.code == EXIT_OK, overridden.err
    # The stack's audience, then --audience over it.
    assert id_tokens.audiences == ["https://shop.example.com", "https://other.example"]


@pytest.mark.parametrize(
    ("stack_outputs", "audience"),
    [
        # A front door: the target is the domain, and without an `audience` output so is the audience.
        ({"target": "shop.example.com:443"}, "https://shop.example.com"),
        (
            {"target": "shop.example.com:443", "audience": "https://shop.example.com"},
            "https://shop.example.com",
        ),
        (
            {"target": "catalog-abc-uc.a.run.app:443", "audience": "https://api.example"},
            "https://api.example",
        ),
        ({"target": "https://catalog-abc-uc.a.run.app"}, "https://catalog-abc-uc.a.run.app"),
    ],
)
def test_audience_from_the_stack(
    fake_pulumi: FakePulumi, stack_outputs: dict[str, str], audience: str
) -> None:
    fake_pulumi(stdout=outputs(**stack_outputs))
    assert target_from_stack("prod").audience == audience


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("\n", "`pulumi stack output --json --stack dev` printed no JSON object"),
        ("catalog.example.com\n", "`pulumi stack output --json --stack dev` printed no JSON object"),
        ('["catalog.example.com:443"]', "`pulumi stack output --json --stack dev` printed no JSON object of"),
        (outputs(), "stack 'dev' has no `target` output"),
        (outputs(target=""), "stack 'dev' has no `target` output"),
        (outputs(target=443), "stack 'dev' has no `target` output"),
        (outputs(target="catalog.example.com"), "stack 'dev': target 'catalog.example.com' is not host:port"),
        (outputs(target="localhost:1", audience=""), "stack 'dev': its `audience` output '' is not"),
        (outputs(target="localhost:1", audience=["x"]), "stack 'dev': its `audience` output ['x'] is not"),
    ],
)
def test_unusable_stack_outputs(cli: Cli, fake_pulumi: FakePulumi, stdout: str, message: str) -> None:
    fake_pulumi(stdout=stdout)
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err.startswith(f"error: {message}"), result.err
    assert len(result.err.splitlines()) == 1


def test_missing_pulumi_cli(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err.startswith("error: --stack needs the pulumi CLI on PATH")
    assert len(result.err.splitlines()) == 1


def test_failing_stack_lookup(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(
        stderr="warning: A new version of Pulumi is available\nerror: no stack selected\n", status=255
    )
    result = cli("--stack", "dev", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.err == "error: `pulumi stack output --json --stack dev` failed: error: no stack selected\n"


def test_unknown_stack(cli: Cli, fake_pulumi: FakePulumi) -> None:
    fake_pulumi(stderr="error: no stack named 'nope' found\n", status=255)
    result = cli("--stack", "nope", "get", "1")
    assert result.code == EXIT_SETUP
    assert "no stack named 'nope' found" in result.err


def test_target_and_stack_together_is_a_usage_error(cli: Cli) -> None:
    result = cli("--stack", "dev", "localhost:8080", "get", "1")
    assert result.code == EXIT_USAGE
    assert "not both" in result.err
