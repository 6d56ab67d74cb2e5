"""The command line itself: usage errors (exit 2), --help, TARGET forms, and where TARGET may stand."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from client.cli import (
    EXIT_OK,
    EXIT_USAGE,
    Get,
    Health,
    Invocation,
    ListPages,
    Search,
    Smoke,
    main,
    parse_invocation,
)
from client.target import Target, TargetError, parse_target
from tests.client.conftest import Cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["get", "1"], "a TARGET (host:port) or --stack NAME is required"),
        (["localhost:8080"], "a COMMAND after 'localhost:8080' is required"),
        (["localhost:8080", "fetch", "1"], "invalid choice: 'fetch'"),
        (["localhost:8080", "get"], "required: ID"),
        (["localhost:8080", "search"], "required: QUERY"),
        (["localhost", "get", "1"], "'localhost' is not host:port"),
        (["localhost:http", "get", "1"], "is not host:port"),
        (["localhost:70000", "get", "1"], "is not host:port"),
        (["::1:8080", "get", "1"], "IPv6 address in brackets"),
        (["https://x.run.app/path", "get", "1"], "must be just https://HOST"),
        (["--timeout", "0", "localhost:1", "get", "1"], "must be a positive number"),
        (["--timeout", "soon", "localhost:1", "get", "1"], "not a number"),
        (["localhost:1", "list", "--page-size", "-1"], "must be from 0 to 2147483647"),
        (["localhost:1", "list", "--page-size", "ten"], "not an integer"),
        (["localhost:1", "search", "desk", "--max", "-5"], "must be from 0 to 2147483647"),
        (["--plaintext", "--ca-cert", "ca.pem", "localhost:1", "get", "1"], "not allowed with"),
        (["--token", "", "localhost:1", "get", "1"], "--token is empty"),
        (["localhost:1", "get", "1", "--timeout", "3"], "unrecognized arguments: --timeout 3"),
        (["localhost:1", "health", "extra"], "unrecognized arguments: extra"),
        (["--tim", "3", "localhost:1", "get", "1"], "unrecognized arguments: --tim\n"),
        (["--plaintext", "localhost:1", "--verbose", "get", "1"], "unrecognized arguments: --verbose\n"),
        (["--stack", "dev", "fetch", "1"], "invalid choice: 'fetch'"),
        (["--stack", "dev", "localhost:1", "get", "1"], "not both"),
        (["localhost:1", "--stack", "dev", "get", "1"], "not both"),
        (["localhost:1", "--timeout"], "expected one argument"),
        (["--ca-cert", "ca.pem", "localhost:1", "--plaintext", "get", "1"], "not allowed with"),
        (["localhost:1", "smoke", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_usage_errors(cli: Cli, argv: list[str], message: str) -> None:
    result = cli(*argv)
    assert result.code == EXIT_USAGE
    assert result.out == ""
    assert result.err.startswith("usage: python -m client")
    assert message in result.err


LOCAL = Target("localhost:1", "localhost")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--plaintext", "localhost:1", "get", "1"], Invocation(Get("1"), target=LOCAL, plaintext=True)),
        (["localhost:1", "--plaintext", "get", "1"], Invocation(Get("1"), target=LOCAL, plaintext=True)),
        (
            ["--timeout", "3", "localhost:1", "--json", "get", "1"],
            Invocation(Get("1"), target=LOCAL, timeout=3.0, as_json=True),
        ),
        (
            ["--timeout=3", "--plaintext", "localhost:1", "get", "1", "--json"],
            Invocation(Get("1"), target=LOCAL, plaintext=True, timeout=3.0, as_json=True),
        ),
        # A stack named like a command, and an option value named like one: argparse knows which option
        # takes a value, so neither is taken for the command.
        (["--plaintext", "--stack", "get", "get", "1"], Invocation(Get("1"), stack="get", plaintext=True)),
        (
            ["--plaintext", "--token", "list", "--stack=dev", "get", "1"],
            Invocation(Get("1"), stack="dev", plaintext=True, token="list", token_source="--token"),
        ),
        (["--stack", "dev", "--", "get", "1"], Invocation(Get("1"), stack="dev")),
        (["[::1]:8080", "health"], Invocation(Health(), target=Target("[::1]:8080", "::1"))),
        (
            ["--ca-cert", "ca.pem", "https://x.run.app", "--id-token", "smoke"],
            Invocation(
                Smoke(), target=Target("x.run.app:443", "x.run.app"), ca_cert=Path("ca.pem"), id_token=True
            ),
        ),
        (
            ["--stack", "prod", "--id-token", "--audience", "https://shop.example", "list", "--all"],
            Invocation(ListPages(all=True), stack="prod", id_token=True, audience="https://shop.example"),
        ),
        (
            ["localhost:1", "list", "--category", "books", "--page-size", "7", "--page-token", "t"],
            Invocation(ListPages("books", 7, "t"), target=LOCAL),
        ),
        (
            ["localhost:1", "search", "--max", "3", "--", "-desk"],
            Invocation(Search("-desk", 3), target=LOCAL),
        ),
    ],
)
def test_target_is_found_wherever_it_stands(argv: list[str], expected: Invocation) -> None:
    assert parse_invocation(argv, environ={}) == expected


def test_the_token_comes_from_the_environment_unless_given() -> None:
    from_env = parse_invocation(["localhost:1", "get", "1"], environ={"CATALOG_TOKEN": " t0k "})
    assert (from_env.token, from_env.token_source) == ("t0k", "$CATALOG_TOKEN")
    given = parse_invocation(["--token", "mine", "localhost:1", "get", "1"], environ={"CATALOG_TOKEN": "t0k"})
    assert (given.token, given.token_source) == ("mine", "--token")
    # An ID token replaces the environment's bearer token rather than conflicting with it.
    id_token = parse_invocation(["--id-token", "localhost:1", "get", "1"], environ={"CATALOG_TOKEN": "t0k"})
    assert (id_token.token, id_token.id_token) == (None, True)


def test_an_invocation_is_frozen() -> None:
    invocation = parse_invocation(["localhost:1", "get", "1"], environ={})
    with pytest.raises(AttributeError):
        invocation.timeout = 1.0  # type: ignore[misc]


def test_help_documents_commands_and_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == EXIT_OK
    assert result.out.startswith("usage: python -m client [options] [TARGET] COMMAND ...")
    for text in (
        "get ID",
        "--all",
        "search QUERY",
        "health",
        "smoke",
        "--stack NAME",
        "--id-token",
        "$CATALOG_TOKEN",
        "`audience` output",
    ):
        assert text in result.out
    exit_codes = result.out.split("exit status:")[1]
    for code in "012345":
        assert f"\n  {code}  " in exit_codes


def test_command_help(cli: Cli) -> None:
    result = cli("localhost:1", "list", "--help")
    assert result.code == EXIT_OK
    assert result.out.startswith("usage: python -m client [options] [TARGET] list")
    assert "--page-token" in result.out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:8080", Target("localhost:8080", "localhost")),
        ("127.0.0.1:50051", Target("127.0.0.1:50051", "127.0.0.1")),
        ("[::1]:8080", Target("[::1]:8080", "::1")),
        ("catalog-abc-uc.a.run.app:443", Target("catalog-abc-uc.a.run.app:443", "catalog-abc-uc.a.run.app")),
        # The stack's `uri` or a URL copied from the console: Cloud Run's edge serves gRPC on 443.
        (
            "https://catalog-abc-uc.a.run.app",
            Target("catalog-abc-uc.a.run.app:443", "catalog-abc-uc.a.run.app"),
        ),
        (
            "https://catalog-abc-uc.a.run.app/",
            Target("catalog-abc-uc.a.run.app:443", "catalog-abc-uc.a.run.app"),
        ),
        ("https://localhost:8443", Target("localhost:8443", "localhost")),
    ],
)
def test_target_forms(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


def test_audience_is_the_https_url_of_the_host() -> None:
    assert parse_target("catalog-abc-uc.a.run.app:443").audience == "https://catalog-abc-uc.a.run.app"


@pytest.mark.parametrize("text", ["", ":8080", "host:", "host:0", "http://host", "dns:///host"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--plaintext", "localhost:1", "list", "--page-size", "99999999999"], "--page-size"),
        (["--plaintext", "localhost:1", "search", "x", "--max", "3000000000"], "--max"),
        (["--plaintext", "localhost:1", "get", "\udcff"], "ID is not valid UTF-8"),
        (["--plaintext", "localhost:1", "search", "\udcff"], "QUERY is not valid UTF-8"),
    ],
)
def test_values_protobuf_cannot_carry_are_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_a_token_over_plaintext_to_another_host_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "secret")
    assert main(["--plaintext", "192.0.2.2:8080", "get", "1"]) == 2
    err = capsys.readouterr().err
    assert "$CATALOG_TOKEN over --plaintext is sent only to a loopback address" in err
    assert "192.0.2.2" in err


def test_every_example_in_the_help_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    examples = capsys.readouterr().out.split("examples:\n")[1].splitlines()
    assert len(examples) >= 4
    for example in examples:
        words = shlex.split(example)
        assert words[:3] == ["python", "-m", "client"], example
        parse_invocation(words[3:], environ={})
