"""The product catalog: loaded once, validated whole, indexed for the queries the API answers.

Plain Python over protobuf messages; nothing here knows about gRPC.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from catalog.catalog_pb2 import Product

EMBEDDED_CATALOG = "data/products.json"


class CatalogError(ValueError):
    """The catalog cannot be served: the message names the file, the product and the field."""


class CatalogStore:
    """An immutable, validated catalog with the indexes behind every RPC.

    Build it with `load_catalog` (from JSON) or `from_products`; both refuse an invalid catalog whole.
    """

    def __init__(self, products: Sequence[Product], source: str = "<memory>") -> None:
        for position, product in enumerate(products):
            problem = _product_problem(product)
            if problem:
                raise CatalogError(f"{source}: {_where(position, product.id)}: {problem}")
        self._products: tuple[Product, ...] = tuple(products)
        self._positions_by_id: dict[str, int] = {}
        positions_by_category: dict[str, list[int]] = {}
        for position, product in enumerate(self._products):
            first = self._positions_by_id.setdefault(product.id, position)
            if first != position:
                raise CatalogError(
                    f"{source}: {_where(position, product.id)}: id: duplicates products[{first}]"
                )
            positions_by_category.setdefault(product.category, []).append(position)
        self._positions_by_category = {c: tuple(p) for c, p in positions_by_category.items()}
        self._all_positions = range(len(self._products))
        # Lower-cased once here, so a search does no per-product work beyond the match itself.
        self._search_texts = tuple((p.name.lower(), p.description.lower()) for p in self._products)
        self.fingerprint = _fingerprint(self._products)

    @classmethod
    def from_products(cls, products: Sequence[Product]) -> CatalogStore:
        """Validate and index products given in catalog order."""
        return cls(products)

    def __len__(self) -> int:
        return len(self._products)

    def get(self, product_id: str) -> Product | None:
        """The product with this id, or None."""
        position = self._positions_by_id.get(product_id)
        return None if position is None else self._products[position]

    def count(self, category: str) -> int:
        """How many products ListProducts matches for this category filter ("" = all)."""
        return len(self._matching(category))

    def page(self, category: str, offset: int, limit: int) -> list[Product]:
        """Matching products offset..offset+limit in catalog order: a slice, whatever the catalog size."""
        return [self._products[i] for i in self._matching(category)[offset : offset + limit]]

    def search(self, query: str, limit: int) -> Iterator[Product]:
        """Products whose lower-cased name or description contains query.lower(), in catalog order."""
        needle = query.lower()
        found = 0
        for position, (name, description) in enumerate(self._search_texts):
            if found >= limit:
                return
            if needle in name or needle in description:
                found += 1
                yield self._products[position]

    def _matching(self, category: str) -> Sequence[int]:
        if not category:
            return self._all_positions
        return self._positions_by_category.get(category, ())


def load_catalog(path: Path | None = None) -> CatalogStore:
    """Load a catalog file (`{"products": [...]}`, protobuf JSON mapping); None loads the embedded one."""
    if path is None:
        source = f"embedded catalog {EMBEDDED_CATALOG}"
        text = resources.files("service").joinpath(EMBEDDED_CATALOG).read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CatalogError(f"{source}: cannot read: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise CatalogError(f"{source}: not valid JSON: {error}") from None
    return CatalogStore(_decode_products(document, source), source)


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
            products.append(Product(**_product_fields(item)))
        except ValueError as error:
            raw_id = item.get("id")
            raise CatalogError(
                f"{source}: {_where(position, raw_id if isinstance(raw_id, str) else '')}: {error}"
            ) from None
    return products


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


def _product_problem(product: Product) -> str | None:
    if not product.id:
        return "id: must not be empty"
    if not product.name:
        return "name: must not be empty"
    if not (math.isfinite(product.price) and product.price >= 0):
        return f"price: must be a finite number >= 0, got {product.price}"
    return None


def _where(position: int, product_id: str) -> str:
    return f"products[{position}] (id {product_id!r})" if product_id else f"products[{position}]"


def _fingerprint(products: Sequence[Product]) -> bytes:
    digest = hashlib.sha256()
    for product in products:
        serialized = product.SerializeToString(deterministic=True)
        digest.update(len(serialized).to_bytes(4, "big"))
        digest.update(serialized)
    return digest.digest()
