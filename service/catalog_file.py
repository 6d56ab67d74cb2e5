"""The catalog file: `{"products": [...]}` in protobuf's JSON mapping, decoded by hand, and its fingerprint.

The one way a catalog file is read, by the server and by anything that checks a file before it ships:

    from service.catalog_file import CatalogError, load_catalog
    store = load_catalog("catalog.json")  # raises CatalogError naming the file, the product and the field

Importing this module imports protobuf but not grpc.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any, cast

from catalog.catalog_pb2 import Product
from service import saved_catalog
from service.saved_catalog import saved_catalog_path
from service.store import (
    CatalogBuilder,
    CatalogError,
    CatalogStore,
    Indexing,
    ProductFields,
    gc_paused,
    where,
)

__all__ = ["EMBEDDED_CATALOG", "CatalogError", "CatalogUnreadableError", "load_catalog", "parse_catalog"]

_log = logging.getLogger(__name__)

# Found beside this file rather than through importlib.resources, which costs 5% of start-up to import.
EMBEDDED_CATALOG = os.path.join(os.path.dirname(__file__), "data", "products.json")


class CatalogUnreadableError(CatalogError):
    """The file could not be read whole: missing, unreadable, or not the bytes CATALOG_SHA256 names.

    Unlike any other CatalogError, it may pass: a file on a Cloud Storage mount can be missing or fail
    to read for a moment while the mount starts (service.server retries these for a bounded time).
    """


def load_catalog(
    path: str | os.PathLike[str] | None = None,
    *,
    search_index: Indexing = "background",
    expected_sha256: str | None = None,
    name: str | None = None,
    saved: bool = True,
) -> CatalogStore:
    """Read and validate a catalog file; None loads the embedded one. Raises CatalogError.

    The store is ready for every call when this returns; by default its search index follows on a thread,
    and searches scan until then, with the same answers. Where the file's saved catalog is beside it
    (`saved_catalog_path`) and is this file's, that is read instead, index and all, in a fraction of the
    time (`saved=False` reads the file itself: to check it, or to save it). `expected_sha256` (hex)
    refuses, as CatalogUnreadableError, bytes with another digest: a read cut short, or a file other than
    the one deployed, never becomes a store. `name` is how errors name the file (its path by default).
    """
    source = name or (f"embedded catalog {EMBEDDED_CATALOG}" if path is None else os.fspath(path))
    file_path = EMBEDDED_CATALOG if path is None else path
    if saved:
        store = _read_saved(file_path, expected_sha256, source)
        if store is not None:
            return store
    digest = hashlib.sha256()
    size = 0
    try:
        with open(file_path, "rb") as file:

            def read(wanted: int) -> bytes:
                nonlocal size
                chunk = file.read(wanted)
                digest.update(chunk)
                size += len(chunk)
                return chunk

            with gc_paused():
                builder = None
                if os.fstat(file.fileno()).st_size >= _PLAIN_MIN_BYTES:
                    builder = _read_plain(read, source)
                    if builder is None:  # not plain: read again, the general way
                        file.seek(0)
                        digest, size = hashlib.sha256(), 0
                if builder is None:
                    builder = _stream(read, source)
            while read(_CHUNK_BYTES):  # the rest of a file whose parse stopped early, for its digest
                pass
    except OSError as error:
        raise CatalogUnreadableError(f"{source}: cannot read: {error}") from None
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise CatalogUnreadableError(
            f"{source}: read {size} bytes with SHA-256 {digest.hexdigest()}, expected "
            f"{expected_sha256} (CATALOG_SHA256): the read was cut short, or this is not the file that "
            "was deployed"
        )
    if builder is None:  # an unusual shape or an error: the whole file, as the reference parser reads it
        try:
            with open(file_path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise CatalogUnreadableError(f"{source}: cannot read: {error}") from None
        if hashlib.sha256(data).digest() != digest.digest():
            raise CatalogUnreadableError(f"{source}: the file changed while it was read")
        return _parse_whole([data], source, search_index, digest.digest())
    return CatalogStore(builder.finish(), search_index=search_index, fingerprint=digest.digest())


def _read_saved(
    file_path: str | os.PathLike[str], expected_sha256: str | None, source: str
) -> CatalogStore | None:
    """The store and search index saved beside the catalog file, if that is this file's; else None.

    The file's digest is `expected_sha256` where the deployment gives it (the catalog file is then not
    read at all), else the file's bytes are hashed (0.2 s at a million products) to know.
    """
    saved_path = saved_catalog_path(file_path)
    started = time.perf_counter()
    try:
        saved_file = open(saved_path, "rb")  # noqa: SIM115  (closed below, whatever happens)
    except FileNotFoundError:
        return None  # none was saved: loading the catalog file is the usual way
    except OSError as error:
        _log.warning("saved catalog %s not used, loading %s instead: %s", saved_path, source, error)
        return None
    with saved_file:
        if expected_sha256 is not None:
            fingerprint = bytes.fromhex(expected_sha256)
        else:
            try:
                with open(file_path, "rb") as catalog_file:
                    fingerprint = hashlib.file_digest(catalog_file, "sha256").digest()
            except OSError:
                return None  # loading the catalog file says what is wrong with it
        try:
            with gc_paused():
                records, index = saved_catalog.read(saved_file, fingerprint)
        except (OSError, saved_catalog.SavedCatalogError) as error:
            _log.warning("saved catalog %s not used, loading %s instead: %s", saved_path, source, error)
            return None
    _log.info(
        "catalog of %d products and its search index read from %s in %.2f s",
        len(records.id_keys),
        saved_path,
        time.perf_counter() - started,
    )
    return CatalogStore(records, source, fingerprint=fingerprint, index=index)


def parse_catalog(data: bytes, source: str, *, search_index: Indexing = "background") -> CatalogStore:
    """Validate a catalog file's bytes; `source` names the file in every CatalogError."""
    with gc_paused():
        builder = _read_plain(io.BytesIO(data).read, source) if len(data) >= _PLAIN_MIN_BYTES else None
        if builder is None:
            builder = _stream(io.BytesIO(data).read, source)
    # The file's digest, not the products': every instance of a revision reads the same file, and hashing
    # its bytes takes 12 ms at 100k products where serializing each product took 70.
    fingerprint = hashlib.sha256(data).digest()
    if builder is None:
        return _parse_whole([data], source, search_index, fingerprint)
    return CatalogStore(builder.finish(), search_index=search_index, fingerprint=fingerprint)


