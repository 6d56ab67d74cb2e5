"""The command line: `python -m client [options] TARGET COMMAND ...`, or `--stack NAME` instead of TARGET.

The commands are one table (client.commands); here are the global options, the grammar and the run.
argparse parses the whole line in one pass and makes every check (types, choices, mutually exclusive
options). The one thing it cannot tell, whether the first word is TARGET or COMMAND, is settled before, as
httpie's argparser sorts out its positionals. An option given where it does not belong is refused with where
it goes. The outcome is one frozen `Invocation`.
"""

import argparse
import os
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TextIO

import grpc

from catalog import catalog_pb2_grpc
from client.auth import AuthError, bearer_token_credentials, id_token_credentials
from client.channel import Transport, open_channel, read_ca_cert, status_line
from client.commands import (
    COMMANDS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RPC_ERROR,
    EXIT_SETUP,
    EXIT_USAGE,
    Arg,
    Call,
    Command,
    PageTokenLoopError,
    arg,
)
from client.output import Printer
from client.target import Target, TargetError, parse_target, target_from_stack

AUTH_ENV_VAR = "CATALOG_TOKEN"
DEFAULT_TIMEOUT_SECONDS = 10.0
PROG = "python -m client"
USAGE = f"{PROG} [options] [TARGET] COMMAND ..."


@dataclass(frozen=True)
class Invocation:
    """One run of the client: the command and its arguments, where it goes (TARGET or --stack) and how."""

    command: str  # a name in COMMANDS
    arguments: Mapping[str, object]  # the handler's keyword arguments, read-only
    target: Target | None = None
    stack: str | None = None
    plaintext: bool = False
    ca_cert: Path | None = None
    token: str | None = None  # a bearer token, from --token or $CATALOG_TOKEN, stripped
    token_source: str | None = None  # where `token` came from: "--token" or "$CATALOG_TOKEN"
    id_token: bool = False
    audience: str | None = None  # --audience: overrides the stack's `audience` output and https://HOST
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    as_json: bool = False


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


_JSON = "--json"
_JSON_HELP = "print JSON, one object per line"

# The global options, before COMMAND. A tuple is a group of mutually exclusive options.
GLOBAL_OPTIONS: tuple[Arg | tuple[Arg, ...], ...] = (
    arg("--stack", metavar="NAME", help="read TARGET (and the ID token audience) from this Pulumi stack"),
    (
        arg("--plaintext", action="store_true", help="cleartext HTTP/2, for a local server"),
        arg("--ca-cert", metavar="FILE", type=Path, help="trust this PEM CA instead of the system's"),
    ),
    (
        arg("--token", metavar="TOKEN", help=f"bearer token for every call (default: ${AUTH_ENV_VAR})"),
        arg("--id-token", action="store_true", help="send a Google ID token (see auth below)"),
    ),
    arg("--audience", metavar="URL", help="ID token audience (a Cloud Run custom audience)"),
    arg(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="deadline of every call, retries included (default: %(default)g)",
    ),
    arg(_JSON, action="store_true", help=_JSON_HELP),
)


def global_args() -> Iterator[Arg]:
    """Every global option, groups unpacked."""
    for entry in GLOBAL_OPTIONS:
        yield from (entry,) if isinstance(entry, Arg) else entry


_DESCRIPTION = """\
Call catalog.ProductCatalog on a local server or a deployed Cloud Run service.

TARGET is host:port (a Cloud Run URL https://HOST means HOST:443); --stack NAME reads it from the
`target` output of that Pulumi stack instead. TLS with the system's roots unless --plaintext.
Options go before COMMAND (before or after TARGET); --json may also follow the command's arguments."""

_EPILOG = f"""\
output: aligned lines; with --json one JSON object per line: a protobuf-JSON Product for get and search, a
ListProductsResponse per page for list, a plain object per line for the other commands.

auth: --token TOKEN (or ${AUTH_ENV_VAR}) sends `authorization: Bearer TOKEN`; --id-token sends a Google ID
token from application default credentials (a service account, or impersonation via
`gcloud auth application-default login --impersonate-service-account SA`), refreshed as needed. Its
audience: --audience, else the stack's `audience` output (with --stack), else https://HOST of the target.
gRPC sends tokens only over TLS, or over --plaintext to a loopback address (localhost).

exit status:
  0  success (health: every name SERVING; smoke: every check passed)
  1  the call failed: one line `STATUS_CODE: message` on stderr
  2  bad arguments
  3  health: reachable, but a name is not SERVING
  4  no target or credentials: --stack lookup failed, or --id-token found no usable credentials
  5  smoke: at least one check failed (each one a FAIL line)

examples:
  python -m client --plaintext localhost:8080 get 1
  python -m client --stack dev list --category electronics --all
  python -m client --stack prod --id-token search desk --json
  python -m client --stack prod --id-token smoke"""

