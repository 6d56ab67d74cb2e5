"""The catalog saved ready to serve beside its catalog file: read instead of it by every server that starts.

What is read must answer exactly as the catalog loaded from its file (every id, page and search, in every
process), and a saved catalog that is not this file's (another catalog's, another format, damaged) must
never be used: the server says why and loads the file as it would without one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import subprocess
import sys
from array import array
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.catalog_pb2 import Product
from service import catalog as checker
from service import saved_catalog, search_index, store
from service.catalog_file import CatalogError, load_catalog
from service.saved_catalog import SAVED_SUFFIX, SavedCatalogError, saved_catalog_path
from service.store import CatalogRecords, CatalogStore
from tests.catalog_files import GOOD
from tests.servers import ROOT
from tests.service.helpers import write_catalog
from tests.service.test_catalog_check import run_checker
from tests.service.test_store_properties import PROPERTY_SETTINGS, catalogs, queries

FINGERPRINT = hashlib.sha256(b"the catalog file").digest()


def saved_bytes(store: CatalogStore, fingerprint: bytes = FINGERPRINT) -> bytes:
    file = io.BytesIO()
    saved_catalog.save(file, *store.parts(), fingerprint)
    return file.getvalue()


def read_back(data: bytes, fingerprint: bytes = FINGERPRINT) -> CatalogStore:
    records, index = saved_catalog.read(io.BytesIO(data), fingerprint)
    return CatalogStore(records, fingerprint=fingerprint, index=index)


def assert_answers_alike(
    read: CatalogStore, built: CatalogStore, products: list[Product], query: str
) -> None:
    assert len(read) == len(built)
    assert read.indexed
    assert read.categories == built.categories
    for product_id in [p.id for p in products] + ["absent", ""]:
        assert read.get(product_id) == built.get(product_id)
    for category in ["", *built.categories]:
        assert read.count(category) == built.count(category)
        assert read.page(category, 1, 7) == built.page(category, 1, 7)
    assert list(read.search(query, 5)) == list(built.search(query, 5))
    assert_same_arrays(read, built)


def typed(values: Any) -> Any:
    """Arrays with their item types, which `==` on arrays does not compare."""
    if isinstance(values, array):
        return (values.typecode, values.tolist())
    if isinstance(values, dict):
        return [(key, typed(value)) for key, value in values.items()]  # in order
    return values


def assert_same_arrays(read: CatalogStore, built: CatalogStore) -> None:
    """Read back, a store holds what the built one does, array for array, of the same item types."""
    for field in dataclasses.fields(CatalogRecords):
        if field.name not in ("texts", "saved_id_slots"):  # the built store made its id table, not read it
            assert typed(getattr(read._records, field.name)) == typed(getattr(built._records, field.name))
    assert typed(read._records.id_table.slots) == typed(built._records.id_table.slots)
    assert read._records.id_table[:2] == built._records.id_table[:2]
    assert [typed(part) for part in read._records.texts.parts] == [
        typed(part) for part in built._records.texts.parts
    ]
    assert read._search_index is not None
    assert built._search_index is not None
    assert typed(read._search_index.positions_by_word) == typed(built._search_index.positions_by_word)


@PROPERTY_SETTINGS
@given(data=st.data(), products=catalogs())
def test_a_saved_catalog_reads_back_answering_as_the_one_built(
    data: st.DataObject, products: list[Product]
) -> None:
    built = CatalogStore.from_products(products, search_index="now")
    read = read_back(saved_bytes(built))
    assert_answers_alike(read, built, products, data.draw(queries(products), label="query"))


def test_an_empty_catalog_saves_and_reads_back() -> None:
    built = CatalogStore.from_products([], search_index="now")
    read = read_back(saved_bytes(built))
    assert len(read) == 0
    assert read.categories == []
    assert list(read.search("kettle", 5)) == []


def test_a_big_endian_machine_writes_and_reads_the_same_little_endian_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The arrays are saved little-endian: a big-endian writer swaps them, a big-endian reader swaps back."""
    built = small_store()
    little = saved_bytes(built)
    monkeypatch.setattr(saved_catalog, "_LITTLE_ENDIAN", False)
    swapped = saved_bytes(built)
    assert swapped != little  # as this machine is little-endian, "big-endian" writing swaps every array
    products = [Product(id=f"p{i}", name=f"kettle {i}", description="steel", category="c") for i in range(5)]
    assert_answers_alike(read_back(swapped), built, products, "kettle")
    monkeypatch.setattr(saved_catalog, "_LITTLE_ENDIAN", True)
    assert read_back(little).get("p3") == built.get("p3")


