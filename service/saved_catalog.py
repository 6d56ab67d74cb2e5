"""The catalog saved ready to serve: a store's arrays and its search index, in one file beside the catalog.

Parsing a catalog file of a million products and building its search index costs a server about 7 s of
CPU at every start. Where a catalog is deployed it is saved once, ready (`save`, run by
`python -m service.catalog save` and by the Pulumi program), and every server that starts on that file
reads the saved catalog instead (`read`): its bytes go straight into the store's arrays, nothing parsed.

    FILE.saved-v3   beside FILE: a format line, a header (FILE's SHA-256, the products, each array's
                    length), the arrays, little-endian, one after the other; then the SHA-256 of all that

A saved catalog is used only for the catalog file whose digest it records, only in this format, and only
whole: `SavedCatalogError` otherwise, and the caller loads the catalog file instead. It was made by the
server's own loader, which refuses any invalid catalog, so it is not validated again; its digest proves it
is what was saved. A new format is a new suffix: where saved catalogs are named after their catalog file,
one name always holds the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import sys
from array import array
from collections.abc import Iterable
from itertools import accumulate, pairwise
from typing import BinaryIO, TypeAlias, TypeVar

from service.search_index import SearchIndex, SearchTexts
from service.store import CatalogRecords

_FORMAT_VERSION = 3  # 1 held the search index alone; 2, no id table
SAVED_SUFFIX = f".saved-v{_FORMAT_VERSION}"
_FORMAT_LINE = b"catalog saved for serving, format %d\n" % _FORMAT_VERSION
# After the format line: the catalog file's SHA-256, the products, the id keys' position bits, and the
# length in items of each of the arrays `save` lists.
_ARRAYS = 12
_HEADER = struct.Struct("<32sQQ" + "Q" * _ARRAYS)
_LITTLE_ENDIAN = sys.byteorder == "little"

_Array: TypeAlias = "bytes | bytearray | array[int] | array[float]"
_T = TypeVar("_T", bytearray, "array[int]", "array[float]")


class SavedCatalogError(ValueError):
    """A saved catalog this catalog file cannot use: another file's, another format, or damaged."""


def _not_this_format() -> SavedCatalogError:
    # A new error each time: one kept at module level would keep its last traceback, and with it the
    # arrays of the read that failed (hundreds of megabytes), for the life of the process.
    return SavedCatalogError("its counts do not add up: not written by this format's writer")


def saved_catalog_path(catalog_path: str | os.PathLike[str]) -> str:
    """Where the saved catalog of the catalog file at `catalog_path` is: beside it."""
    return os.fspath(catalog_path) + SAVED_SUFFIX


def save(file: BinaryIO, records: CatalogRecords, index: SearchIndex, fingerprint: bytes) -> None:
    """Write `records` and `index`, made from the catalog file of SHA-256 `fingerprint`, to `file`."""
    categories = records.positions_by_category
    texts, text_starts = records.texts.parts
    words = index.positions_by_word
    arrays: list[_Array] = [  # `read` reads them in this order
        records.data,
        records.offsets,
        records.id_keys,
        json.dumps(list(categories)).encode(),  # the category names, in the store's order
        array("I", map(len, categories.values())),
        _joined(categories.values()),
        texts,
        text_starts,
        b"\n".join(words),  # a word holds no whitespace
        array("I", map(len, words.values())),
        _joined(words.values()),
        records.id_table.slots,  # made here if not yet: about 1 s a server need not spend at 1M products
    ]
    header = _HEADER.pack(fingerprint, len(records.id_keys), records.position_bits, *map(len, arrays))
    digest = hashlib.sha256()
    for chunk in (_FORMAT_LINE, header, *map(_little_endian, arrays)):
        digest.update(chunk)
        file.write(chunk)
    file.write(digest.digest())


