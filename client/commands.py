"""The client's commands, one table: each command's name, help, arguments and handler.

A new command is one handler and one entry in COMMANDS. The handler gets a `Call` (the channel, the catalog's
stub, the deadline, the printer) and the command's arguments as keyword arguments named as its parameters,
and returns the exit status. Arguments are argparse's own declarations (`arg(...)` takes what
`add_argument` takes), so argparse checks their types and choices.
"""

import argparse
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc

from catalog import HEALTH_NAMES, SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from client.channel import health_check, serving_status
from client.output import Printer
from client.plural import counted, plural
from client.smoke import run_smoke

# Exit statuses, as --help and docs/client.md list them.
EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_SERVING = 3
EXIT_SETUP = 4
EXIT_SMOKE_FAILED = 5
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Arg:
    """One `add_argument` call as data: a positional's name or an option's flags, and its keywords.

    An option that takes a value names its `metavar`, which the usage lines and the hints show.
    """

    names: tuple[str, ...]
    keywords: Mapping[str, Any]

    @property
    def flags(self) -> tuple[str, ...]:
        """The option strings (none for a positional)."""
        return tuple(name for name in self.names if name.startswith("-"))

    @property
    def usage(self) -> str:
        """How it is written: `QUERY`, `--max N`, `--all`."""
        metavar = self.keywords.get("metavar")
        if not self.flags:
            return str(metavar or self.names[0].upper())
        return f"{self.flags[0]} {metavar}" if metavar else self.flags[0]


def arg(*names: str, **keywords: Any) -> Arg:
    """An argument, declared as for `ArgumentParser.add_argument(*names, **keywords)`."""
    return Arg(names, MappingProxyType(keywords))


@dataclass(frozen=True)
class Call:
    """What a handler works with: the channel, the catalog's stub on it, each call's deadline, the printer."""

    channel: grpc.Channel
    stub: catalog_pb2_grpc.ProductCatalogStub
    timeout: float
    printer: Printer


@dataclass(frozen=True)
class Command:
    """One command: its name, a line of help, its arguments, and the handler that runs it.

    The handler is called as `run(call, **arguments)`: its parameters after `call` are the arguments'
    destinations (an option's `dest`, by default its flag without dashes), and it returns the exit status.
    """

    name: str
    help: str
    run: Callable[..., int]
    arguments: tuple[Arg, ...] = ()

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names the handler takes after `call`."""
        return tuple(inspect.signature(self.run).parameters)[1:]

    @property
    def synopsis(self) -> str:
        """`list [--category C] [--page-size N] ...`: the command as --help lists it."""
        words = [item.usage if not item.flags else f"[{item.usage}]" for item in self.arguments]
        return " ".join([self.name, *words])

    @property
    def positionals(self) -> str:
        """`search QUERY`: the command with the words it cannot do without."""
        return " ".join([self.name, *(item.usage for item in self.arguments if not item.flags)])


class PageTokenLoopError(Exception):
    """The server handed out a page token it had already given: following it would never end."""


# Argument types: argparse reports their errors as `argument --max: must be ...`.
_INT32_MAX = 2**31 - 1  # page_size and max_results are int32 on the wire


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= _INT32_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {_INT32_MAX}: {text!r}")
    return value


def _text(word: str) -> str:
    """A word protobuf can carry: undecodable bytes on the command line arrive as lone surrogates."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("not valid UTF-8 text") from None
    return word


# The handlers, called as run(call, **arguments).


def _pages(
    call: Call, *, category: str = "", page_size: int = 0, page_token: str = "", every_page: bool = True
) -> Iterator[catalog_pb2.ListProductsResponse]:
    """ListProducts from `page_token` on: one page, or every page to the last."""
    used_tokens = {page_token}
    listed = 0
    while True:
        request = catalog_pb2.ListProductsRequest(
            category=category, page_size=page_size, page_token=page_token
        )
        page = call.stub.ListProducts(request, timeout=call.timeout)
        yield page
        listed += len(page.products)
        page_token = page.next_page_token
        if not page_token or not every_page:
            return
        if page_token in used_tokens:
            raise PageTokenLoopError(
                f"the server repeated page token {page_token!r}; stopped after {counted(listed, 'product')}"
            )
        used_tokens.add(page_token)