def test_reading_a_saved_catalog_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    built = small_store()
    data = saved_bytes(built)

    def no_build(*_: object) -> None:
        raise AssertionError("an index was built, not read")

    monkeypatch.setattr(search_index, "_positions_by_word", no_build)
    monkeypatch.setattr(store, "_filled", no_build)  # the id table's slots
    catalog = read_back(data)
    assert catalog.indexed
    assert [catalog.get(f"p{i}") for i in range(6)] == [built.get(f"p{i}") for i in range(6)]


def test_ids_are_found_in_a_process_with_another_string_hash(tmp_path: Path) -> None:
    """The id index is saved: it must not depend on Python's hash(), which each process seeds anew."""
    path = write_catalog(
        tmp_path / "c.json", [{**GOOD, "id": f"id-{i}", "name": f"n{i}"} for i in range(300)]
    )
    checker.save(path)
    script = (
        "import sys\n"
        "from service.catalog_file import CatalogError, load_catalog\n"
        "store = load_catalog(sys.argv[1])\n"
        "assert store.indexed, 'not read from the saved catalog'\n"
        "print(sum(store.get(f'id-{i}') is not None for i in range(300)))\n"
    )
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "300\n"


# What is refused: each says why, and nothing of it is used.


def small_store() -> CatalogStore:
    products = [Product(id=f"p{i}", name=f"kettle {i}", description="steel", category="c") for i in range(5)]
    return CatalogStore.from_products(products, search_index="now")


def refusal(data: bytes, fingerprint: bytes = FINGERPRINT) -> str:
    with pytest.raises(SavedCatalogError) as refused:
        saved_catalog.read(io.BytesIO(data), fingerprint)
    assert not saved_catalog.holds(io.BytesIO(data), fingerprint)
    return str(refused.value)


def resigned(data: bytes) -> bytes:
    """`data` with its digest made again, as a writer with a bug would write it."""
    body = data[:-32]
    return body + hashlib.sha256(body).digest()


def with_header_field(data: bytes, field: int, change: int) -> bytes:
    at = len(saved_catalog._FORMAT_LINE)
    fields = list(saved_catalog._HEADER.unpack_from(data, at))
    fields[field] += change
    return resigned(data[:at] + saved_catalog._HEADER.pack(*fields) + data[at + saved_catalog._HEADER.size :])


def test_a_whole_saved_catalog_is_held() -> None:
    data = saved_bytes(small_store())
    assert saved_catalog.holds(io.BytesIO(data), FINGERPRINT)


def test_another_catalogs_saved_catalog_is_refused_naming_both_digests() -> None:
    other = hashlib.sha256(b"another file").digest()
    message = refusal(saved_bytes(small_store()), other)
    assert FINGERPRINT.hex() in message
    assert other.hex() in message


THIS_FORMAT = b"catalog saved for serving, format 3\n"


@pytest.mark.parametrize(
    ("start", "named"),
    [
        (b"catalog saved for serving, format 4\n", b"catalog saved for serving, format 4\n"),
        (b"catalog saved for serving, format 2\n", b"catalog saved for serving, format 2\n"),  # no id table
        (b"catalog search index, format 1\n", b"catalog search index, format 1\n"),  # the index alone, before
        (b"", b""),
        (b"x" * 100, b"x" * 64),  # no line at all: its first 64 bytes
    ],
)
def test_another_format_is_refused_naming_it(start: bytes, named: bytes) -> None:
    data = saved_bytes(small_store())
    file = start + data[len(THIS_FORMAT) :] if start.endswith(b"\n") else start
    assert refusal(file) == f"its format is {named!r}, this server reads {THIS_FORMAT!r}"


CUT_SHORT = "its bytes are not the ones saved: cut short"
CHANGED = "its bytes are not the ones saved: changed, or more than were saved"


def test_a_header_cut_short_is_refused_saying_how_many_bytes_it_has() -> None:
    data = saved_bytes(small_store())
    assert (
        refusal(data[: len(THIS_FORMAT) + 1])
        == f"{len(THIS_FORMAT) + 1} bytes are too few for its header: cut short"
    )


@pytest.mark.parametrize(("cut", "message"), [(200, CUT_SHORT), (-33, CUT_SHORT), (-1, CHANGED)])
def test_a_saved_catalog_cut_short_is_refused(cut: int, message: str) -> None:
    """In its arrays, just before its digest, or in its digest."""
    data = saved_bytes(small_store())
    assert refusal(data[:cut]) == message


