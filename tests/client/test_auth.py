"""--id-token: google-auth's ID token fetch replaced by a stub credential, so no network is touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth import exceptions as auth_exceptions

from client.commands import EXIT_OK, EXIT_RPC_ERROR, EXIT_SETUP, EXIT_USAGE
from tests.client.conftest import Cli
from tests.client.servers import SelfSignedCert, TokenCheck, serve
from tests.client.stubs import SHORT, IdTokenStub


@pytest.fixture
def token_check() -> TokenCheck:
    return TokenCheck(accepted=lambda token: token.startswith("id-"))


@pytest.fixture
def tls_target(cert: SelfSignedCert, token_check: TokenCheck) -> Iterator[str]:
    """A TLS server (certificate for localhost) that wants a bearer token "id-*"."""
    with serve(tls=cert, interceptors=[token_check]) as server:
        yield server.target


def test_id_token_for_the_target_host(
    cli: Cli, id_tokens: IdTokenStub, tls_target: str, ca_file: Path, token_check: TokenCheck
) -> None:
    result = cli("--ca-cert", str(ca_file), "--id-token", tls_target, "get", "1")
    assert result.code == EXIT_OK, result.err
    assert id_tokens.audiences == ["https://localhost"]
    assert token_check.seen == ["Bearer id-1"]


def test_fresh_id_token_is_reused(
    cli: Cli, id_tokens: IdTokenStub, tls_target: str, ca_file: Path, token_check: TokenCheck
) -> None:
    result = cli("--ca-cert", str(ca_file), "--id-token", tls_target, "list", "--page-size", "2", "--all")
    assert result.code == EXIT_OK, result.err
    assert token_check.seen == ["Bearer id-1"] * 3
    assert id_tokens.issued[0].refreshes == 1


def test_expiring_id_token_is_refreshed_by_google_auth(
    cli: Cli, id_tokens: IdTokenStub, tls_target: str, ca_file: Path, token_check: TokenCheck
) -> None:
    id_tokens.lifetime = SHORT
    result = cli("--ca-cert", str(ca_file), "--id-token", tls_target, "list", "--page-size", "2", "--all")
    assert result.code == EXIT_OK, result.err
    # Fetched once up front (to report credential problems early), then refreshed before each of 3 calls.
    assert token_check.seen == ["Bearer id-2", "Bearer id-3", "Bearer id-4"]
    assert len(id_tokens.issued) == 1


def test_custom_audience(cli: Cli, id_tokens: IdTokenStub, tls_target: str, ca_file: Path) -> None:
    result = cli(
        "--ca-cert", str(ca_file), "--id-token", "--audience", "https://catalog.example", tls_target, "health"
    )
    assert result.code == EXIT_OK, result.err
    assert id_tokens.audiences == ["https://catalog.example"]


def test_id_token_over_plaintext_to_localhost(
    cli: Cli, id_tokens: IdTokenStub, token_check: TokenCheck
) -> None:
    with serve(interceptors=[token_check]) as server:
        result = cli("--plaintext", "--id-token", server.target, "search", "desk")
    assert result.code == EXIT_OK, result.err
    assert token_check.seen == ["Bearer id-1"]


def test_no_credentials_is_a_setup_error(cli: Cli, id_tokens: IdTokenStub) -> None:
    no_credentials = "Neither metadata server or valid service account credentials are found."
    id_tokens.error = auth_exceptions.DefaultCredentialsError(no_credentials)  # type: ignore[no-untyped-call]
    result = cli("--id-token", "catalog-abc-uc.a.run.app:443", "get", "1")
    assert result.code == EXIT_SETUP
    assert result.out == ""
    assert result.err.startswith("error: --id-token found no credentials")
    assert "--impersonate-service-account" in result.err
    assert id_tokens.audiences == ["https://catalog-abc-uc.a.run.app"]


def test_refresh_failure_is_a_setup_error(cli: Cli, id_tokens: IdTokenStub) -> None:
    id_tokens.error = auth_exceptions.RefreshError("invalid_grant: account disabled")  # type: ignore[no-untyped-call]
    result = cli("--id-token", "catalog-abc-uc.a.run.app:443", "get", "1")
    assert result.code == EXIT_SETUP
    assert "invalid_grant: account disabled" in result.err


def test_server_rejecting_the_id_token(
    cli: Cli, id_tokens: IdTokenStub, cert: SelfSignedCert, ca_file: Path
) -> None:
    with serve(tls=cert, interceptors=[TokenCheck(accepted=lambda token: False)]) as server:
        result = cli("--ca-cert", str(ca_file), "--id-token", server.target, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err == "UNAUTHENTICATED: missing or invalid bearer token\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--id-token", "--token", "t", "localhost:1", "get", "1"],
        ["--audience", "https://x", "localhost:1", "get", "1"],
    ],
    ids=["id-token-and-token", "audience-without-id-token"],
)
def test_conflicting_auth_options(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv).code == EXIT_USAGE