# The file is read and decoded this many bytes at a time: its text is never whole in memory (at a million
# products it would be 200 to 400 MB beside the store being built).
_CHUNK_BYTES = 1 << 20
# The JSON module's own scanner and whitespace (json.decoder.WHITESPACE), one value at a time.
# (typeshed does not declare the scanner the decoder makes in its constructor).
_scan_value: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# It matches anywhere (perhaps nothing), so never returns None.
_skip_whitespace = cast(Callable[[str, int], re.Match[str]], re.compile(r"[ \t\n\r]*").match)


# Files this large are read as plain files first (service/plain_catalog.py), and only if they are not,
# the general way: below it, importing the plain reader's decoder would cost more than it saves.
_PLAIN_MIN_BYTES = _CHUNK_BYTES


def _read_plain(read: Callable[[int], bytes], source: str) -> CatalogBuilder | None:
    """The products of a plain file, or None for any other file (whatever was read of it is dropped)."""
    from service.plain_catalog import read_plain  # noqa: PLC0415  (large files only: see above)

    builder = CatalogBuilder(source)
    return builder if read_plain(read, builder, _CHUNK_BYTES) else None


class _NotStreamableError(ValueError):
    """The streaming parser stops: the file is parsed whole instead, which says what is wrong, if anything."""