def test_a_changed_byte_and_a_byte_more_are_refused() -> None:
    data = saved_bytes(small_store())
    changed = bytearray(data)
    changed[len(data) // 2] ^= 1
    assert refusal(bytes(changed)) == CHANGED
    assert refusal(data + b"\0") == CHANGED


@pytest.mark.parametrize(
    ("field", "change"),
    [(1, 1), (4, 1), (7, -1), (13, 1)],  # the products, the offsets, the category sizes, the positions
)
def test_a_header_that_does_not_fit_its_arrays_is_refused(field: int, change: int) -> None:
    """Lengths changed and the file signed again, as a writer with a bug would write it: never served."""
    data = saved_bytes(small_store())
    message = refusal(with_header_field(data, field, change))
    assert "do not add up" in message or "not the ones saved" in message


def with_array(data: bytes, number: int, replacement: bytes, items: int) -> bytes:
    """`data` with its array `number` (in `save`'s order) replaced, its length in the header, signed again."""
    at = len(THIS_FORMAT)
    fingerprint, products, bits, *lengths = saved_catalog._HEADER.unpack_from(data, at)
    sizes = [length * array(code).itemsize for length, code in zip(lengths, ARRAYS, strict=True)]
    start = at + saved_catalog._HEADER.size + sum(sizes[:number])
    body = data[at + saved_catalog._HEADER.size : start] + replacement + data[start + sizes[number] : -32]
    lengths[number] = items
    return resigned(
        THIS_FORMAT + saved_catalog._HEADER.pack(fingerprint, products, bits, *lengths) + body + bytes(32)
    )


ARRAYS = "BQdBIIBQBIII"  # save's arrays' item types, in order


def test_each_refusal_is_its_own_error_so_nothing_keeps_the_arrays_it_read() -> None:
    """An error kept between refusals would keep its traceback's frames, and the arrays read, alive."""
    data = with_array(saved_bytes(small_store()), 3, b"[]", 2)
    errors = []
    for _ in range(2):
        with pytest.raises(SavedCatalogError) as refused:
            saved_catalog.read(io.BytesIO(data), FINGERPRINT)
        errors.append(refused.value)
    assert errors[0] is not errors[1]


@pytest.mark.parametrize(
    ("number", "replacement", "items"),
    [
        (3, b'["c", "d"]', 10),  # two category names, one count
        (3, b"[]", 2),  # no name for the one count
        (3, b"not json", 8),
        (8, b"", 0),  # the words gone, their counts left
        (11, bytes(4), 1),  # an id table of one slot
        (11, bytes(4 * 99) + b"\x01\0\0\0", 100),  # the last slot, which ends every run, taken
    ],
    ids=["a name more", "a name fewer", "names not JSON", "no words", "id slots too few", "id slots unended"],
)
def test_names_that_do_not_match_their_counts_are_refused(
    number: int, replacement: bytes, items: int
) -> None:
    data = saved_bytes(small_store())
    assert with_array(data, 3, b'["c"]', 5) == data  # the surgery itself changes nothing
    assert refusal(with_array(data, number, replacement, items)) == NOT_ADDING_UP


NOT_ADDING_UP = "its counts do not add up: not written by this format's writer"


@pytest.mark.parametrize(
    "broken",
    [
        lambda records: replace(records, positions_by_category={"c": records.positions_by_category["c"][1:]}),
        lambda records: replace(records, offsets=records.offsets + array("Q", [0])),
        lambda records: replace(records, id_keys=records.id_keys[1:]),
    ],
    ids=["a product in no category", "an offset more", "an id key fewer"],
)
def test_arrays_whose_counts_do_not_add_up_are_refused(
    broken: Callable[[CatalogRecords], CatalogRecords],
) -> None:
    records, index = small_store().parts()
    file = io.BytesIO()
    saved_catalog.save(file, broken(records), index, FINGERPRINT)
    assert refusal(file.getvalue()) == NOT_ADDING_UP


# The server: load_catalog reads the catalog saved beside the file, and loads the file when it is not its own.


def catalog_file(tmp_path: Path) -> Path:
    return write_catalog(
        tmp_path / "c.json",
        [GOOD, {**GOOD, "id": "b", "name": "Blue Kettle"}, {**GOOD, "id": "c", "description": "a kettle"}],
    )


def test_the_server_reads_the_catalog_saved_beside_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    saved = checker.save(path)
    assert saved == str(path) + SAVED_SUFFIX == saved_catalog_path(path)
    with caplog.at_level(logging.INFO, logger="service"):
        store = load_catalog(path, search_index="never")
    assert store.indexed  # at once: no window where searches scan
    assert f"catalog of 3 products and its search index read from {saved} in" in caplog.text
    built = load_catalog(path, search_index="now", saved=False)
    assert store.fingerprint == built.fingerprint == hashlib.sha256(path.read_bytes()).digest()
    for query in ("kettle", "KETTLE", "blue", "zz", "e"):
        assert list(store.search(query, 10)) == list(built.search(query, 10))
    for product_id in (str(GOOD["id"]), "b", "c", "x"):
        assert store.get(product_id) == built.get(product_id)


def test_given_the_files_digest_the_server_does_not_read_the_catalog_file(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    checker.save(path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text("not read")  # as CATALOG_SHA256 names the file deployed, the saved catalog is enough
    store = load_catalog(path, expected_sha256=sha256)
    assert len(store) == 3
    assert store.fingerprint.hex() == sha256


def test_a_catalog_saved_for_another_file_is_not_used_and_the_server_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    other = write_catalog(tmp_path / "other.json", [GOOD])
    Path(saved_catalog_path(path)).write_bytes(Path(checker.save(other)).read_bytes())
    with caplog.at_level(logging.INFO, logger="service"):
        store = load_catalog(path, search_index="now")
    assert len(store) == 3
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.getMessage().startswith(
        f"saved catalog {saved_catalog_path(path)} not used, loading {path}"
    )
    assert "saved for the catalog with SHA-256" in warning.getMessage()
    assert "read from" not in caplog.text
    assert list(store.search("kettle", 10)) == list(load_catalog(path, saved=False).search("kettle", 10))


def test_a_damaged_saved_catalog_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = catalog_file(tmp_path)
    saved = Path(checker.save(path))
    saved.write_bytes(saved.read_bytes()[:-1])
    with caplog.at_level(logging.WARNING, logger="service"):
        store = load_catalog(path, expected_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(store) == 3
    assert "not the ones saved" in caplog.text


def test_without_a_saved_catalog_the_server_loads_the_file_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = catalog_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="service"):
        store = load_catalog(path, search_index="now")
    assert store.indexed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "search index over 3 products ready" in caplog.text


def test_a_missing_catalog_file_is_still_unreadable_beside_a_saved_catalog(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    checker.save(path)
    path.unlink()
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(path)


# The command that saves it: `python -m service.catalog save FILE`, and what the program calls.


def test_save_writes_beside_the_file_and_keeps_a_catalog_already_saved(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    result = run_checker("save", str(path))
    assert result.returncode == 0, result.stderr
    saved = Path(saved_catalog_path(path))
    assert result.stdout == f"{path}: saved ready to serve in {saved}\n"
    first = saved.stat()
    assert checker.save(path) == str(saved)
    assert saved.stat().st_mtime_ns == first.st_mtime_ns  # the same bytes: not written again
    assert not list(tmp_path.glob("*.partial"))
    assert saved.stat().st_mode & 0o777 == 0o644


def test_save_elsewhere_makes_its_directory_and_replaces_what_is_not_this_catalogs(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    target = tmp_path / "build" / "saved" / "c.saved"
    assert checker.save(path, target) == str(target)
    target.write_bytes(b"stale")
    assert checker.save(path, target) == str(target)
    fingerprint = hashlib.sha256(path.read_bytes()).digest()
    with target.open("rb") as file:
        assert saved_catalog.holds(file, fingerprint)
    assert not Path(saved_catalog_path(path)).exists()


def test_save_refuses_a_file_the_server_would_refuse(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "bad.json", [GOOD, GOOD])
    result = run_checker("save", str(path))
    assert result.returncode == 1
    assert "duplicates products[0]" in result.stderr
    assert not Path(saved_catalog_path(path)).exists()


def test_save_names_a_missing_file_and_an_unwritable_target(tmp_path: Path) -> None:
    result = run_checker("save", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert f"{tmp_path / 'absent.json'}: cannot read" in result.stderr
    path = catalog_file(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CatalogError, match=f"{path}: cannot save it in {blocker}/x"):
        checker.save(path, blocker / "x")
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_checked_catalog_saves_from_the_parse_that_checked_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Pulumi program does: check the file, then save it, parsing it once."""
    path = catalog_file(tmp_path)
    parsed: list[str] = []

    def counting_load(file: str, **options: Any) -> CatalogStore:
        parsed.append(file)
        return load_catalog(file, **options)

    monkeypatch.setattr(checker, "load_catalog", counting_load)
    checked = checker.load_checked(path.name, root=tmp_path)
    assert checked.summary == checker.check(path.name, root=tmp_path)
    assert checked.summary.path == "c.json"  # as given, not joined to the root
    target = tmp_path / "build" / "c.saved"
    assert checked.save(target) == str(target)
    assert parsed == [str(path), str(path)]  # once by load_checked, once by check: none by save
    with target.open("rb") as file:
        assert saved_catalog.holds(file, bytes.fromhex(checked.summary.sha256))
    written = target.stat().st_mtime_ns
    assert checked.save(target) == str(target)
    assert target.stat().st_mtime_ns == written  # this catalog's already: not written again
    target.write_bytes(b"stale")
    checked.save(target)
    with target.open("rb") as file:
        assert saved_catalog.holds(file, bytes.fromhex(checked.summary.sha256))


def test_a_checked_catalog_names_its_file_as_given_when_it_cannot_save(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CatalogError, match=f"^c.json: cannot save it in {blocker}/x"):
        checker.load_checked("c.json", root=tmp_path).save(blocker / "x")
    assert path.exists()
    assert not list(tmp_path.glob("**/*.partial"))
