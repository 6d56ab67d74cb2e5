"""The command line: `python -m client [options] [TARGET] COMMAND ...`, one channel per invocation.

Parsed in two stages, as httpie's argparser.py does: the global options with `parse_known_args` up to the
first word that is no option's, then that word is TARGET unless it names a command (a target is host:port or
https://HOST, never a bare command name), and the command's own parser reads the rest. The outcome is one
frozen, typed `Invocation`.
"""

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc

from catalog import HEALTH_NAMES, SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from client.auth import AuthError, bearer_token_credentials, id_token_credentials
from client.channel import Transport, health_check, open_channel, read_ca_cert, serving_status, status_line
from client.output import Printer
from client.smoke import run_smoke
from client.target import Target, TargetError, parse_target, target_from_stack

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SERVING = 3
EXIT_SETUP = 4
EXIT_SMOKE_FAILED = 5
EXIT_INTERRUPTED = 130

AUTH_ENV_VAR = "CATALOG_TOKEN"
DEFAULT_TIMEOUT_SECONDS = 10.0
PROG = "python -m client"
USAGE = f"{PROG} [options] [TARGET] COMMAND ..."


@dataclass(frozen=True)
class Get:
    """`get ID`: one product."""

    id: str


@dataclass(frozen=True)
class ListPages:
    """`list`: one page of products, or every page from `page_token` on."""

    category: str = ""
    page_size: int = 0
    page_token: str = ""
    all: bool = False


@dataclass(frozen=True)
class Search:
    """`search QUERY`: the matching products, as the server streams them."""

    query: str
    max_results: int = 0


@dataclass(frozen=True)
class Health:
    """`health`: the serving status of every health name."""


@dataclass(frozen=True)
class Smoke:
    """`smoke`: the smoke check (client.smoke)."""


Command = Get | ListPages | Search | Health | Smoke
COMMANDS = ("get", "list", "search", "health", "smoke")


@dataclass(frozen=True)
class Invocation:
    """One run of the client: the command, where it goes (TARGET or --stack, never both) and how."""

    command: Command
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


_DESCRIPTION = """\
Call catalog.ProductCatalog on a local server or a deployed Cloud Run service.

TARGET is host:port (a Cloud Run URL https://HOST means HOST:443); --stack NAME reads it from the
`target` output of that Pulumi stack instead. TLS with the system's roots unless --plaintext."""