def read(file: io.BufferedIOBase, fingerprint: bytes) -> tuple[CatalogRecords, SearchIndex]:
    """The records and search index `save` wrote for the catalog file of SHA-256 `fingerprint`.

    SavedCatalogError says why they cannot be used: saved for another file or by another format, or not
    the bytes that were saved (cut short, changed).
    """
    digest = hashlib.sha256()
    products, position_bits, lengths = _read_header(file, fingerprint, digest)
    arrays = _Reader(file, lengths, digest)
    data, offsets, id_keys = arrays.bytes(), arrays.ints("Q"), arrays.floats()
    category_names, category_sizes, category_positions = arrays.bytes(), arrays.ints("I"), arrays.ints("I")
    texts, text_starts = arrays.bytes(), arrays.ints("Q")
    words, word_sizes, word_positions = arrays.bytes(), arrays.ints("I"), arrays.ints("I")
    id_slots = arrays.ints("I")
    if file.read() != digest.digest():  # all that is left: the digest, and nothing after it
        raise SavedCatalogError("its bytes are not the ones saved: changed, or more than were saved")
    # The digest proves these are the bytes saved; a writer of this format makes them add up.
    if {len(offsets), len(text_starts), len(id_keys) + 1, len(category_positions) + 1} != {products + 1}:
        raise _not_this_format()
    try:
        categories = zip(json.loads(category_names), _pieces(category_positions, category_sizes), strict=True)
        word_list = bytes(words).split(b"\n") if word_sizes else []
        positions_by_word = dict(zip(word_list, _pieces(word_positions, word_sizes), strict=True))
        records = CatalogRecords(
            data=data,
            offsets=offsets,
            id_keys=id_keys,
            position_bits=position_bits,
            positions_by_category=dict(categories),
            texts=SearchTexts(texts, text_starts),
            saved_id_slots=id_slots,
        )
        records.id_table  # noqa: B018  # checked now: slots that do not fit the keys are refused
    except ValueError:  # JSON's, zip's (names and counts of another number) or the id table's
        raise _not_this_format() from None
    return records, SearchIndex(records.texts, positions_by_word)


def holds(file: io.BufferedIOBase, fingerprint: bytes) -> bool:
    """Whether `read` would use `file` for the catalog file of SHA-256 `fingerprint`.

    Enough to know that a saved catalog need not be saved again.
    """
    try:
        read(file, fingerprint)
    except SavedCatalogError:
        return False
    return True


def _read_header(
    file: io.BufferedIOBase, fingerprint: bytes, digest: hashlib._Hash
) -> tuple[int, int, list[int]]:
    """The products, position bits and arrays' lengths; SavedCatalogError for another file or format."""
    head = file.read(len(_FORMAT_LINE) + _HEADER.size)
    if not head.startswith(_FORMAT_LINE):
        first_line = head[: head.find(b"\n") + 1 or 64]
        raise SavedCatalogError(f"its format is {first_line!r}, this server reads {_FORMAT_LINE!r}")
    if len(head) < len(_FORMAT_LINE) + _HEADER.size:
        raise SavedCatalogError(f"{len(head)} bytes are too few for its header: cut short")
    saved_for, products, position_bits, *lengths = _HEADER.unpack_from(head, len(_FORMAT_LINE))
    if saved_for != fingerprint:
        raise SavedCatalogError(
            f"it was saved for the catalog with SHA-256 {saved_for.hex()}, "
            f"and this one's is {fingerprint.hex()}"
        )
    digest.update(head)
    return products, position_bits, lengths


class _Reader:
    """The arrays after the header, in order, each read straight into its own array: nothing copied."""

    def __init__(self, file: io.BufferedIOBase, lengths: Iterable[int], digest: hashlib._Hash) -> None:
        self._file = file
        self._lengths = iter(lengths)
        self._digest = digest

    def bytes(self) -> bytearray:
        return self._into(bytearray(next(self._lengths)))

    def ints(self, typecode: str) -> array[int]:
        return self._into(array(typecode, [0]) * next(self._lengths))

    def floats(self) -> array[float]:
        return self._into(array("d", [0.0]) * next(self._lengths))

    def _into(self, target: _T) -> _T:
        with memoryview(target) as view, view.cast("B") as raw:
            if self._file.readinto(raw) != len(raw):
                raise SavedCatalogError("its bytes are not the ones saved: cut short")
            self._digest.update(raw)
        if not _LITTLE_ENDIAN and isinstance(target, array):
            target.byteswap()
        return target


def _little_endian(saved: _Array) -> _Array:
    """`saved` as its bytes are written: arrays little-endian, whatever the machine's order."""
    if _LITTLE_ENDIAN or not isinstance(saved, array):
        return saved
    swapped = array(saved.typecode, saved)
    swapped.byteswap()
    return swapped


def _joined(arrays: Iterable[array[int]]) -> array[int]:
    """The arrays' positions, one array after the other, in one array."""
    joined = array("I")
    for positions in arrays:
        joined.extend(positions)
    return joined


def _pieces(joined: array[int], sizes: array[int]) -> list[array[int]]:
    """`joined` cut into consecutive arrays of `sizes` items: `_joined` undone."""
    ends = list(accumulate(sizes, initial=0))
    if ends[-1] != len(joined):
        raise _not_this_format()
    return [joined[start:end] for start, end in pairwise(ends)]