def _get(call: Call, product_id: str) -> int:
    call.printer.product(
        call.stub.GetProduct(catalog_pb2.GetProductRequest(id=product_id), timeout=call.timeout)
    )
    return EXIT_OK


def _list(call: Call, category: str, page_size: int, page_token: str, all_pages: bool) -> int:
    for page in _pages(
        call, category=category, page_size=page_size, page_token=page_token, every_page=all_pages
    ):
        call.printer.page(page)
    summary = f"{call.printer.rows} of {counted(page.total_count, 'product')}"
    next_token = page.next_page_token
    call.printer.summary(f"{summary}; next page: --page-token {next_token}" if next_token else summary)
    return EXIT_OK


def _search(call: Call, query: str, max_results: int) -> int:
    request = catalog_pb2.SearchRequest(query=query, max_results=max_results)
    # The deadline covers the whole stream; each product is printed as soon as it arrives.
    for product in call.stub.SearchProducts(request, timeout=call.timeout):
        call.printer.row(product)
    found = call.printer.rows
    call.printer.summary(f"{counted(found, 'product')} {plural(found, 'matches', 'match')} {query!r}")
    return EXIT_OK


def _health(call: Call) -> int:
    check = health_check(call.channel)
    all_serving = True
    for name in HEALTH_NAMES:
        status = serving_status(check, name, call.timeout)
        call.printer.record({"service": name, "status": status}, f"{name or '(server)':<28}{status}")
        all_serving = all_serving and status == "SERVING"
    return EXIT_OK if all_serving else EXIT_NOT_SERVING


def _smoke(call: Call) -> int:
    results = run_smoke(call.channel, call.timeout)
    for result in results:
        call.printer.record(
            {"check": result.name, "passed": result.passed, "detail": result.detail}, str(result)
        )
    failed = [result.name for result in results if not result.passed]
    checks = counted(len(results), "check")
    if failed:
        call.printer.summary(f"smoke: {len(failed)} of {checks} failed: {', '.join(failed)}")
        return EXIT_SMOKE_FAILED
    call.printer.summary(f"smoke: all {checks} passed")
    return EXIT_OK


def _categories(call: Call) -> int:
    products: dict[str, int] = {}
    # The largest page there is: the server coerces it down to its own maximum (AIP-158).
    for page in _pages(call, page_size=_INT32_MAX):
        for product in page.products:
            products[product.category] = products.get(product.category, 0) + 1
    for category, count in sorted(products.items()):
        call.printer.record({"category": category, "products": count}, f"{category or '(none)':<28}{count}")
    total = sum(products.values())
    call.printer.summary(f"{counted(len(products), 'category', 'categories')}, {counted(total, 'product')}")
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("get", "one product", _get, (arg("product_id", metavar="ID", type=_text),)),
    Command(
        "list",
        "one page of products, or with --all every page after it",
        _list,
        (
            arg("--category", default="", metavar="C", type=_text, help="only this category (exact match)"),
            arg(
                "--page-size",
                type=_non_negative_int,
                default=0,
                metavar="N",
                help="products per page (0: server default)",
            ),
            arg(
                "--page-token",
                default="",
                metavar="T",
                type=_text,
                help="start at this page (a next page token)",
            ),
            arg(
                "--all",
                dest="all_pages",
                action="store_true",
                help="follow next page tokens to the last page",
            ),
        ),
    ),
    Command(
        "search",
        "products matching QUERY, printed as the server streams them",
        _search,
        (
            arg("query", metavar="QUERY", type=_text),
            arg(
                "--max",
                dest="max_results",
                type=_non_negative_int,
                default=0,
                metavar="N",
                help="at most N results (0: server default)",
            ),
        ),
    ),
    Command("categories", "every category and how many products it has (reads every page)", _categories),
    Command("health", f'serving status of "" and {SERVICE_NAME}', _health),
    Command(
        "smoke",
        "check that the server answers correctly: health, paging, get, search, invalid requests, deadlines;"
        " one PASS or FAIL line per check",
        _smoke,
    ),
)
