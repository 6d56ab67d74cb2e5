"""The compact store answers with the very bytes the protobuf-object store sent, read from any file layout.

The store holds products serialized in one buffer and reads catalog files a window at a time; these
tests hold both to the reference: protobuf's own serialization of the seed's answers, and json.loads.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.cases import reference_search
from bench.catalog import generate, generate_products
from catalog.catalog_pb2 import GetProductRequest, Product
from service import catalog_file, store
from service.catalog_file import load_catalog, parse_catalog
from service.store import CatalogError, CatalogStore, IdTable
from tests.service.test_store_properties import PROPERTY_SETTINGS, catalogs, json_items, serialized

COUNT = 3000
# Fragments of the generated vocabulary, rare and common, non-ASCII, across words, absent.
QUERIES = (
    "acme", "WIRELESS", "café", "größenwahn", "İstanbul", "i̇", "ærø", "s d", "desk", "a", "e", "z", "k7",
    "built to last", "two-year", "zürich", ", ", " ", "p0001", "no such thing", "ß", "tools",
)  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Product], CatalogStore, CatalogStore]:
    """The benchmark's catalog as products, and loaded from its file with and without the index."""
    path = tmp_path_factory.mktemp("generated") / "catalog.json"
    path.write_text(json.dumps({"products": generate(COUNT)}, ensure_ascii=False), encoding="utf-8")
    return (
        generate_products(COUNT),
        load_catalog(path, search_index="now"),
        load_catalog(path, search_index="never"),
    )


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("limit", [1, 10, 1000, COUNT])
def test_search_answers_are_the_reference_products_byte_for_byte(
    generated: tuple[list[Product], CatalogStore, CatalogStore], query: str, limit: int
) -> None:
    products, indexed, scanning = generated
    expected = serialized(reference_search(products, query, limit))
    assert indexed.indexed
    assert list(indexed.search(query, limit)) == expected
    assert list(scanning.search(query, limit)) == expected


