"""How the command line reaches a candidate's tag URL: TLS to port 443, with which token for which audience.

The drills pass their own channels (the edge); these open the command's own, with the channel and the
token makers replaced by recorders, so the address, the transport and each token's audience show.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import pytest

from client.channel import Transport
from release import cli, pr, rollout
from release.rollout import Outcome

CANDIDATE_US = "https://candidate---catalog-grpc-123.us-central1.run.app"
CANDIDATE_EU = "https://candidate---catalog-grpc-123.europe-west1.run.app"


@dataclass
class Opened:
    """Stands for the channel and credential makers: what each channel was opened with."""

    channels: list[tuple[str, Transport, Any]] = field(default_factory=list)
    id_tokens: list[str] = field(default_factory=list)
    bearer_tokens: list[str] = field(default_factory=list)

    def open_channel(self, address: str, transport: Transport, credentials: Any) -> str:
        self.channels.append((address, transport, credentials))
        return f"channel to {address}"

    def id_token(self, audience: str) -> str:
        self.id_tokens.append(audience)
        return f"id token for {audience}"

    def bearer(self, token: str) -> str:
        self.bearer_tokens.append(token)
        return f"bearer {token}"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    recorder = Opened()
    monkeypatch.setattr(cli, "open_channel", recorder.open_channel)
    monkeypatch.setattr(cli, "id_token_credentials", recorder.id_token)
    monkeypatch.setattr(cli, "bearer_token_credentials", recorder.bearer)
    return recorder


def options(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"token_env": None, "id_token": False, "audience": None, **given})


def test_a_public_candidate_is_reached_over_tls_without_a_token(opened: Opened) -> None:
    channel: object = cli.tls_channels(options())(CANDIDATE_US)
    assert channel == "channel to candidate---catalog-grpc-123.us-central1.run.app:443"
    ((address, transport, credentials),) = opened.channels
    assert (address, transport, credentials) == (
        "candidate---catalog-grpc-123.us-central1.run.app:443",
        Transport(),
        None,
    )
    assert transport.plaintext is False


def test_each_regions_service_gets_an_id_token_for_its_own_url_made_once(opened: Opened) -> None:
    open_to = cli.tls_channels(options(id_token=True))
    for uri in (CANDIDATE_US, CANDIDATE_EU, CANDIDATE_US):
        open_to(uri)
    assert opened.id_tokens == [
        "https://catalog-grpc-123.us-central1.run.app",
        "https://catalog-grpc-123.europe-west1.run.app",
    ]
    assert [credentials for _, _, credentials in opened.channels] == [
        "id token for https://catalog-grpc-123.us-central1.run.app",
        "id token for https://catalog-grpc-123.europe-west1.run.app",
        "id token for https://catalog-grpc-123.us-central1.run.app",
    ]


def test_the_plans_audience_is_the_one_every_token_is_for(opened: Opened) -> None:
    open_to = cli.tls_channels(options(id_token=True, audience="https://catalog.example.com"))
    open_to(CANDIDATE_US)
    open_to(CANDIDATE_EU)
    assert opened.id_tokens == ["https://catalog.example.com"]


def test_a_token_from_the_environment_is_sent_as_given_without_its_newline(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "  eyJ.token.sig\n")
    cli.tls_channels(options(token_env="CATALOG_TOKEN", id_token=True))(CANDIDATE_US)
    assert opened.bearer_tokens == ["eyJ.token.sig"]
    assert opened.id_tokens == []  # the given token wins over minting one
    assert [credentials for _, _, credentials in opened.channels] == ["bearer eyJ.token.sig"]


@pytest.mark.parametrize(
    ("argv", "token", "message"),
    [
        (
            ["--insecure-api", "--region", "us-central1"],
            "t",
            "--insecure-api needs --api-endpoint or --monitoring-endpoint",
        ),
        (
            ["--token-env", "CATALOG_TOKEN", "--region", "us-central1"],
            " \n",
            "--token-env CATALOG_TOKEN: the variable is unset or empty",
        ),
        (
            ["--token-env", "CATALOG_TOKEN", "--region", "us-central1", "--region", "europe-west1"],
            "t",
            "--token-env CATALOG_TOKEN with several regions (us-central1, europe-west1) needs an audience "
            "every region accepts (a front door's https://DOMAIN, --audience): one token cannot fit each "
            "region's own URL; --id-token mints one per region",
        ),
    ],
)
def test_options_that_cannot_work_together_are_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    token: str,
    message: str,
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", token)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rollback", "--project", "p", "--service", "s", *argv])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m release: error: {message}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--token-env", "CATALOG_TOKEN", "--region", "us-central1"],
        [
            "--token-env",
            "CATALOG_TOKEN",
            "--region",
            "a",
            "--region",
            "b",
            "--audience",
            "https://catalog.example.com",
        ],
        ["--insecure-api", "--api-endpoint", "127.0.0.1:9", "--region", "us-central1"],
        ["--insecure-api", "--monitoring-endpoint", "127.0.0.1:9", "--region", "us-central1"],
    ],
)
def test_the_same_options_with_what_they_need_are_taken(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "t")
    taken: list[int] = []

    def rollback(runs: list[object], log: object) -> Outcome:
        taken.append(len(runs))
        return Outcome(True, "ok")

    monkeypatch.setattr(rollout, "rollback", rollback)
    monkeypatch.setattr(cli, "connect", lambda endpoint, insecure: None)
    assert cli.main(["rollback", "--project", "p", "--service", "s", *argv]) == cli.EXIT_OK
    assert taken == [argv.count("--region")]


PLAN = {"project": "p", "region": "us-central1", "service": "catalog-grpc"}
PR_URL = "https://pr-1---catalog-grpc-123.us-central1.run.app"


def pr_checks_open(monkeypatch: pytest.MonkeyPatch, plan: dict[str, object], *argv: str) -> None:
    """Run pr-deploy from `plan` with the command's own channels; its first check opens the tag URL."""

    def deploy(run: object, number: int, image: str, gates: list[Any], log: object) -> Outcome:
        gates[0].channels(PR_URL)
        return Outcome(True, PR_URL)

    monkeypatch.setattr(pr, "deploy", deploy)
    monkeypatch.setattr(cli, "connect", lambda endpoint, insecure: None)
    given = ["pr-deploy", "--pr", "1", "--image", "r/i@sha256:" + "1" * 64, "--plan", "-", *argv]
    with redirect_stdout(io.StringIO()):
        assert cli.main(given, stdin=io.StringIO(json.dumps(plan))) == cli.EXIT_OK


