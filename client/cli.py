"""The command line: `python -m client [options] [TARGET] COMMAND ...`, one channel per invocation."""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2

from catalog import catalog_pb2, catalog_pb2_grpc
from client.auth import AuthError, bearer_token_credentials, id_token_credentials
from client.channel import SERVICE_NAME, Transport, open_channel, read_ca_cert
from client.output import Printer
from client.target import Target, TargetError, parse_target, target_from_stack

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SERVING = 3
EXIT_SETUP = 4
EXIT_INTERRUPTED = 130

AUTH_ENV_VAR = "CATALOG_TOKEN"
DEFAULT_TIMEOUT_SECONDS = 10.0
COMMANDS = ("get", "list", "search", "health")
HEALTH_NAMES = ("", SERVICE_NAME)
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"

# The global options, to find where the command starts (see _target_before_command); a test keeps them in
# step with the parser.
_VALUE_OPTIONS = frozenset({"--stack", "--ca-cert", "--token", "--audience", "--timeout"})
_FLAG_OPTIONS = frozenset({"-h", "--help", "--plaintext", "--id-token", "--json"})

_DESCRIPTION = """\
Call catalog.ProductCatalog on a local server or a deployed Cloud Run service.

TARGET is host:port (a Cloud Run URL https://HOST means HOST:443); --stack NAME reads it from
`pulumi stack output target --stack NAME` instead. TLS with the system's roots unless --plaintext."""