_EPILOG = f"""\
commands (COMMAND --help for their options):
  get ID                      one product
  list [--category C] [--page-size N] [--page-token T] [--all]
                              one page of products, or with --all every page after it
  search QUERY [--max N]      products matching QUERY, printed as the server streams them
  health                      serving status of "" and {SERVICE_NAME}
  smoke                       check that the server answers correctly: health, paging, get, search,
                              invalid requests, deadlines; one PASS or FAIL line per check

output: aligned lines; with --json (before or after the command's arguments) one protobuf-JSON object per
line: a Product for get and search, a ListProductsResponse per page for list, one object per check for smoke.

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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


_INT32_MAX = 2**31 - 1  # page_size and max_results are int32 on the wire


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= _INT32_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {_INT32_MAX}: {text!r}")
    return value


def _add_json(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--json", action="store_true", default=default, help="print protobuf JSON, one object per line"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the global options; its --help documents the whole command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # `--tim 3` is a typo to report, not --timeout
    )
    parser.add_argument(
        "--stack", metavar="NAME", help="read TARGET (and the ID token audience) from this Pulumi stack"
    )
    parser.add_argument("--plaintext", action="store_true", help="cleartext HTTP/2, for a local server")
    parser.add_argument(
        "--ca-cert", metavar="FILE", type=Path, help="trust this PEM CA instead of the system's"
    )
    parser.add_argument(
        "--token", metavar="TOKEN", help=f"bearer token for every call (default: ${AUTH_ENV_VAR})"
    )
    parser.add_argument("--id-token", action="store_true", help="send a Google ID token (see auth below)")
    parser.add_argument("--audience", metavar="URL", help="ID token audience (a Cloud Run custom audience)")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="deadline of every call, retries included (default: %(default)g)",
    )
    _add_json(parser, default=False)
    # Everything from the first word that is no option's: [TARGET] COMMAND ..., for parse_invocation.
    parser.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def build_command_parser() -> argparse.ArgumentParser:
    """The parser of `COMMAND ...`, the words after the global options and TARGET."""
    parser = argparse.ArgumentParser(prog=PROG, usage=USAGE, add_help=False, allow_abbrev=False)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, prog=f"{PROG} [options] [TARGET]"
    )
    get = commands.add_parser("get", help="one product", description="Print one product by id.")
    get.add_argument("id", metavar="ID")
    listing = commands.add_parser(
        "list", help="a page of products", description="Print products page by page."
    )
    listing.add_argument("--category", default="", help="only products of this category (exact match)")
    listing.add_argument(
        "--page-size",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="products per page (0: server default)",
    )
    listing.add_argument(
        "--page-token", default="", metavar="T", help="start at this page (a next page token)"
    )
    listing.add_argument("--all", action="store_true", help="follow next page tokens to the last page")
    search = commands.add_parser(
        "search", help="stream matching products", description="Print products as the search streams them."
    )
    search.add_argument("query", metavar="QUERY")
    search.add_argument(
        "--max", type=_non_negative_int, default=0, metavar="N", help="at most N results (0: server default)"
    )
    health = commands.add_parser("health", help="serving status", description=f'Check "" and {SERVICE_NAME}.')
    smoke = commands.add_parser(
        "smoke",
        help="smoke check",
        description="Check that the server answers correctly, whatever its catalog (see client/smoke.py). "
        f"Prints one PASS or FAIL line per check; exits {EXIT_SMOKE_FAILED} when any fails.",
    )
    for subparser in (get, listing, search, health, smoke):
        _add_json(subparser, default=argparse.SUPPRESS)
    return parser


def _global_options(
    parser: argparse.ArgumentParser, args: Sequence[str], namespace: argparse.Namespace
) -> list[str]:
    """Parse global options into `namespace` up to the first other word; return the words from there."""
    namespace, unknown = parser.parse_known_args(args, namespace)
    if unknown:  # an unknown option before the command; the command's own options come after it
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    words: list[str] = namespace.words
    del namespace.words  # so that a second pass fills it afresh
    return words[1:] if words[:1] == ["--"] else words


def _is_target(word: str, *, stack_given: bool) -> bool:
    if word in COMMANDS:
        return False
    # After --stack a word that cannot be host:port is a mistyped command, not a second target.
    return not stack_given or ":" in word


def parse_invocation(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Invocation:
    """Parse a command line (without the program name) into an Invocation; reads no file and no network.

    `environ` (default: os.environ) supplies $CATALOG_TOKEN. Bad arguments exit as argparse does: usage
    and the error on stderr, SystemExit(2); --help prints and raises SystemExit(0).
    """
    environ = os.environ if environ is None else environ
    parser = build_parser()
    options = argparse.Namespace()
    words = _global_options(parser, argv, options)
    target_text: str | None = None
    if words and _is_target(words[0], stack_given=options.stack is not None):
        target_text = words[0]
        words = _global_options(parser, words[1:], options)  # options may stand after TARGET too
        if not words:
            parser.error(f"a COMMAND after {target_text!r} is required: {', '.join(COMMANDS)}")
    parsed = build_command_parser().parse_args(words)
    command = _command(parser, parsed)
    if target_text is not None and options.stack is not None:
        parser.error("give either TARGET or --stack NAME, not both")
    if target_text is None and options.stack is None:
        parser.error("a TARGET (host:port) or --stack NAME is required")
    if options.plaintext and options.ca_cert is not None:
        parser.error("argument --ca-cert: not allowed with argument --plaintext")
    if options.id_token and options.token is not None:
        parser.error("argument --id-token: not allowed with argument --token")
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
    return Invocation(
        command=command,
        target=target,
        stack=options.stack,
        plaintext=options.plaintext,
        ca_cert=options.ca_cert,
        token=None if token is None else token.strip(),
        token_source=None if token is None else origin,
        id_token=options.id_token,
        audience=options.audience,
        timeout=options.timeout,
        as_json=options.json or getattr(parsed, "json", False),
    )


def _command(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> Command:
    for name in ("id", "query", "category", "page_token"):
        try:
            getattr(parsed, name, "").encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes on the command line; protobuf strings are UTF-8
            parser.error(f"{name.upper().replace('_', '-')} is not valid UTF-8 text")
    match parsed.command:
        case "get":
            return Get(parsed.id)
        case "list":
            return ListPages(parsed.category, parsed.page_size, parsed.page_token, parsed.all)
        case "search":
            return Search(parsed.query, parsed.max)
        case "health":
            return Health()
        case "smoke":
            return Smoke()
    raise AssertionError(f"argparse let an unknown command through: {parsed.command!r}")


def _call_credentials(invocation: Invocation, target: Target) -> grpc.CallCredentials | None:
    if invocation.id_token:
        return id_token_credentials(invocation.audience or target.audience)
    if invocation.token is not None:
        return bearer_token_credentials(invocation.token)
    return None


class PageTokenLoopError(Exception):
    """The server handed out a page token it had already given: following it would never end."""


def _get(stub: catalog_pb2_grpc.ProductCatalogStub, command: Get, timeout: float, printer: Printer) -> int:
    printer.product(stub.GetProduct(catalog_pb2.GetProductRequest(id=command.id), timeout=timeout))
    return EXIT_OK


def _list(
    stub: catalog_pb2_grpc.ProductCatalogStub, command: ListPages, timeout: float, printer: Printer
) -> int:
    token = command.page_token
    used_tokens = {token}
    while True:
        request = catalog_pb2.ListProductsRequest(
            category=command.category, page_size=command.page_size, page_token=token
        )
        page = stub.ListProducts(request, timeout=timeout)
        printer.page(page)
        token = page.next_page_token
        if not token or not command.all:
            break
        if token in used_tokens:
            raise PageTokenLoopError(
                f"the server repeated page token {token!r}; stopped after {printer.rows} products"
            )
        used_tokens.add(token)
    summary = f"{printer.rows} of {page.total_count} products"
    printer.summary(f"{summary}; next page: --page-token {token}" if token else summary)
    return EXIT_OK


def _search(
    stub: catalog_pb2_grpc.ProductCatalogStub, command: Search, timeout: float, printer: Printer
) -> int:
    request = catalog_pb2.SearchRequest(query=command.query, max_results=command.max_results)
    # The deadline covers the whole stream; each product is printed as soon as it arrives.
    for product in stub.SearchProducts(request, timeout=timeout):
        printer.row(product)
    printer.summary(f"{printer.rows} products match {command.query!r}")
    return EXIT_OK


def _health(channel: grpc.Channel, timeout: float, printer: Printer) -> int:
    check = health_check(channel)
    all_serving = True
    for name in HEALTH_NAMES:
        status = serving_status(check, name, timeout)
        printer.health(name, status)
        all_serving = all_serving and status == "SERVING"
    return EXIT_OK if all_serving else EXIT_NOT_SERVING


def _smoke(channel: grpc.Channel, timeout: float, printer: Printer) -> int:
    results = run_smoke(channel, timeout)
    for result in results:
        printer.check(result)
    failed = [result.name for result in results if not result.passed]
    if failed:
        printer.summary(f"smoke: {len(failed)} of {len(results)} checks failed: {', '.join(failed)}")
        return EXIT_SMOKE_FAILED
    printer.summary(f"smoke: all {len(results)} checks passed")
    return EXIT_OK


def _run(channel: grpc.Channel, invocation: Invocation, printer: Printer) -> int:
    stub = catalog_pb2_grpc.ProductCatalogStub(channel)
    timeout = invocation.timeout
    match invocation.command:
        case Get() as get:
            return _get(stub, get, timeout, printer)
        case ListPages() as listing:
            return _list(stub, listing, timeout, printer)
        case Search() as search:
            return _search(stub, search, timeout, printer)
        case Health():
            return _health(channel, timeout, printer)
        case Smoke():
            return _smoke(channel, timeout, printer)


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
            return _run(channel, invocation, printer)
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
            build_parser().error(f"--ca-cert: {error}")
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
