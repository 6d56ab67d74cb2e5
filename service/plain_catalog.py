"""The fast way to read a large catalog file: products of the plain shape, a window of them at a time.

`{"products": [...]}` where every product has exactly `id`, `name`, `description`, `price`, `category`
and `inStock` (as generated and exported catalogs do). msgspec decodes and type-checks a window of about
a megabyte of products in C, and CatalogBuilder.add_columns packs them with C doing the loops: loading a
million products takes about half what the json module's scanner took one product at a time.

Anything else (another shape, an unusual spelling, a product the server would refuse) makes `read_plain`
give up, and the caller reads the file the general way (service/catalog_file.py), which accepts every
valid file and words every error. So this path never decides what a file means, only how fast a file of
the plain shape loads. Imported only for files large enough to be worth its import (a fifth of start-up).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

import msgspec

from service.store import CatalogBuilder


class _Product(msgspec.Struct, rename={"in_stock": "inStock"}, forbid_unknown_fields=True, gc=False):
    """A product of the plain shape: every field present, of its JSON type (a price is any number)."""

    id: str
    name: str
    description: str
    price: float
    category: str
    in_stock: bool


_decode_products = msgspec.json.Decoder(list[_Product]).decode
_fields = msgspec.structs.astuple
# The document up to its products' first item: `{"products": [`, with any whitespace.
_START = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"products"[ \t\n\r]*:[ \t\n\r]*\[')
_START_BYTES = 64  # read before matching _START (a file that starts with more whitespace is not plain)
_END = re.compile(rb"[ \t\n\r]*\][ \t\n\r]*\}[ \t\n\r]*")
# Whitespace from a position; it matches anywhere (perhaps nothing), so never returns None.
_skip = cast(Callable[[bytes, int], re.Match[bytes]], re.compile(rb"[ \t\n\r]*").match)
# Windows whose last candidate end turns out to be inside a string ("}," in a description) try an
# earlier one; this many failures and the file is read the general way.
_MAX_TRIES = 4


def read_plain(read: Callable[[int], bytes], builder: CatalogBuilder, chunk_bytes: int) -> bool:
    """Add every product of a plain file to `builder`, reading it `chunk_bytes` at a time to its end.

    False as soon as the file is not plain (the builder then holds part of it, to be dropped).
    """
    window = read(chunk_bytes)
    while len(window) < _START_BYTES and (chunk := read(chunk_bytes)):
        window += chunk
    start = _START.match(window)
    if start is None:
        return False
    at, ended = start.end(), False
    while True:
        at = _skip(window, at).end()
        if window.startswith(b"]", at):  # the products' end; nothing but the object's may follow
            rest = window[at:] + _read_to_end(read, chunk_bytes)
            return _END.fullmatch(rest) is not None
        end = _add_window(window, at, builder) if at < len(window) else at
        if end is None:
            return False
        if end == at:  # not one whole product in the window: read on
            if ended:
                return False
            chunk = read(max(chunk_bytes, len(window) - at))  # doubling: a long product is rescanned little
            ended = not chunk
            window, at = window[at:] + chunk, 0
            continue
        at = _skip(window, end).end()
        if window.startswith(b",", at):
            at += 1


def _add_window(window: bytes, at: int, builder: CatalogBuilder) -> int | None:
    """Add the products that end in `window` after `at`; where they end (`at` if none), or None.

    A product ends at a "}" followed by "," or "]" (after whitespace). Decoding "[" + the window up to
    one such "}" + "]" as a list of products succeeds only if that "}" ends a product of the file: JSON
    values end unambiguously, so the decoder reads the file's own products, and one cut inside a string or
    a nested value leaves the list unterminated.
    """
    candidate = len(window)
    for _ in range(_MAX_TRIES):
        candidate = _last_product_end(window, at, candidate)
        if candidate < 0:
            return at
        try:
            products = _decode_products(b"[" + window[at : candidate + 1] + b"]")
        except msgspec.DecodeError:  # ValidationError too: not the plain shape, or a cut in a string
            continue
        columns = list(zip(*map(_fields, products), strict=True))
        ids, names, descriptions, prices, categories, in_stock = columns or ((),) * 6
        added = builder.add_columns(
            ids=ids,
            names=names,
            descriptions=descriptions,
            prices=prices,
            categories=categories,
            in_stock=in_stock,
        )
        return candidate + 1 if added else None
    return None


def _last_product_end(window: bytes, at: int, before: int) -> int:
    """The last "}" in window[at:before] followed by "," or "]" (after whitespace), or -1."""
    while True:
        brace = window.rfind(b"}", at, before)
        if brace < 0:
            return -1
        after = _skip(window, brace + 1).end()
        if after < len(window) and window[after] in b",]":
            return brace
        before = brace


def _read_to_end(read: Callable[[int], bytes], chunk_bytes: int) -> bytes:
    chunks = []
    while chunk := read(chunk_bytes):
        chunks.append(chunk)
    return b"".join(chunks)
