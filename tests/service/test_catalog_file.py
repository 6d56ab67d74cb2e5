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
from tests.servers import ROOT
from tests.service.helpers import make_products, write_catalog

GOOD = {
    "id": "a",
    "name": "Anvil",
    "description": "Heavy",
    "price": 10.5,
    "category": "tools",
    "inStock": True,
}


def test_embedded_catalog_is_the_seeds_five_products() -> None:
    store = load_catalog()
    assert len(store) == 5
    assert [store.get(str(i)).name for i in range(1, 6)] == [  # type: ignore[union-attr]
        "Laptop Pro 16",
        "Wireless Mouse",
        "Standing Desk",
        "Monitor 27 4K",
        "Desk Lamp",
    ]
    assert store.get("3").in_stock is False  # type: ignore[union-attr]


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
    assert store.get("a") == Product(
        id="a", name="Anvil", description="Heavy", price=10.5, category="tools", in_stock=True
    )
    assert store.get("b") == Product(id="b", name="B", in_stock=True, price=2.25)
    assert store.get("c") == Product(id="c", name="C")


@pytest.mark.parametrize(
    ("products", "expected"),
    [
        ([{**GOOD, "id": ""}], "products[0]: id: must not be empty"),
        ([{**GOOD, "name": ""}], "products[0] (id 'a'): name: must not be empty"),
        ([GOOD, {**GOOD, "name": "x"}], "products[1] (id 'a'): id: duplicates products[0]"),
        ([{**GOOD, "price": -1}], "products[0] (id 'a'): price: must be a finite number >= 0, got -1.0"),
        ([{**GOOD, "price": "NaN"}], "products[0] (id 'a'): price: must be a finite number >= 0, got nan"),
        ([{**GOOD, "price": "Infinity"}], "(id 'a'): price: must be a finite number >= 0, got inf"),
        ([{**GOOD, "price": "cheap"}], "products[0] (id 'a'): price: expected a number"),
        ([{**GOOD, "price": True}], "products[0] (id 'a'): price: expected a number"),
        ([{**GOOD, "price": 10**400}], "products[0] (id 'a'): price: 10000000000000000000... is too large"),
        ([{"id": "a", "name": "A", "price": 10**400}], "price: 10000000000000000000... is too large"),
        ([{**GOOD, "inStock": "yes"}], "products[0] (id 'a'): in_stock: expected true or false"),
        ([{**GOOD, "name": 7}], "products[0] (id 'a'): name: expected a string"),
        ([{**GOOD, "id": 7}], "products[0]: id: expected a string"),
        ([{**GOOD, "colour": "red"}], "products[0] (id 'a'): colour: unknown field"),
        ([{**GOOD, "in_stock": True}], "products[0] (id 'a'): in_stock: given twice"),
        ([GOOD, "nope"], "products[1]: expected a JSON object"),
    ],
)
def test_invalid_product_is_refused_naming_file_position_and_field(
    tmp_path: Path, products: list[Any], expected: str
) -> None:
    path = write_catalog(tmp_path / "bad.json", products)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert str(raised.value).startswith(str(path) + ": ")
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", 'expected a JSON object {"products": [...]}'),
        ('{"items": []}', 'expected a JSON object {"products": [...]}'),
        ('{"products": [], "extra": 1}', "unknown top-level field 'extra'"),
        (b"\xff\xfe".decode("latin-1"), "not valid JSON"),
        ('{"products": [{"id": "a", "name": "A", "price": 1' + "0" * 5000 + "}]}", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
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
    assert [store.get(p.id) for p in products] == products


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
