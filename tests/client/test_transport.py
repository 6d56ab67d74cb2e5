"""The channel: streaming as delivered, deadlines, retries, unreachable servers, TLS, bearer tokens."""

from __future__ import annotations

import io
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.cli import main
from client.commands import EXIT_OK, EXIT_RPC_ERROR, EXIT_USAGE
from tests.client.conftest import Cli
from tests.client.servers import (
    FailingServicer,
    FlakyServicer,
    GatedSearchServicer,
    SelfSignedCert,
    StallingServicer,
    TokenCheck,
    serve,
)

TOKEN = "s3cret-token"


@pytest.fixture
def token_check() -> TokenCheck:
    return TokenCheck(accepted=lambda token: token == TOKEN)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class _Watched(io.StringIO):
    """Stdout that tells the gated servicer when the first product has been printed."""

    def __init__(self, servicer: GatedSearchServicer) -> None:
        super().__init__()
        self._servicer = servicer

    def write(self, text: str) -> int:
        written = super().write(text)
        if "Standing Desk" in self.getvalue():
            self._servicer.delivered.set()
        return written


def test_search_prints_each_product_as_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server holds back the second product until the first one is on stdout: a client that collected
    # the whole stream before printing would never see it (the server gives up with ABORTED).
    servicer = GatedSearchServicer()
    out = _Watched(servicer)
    monkeypatch.setattr(sys, "stdout", out)
    with serve(servicer) as server:
        code = main(["--plaintext", server.target, "search", "desk"])
    assert code == EXIT_OK
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["3", "5"]


def test_deadline_expires_on_a_stalling_server(cli: Cli) -> None:
    servicer = StallingServicer()
    with serve(servicer) as server:
        started = time.monotonic()
        try:
            result = cli("--plaintext", "--timeout", "0.5", server.target, "get", "1")
        finally:
            servicer.release.set()
        elapsed = time.monotonic() - started
    assert result.code == EXIT_RPC_ERROR
    assert result.err == "DEADLINE_EXCEEDED: Deadline Exceeded\n"
    assert elapsed < 5


