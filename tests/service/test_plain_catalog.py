"""Large files of the plain shape load on a fast path (service/plain_catalog.py) into the very same store.

The fast path decodes windows of products with msgspec and packs them column by column; it must give
byte for byte what the general reader gives (which the other tests hold to protobuf and json.loads), and
give way to it for any file it does not fully understand, so every error keeps its exact words.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.catalog import generate
from catalog.catalog_pb2 import Product
from service import catalog_file, plain_catalog
from service.catalog_file import load_catalog, parse_catalog
from service.store import CatalogBuilder, CatalogError, CatalogStore
from tests.service.test_store_properties import ALPHABET, PROPERTY_SETTINGS

# Text that exercises lower-casing, UTF-8 and the JSON escapes; long enough for two-byte lengths.
field_text = st.text(alphabet=ALPHABET + '"\\}{],:\x00é☃𝄞', max_size=140)
plain_items = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8),
        "name": field_text.filter(bool),
        "description": field_text,
        "price": st.sampled_from(
            [0.0, -0.0, 0, 1, 2**53 + 1, 10**30 + 1, 1.5, 1e-300, 1.7976931348623157e308]
        )
        | st.floats(0, 1e12, allow_nan=False)
        | st.integers(0, 2**64),
        "category": st.sampled_from(["", "a", "kitchen", "Küche"]),
        "inStock": st.booleans(),
    }
)


@pytest.fixture
def plain_for_any_size(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every file takes the fast path first; the list says whether each attempt read a plain file."""
    outcomes: list[bool] = []
    read_plain = plain_catalog.read_plain

    def recorded(*args: Any) -> bool:
        outcomes.append(read_plain(*args))
        return outcomes[-1]

    monkeypatch.setattr(catalog_file, "_PLAIN_MIN_BYTES", 0)
    monkeypatch.setattr(plain_catalog, "read_plain", recorded)
    return outcomes


def general(data: bytes) -> CatalogStore:
    """The store the general reader makes of `data`."""
    original = catalog_file._PLAIN_MIN_BYTES
    catalog_file._PLAIN_MIN_BYTES = len(data) + 1
    try:
        return parse_catalog(data, "f.json", search_index="never")
    finally:
        catalog_file._PLAIN_MIN_BYTES = original


def assert_same_store(fast: CatalogStore, reference: CatalogStore) -> None:
    fast_records, records = fast._records, reference._records
    assert bytes(fast_records.data) == bytes(records.data)
    assert fast_records.offsets == records.offsets
    assert fast_records.positions_by_category == records.positions_by_category
    assert list(fast_records.texts) == list(records.texts)
    assert fast.fingerprint == reference.fingerprint
    for position in range(len(reference)):
        product_id = Product.FromString(reference.page("", position, 1)[0]).id
        assert fast.get(product_id) == reference.get(product_id)


@PROPERTY_SETTINGS
@given(
    items=st.lists(plain_items, max_size=25, unique_by=lambda item: item["id"]),
    chunk=st.integers(1, 300),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (",\n  ", " :\t")]),
)
def test_plain_files_load_as_the_general_reader_loads_them(
    items: list[dict[str, Any]], chunk: int, separators: tuple[str, str]
) -> None:
    data = json.dumps({"products": items}, separators=separators, ensure_ascii=False).encode()
    original = catalog_file._PLAIN_MIN_BYTES, catalog_file._CHUNK_BYTES
    catalog_file._PLAIN_MIN_BYTES, catalog_file._CHUNK_BYTES = 0, chunk  # (hypothesis: no monkeypatch)
    try:
        builder = CatalogBuilder("f.json")
        read = iter([data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""] * 3).__next__
        assert plain_catalog.read_plain(lambda _wanted: read(), builder, chunk)
        fast = parse_catalog(data, "f.json", search_index="never")
    finally:
        catalog_file._PLAIN_MIN_BYTES, catalog_file._CHUNK_BYTES = original
    assert_same_store(fast, general(data))


def test_the_benchmark_catalog_loads_on_the_fast_path(plain_for_any_size: list[bool], tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"products": generate(3000)}, ensure_ascii=False), encoding="utf-8")
    fast = load_catalog(path, search_index="now")
    assert plain_for_any_size == [True]
    assert_same_store(fast, general(path.read_bytes()))


@pytest.mark.parametrize(
    ("products", "tail"),
    [
        ([{"id": "a", "name": "A", "description": "", "price": 1, "category": "", "in_stock": True}], ""),
        ([{"id": "a", "name": "A", "description": None, "price": 1, "category": "", "inStock": True}], ""),
        ([{"id": "a", "name": "A", "description": "", "price": "1.5", "category": "", "inStock": True}], ""),
        ([{"id": "a", "name": "A", "price": 1, "category": "", "inStock": True}], ""),
        (
            [{"id": "a", "name": "A", "description": "", "price": 1, "category": "", "inStock": True}],
            ', "totalCount": 1',
        ),
    ],
    ids=["in_stock", "null", "string price", "missing field", "another key"],
)
def test_other_files_are_read_the_general_way(
    plain_for_any_size: list[bool], products: list[dict[str, Any]], tail: str
) -> None:
    data = (json.dumps({"products": products})[:-1] + tail + "}").encode()
    loaded = parse_catalog(data, "f.json", search_index="never")
    assert len(loaded) == 1
    assert loaded.get("a") == general(data).get("a")
    assert plain_for_any_size == [False]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": ""}, "products[1] (id 'b'): name: must not be empty"),
        ({"id": ""}, "products[1]: id: must not be empty"),
        ({"price": -1}, "products[1] (id 'b'): price: must be a finite number >= 0, got -1.0"),
        ({"price": 1e400}, "products[1] (id 'b'): price: must be a finite number >= 0, got inf"),
        ({"id": "a"}, "products[1] (id 'a'): id: duplicates products[0]"),
        ({"name": "\ud800"}, "products[1] (id 'b'): "),
    ],
)
def test_a_bad_product_is_refused_in_the_general_readers_words(
    plain_for_any_size: list[bool], tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    good = {"id": "a", "name": "A", "description": "d", "price": 1, "category": "c", "inStock": True}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"products": [good, {**good, "id": "b", **change}]}), encoding="utf-8")
    with pytest.raises(CatalogError) as raised:
        load_catalog(path, search_index="never")
    assert str(raised.value).startswith(f"{path}: {expected}")
    # Duplicate ids are found once every product is in, whichever way the file was read.
    assert plain_for_any_size == ["duplicates" in expected]


def test_a_file_read_again_the_general_way_is_digested_once(
    plain_for_any_size: list[bool], tmp_path: Path
) -> None:
    path = tmp_path / "catalog.json"
    items = [  # in_stock for inStock: not plain
        {("in_stock" if key == "inStock" else key): value for key, value in item.items()}
        for item in generate(200)
    ]
    path.write_text(json.dumps({"products": items}), encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_catalog(path, search_index="never", expected_sha256=digest)
    assert plain_for_any_size == [False]
    assert loaded.fingerprint.hex() == digest
    assert len(loaded) == len(items)