_HELP_COLUMN = 30


def _commands_help() -> str:
    lines = ["commands (COMMAND --help for their options):"]
    for command in COMMANDS:
        head = f"  {command.synopsis}"
        text = textwrap.wrap(command.help, width=80)
        if len(head) < _HELP_COLUMN - 1:
            lines.append(head.ljust(_HELP_COLUMN) + text.pop(0))
        else:
            lines.append(head)
        lines.extend(" " * _HELP_COLUMN + line for line in text)
    return "\n".join(lines)


class _Misplaced(argparse.Action):
    """An option that belongs elsewhere on the command line: its error says where it goes."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, where: str) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="?", help=argparse.SUPPRESS)
        self.where = where

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser.error(self.where)


def _where_options_go(here: Command | None) -> dict[str, str]:
    """Where each option goes that `here` does not take: a command, or None for the global options.

    An option that several commands take is placed with the first of them.
    """
    hints: dict[str, str] = {}
    own = {flag for item in (here.arguments if here else global_args()) for flag in item.flags}
    if here is not None:
        own.add(_JSON)
        for item in global_args():
            for flag in set(item.flags) - own:
                hints[flag] = f"{flag} goes before the command: {PROG} {item.usage} ... {here.positionals}"
    for command in COMMANDS:
        for item in command.arguments:
            for flag in set(item.flags) - own:
                elsewhere = f", not of {here.name}" if here is not None else ""
                hint = f"{PROG} ... {command.positionals} {item.usage}"
                hints.setdefault(flag, f"{flag} is an option of {command.name}{elsewhere}: {hint}")
    return hints


def _add_misplaced(parser: argparse.ArgumentParser, here: Command | None) -> None:
    for flag, where in _where_options_go(here).items():
        parser.add_argument(flag, action=_Misplaced, where=where)


def _global_parser() -> argparse.ArgumentParser:
    """The global options, and the help of the whole command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description=_DESCRIPTION,
        epilog=f"{_commands_help()}\n\n{_EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--tim 3` is a typo to report, not --timeout
    )
    for entry in GLOBAL_OPTIONS:
        container = parser if isinstance(entry, Arg) else parser.add_mutually_exclusive_group()
        for item in (entry,) if isinstance(entry, Arg) else entry:
            container.add_argument(*item.names, **item.keywords)
    _add_misplaced(parser, None)
    return parser


def build_parser(*, with_target: bool) -> argparse.ArgumentParser:
    """The parser of a whole command line, with TARGET before COMMAND or without (--stack names it)."""
    parser = _global_parser()
    global_dests = set(vars(parser.parse_args([])))  # what the global options fill in, by name
    if with_target:
        parser.add_argument("target", metavar="TARGET", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        prog=f"{PROG} [options] [TARGET]",
        help=argparse.SUPPRESS,
    )
    for command in COMMANDS:
        subparser = commands.add_parser(command.name, description=command.help, allow_abbrev=False)
        dests = {subparser.add_argument(*item.names, **item.keywords).dest for item in command.arguments}
        if dests != set(command.parameters) or dests & global_dests:
            raise TypeError(
                f"command {command.name!r}: its arguments' destinations {sorted(dests)} must be its handler's"
                f" parameters {list(command.parameters)} and no global option's {sorted(global_dests)}"
            )
        # Given here, --json overrides the global default; not given, it leaves the global value alone.
        subparser.add_argument(_JSON, action="store_true", default=argparse.SUPPRESS, help=_JSON_HELP)
        _add_misplaced(subparser, command)
    return parser


_BY_NAME = {command.name: command for command in COMMANDS}