def test_every_product_page_and_category_is_the_reference_byte_for_byte(
    generated: tuple[list[Product], CatalogStore, CatalogStore],
) -> None:
    products, indexed, _ = generated
    assert [indexed.get(p.id) for p in products] == serialized(products)
    assert indexed.page("", 0, COUNT) == serialized(products)
    for category in indexed.categories:
        members = [p for p in products if p.category == category]
        assert indexed.count(category) == len(members)
        assert indexed.page(category, 5, 40) == serialized(members[5:45])
    assert indexed.get("p999999") is None
    assert indexed.get("\ud800") is None  # a lone surrogate, which no stored id can be


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1000])
@pytest.mark.parametrize("layout", ["compact", "spaced", "indented"])
def test_a_file_read_in_small_windows_gives_the_same_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunk_bytes: int, layout: str
) -> None:
    # Windows that end inside every token: strings, non-ASCII characters, numbers, literals, whitespace.
    items = [
        *generate(30),
        {"id": "n", "name": "Ünïcødé ☃ 𝄞", "price": 12345.678, "inStock": False},
        {"id": "i", "name": "Integer", "price": 1234567, "category": "", "description": "x" * 3000},
        {"id": "s", "name": "String price", "price": "1e3", "in_stock": True, "description": None},
    ]
    separators = {"compact": (",", ":"), "spaced": (", ", ": "), "indented": (",\n  ", ":  ")}[layout]
    text = json.dumps({"totalCount": 3, "products": items, "nextPageToken": ""}, separators=separators)
    path = tmp_path / "catalog.json"
    path.write_text(text + "\n\t ", encoding="utf-8")
    monkeypatch.setattr(catalog_file, "_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(catalog_file, "_parse_whole", _not_called)  # the usual shape: streamed
    loaded = load_catalog(path, search_index="never")
    monkeypatch.undo()
    reference = catalog_file._parse_whole([path.read_bytes()], str(path), "never", b"")
    assert loaded.page("", 0, 100) == reference.page("", 0, 100)
    assert [Product.FromString(p).id for p in loaded.page("", 0, 100)] == [item["id"] for item in items]
    assert loaded.fingerprint == hashlib.sha256(path.read_bytes()).digest()


@PROPERTY_SETTINGS
@given(items=st.lists(json_items, max_size=12, unique_by=lambda item: item["id"]), chunk=st.integers(1, 40))
def test_streamed_loading_agrees_with_loading_the_whole_document(
    items: list[dict[str, Any]], chunk: int
) -> None:
    items = [item for item in items if not ("inStock" in item and "in_stock" in item)]
    data = json.dumps({"products": items}).encode()
    whole = catalog_file._parse_whole([data], "f.json", "never", b"")
    original = catalog_file._CHUNK_BYTES
    catalog_file._CHUNK_BYTES = chunk  # (monkeypatch does not mix with hypothesis's repeated calls)
    try:
        streamed = parse_catalog(data, "f.json", search_index="never")
    finally:
        catalog_file._CHUNK_BYTES = original
    assert streamed.page("", 0, 100) == whole.page("", 0, 100)


@pytest.mark.parametrize(
    "text",
    [
        '{"products": [{"id": "a", "name": "A"}], "products": [{"id": "b", "name": "B"}]}',  # the last wins
        '{"products": [{"id": "a", "name": "A", "price": NaN}], "products": []}',
        '{"nextPageToken": "x", "products": [{"id": "b", "name": "B", "price": Infinity}], "products": []}',
    ],
)
def test_unusual_valid_files_load_as_json_loads_reads_them(text: str) -> None:
    products = json.loads(text)["products"]
    assert len(parse_catalog(text.encode(), "f.json", search_index="never")) == len(products)


def _not_called(*args: object) -> None:
    raise AssertionError("the whole-document parser ran")


@PROPERTY_SETTINGS
@given(products=catalogs(max_size=30))
def test_ids_whose_hashes_collide_are_still_told_apart(products: list[Product]) -> None:
    original = store._HASH_MASK
    store._HASH_MASK = 0b11  # four hash values for every id: most ids share theirs with others
    try:
        catalog = CatalogStore.from_products(products, search_index="never")
        assert [catalog.get(p.id) for p in products] == serialized(products)
        assert catalog.get("absent") is None
        if products:
            with pytest.raises(
                CatalogError, match=rf"products\[{len(products)}\] .*duplicates products\[0\]"
            ):
                CatalogStore.from_products([*products, products[0]])
    finally:
        store._HASH_MASK = original


@pytest.mark.parametrize("count", [0, 1, 7, 3000])
def test_every_id_is_found_in_the_run_from_its_home_slot(count: int) -> None:
    products = generate_products(count)
    catalog = CatalogStore.from_products(products, search_index="never")
    assert [catalog.get(p.id) for p in products] == serialized(products)
    assert [catalog.get(f"absent-{i}") for i in range(1000)] == [None] * 1000
    hash_mask, shift, slots = catalog._records.id_table
    assert sorted(slots) == [0] * (len(slots) - count) + list(range(1, count + 1))  # each product once
    assert slots[-1] == 0  # every run ends
    assert count <= (len(slots) - 1 - store._OVERFLOW_SLOTS) // 2  # at most half the home slots taken
    for position, product in enumerate(products):
        slot = (zlib.crc32(product.id.encode()) & hash_mask) >> shift
        run = slots[slot : slots.index(0, slot)]
        assert position + 1 in run  # found before the run's end


@PROPERTY_SETTINGS
@given(
    ids=st.lists(st.text(min_size=1, max_size=140), min_size=1, max_size=12, unique=True),
    hash_mask=st.sampled_from([0b11, store._HASH_MASK]),
)
def test_a_product_is_found_by_its_id_field_only_when_that_is_whole(ids: list[str], hash_mask: int) -> None:
    products = [Product(id=product_id, name="n") for product_id in ids]
    original = store._HASH_MASK
    store._HASH_MASK = hash_mask  # two hash bits: ids collide, so the compare tells them apart
    try:
        catalog = CatalogStore.from_products(products)  # as served: its id table made now, of these hashes
    finally:
        store._HASH_MASK = original
    for product, answer in zip(products, serialized(products), strict=True):
        request = GetProductRequest(id=product.id).SerializeToString()
        encoded = product.id.encode()
        # Found from the request's bytes while its length fits one byte, else only by the parsed id.
        assert catalog.get_by_id_field(request) == (answer if len(encoded) < 0x80 else None)
        assert catalog.get(product.id) == answer
        # A field cut short, run on, or of another tag begins some product, or none: never found.
        for other in (request[:-1], request + b"x", request + request, b"\x12" + request[1:], b"", b"\x0a"):
            assert catalog.get_by_id_field(other) is None


def test_runs_that_pass_the_room_after_the_last_home_slot_get_room_for_all() -> None:
    # 200 keys, all of the highest hash: one run of 200 from the last home slot, past the 64 slots of room.
    top_hash = 2**32 - 1
    keys = array("d", [float(top_hash << 8 | position) for position in range(200)])
    hash_mask, shift, slots = IdTable.of(keys, position_bits=8)
    home = (top_hash & hash_mask) >> shift
    assert list(slots[home : home + 201]) == [*range(1, 201), 0]
    assert slots[-1] == 0


def test_only_a_store_to_be_served_makes_its_id_table_before_its_first_lookup() -> None:
    products = generate_products(100)
    checked = CatalogStore.from_products(products, search_index="never")  # as the preview's check
    assert "id_table" not in vars(checked._records)
    assert checked.get(products[5].id) == serialized(products[5:6])[0]  # the first lookup makes it
    assert "id_table" in vars(checked._records)
    for indexing in ("now", "background"):
        served = CatalogStore.from_products(products, search_index=indexing)
        assert "id_table" in vars(served._records)


def test_the_first_duplicate_in_catalog_order_is_named() -> None:
    products = [Product(id=i, name="n") for i in ("a", "b", "c", "b", "a", "c")]
    with pytest.raises(CatalogError, match=r"products\[3\] \(id 'b'\): id: duplicates products\[1\]$"):
        CatalogStore.from_products(products)


def test_a_file_of_other_bytes_is_unreadable_before_its_products_are_judged(tmp_path: Path) -> None:
    # Parsed as it is read, but judged by its digest first: a read cut short is retried, not refused.
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"products": [{"id": "a", "name": ""}]}), encoding="utf-8")
    with pytest.raises(catalog_file.CatalogUnreadableError, match=r"expected 00+ \(CATALOG_SHA256\)"):
        load_catalog(path, expected_sha256="0" * 64)
    with pytest.raises(CatalogError, match=r"products\[0\] \(id 'a'\): name: must not be empty"):
        load_catalog(path, expected_sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_file_that_changes_before_it_is_read_whole_is_unreadable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"products": [], "products": []}', encoding="utf-8")  # parsed whole: a key twice
    stream = catalog_file._stream

    def stream_then_change(*args: Any) -> Any:
        result = stream(*args)
        path.write_text('{"products": []}', encoding="utf-8")
        return result

    monkeypatch.setattr(catalog_file, "_stream", stream_then_change)
    with pytest.raises(catalog_file.CatalogUnreadableError, match="the file changed while it was read"):
        load_catalog(path)
