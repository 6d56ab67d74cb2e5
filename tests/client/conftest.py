"""Fixtures: the real catalog server on a free port, and the client's main() run with captured output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import google.oauth2.id_token
import pytest

from client.cli import AUTH_ENV_VAR, main
from service.catalog_file import load_catalog
from service.config import Settings
from tests.client.servers import SelfSignedCert, make_self_signed_cert
from tests.client.stubs import IdTokenStub
from tests.servers import in_process


@dataclass(frozen=True)
class Outcome:
    """What one invocation of the client did: exit status, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """Stdout, line by line."""
        return self.out.splitlines()


Cli = Callable[..., Outcome]


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTH_ENV_VAR, raising=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `python -m client ARGS...` in-process and return what it did."""

    def run(*argv: str) -> Outcome:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def seed_target() -> Iterator[str]:
    """`localhost:PORT` of the real server (tests.servers.in_process) with the embedded seed catalog."""
    with in_process(Settings(port=0), load_catalog()) as server:
        yield f"localhost:{server.port}"


@pytest.fixture(scope="session")
def cert() -> SelfSignedCert:
    """A self-signed certificate for localhost, made once per test run."""
    return make_self_signed_cert()


@pytest.fixture
def ca_file(cert: SelfSignedCert, tmp_path: Path) -> Path:
    """`cert` as a PEM file, for --ca-cert."""
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.cert_pem)
    return path


@pytest.fixture
def id_tokens(monkeypatch: pytest.MonkeyPatch) -> IdTokenStub:
    """google.oauth2.id_token.fetch_id_token_credentials replaced by a stub that hands out "id-N" tokens."""
    stub = IdTokenStub()
    monkeypatch.setattr(google.oauth2.id_token, "fetch_id_token_credentials", stub)
    return stub