_EPILOG = f"""\
commands (COMMAND --help for their options):
  get ID                      one product
  list [--category C] [--page-size N] [--page-token T] [--all]
                              one page of products, or with --all every page after it
  search QUERY [--max N]      products matching QUERY, printed as the server streams them
  health                      serving status of "" and {SERVICE_NAME}

output: aligned lines; with --json (before or after the command's arguments) one protobuf-JSON object per
line: a Product for get and search, a ListProductsResponse per page for list.

auth: --token TOKEN (or ${AUTH_ENV_VAR}) sends `authorization: Bearer TOKEN`; --id-token sends a Google ID
token for https://HOST from application default credentials (a service account, or impersonation via
`gcloud auth application-default login --impersonate-service-account SA`), refreshed as needed.
gRPC sends tokens only over TLS, or over --plaintext to a loopback address (localhost).

exit status:
  0  success (health: every name SERVING)
  1  the call failed: one line `STATUS_CODE: message` on stderr
  2  bad arguments
  3  health: reachable, but a name is not SERVING
  4  no target or credentials: --stack lookup failed, or --id-token found no usable credentials

examples:
  python -m client --plaintext localhost:8080 get 1
  python -m client --stack dev list --category electronics --all
  python -m client --stack prod --id-token search desk --json"""


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
    """Build the argument parser (public so that tests can read its usage)."""
    parser = argparse.ArgumentParser(
        prog="python -m client",
        usage="%(prog)s [options] [TARGET] COMMAND ...",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # abbreviations would make _VALUE_OPTIONS incomplete
    )
    parser.add_argument("target", nargs="?", metavar="TARGET", help="host:port of the server")
    parser.add_argument(
        "--stack", metavar="NAME", help="read TARGET from this Pulumi stack's `target` output"
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--plaintext", action="store_true", help="cleartext HTTP/2, for a local server")
    security.add_argument(
        "--ca-cert", metavar="FILE", type=Path, help="trust this PEM CA instead of the system's"
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token", metavar="TOKEN", help=f"bearer token for every call (default: ${AUTH_ENV_VAR})"
    )
    auth.add_argument("--id-token", action="store_true", help="send a Google ID token for https://HOST")
    parser.add_argument(
        "--audience", metavar="URL", help="ID token audience instead of https://HOST (a custom audience)"
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="deadline of every call, retries included (default: %(default)g)",
    )
    _add_json(parser, default=False)

    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, prog="python -m client [options] [TARGET]"
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
    for subparser in (get, listing, search, health):
        _add_json(subparser, default=argparse.SUPPRESS)
    return parser


def _target_before_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Move TARGET (an empty one if absent) to just before COMMAND, where argparse reliably finds it.

    argparse matches an optional positional followed by a sub-command by pattern, not by name: in
    `--stack dev get 1` it would read TARGET=get, and in `HOST --json get 1` it would leave TARGET empty and
    take HOST for the command.
    """
    args = list(argv)
    positionals: list[int] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return args
        if arg.startswith("-") and arg != "-":
            name, has_value, _ = arg.partition("=")
            if name in _VALUE_OPTIONS:
                index += 1 if has_value else 2
            elif name in _FLAG_OPTIONS:
                index += 1
            else:
                parser.error(f"unrecognized arguments: {arg}")
        elif arg in COMMANDS:
            break
        else:
            positionals.append(index)
            index += 1
    else:
        if len(positionals) == 1 and not {"-h", "--help"} & set(args):
            # argparse would call the lone TARGET an invalid command.
            parser.error(f"a COMMAND after {args[positionals[0]]!r} is required: {', '.join(COMMANDS)}")
        return args  # no command: argparse says it is required, or prints --help
    if len(positionals) > 1:
        return args  # argparse names the stray argument
    target = args.pop(positionals[0]) if positionals else ""
    args.insert(index - len(positionals), target)
    return args


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    args = parser.parse_args(_target_before_command(parser, argv))
    if args.target and args.stack:
        parser.error("give either TARGET or --stack NAME, not both")
    if not args.target and not args.stack:
        parser.error("a TARGET (host:port) or --stack NAME is required")
    if args.audience and not args.id_token:
        parser.error("--audience goes with --id-token")
    args.token_given = args.token is not None
    if args.token is None and not args.id_token:
        args.token = os.environ.get(AUTH_ENV_VAR) or None
    if args.token is not None and not args.token.strip():
        parser.error("--token is empty")
    for name in ("id", "query", "category", "page_token"):
        try:
            getattr(args, name, "").encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes on the command line; protobuf strings are UTF-8
            parser.error(f"{name.upper().replace('_', '-')} is not valid UTF-8 text")
    if args.target:
        try:
            args.target = parse_target(args.target)
        except TargetError as error:
            parser.error(str(error))
    if args.ca_cert is not None:
        try:
            args.ca_cert = read_ca_cert(args.ca_cert)
        except (OSError, ValueError) as error:
            parser.error(f"--ca-cert: {error}")
    return args


def _call_credentials(args: argparse.Namespace, target: Target) -> grpc.CallCredentials | None:
    if args.id_token:
        return id_token_credentials(args.audience or target.audience)
    if args.token is not None:
        return bearer_token_credentials(args.token.strip())
    return None


class PageTokenLoopError(Exception):
    """The server handed out a page token it had already given: following it would never end."""


def _get(stub: catalog_pb2_grpc.ProductCatalogStub, args: argparse.Namespace, printer: Printer) -> int:
    printer.product(stub.GetProduct(catalog_pb2.GetProductRequest(id=args.id), timeout=args.timeout))
    return EXIT_OK


def _list(stub: catalog_pb2_grpc.ProductCatalogStub, args: argparse.Namespace, printer: Printer) -> int:
    token: str = args.page_token
    used_tokens = {token}
    while True:
        request = catalog_pb2.ListProductsRequest(
            category=args.category, page_size=args.page_size, page_token=token
        )
        page = stub.ListProducts(request, timeout=args.timeout)
        printer.page(page)
        token = page.next_page_token
        if not token or not args.all:
            break
        if token in used_tokens:
            raise PageTokenLoopError(
                f"the server repeated page token {token!r}; stopped after {printer.rows} products"
            )
        used_tokens.add(token)
    summary = f"{printer.rows} of {page.total_count} products"
    printer.summary(f"{summary}; next page: --page-token {token}" if token else summary)
    return EXIT_OK


def _search(stub: catalog_pb2_grpc.ProductCatalogStub, args: argparse.Namespace, printer: Printer) -> int:
    request = catalog_pb2.SearchRequest(query=args.query, max_results=args.max)
    # The deadline covers the whole stream; each product is printed as soon as it arrives.
    for product in stub.SearchProducts(request, timeout=args.timeout):
        printer.row(product)
    printer.summary(f"{printer.rows} products match {args.query!r}")
    return EXIT_OK


def _health(channel: grpc.Channel, args: argparse.Namespace, printer: Printer) -> int:
    # Built by hand rather than with health_pb2_grpc.HealthStub, whose type stub declares no methods.
    check = channel.unary_unary(
        HEALTH_CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    all_serving = True
    for name in HEALTH_NAMES:
        try:
            response = check(health_pb2.HealthCheckRequest(service=name), timeout=args.timeout)
            status = str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
        except grpc.RpcError as error:
            # The server is up but does not know this name: not serving it, rather than a failed call.
            if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            status = "SERVICE_UNKNOWN"
        printer.health(name, status)
        all_serving = all_serving and status == "SERVING"
    return EXIT_OK if all_serving else EXIT_NOT_SERVING


def _run(channel: grpc.Channel, args: argparse.Namespace, printer: Printer) -> int:
    if args.command == "health":
        return _health(channel, args, printer)
    stub = catalog_pb2_grpc.ProductCatalogStub(channel)
    commands = {"get": _get, "list": _list, "search": _search}
    return commands[args.command](stub, args, printer)


def status_line(error: grpc.RpcError) -> str:
    """`CODE: message`, the one line a failed call prints."""
    if isinstance(error, grpc.Call):
        details = " ".join((error.details() or "(no message)").splitlines())
        return f"{error.code().name}: {details}"
    return f"UNKNOWN: {error}"


def _connect_and_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        target: Target = args.target if args.target else target_from_stack(args.stack)
        call_credentials = _call_credentials(args, target)
    except (TargetError, AuthError) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_SETUP
    if args.plaintext and call_credentials is not None and not target.is_loopback:
        # gRPC would refuse with a puzzling "neither UDS or TCP loopback" UNAVAILABLE.
        token_source = "--token" if args.token_given else f"${AUTH_ENV_VAR}" if args.token else "--id-token"
        print(
            f"error: {token_source} over --plaintext is sent only to a loopback address (localhost),"
            f" never in the clear to {target.host}; use TLS (drop --plaintext)",
            file=stderr,
        )
        return EXIT_USAGE
    printer = Printer(stdout, as_json=args.json)
    transport = Transport(plaintext=args.plaintext, ca_cert=args.ca_cert)
    try:
        with open_channel(target.address, transport, call_credentials) as channel:
            return _run(channel, args, printer)
    except grpc.RpcError as error:
        print(status_line(error), file=stderr)
    except PageTokenLoopError as error:
        print(f"error: {error}", file=stderr)
    return EXIT_RPC_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run one invocation; returns the exit status (see --help)."""
    stdout: TextIO = sys.stdout
    stderr: TextIO = sys.stderr
    parser = build_parser()
    try:
        args = _parse(parser, sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse: --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return _connect_and_run(args, stdout, stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from failing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return EXIT_OK