def _sort_out_target(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser for this command line, and the line to give it: whether the first word is TARGET.

    A target is host:port or https://HOST, never a command's name; after --stack a word without a colon is a
    mistyped command rather than a second target. The global options before the first word are parsed
    here as they will be again, so that their errors come first.
    """
    scan = _global_parser()
    scan.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    before = scan.parse_args(argv)
    words: list[str] = before.words
    line = list(argv)
    if words[:1] == ["--"]:  # argparse would read a "--" just before COMMAND as the command's name
        del line[len(argv) - len(words)]
        words = words[1:]
    has_target = not words or (words[0] not in _BY_NAME and (before.stack is None or ":" in words[0]))
    return build_parser(with_target=has_target), line


def parse_invocation(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Invocation:
    """Parse a command line (without the program name) into an Invocation; reads no file and no network.

    `environ` (default: os.environ) supplies $CATALOG_TOKEN. Bad arguments exit as argparse does: usage
    and the error on stderr, SystemExit(2); --help prints and raises SystemExit(0).
    """
    environ = os.environ if environ is None else environ
    parser, line = _sort_out_target(argv)
    options = parser.parse_args(line)
    target_text: str | None = getattr(options, "target", None)
    if target_text is not None and options.stack is not None:
        parser.error("give either TARGET or --stack NAME, not both")
    if target_text is None and options.stack is None:
        parser.error("a TARGET (host:port) or --stack NAME is required")
    if options.audience and not options.id_token:
        parser.error("--audience goes with --id-token")
    token: str | None = options.token
    origin = "--token"
    if token is None and not options.id_token:
        token, origin = environ.get(AUTH_ENV_VAR) or None, f"${AUTH_ENV_VAR}"
    if token is not None and not token.strip():
        parser.error(f"{origin} is empty")
    try:
        target = None if target_text is None else parse_target(target_text)
    except TargetError as error:
        parser.error(str(error))
    command = _BY_NAME[options.command]
    return Invocation(
        command=command.name,
        arguments=MappingProxyType({name: getattr(options, name) for name in command.parameters}),
        target=target,
        stack=options.stack,
        plaintext=options.plaintext,
        ca_cert=options.ca_cert,
        token=None if token is None else token.strip(),
        token_source=None if token is None else origin,
        id_token=options.id_token,
        audience=options.audience,
        timeout=options.timeout,
        as_json=options.json,
    )


def _call_credentials(invocation: Invocation, target: Target) -> grpc.CallCredentials | None:
    if invocation.id_token:
        return id_token_credentials(invocation.audience or target.audience)
    if invocation.token is not None:
        return bearer_token_credentials(invocation.token)
    return None


def _connect_and_run(invocation: Invocation, transport: Transport, stdout: TextIO, stderr: TextIO) -> int:
    try:
        target = invocation.target or target_from_stack(invocation.stack or "")
        call_credentials = _call_credentials(invocation, target)
    except (TargetError, AuthError) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_SETUP
    if invocation.plaintext and call_credentials is not None and not target.is_loopback:
        # gRPC would refuse with a puzzling "neither UDS or TCP loopback" UNAVAILABLE.
        token_source = invocation.token_source or "--id-token"
        print(
            f"error: {token_source} over --plaintext is sent only to a loopback address (localhost),"
            f" never in the clear to {target.host}; use TLS (drop --plaintext)",
            file=stderr,
        )
        return EXIT_USAGE
    printer = Printer(stdout, as_json=invocation.as_json)
    try:
        with open_channel(target.address, transport, call_credentials) as channel:
            call = Call(channel, catalog_pb2_grpc.ProductCatalogStub(channel), invocation.timeout, printer)
            return _BY_NAME[invocation.command].run(call, **invocation.arguments)
    except grpc.RpcError as error:
        print(status_line(error) + _plaintext_hint(invocation, target, error), file=stderr)
    except PageTokenLoopError as error:
        print(f"error: {error}", file=stderr)
    return EXIT_RPC_ERROR


def _plaintext_hint(invocation: Invocation, target: Target, error: grpc.RpcError) -> str:
    """A hint for a TLS call to this machine that a cleartext server answered (a local `python -m service`).

    BoringSSL's WRONG_VERSION_NUMBER: the reply to its hello was not TLS at all. A TLS server with a
    certificate the client does not trust fails otherwise, and gets no hint.
    """
    if invocation.plaintext or not target.is_loopback or not isinstance(error, grpc.Call):
        return ""
    if "WRONG_VERSION_NUMBER" not in (error.details() or ""):
        return ""
    return " (is it a local cleartext server? try --plaintext)"


def _transport(invocation: Invocation) -> Transport:
    """The transport, with the --ca-cert file read (a file that cannot be used is a usage error)."""
    ca_cert = None
    if invocation.ca_cert is not None:
        try:
            ca_cert = read_ca_cert(invocation.ca_cert)
        except (OSError, ValueError) as error:
            _global_parser().error(f"--ca-cert: {error}")
    return Transport(plaintext=invocation.plaintext, ca_cert=ca_cert)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one invocation; returns the exit status (see --help)."""
    stdout: TextIO = sys.stdout
    stderr: TextIO = sys.stderr
    try:
        invocation = parse_invocation(sys.argv[1:] if argv is None else argv)
        transport = _transport(invocation)
    except SystemExit as exit_:  # argparse: --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return _connect_and_run(invocation, transport, stdout, stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from failing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return EXIT_OK
