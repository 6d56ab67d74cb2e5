"""How answers are printed: aligned lines for people, or JSON, one object per line, for tools.

Products are printed in the protobuf JSON mapping (lowerCamelCase names, every field present): `get` and
`search` one Product per line, `list` one ListProductsResponse per page (so `nextPageToken` and `totalCount`
survive). Every other answer is one plain object per line (`Printer.record`): `{"service", "status"}` per
health name, `{"check", "passed", "detail"}` per smoke check.
"""

import json
from collections.abc import Iterable, Mapping
from typing import TextIO

from google.protobuf import json_format
from google.protobuf.message import Message

from catalog import catalog_pb2

_COLUMNS = (("ID", 10), ("NAME", 28), ("CATEGORY", 14), ("PRICE", 10), ("IN STOCK", 0))


class Printer:
    """Writes every answer of one invocation to `out`, flushing each line so a stream shows as it arrives."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self._out = out
        self._as_json = as_json
        self._rows = 0
        self._header_printed = False

    @property
    def rows(self) -> int:
        """How many products were printed as table rows or JSON lines so far."""
        return self._rows

    def _line(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _json(self, message: Message) -> None:
        self._line(json.dumps(json_format.MessageToDict(message, always_print_fields_with_no_presence=True)))

    def product(self, product: catalog_pb2.Product) -> None:
        """Print one product in full (GetProduct)."""
        if self._as_json:
            self._json(product)
            return
        for label, value in (
            ("id", product.id),
            ("name", product.name),
            ("description", product.description),
            ("price", _price(product.price)),
            ("category", product.category),
            ("in stock", _yes_no(product.in_stock)),
        ):
            self._line(f"{label + ':':<13}{value}")

    def row(self, product: catalog_pb2.Product) -> None:
        """Print one product as a table row, under a header printed once (as a stream delivers them)."""
        self._rows += 1
        if self._as_json:
            self._json(product)
            return
        if not self._header_printed:
            self._header_printed = True
            self._line(_table_line(name for name, _ in _COLUMNS))
        self._line(
            _table_line(
                (product.id, product.name, product.category, _price(product.price), _yes_no(product.in_stock))
            )
        )

    def page(self, page: catalog_pb2.ListProductsResponse) -> None:
        """Print one page of ListProducts."""
        if self._as_json:
            self._rows += len(page.products)
            self._json(page)
            return
        for product in page.products:
            self.row(product)

    def summary(self, text: str) -> None:
        """Close with a line for people (how many, where to go on); JSON output has none."""
        if not self._as_json:
            self._line(text)

    def record(self, fields: Mapping[str, object], text: str) -> None:
        """Print one answer that is not a product: `fields` as one JSON object, or `text` as one line."""
        self._line(json.dumps(fields) if self._as_json else text)


def _table_line(cells: Iterable[object]) -> str:
    values = [str(cell) for cell in cells]
    parts = []
    for (name, width), value in zip(_COLUMNS, values, strict=True):
        parts.append(value.rjust(width) if name == "PRICE" else value.ljust(width))
    return "  ".join(parts).rstrip()


def _price(price: float) -> str:
    return f"{price:.2f}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
