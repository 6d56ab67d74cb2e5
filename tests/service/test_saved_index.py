"""A search index saved beside its catalog file: read back by every server that starts with that file.

What is read must index exactly what a build would (the same words, the same positions, so the same
answers), and a saved index that is not this file's (another catalog's, another format, damaged) must never
be used: the server says why and builds the index as it would without one.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.catalog_pb2 import Product
from service import catalog as checker
from service import search_index
from service.catalog_file import load_catalog
from service.search_index import SAVED_INDEX_SUFFIX, SavedIndexError, SearchIndex, saved_index_path
from service.store import CatalogStore
from tests.catalog_files import GOOD
from tests.service.helpers import write_catalog
from tests.service.test_catalog_check import run_checker
from tests.service.test_store_properties import PROPERTY_SETTINGS, catalogs, queries

FINGERPRINT = hashlib.sha256(b"the catalog file").digest()


def saved_and_read(products: list[Product]) -> tuple[SearchIndex, SearchIndex]:
    """The index built over `products`, and the one read back from its saved bytes."""
    store = CatalogStore.from_products(products, search_index="never")
    texts = store._records.texts
    built = SearchIndex(texts)
    return built, SearchIndex.load(texts, built.save(FINGERPRINT), FINGERPRINT)


@PROPERTY_SETTINGS
@given(data=st.data(), products=catalogs())
def test_a_saved_index_reads_back_as_the_index_built(data: st.DataObject, products: list[Product]) -> None:
    built, read = saved_and_read(products)
    assert read._positions_by_word == built._positions_by_word
    assert read._words_by_gram == built._words_by_gram
    assert read._trigrams_containing == built._trigrams_containing
    needle = search_index.to_needle(data.draw(queries(products), label="query"))
    assert list(read.matches(needle)) == list(built.matches(needle))


def test_an_empty_catalog_saves_and_reads_back() -> None:
    built, read = saved_and_read([])
    assert read._positions_by_word == built._positions_by_word == {}


def saved_bytes() -> tuple[CatalogStore, bytes]:
    products = [Product(id=f"p{i}", name=f"kettle {i}", description="steel") for i in range(5)]
    store = CatalogStore.from_products(products, search_index="never")
    return store, SearchIndex(store._records.texts).save(FINGERPRINT)


def with_body(data: bytes, body: bytes) -> bytes:
    """`data` with another body and a header that matches it (as a writer with a bug would write)."""
    fields = list(search_index._SAVED_HEADER.unpack_from(data, len(search_index._SAVED_FORMAT)))
    fields[-1] = hashlib.sha256(body).digest()
    return data[: len(search_index._SAVED_FORMAT)] + search_index._SAVED_HEADER.pack(*fields) + body


def refusal(data: bytes, fingerprint: bytes = FINGERPRINT) -> str:
    store, _ = saved_bytes()
    with pytest.raises(SavedIndexError) as refused:
        SearchIndex.load(store._records.texts, data, fingerprint)
    return str(refused.value)


def test_another_catalogs_index_is_refused_naming_both_digests() -> None:
    _, data = saved_bytes()
    other = hashlib.sha256(b"another file").digest()
    message = refusal(data, other)
    assert FINGERPRINT.hex() in message
    assert other.hex() in message


def test_another_format_is_refused_naming_it() -> None:
    _, data = saved_bytes()
    assert "format 2" in refusal(data.replace(b"format 1", b"format 2", 1))
    assert "this server reads" in refusal(b"")


@pytest.mark.parametrize("cut", [1, 100, -1])
def test_an_index_cut_short_is_refused(cut: int) -> None:
    _, data = saved_bytes()
    head = len(search_index._SAVED_FORMAT) + cut if cut > 0 else len(data) + cut
    assert "cut short" in refusal(data[:head])


def test_a_changed_byte_is_refused() -> None:
    _, data = saved_bytes()
    changed = bytearray(data)
    changed[-3] ^= 1
    assert "cut short or changed" in refusal(bytes(changed))


def test_an_index_for_another_number_of_products_is_refused() -> None:
    _, data = saved_bytes()
    fields = list(search_index._SAVED_HEADER.unpack_from(data, len(search_index._SAVED_FORMAT)))
    fields[1] += 1
    at, size = len(search_index._SAVED_FORMAT), search_index._SAVED_HEADER.size
    tampered = data[:at] + search_index._SAVED_HEADER.pack(*fields) + data[at + size :]
    assert "not the ones saved" in refusal(tampered)


def test_counts_that_do_not_add_up_are_refused() -> None:
    _, data = saved_bytes()
    body = data[len(search_index._SAVED_FORMAT) + search_index._SAVED_HEADER.size :]
    assert "do not add up" in refusal(with_body(data, body + struct.pack("<I", 0)))
    assert "do not add up" in refusal(with_body(data, body[:-4]))


# The server: load_catalog reads the index saved beside the file, and builds it when that is not the file's.


def catalog_file(tmp_path: Path) -> Path:
    return write_catalog(
        tmp_path / "c.json",
        [GOOD, {**GOOD, "id": "b", "name": "Blue Kettle"}, {**GOOD, "id": "c", "description": "a kettle"}],
    )


def test_the_server_reads_the_index_saved_beside_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    saved = checker.save_index(path)
    assert saved == str(path) + SAVED_INDEX_SUFFIX == saved_index_path(path)
    with caplog.at_level(logging.INFO, logger="service.store"):
        store = load_catalog(path, search_index="now")
    assert store.indexed
    assert "ready in" in caplog.text
    assert f"read from {saved}" in caplog.text
    built = load_catalog(path, search_index="never")
    for query in ("kettle", "KETTLE", "blue", "zz", "e"):
        assert list(store.search(query, 10)) == list(built.search(query, 10))


def test_an_index_saved_for_another_file_is_not_used_and_the_server_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    other = write_catalog(tmp_path / "other.json", [GOOD])
    Path(saved_index_path(path)).write_bytes(Path(checker.save_index(other)).read_bytes())
    with caplog.at_level(logging.INFO, logger="service.store"):
        store = load_catalog(path, search_index="now")
    assert store.indexed
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert saved_index_path(path) in warning.getMessage()
    assert "building it instead" in warning.getMessage()
    assert "saved for the catalog with SHA-256" in warning.getMessage()
    assert "read from" not in caplog.text
    assert list(store.search("kettle", 10)) == list(load_catalog(path).search("kettle", 10))


def test_without_a_saved_index_the_server_builds_it_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="service.store"):
        store = load_catalog(path, search_index="now")
    assert store.indexed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "search index over 3 products ready" in caplog.text


# The command that saves it: `python -m service.catalog save-index FILE`, and what the program calls.


def test_save_index_writes_beside_the_file_and_keeps_an_index_already_saved(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    result = run_checker("save-index", str(path))
    assert result.returncode == 0, result.stderr
    saved = Path(saved_index_path(path))
    assert result.stdout == f"{path}: search index saved in {saved}\n"
    first = saved.stat()
    assert checker.save_index(path) == str(saved)
    assert saved.stat().st_mtime_ns == first.st_mtime_ns  # the same bytes: not written again
    assert not list(tmp_path.glob("*.partial"))
    assert saved.stat().st_mode & 0o777 == 0o644


def test_save_index_elsewhere_makes_its_directory_and_replaces_what_is_not_this_catalogs(
    tmp_path: Path,
) -> None:
    path = catalog_file(tmp_path)
    target = tmp_path / "build" / "indexes" / "c.search-index"
    assert checker.save_index(path, target) == str(target)
    target.write_bytes(b"stale")
    assert checker.save_index(path, target) == str(target)
    store = load_catalog(path, search_index="never")
    assert store.fits_saved_index(target.read_bytes())
    assert not Path(saved_index_path(path)).exists()


def test_save_index_refuses_a_file_the_server_would_refuse(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "bad.json", [GOOD, GOOD])
    result = run_checker("save-index", str(path))
    assert result.returncode == 1
    assert "duplicates products[0]" in result.stderr
    assert not Path(saved_index_path(path)).exists()