def test_unreachable_target_is_unavailable(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("--plaintext", "--timeout", "5", f"localhost:{free_port()}", "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("UNAVAILABLE: ")
    assert len(result.err.splitlines()) == 1
    assert result.out == ""
    assert time.monotonic() - started < 5  # retries back off briefly, then give up before the deadline


def test_unavailable_is_retried_by_the_channel(cli: Cli) -> None:
    servicer = FlakyServicer(failures=2)
    with serve(servicer) as server:
        result = cli("--plaintext", server.target, "get", "1")
    assert result.code == EXIT_OK
    assert servicer.calls == 3


def test_retries_give_up_after_four_attempts(cli: Cli) -> None:
    servicer = FlakyServicer(failures=100)
    with serve(servicer) as server:
        result = cli("--plaintext", server.target, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err == "UNAVAILABLE: warming up\n"
    assert servicer.calls == 4


def test_tls_with_a_trusted_self_signed_cert(cli: Cli, cert: SelfSignedCert, ca_file: Path) -> None:
    with serve(tls=cert) as server:
        got = cli("--ca-cert", str(ca_file), server.target, "get", "1")
        streamed = cli("--ca-cert", str(ca_file), server.target, "search", "desk", "--json")
        health = cli("--ca-cert", str(ca_file), server.target, "health")
    assert got.code == EXIT_OK
    assert "Laptop Pro 16" in got.out
    assert len(streamed.lines) == 2
    assert health.code == EXIT_OK


def test_tls_refuses_an_untrusted_cert(cli: Cli, cert: SelfSignedCert) -> None:
    with serve(tls=cert) as server:
        result = cli("--timeout", "5", server.target, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("UNAVAILABLE: ")
    assert "certificate" in result.err.lower() or "handshake" in result.err.lower()
    assert len(result.err.splitlines()) == 1
    assert "--plaintext" not in result.err  # a TLS server: the hint would mislead


def test_tls_client_against_a_plaintext_server_fails_cleanly(cli: Cli) -> None:
    with serve() as server:
        result = cli("--timeout", "5", server.target, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("UNAVAILABLE: ")
    assert "WRONG_VERSION_NUMBER" in result.err
    assert result.err.endswith(" (is it a local cleartext server? try --plaintext)\n")
    assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize(
    "bad_file_content",
    [None, b"not a certificate"],
    ids=["missing", "not-pem"],
)
def test_unusable_ca_cert_is_a_usage_error(cli: Cli, tmp_path: Path, bad_file_content: bytes | None) -> None:
    path = tmp_path / "ca.pem"
    if bad_file_content is not None:
        path.write_bytes(bad_file_content)
    result = cli("--ca-cert", str(path), "localhost:1", "get", "1")
    assert result.code == EXIT_USAGE
    assert "--ca-cert" in result.err


@pytest.fixture
def guarded(token_check: TokenCheck) -> Iterator[str]:
    """A plaintext server that wants `Bearer TOKEN` on every call."""
    with serve(interceptors=[token_check]) as server:
        yield server.target


def test_bearer_token_over_plaintext_to_localhost(cli: Cli, guarded: str, token_check: TokenCheck) -> None:
    result = cli("--plaintext", "--token", TOKEN, guarded, "list", "--page-size", "2", "--all")
    assert result.code == EXIT_OK
    assert result.lines[-1] == "5 of 5 products"
    assert token_check.seen == [f"Bearer {TOKEN}"] * 3  # every call carries it


def test_bearer_token_on_a_stream_and_health(cli: Cli, guarded: str, token_check: TokenCheck) -> None:
    assert cli("--plaintext", "--token", TOKEN, guarded, "search", "desk").code == EXIT_OK
    assert cli("--plaintext", "--token", TOKEN, guarded, "health").code == EXIT_OK
    assert set(token_check.seen) == {f"Bearer {TOKEN}"}


def test_bearer_token_from_the_environment(
    cli: Cli, guarded: str, token_check: TokenCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", TOKEN)
    result = cli("--plaintext", guarded, "get", "1")
    assert result.code == EXIT_OK
    assert token_check.seen == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize("command", [["get", "1"], ["search", "desk"]])
def test_missing_token_is_unauthenticated(cli: Cli, guarded: str, command: list[str]) -> None:
    result = cli("--plaintext", guarded, *command)
    assert result.code == EXIT_RPC_ERROR
    assert result.err == "UNAUTHENTICATED: missing or invalid bearer token\n"
    assert result.out == ""


def test_wrong_token_is_unauthenticated(cli: Cli, guarded: str) -> None:
    result = cli("--plaintext", "--token", "guess", guarded, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err.startswith("UNAUTHENTICATED: ")


def test_bearer_token_over_tls(
    cli: Cli, cert: SelfSignedCert, ca_file: Path, token_check: TokenCheck
) -> None:
    with serve(tls=cert, interceptors=[token_check]) as server:
        accepted = cli("--ca-cert", str(ca_file), "--token", TOKEN, server.target, "get", "1")
        refused = cli("--ca-cert", str(ca_file), server.target, "get", "1")
    assert accepted.code == EXIT_OK
    assert refused.code == EXIT_RPC_ERROR
    assert refused.err.startswith("UNAUTHENTICATED: ")


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_plaintext_never_sends_a_token_across_the_network(cli: Cli, token_check: TokenCheck) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with serve(interceptors=[token_check], host=address) as server:
        result = cli(
            "--plaintext", "--token", TOKEN, "--timeout", "5", f"{address}:{server.port}", "get", "1"
        )
    assert result.code == EXIT_USAGE
    assert "--token over --plaintext is sent only to a loopback address" in result.err
    assert token_check.seen == []  # refused before any call reached the server


def test_a_multi_line_status_message_is_printed_on_one_line(cli: Cli) -> None:
    servicer = FailingServicer(grpc.StatusCode.PERMISSION_DENIED, "caller lacks run.invoker\nask an admin")
    with serve(servicer) as server:
        result = cli("--plaintext", server.target, "get", "1")
    assert result.code == EXIT_RPC_ERROR
    assert result.err == "PERMISSION_DENIED: caller lacks run.invoker ask an admin\n"
