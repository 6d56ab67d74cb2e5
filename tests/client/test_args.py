"""The command line itself: usage errors (exit 2), --help, TARGET forms, and where TARGET may stand."""

from __future__ import annotations

import pytest

from client.cli import (
    _FLAG_OPTIONS,
    _VALUE_OPTIONS,
    EXIT_OK,
    EXIT_USAGE,
    _target_before_command,
    build_parser,
    main,
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
    ],
)
def test_usage_errors(cli: Cli, argv: list[str], message: str) -> None:
    result = cli(*argv)
    assert result.code == EXIT_USAGE
    assert result.out == ""
    assert result.err.startswith("usage: python -m client")
    assert message in result.err


def test_options_before_the_command_are_all_known_to_the_scan() -> None:
    parser = build_parser()
    # The scan that finds TARGET must know every global option and whether it takes a value.
    for action in parser._actions:
        for option in action.option_strings:
            assert option in (_VALUE_OPTIONS if action.nargs is None else _FLAG_OPTIONS), option
    assert len(_VALUE_OPTIONS | _FLAG_OPTIONS) == sum(len(a.option_strings) for a in parser._actions)


@pytest.mark.parametrize(
    "argv",
    [
        ["--plaintext", "localhost:1", "get", "1"],
        ["localhost:1", "--plaintext", "get", "1"],
        ["--timeout", "3", "localhost:1", "--json", "get", "1"],
        ["--timeout=3", "--plaintext", "localhost:1", "get", "1"],
        ["--plaintext", "--stack", "get", "get", "1"],
        ["--plaintext", "--token", "list", "--stack=dev", "get", "1"],
    ],
)
def test_target_is_found_wherever_it_stands(argv: list[str]) -> None:
    args = build_parser().parse_args(_target_before_command(build_parser(), argv))
    assert args.command == "get"
    assert args.id == "1"
    assert args.target in ("localhost:1", "")


def test_help_documents_commands_and_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == EXIT_OK
    assert result.out.startswith("usage: python -m client [options] [TARGET] COMMAND ...")
    for text in ("get ID", "--all", "search QUERY", "health", "--stack NAME", "--id-token", "$CATALOG_TOKEN"):
        assert text in result.out
    exit_codes = result.out.split("exit status:")[1]
    for code in "01234":
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