class _Text:
    """A file's text, decoded a window at a time, with a cursor (`at`) into the window."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.at = 0
        self._ended = False

    def _more(self) -> bool:
        """Drop the text before the cursor and decode more; False at the end of the file."""
        if self._ended:
            return False
        kept = len(self.text) - self.at
        chunk = self._read(max(_CHUNK_BYTES, 2 * kept))  # doubling: a long value is rescanned few times
        self._ended = not chunk
        self.text = self.text[self.at :] + self._decoder.decode(chunk, final=self._ended)
        self.at = 0
        return True

    def peek(self) -> str:
        """The next character after whitespace, with the cursor on it; "" at the end of the file."""
        while True:
            self.at = _skip_whitespace(self.text, self.at).end()
            if self.at < len(self.text):
                return self.text[self.at]
            if not self._more():
                return ""

    def take(self, char: str) -> None:
        """Step over `char`, the next character after whitespace."""
        if self.peek() != char:
            raise _NotStreamableError(char)
        self.at += 1

    def value(self) -> Any:
        """The JSON value at the cursor, which then moves past it."""
        self.peek()
        while True:
            try:
                value, end = _scan_value(self.text, self.at)
            except (StopIteration, ValueError):  # cut off by the window's end, or invalid
                end = -1
            # A value that ends at the window's end may go on past it (a number's digits): read more.
            if 0 <= end < len(self.text) or (end >= 0 and self._ended):
                self.at = end
                return value
            if not self._more():
                raise _NotStreamableError("value")


def _stream(read: Callable[[int], bytes], source: str) -> CatalogBuilder | None:
    """The products of a file in the usual shape, validated as they are read; None for anything else.

    None means the file is invalid or unusual (a key given twice, anything the scanner refuses): the
    whole file is then parsed as json.loads reads it, which gives the exact error, or the catalog.
    What is left unread of the file is the caller's to finish (its digest).
    """
    builder = CatalogBuilder(source)
    text = _Text(read)
    seen: set[str] = set()
    try:
        text.take("{")
        while True:
            key = text.value()
            if not isinstance(key, str) or key in seen or key not in _TOP_LEVEL_KEYS:
                return None
            seen.add(key)
            text.take(":")
            if key == "products":
                _stream_products(text, builder)
            else:
                text.value()
            if text.peek() != ",":
                break
            text.at += 1
        text.take("}")
        if "products" not in seen or text.peek() != "":
            return None
    except (ValueError, RecursionError):  # CatalogError too; also integers past 4300 digits, deep nesting
        return None
    return builder


def _stream_products(text: _Text, builder: CatalogBuilder) -> None:
    text.take("[")
    if text.peek() == "]":
        text.at += 1
        return
    add, scan, skip, plain = builder.add_serialized, _scan_value, _skip_whitespace, _PLAIN_KEYS
    while True:
        # The hot path, which start-up time is mostly spent in: the items that end inside the window,
        # each followed by its comma, in the plain shape (see _fields; the same code, inlined).
        window = text.text
        size = len(window)
        at = skip(window, text.at).end()
        while True:
            try:
                item, end = scan(window, at)
            except (StopIteration, ValueError):  # cut off by the window's end, or invalid
                break
            comma = skip(window, end).end()
            if comma >= size or window[comma] != ",":
                break
            if type(item) is dict and item.keys() == plain:
                product_id, name, description = item["id"], item["name"], item["description"]
                price, category, in_stock = item["price"], item["category"], item["inStock"]
                if (
                    type(product_id) is str
                    and type(name) is str
                    and type(description) is str
                    and type(category) is str
                    and type(in_stock) is bool
                    and type(price) is float
                ):
                    serialized = Product(
                        id=product_id,
                        name=name,
                        description=description,
                        price=price,
                        category=category,
                        in_stock=in_stock,
                    ).SerializeToString()
                    add((serialized, product_id, name, description, price, category))
                else:
                    add(_fields(item))
            else:
                add(_fields(item))
            at = skip(window, comma + 1).end()
        text.at = at
        # One item the general way: across the window's end, or the last one.
        add(_fields(text.value()))
        if text.peek() != ",":
            break
        text.at += 1
    text.take("]")


def _parse_whole(owned: list[bytes], source: str, search_index: Indexing, fingerprint: bytes) -> CatalogStore:
    """Parse the bytes in `owned` at once, a list it empties so that it holds their only reference.

    The reference parser: it holds the file's bytes, its text and its parsed form (each dropped as soon as
    it is done with), so the streaming parser takes every valid file of the usual shape, and this one
    the rest, with its exact error for an invalid one.
    """
    data = owned.pop()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CatalogError(f"{source}: cannot read: {error}") from None
    del data
    with gc_paused():
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:  # also: integers past 4300 digits, deep nesting
            raise CatalogError(f"{source}: not valid JSON: {error}") from None
        del text
        products = _decode_products(document, source)
        del document
    return CatalogStore(products, source, search_index=search_index, fingerprint=fingerprint)


# JSON decoding by hand: json_format.ParseDict takes ~2 s for 100k products, this ~0.2 s. It follows the
# protobuf JSON mapping for Product's field types and accepts both the proto and the lowerCamel names.
_STRING_FIELDS = ("id", "name", "description", "category")
_FIELD_NAMES = {
    json_name: field.name
    for field in Product.DESCRIPTOR.fields
    for json_name in (field.name, field.json_name)
}
_TOP_LEVEL_KEYS = {"products", "nextPageToken", "next_page_token", "totalCount", "total_count"}


def _decode_products(document: Any, source: str) -> list[Product]:
    if not isinstance(document, dict) or not isinstance(document.get("products"), list):
        raise CatalogError(f'{source}: expected a JSON object {{"products": [...]}}')
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise CatalogError(f"{source}: unknown top-level field {unknown[0]!r}")
    products = []
    for position, item in enumerate(document["products"]):
        if not isinstance(item, dict):
            raise CatalogError(f"{source}: products[{position}]: expected a JSON object")
        try:
            products.append(_product(item))
        except ValueError as error:
            raw_id = item.get("id")
            raise CatalogError(
                f"{source}: {where(position, raw_id if isinstance(raw_id, str) else '')}: {error}"
            ) from None
    return products


def _product(item: dict[str, Any]) -> Product:
    """The product a JSON object describes; ValueError naming the field."""
    return Product(**_product_fields(item))


# The shape a generated or exported catalog has: every field, lowerCamel names.
_PLAIN_KEYS = frozenset(("id", "name", "description", "price", "category", "inStock"))


def _fields(item: Any) -> ProductFields:
    """What the builder takes for one item of the products array; ValueError if it is not a product."""
    if type(item) is dict and item.keys() == _PLAIN_KEYS:
        # The fast path (about twice as fast as _product_fields): only what _product_fields accepts the
        # same way; everything else, errors included, is left to it.
        product_id, name, description = item["id"], item["name"], item["description"]
        price, category, in_stock = item["price"], item["category"], item["inStock"]
        if (
            type(product_id) is str
            and type(name) is str
            and type(description) is str
            and type(category) is str
            and type(in_stock) is bool
            and (type(price) is float or (type(price) is int and -_MAX_EXACT < price < _MAX_EXACT))
        ):
            price = float(price)
            serialized = Product(
                id=product_id,
                name=name,
                description=description,
                price=price,
                category=category,
                in_stock=in_stock,
            ).SerializeToString()
            return serialized, product_id, name, description, price, category
    if not isinstance(item, dict):
        raise _NotStreamableError("expected a JSON object")
    product = _product(item)
    return (
        product.SerializeToString(),
        product.id,
        product.name,
        product.description,
        product.price,
        product.category,
    )


# Integers this small convert to a double without OverflowError (larger ones go the general way, which
# says what is wrong with them).
_MAX_EXACT = 2**53


def _product_fields(item: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in item.items():
        name = _FIELD_NAMES.get(key)
        if name is None:
            raise ValueError(f"{key}: unknown field")
        if name in fields:
            raise ValueError(f"{key}: given twice (as {name} and its JSON name)")
        if value is None:  # the JSON mapping's null: the field's default
            continue
        fields[name] = _decode_value(name, value)
    return fields


def _decode_value(name: str, value: Any) -> Any:
    if name in _STRING_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {json.dumps(value)}")
        return value
    if name == "in_stock":
        if not isinstance(value, bool):
            raise ValueError(f"in_stock: expected true or false, got {json.dumps(value)}")
        return value
    # price: a JSON number, or a string holding one (the mapping allows "1.5", "NaN", "Infinity").
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"price: expected a number, got {json.dumps(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"price: expected a number, got {json.dumps(value)}") from None
    except OverflowError:
        raise ValueError(f"price: {str(value)[:20]}... is too large for a double") from None
