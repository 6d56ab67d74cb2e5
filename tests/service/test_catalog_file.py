"""Loading and validating catalog files: each error names the file, the product and the field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from catalog.catalog_pb2 import ListProductsResponse, Product
from service.catalog_file import CatalogError, load_catalog, parse_catalog
from service.store import CatalogStore
from tests.catalog_files import BAD_CONTENTS, BAD_PRODUCTS, GOOD
from tests.servers import ROOT
from tests.service.helpers import make_products, write_catalog


def product(store: CatalogStore, product_id: str) -> Product:
    """The store's product with this id, decoded."""
    serialized = store.get(product_id)
    assert serialized is not None, product_id
    return Product.FromString(serialized)


def test_embedded_catalog_is_the_seeds_five_products() -> None:
    store = load_catalog()
    assert len(store) == 5
    assert [product(store, str(i)).name for i in range(1, 6)] == [
        "Laptop Pro 16",
        "Wireless Mouse",
        "Standing Desk",
        "Monitor 27 4K",
        "Desk Lamp",
    ]
    assert product(store, "3").in_stock is False


def test_both_spellings_of_in_stock_and_string_prices_are_accepted(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path / "c.json",
        [
            {**GOOD, "id": "a"},
            {"id": "b", "name": "B", "in_stock": True, "price": "2.25"},
            {"id": "c", "name": "C", "description": None},
        ],
    )
    store = load_catalog(path)
    assert product(store, "a") == Product(
        id="a", name="Anvil", description="Heavy", price=10.5, category="tools", in_stock=True
    )
    assert product(store, "b") == Product(id="b", name="B", in_stock=True, price=2.25)
    assert product(store, "c") == Product(id="c", name="C")


@pytest.mark.parametrize(("products", "expected"), BAD_PRODUCTS)
def test_invalid_product_is_refused_naming_file_position_and_field(
    tmp_path: Path, products: list[Any], expected: str
) -> None:
    path = write_catalog(tmp_path / "bad.json", products)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert str(raised.value).startswith(str(path) + ": ")
    assert expected in str(raised.value)


@pytest.mark.parametrize(("content", "expected"), BAD_CONTENTS)
def test_invalid_file_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(expected)):
        load_catalog(path)


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"missing\.json: cannot read"):
        load_catalog(tmp_path / "missing.json")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"products": [{"id": "\xe9", "name": "x"}]}')
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(path)


def test_store_built_in_code_is_validated_too() -> None:
    with pytest.raises(CatalogError, match=r"products\[1\] \(id 'p0'\): id: duplicates products\[0\]"):
        CatalogStore.from_products([*make_products(1), *make_products(1)])


def test_fingerprint_follows_content() -> None:
    assert CatalogStore.from_products(make_products(3)).fingerprint == (
        CatalogStore.from_products(make_products(3)).fingerprint
    )
    assert CatalogStore.from_products(make_products(3)).fingerprint != (
        CatalogStore.from_products(make_products(4)).fingerprint
    )


def test_a_loaded_catalog_is_fingerprinted_by_its_file(tmp_path: Path) -> None:
    items = [{"id": "a", "name": "A", "price": 1}, {"id": "b", "name": "B", "price": 2}]
    first = load_catalog(write_catalog(tmp_path / "first.json", items))
    same = load_catalog(write_catalog(tmp_path / "same.json", items))
    other = load_catalog(write_catalog(tmp_path / "other.json", [*items[:1], {**items[1], "price": 3}]))
    assert first.fingerprint == same.fingerprint != other.fingerprint


def test_a_file_written_from_the_json_mapping_round_trips(tmp_path: Path) -> None:
    products = make_products(20)
    document = json_format.MessageToDict(ListProductsResponse(products=products, total_count=20))
    path = tmp_path / "mapped.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    store = load_catalog(path)
    assert [store.get(p.id) for p in products] == [p.SerializeToString() for p in products]


def test_bytes_are_checked_as_a_file_is_naming_the_source(tmp_path: Path) -> None:
    data = json.dumps({"products": [GOOD, {**GOOD, "id": "42", "price": "cheap"}]}).encode()
    with pytest.raises(CatalogError) as raised:
        parse_catalog(data, "gs://bucket/catalog.json")
    assert str(raised.value) == (
        "gs://bucket/catalog.json: products[1] (id '42'): price: expected a number, got \"cheap\""
    )
    store = parse_catalog(json.dumps({"products": [GOOD]}).encode(), "good.json", search_index="never")
    assert store.get("a") == load_catalog(write_catalog(tmp_path / "c.json", [GOOD])).get("a")


def test_the_file_format_is_importable_without_grpc() -> None:
    # What checks a catalog file before it ships (the Pulumi program) uses this module without a server.
    code = (
        "import sys, service.catalog_file; print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc'))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert imported.stdout.strip() == "[]"
