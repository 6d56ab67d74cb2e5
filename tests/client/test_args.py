"""The command line itself: usage errors (exit 2), --help, TARGET forms, and where TARGET may stand."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import client.cli
from client.cli import Invocation, global_args, main, parse_invocation
from client.commands import COMMANDS, EXIT_OK, EXIT_USAGE, Arg, Call, Command, arg
from client.target import Target, TargetError, parse_target
from tests.client.conftest import Cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: TARGET, COMMAND"),
        (["get", "1"], "a TARGET (host:port) or --stack NAME is required"),
        (["localhost:8080"], "the following arguments are required: COMMAND"),
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
        (
            ["--plaintext", "--ca-cert", "ca.pem", "localhost:1", "get", "1"],
            "argument --ca-cert: not allowed with argument --plaintext",
        ),
        (["--id-token", "--token", "t", "localhost:1", "get", "1"], "argument --token: not allowed with"),
        (["--audience", "https://x", "localhost:1", "get", "1"], "--audience goes with --id-token"),
        (["--token", "", "localhost:1", "get", "1"], "--token is empty"),
        (["localhost:1", "health", "extra"], "unrecognized arguments: extra"),
        (["--tim", "3", "localhost:1", "get", "1"], "unrecognized arguments: --tim\n"),
        (["--plaintext", "localhost:1", "--verbose", "get", "1"], "unrecognized arguments: --verbose\n"),
        (["--stack", "dev", "fetch", "1"], "invalid choice: 'fetch'"),
        (["--stack", "dev", "localhost:1", "get", "1"], "not both"),
        (["localhost:1", "--stack", "dev", "get", "1"], "not both"),
        (["localhost:1", "--timeout"], "expected one argument"),
        # argparse sees every global option in one pass, on either side of TARGET.
        (
            ["--ca-cert", "ca.pem", "localhost:1", "--plaintext", "get", "1"],
            "argument --plaintext: not allowed with argument --ca-cert",
        ),
        (["--token", "t", "localhost:1", "--id-token", "get", "1"], "argument --id-token: not allowed with"),
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
LIST_DEFAULTS = {"category": "", "page_size": 0, "page_token": "", "all_pages": False}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--plaintext", "localhost:1", "get", "1"],
            Invocation("get", {"product_id": "1"}, target=LOCAL, plaintext=True),
        ),
        (
            ["localhost:1", "--plaintext", "get", "1"],
            Invocation("get", {"product_id": "1"}, target=LOCAL, plaintext=True),
        ),
        (
            ["--timeout", "3", "localhost:1", "--json", "get", "1"],
            Invocation("get", {"product_id": "1"}, target=LOCAL, timeout=3.0, as_json=True),
        ),
        (
            ["--timeout=3", "--plaintext", "localhost:1", "get", "1", "--json"],
            Invocation("get", {"product_id": "1"}, target=LOCAL, plaintext=True, timeout=3.0, as_json=True),
        ),
        # A stack named like a command, and an option value named like one: argparse knows which option
        # takes a value, so neither is taken for the command.
        (
            ["--plaintext", "--stack", "get", "get", "1"],
            Invocation("get", {"product_id": "1"}, stack="get", plaintext=True),
        ),
        (
            ["--plaintext", "--token", "list", "--stack=dev", "get", "1"],
            Invocation(
                "get", {"product_id": "1"}, stack="dev", plaintext=True, token="list", token_source="--token"
            ),
        ),
        (["--stack", "dev", "--", "get", "1"], Invocation("get", {"product_id": "1"}, stack="dev")),
        (["[::1]:8080", "health"], Invocation("health", {}, target=Target("[::1]:8080", "::1"))),
        (
            ["--ca-cert", "ca.pem", "https://x.run.app", "--id-token", "smoke"],
            Invocation(
                "smoke",
                {},
                target=Target("x.run.app:443", "x.run.app"),
                ca_cert=Path("ca.pem"),
                id_token=True,
            ),
        ),
        (
            ["--stack", "prod", "--id-token", "--audience", "https://shop.example", "list", "--all"],
            Invocation(
                "list",
                {**LIST_DEFAULTS, "all_pages": True},
                stack="prod",
                id_token=True,
                audience="https://shop.example",
            ),
        ),
        (
            ["localhost:1", "list", "--category", "books", "--page-size", "7", "--page-token", "t"],
            Invocation(
                "list",
                {**LIST_DEFAULTS, "category": "books", "page_size": 7, "page_token": "t"},
                target=LOCAL,
            ),
        ),
        (
            ["localhost:1", "search", "--max", "3", "--", "-desk"],
            Invocation("search", {"query": "-desk", "max_results": 3}, target=LOCAL),
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
    with pytest.raises(TypeError):
        invocation.arguments["product_id"] = "2"  # type: ignore[index]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["localhost:1", "get", "1", "--timeout", "3"],
            "error: --timeout goes before the command: python -m client --timeout SECONDS ... get ID\n",
        ),
        (["localhost:1", "search", "desk", "--stack", "dev"], "--stack goes before the command"),
        (["localhost:1", "health", "--plaintext"], "--plaintext goes before the command"),
        (
            ["localhost:1", "--max", "3", "search", "desk"],
            "error: --max is an option of search: python -m client ... search QUERY --max N\n",
        ),
        (["--category=books", "localhost:1", "list"], "--category is an option of list: "),
        (["--stack", "dev", "--all", "list"], "--all is an option of list: python -m client ... list --all"),
        (
            ["localhost:1", "list", "--max", "3"],
            "error: --max is an option of search, not of list: python -m client ... search QUERY --max N\n",
        ),
        (["localhost:1", "search", "desk", "--all"], "--all is an option of list, not of search"),
    ],
)
def test_an_option_in_the_wrong_place_says_where_it_goes(cli: Cli, argv: list[str], message: str) -> None:
    result = cli(*argv)
    assert result.code == EXIT_USAGE
    assert message in result.err
    assert "unrecognized arguments" not in result.err


# Every option of the table, placed where it does not belong: the hint comes from the same table.
COMMAND_OPTIONS = [(command, item) for command in COMMANDS for item in command.arguments if item.flags]


@pytest.mark.parametrize(
    ("command", "option"), COMMAND_OPTIONS, ids=[item.flags[0] for _, item in COMMAND_OPTIONS]
)
def test_a_command_option_before_the_command_names_its_command(
    cli: Cli, command: Command, option: Arg
) -> None:
    result = cli("localhost:1", option.flags[0], command.name)
    assert result.code == EXIT_USAGE
    assert (
        f"error: {option.flags[0]} is an option of {command.name}: python -m client ... {command.name}"
        in (result.err)
    )


@pytest.mark.parametrize(
    "option", [item for item in global_args() if item.flags[0] != "--json"], ids=lambda item: item.flags[0]
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_a_global_option_after_the_command_goes_before_it(cli: Cli, command: Command, option: Arg) -> None:
    words = ["x"] * (len(command.positionals.split()) - 1)  # the command's positionals, then the option
    result = cli("localhost:1", command.name, *words, option.flags[0])
    assert result.code == EXIT_USAGE
    assert (
        f"error: {option.flags[0]} goes before the command: python -m client {option.usage} ..." in result.err
    )


def test_a_handler_that_does_not_take_its_arguments_is_caught_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def handler(call: Call, name: str) -> int:
        return 0

    bad = Command("bad", "a command whose option is not its handler's parameter", handler, (arg("--other"),))
    monkeypatch.setattr(client.cli, "COMMANDS", (*COMMANDS, bad))
    with pytest.raises(TypeError, match=r"command 'bad': .*\['other'\].* parameters \['name'\]"):
        parse_invocation(["localhost:1", "health"], environ={})


def test_a_command_argument_cannot_shadow_a_global_option(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(call: Call, timeout: str) -> int:
        return 0

    bad = Command("bad", "its --timeout would overwrite the global one", handler, (arg("--timeout"),))
    monkeypatch.setattr(client.cli, "COMMANDS", (*COMMANDS, bad))
    with pytest.raises(TypeError, match="command 'bad'"):
        parse_invocation(["localhost:1", "health"], environ={})


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
        (["--plaintext", "localhost:1", "get", "\udcff"], "argument ID: not valid UTF-8 text"),
        (["--plaintext", "localhost:1", "search", "\udcff"], "argument QUERY: not valid UTF-8 text"),
        (
            ["--plaintext", "localhost:1", "list", "--category", "\udcff"],
            "argument --category: not valid UTF-8",
        ),
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
