"""The catalog file: `{"products": [...]}` in protobuf's JSON mapping, decoded by hand, and its fingerprint.

The one way a catalog file is read, by the server and by anything that checks a file before it ships:

    from service.catalog_file import CatalogError, load_catalog
    store = load_catalog("catalog.json")  # raises CatalogError naming the file, the product and the field

Importing this module imports protobuf but not grpc.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from catalog.catalog_pb2 import Product
from service.store import CatalogError, CatalogStore, Indexing, gc_paused, where

__all__ = ["EMBEDDED_CATALOG", "CatalogError", "CatalogUnreadableError", "load_catalog", "parse_catalog"]

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
) -> CatalogStore:
    """Read and validate a catalog file; None loads the embedded one. Raises CatalogError.

    The store is ready for every call when this returns; by default its search index follows on a thread
    (within a second at 100k products), and searches scan until then, with the same answers.
    `expected_sha256` (hex) refuses, as CatalogUnreadableError, bytes with another digest: a read cut short,
    or a file other than the one deployed, is never parsed, let alone served. `name` is how errors name the
    file (its path by default).
    """
    source = name or (f"embedded catalog {EMBEDDED_CATALOG}" if path is None else os.fspath(path))
    try:
        with open(EMBEDDED_CATALOG if path is None else path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise CatalogUnreadableError(f"{source}: cannot read: {error}") from None
    digest = hashlib.sha256(data).digest()
    if expected_sha256 is not None and digest.hex() != expected_sha256:
        raise CatalogUnreadableError(
            f"{source}: read {len(data)} bytes with SHA-256 {digest.hex()}, expected {expected_sha256} "
            "(CATALOG_SHA256): the read was cut short, or this is not the file that was deployed"
        )
    owned = [data]
    del data
    return _parse(owned, source, search_index, digest)


def parse_catalog(data: bytes, source: str, *, search_index: Indexing = "background") -> CatalogStore:
    """Validate a catalog file's bytes; `source` names the file in every CatalogError."""
    return _parse([data], source, search_index)


def _parse(
    owned: list[bytes], source: str, search_index: Indexing, digest: bytes | None = None
) -> CatalogStore:
    """Parse the bytes in `owned`, a list it empties so that it holds their only reference.

    The file's bytes, its text and its parsed form are the peak of start-up memory: each is dropped as
    soon as it is done with.
    """
    data = owned.pop()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CatalogError(f"{source}: cannot read: {error}") from None
    # The file's digest, not the products': every instance of a revision reads the same file, and hashing
    # its bytes takes 12 ms at 100k products where serializing each product took 70.
    fingerprint = hashlib.sha256(data).digest() if digest is None else digest
    del data
    with gc_paused():
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:  # also: integers past 4300 digits, deep nesting
            raise CatalogError(f"{source}: not valid JSON: {error}") from None
        del text
        products = _decode_products(document, source)
        del document
    # The server reports SERVING once this returns: products, ids, categories and page tokens are ready.
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
            products.append(_plain_product(item) or Product(**_product_fields(item)))
        except ValueError as error:
            raw_id = item.get("id")
            raise CatalogError(
                f"{source}: {where(position, raw_id if isinstance(raw_id, str) else '')}: {error}"
            ) from None
    return products


# The shape a generated or exported catalog has: every field, lowerCamel names.
_PLAIN_KEYS = frozenset(("id", "name", "description", "price", "category", "inStock"))


def _plain_product(item: dict[str, Any]) -> Product | None:
    """The product, if the item has the plain shape with the JSON types the mapping wants; else None.

    A fast path for start-up (about twice as fast as _product_fields): it accepts only what
    _product_fields accepts the same way, and leaves everything else, errors included, to it.
    """
    if item.keys() != _PLAIN_KEYS:
        return None
    product_id, name, description = item["id"], item["name"], item["description"]
    price, category, in_stock = item["price"], item["category"], item["inStock"]
    if (
        type(product_id) is str
        and type(name) is str
        and type(description) is str
        and type(category) is str
        and type(in_stock) is bool
        and (type(price) is float or type(price) is int)
    ):
        try:
            return Product(
                id=product_id,
                name=name,
                description=description,
                price=float(price),
                category=category,
                in_stock=in_stock,
            )
        except OverflowError:  # an integer price beyond a double: _product_fields says so
            return None
    return None


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