@pytest.mark.parametrize(
    ("plan", "argv", "tokens"),
    [
        (PLAN, [], ([], [])),  # public: no token
        ({**PLAN, "private": False}, [], ([], [])),
        ({**PLAN, "private": True}, [], (["https://catalog-grpc-123.us-central1.run.app"], [])),
        (
            {**PLAN, "private": True, "audience": "https://catalog.example.com"},
            [],
            (["https://catalog.example.com"], []),
        ),
        (PLAN, ["--id-token"], (["https://catalog-grpc-123.us-central1.run.app"], [])),
        ({**PLAN, "private": True}, ["--token-env", "CATALOG_TOKEN"], ([], ["t"])),  # a given token wins
    ],
)
def test_a_private_plan_sends_an_id_token_for_its_audience(
    opened: Opened,
    monkeypatch: pytest.MonkeyPatch,
    plan: dict[str, object],
    argv: list[str],
    tokens: tuple[list[str], list[str]],
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "t")
    pr_checks_open(monkeypatch, plan, *argv)
    assert (opened.id_tokens, opened.bearer_tokens) == tokens
    assert [address for address, _, _ in opened.channels] == [
        "pr-1---catalog-grpc-123.us-central1.run.app:443"
    ]


def test_without_an_argument_list_the_command_reads_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[int] = []

    def remove(run: object, number: int) -> Outcome:
        removed.append(number)
        return Outcome(True, "removed")

    monkeypatch.setattr(pr, "remove", remove)
    monkeypatch.setattr(cli, "connect", lambda endpoint, insecure: None)
    argv = [
        "python -m release",
        "pr-remove",
        "--pr",
        "8",
        "--project",
        "p",
        "--service",
        "s",
        "--region",
        "r",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with redirect_stdout(io.StringIO()):
        assert cli.main() == cli.EXIT_OK
    assert removed == [8]
