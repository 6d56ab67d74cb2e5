"""The product catalog in memory: serialized products in one buffer, indexed by id and category, searched.

Plain Python; nothing here knows about gRPC or about the catalog file's format (service/catalog_file.py
reads files into a store; service/search_index.py is the search index). Every answer is a serialized
`catalog.Product`, sliced from the buffer: a million products take about 140 MB this way, where a million
protobuf objects took over 800 (docs/catalog.md).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate, compress, count, islice, repeat
from operator import add, and_, eq, lshift, or_, rshift, sub
from typing import Literal, NamedTuple
from zlib import crc32 as _id_hash

from catalog.catalog_pb2 import Product
from service.search_index import SEARCH_STEP, SearchIndex, SearchTexts, to_needle

# When a store builds its search index: in the constructor, on a thread after it (searches scan until the
# index is ready, with the same answers), or never (searches always scan: the reference the index must match).
Indexing = Literal["now", "background", "never"]

_log = logging.getLogger(__name__)

# The id index holds one key per product: some bits of the id's hash, then the product's position in as
# many bits as the catalog needs. Equal hashes are told apart by the ids themselves. A key fits the 53 bits
# a double holds exactly: the keys are sorted as floats, which Python compares about twice as fast as
# integers of more than 30 bits (a million keys: 0.26 s rather than 0.44, at start-up). The hash is the
# UTF-8 id's CRC-32, not Python's hash(), which changes from process to process: keys saved with the
# catalog (service/saved_catalog.py) must hold in every server that reads them.
_KEY_BITS = 53
_MAX_POSITION_BITS = 32  # so at most 2**32 products, each key with at least 21 bits of its id's hash
_HASH_MASK = (1 << _KEY_BITS) - 1  # the hash bits kept at most (tests keep fewer, to make ids collide)
_ID_HASH_BITS = 32  # CRC-32's
# The id table's slots after the last home slot, for runs that pass it (at most half the slots are taken, so
# runs are short); a table whose runs need more is made again with room for all.
_OVERFLOW_SLOTS = 64


class CatalogError(ValueError):
    """The catalog cannot be served: the message names the file, the product and the field."""


# A product serialized, then its id, name, description, price and category: what CatalogBuilder needs.
ProductFields = tuple[bytes, str, str, str, float, str]


class _FieldHeads(dict[int, bytes]):
    """A string field's tag and length (a varint) by its length in bytes; nothing for an empty field."""

    def __init__(self, tag: int) -> None:
        super().__init__()
        self._tag = bytes([tag])

    def __missing__(self, length: int) -> bytes:
        head = self[length] = self._tag + _varint(length) if length else b""
        return head


# Product's fields as the wire format writes them (catalog.proto): tag = field number << 3 | wire type.
_ID_HEADS, _NAME_HEADS, _DESCRIPTION_HEADS, _CATEGORY_HEADS = map(_FieldHeads, (0x0A, 0x12, 0x1A, 0x2A))
_PRICE_TAG = 0x21  # price: field 4, a little-endian double
_PRICE_FIELD = struct.Struct("<Bd").pack
_IN_STOCK_FIELD = {True: b"\x30\x01", False: b""}  # in_stock: field 6, a varint


class _PositionsByCategory(dict[str, "array[int]"]):
    """Positions by category, a category's array made as its first product is added."""

    def __missing__(self, category: str) -> array[int]:
        positions = self[category] = array("I")
        return positions


@dataclass(frozen=True)
class CatalogRecords:
    """A validated catalog as compact arrays: what a CatalogStore serves from."""

    # Every product serialized, one after the other, in catalog order. Not copied into a bytes object:
    # at 1M products the copy would be 140 MB more at the peak of loading.
    data: bytearray
    offsets: array[int]  # product i is data[offsets[i]:offsets[i + 1]]
    id_keys: array[float]  # sorted (id hash << position_bits | position): see _KEY_BITS
    position_bits: int
    positions_by_category: dict[str, array[int]]  # in catalog order
    texts: SearchTexts  # what searches check, made while loading: about 1 s less to an index at 1M
    # The id table's slots, as a saved catalog holds them (service/saved_catalog.py); else made when needed.
    saved_id_slots: array[int] | None = field(default=None, repr=False)

    @cached_property  # made as a served store is, before SERVING: about 0.6 s and 8 MB at 1M products
    def id_table(self) -> IdTable:
        """Where GetProduct finds an id: an open-addressing table, made from the sorted keys.

        A GetProduct reads one slot, most of the time, where a bisection of the keys ran about three times
        the Python operations (docs/performance.md). ValueError if saved slots do not fit the keys.
        """
        return IdTable.of(self.id_keys, self.position_bits, self.saved_id_slots)


class IdTable(NamedTuple):
    """The products by id: an id's home slot is its hash's top bits, its product in the run from there.

    Slots hold a position + 1, and 0 where empty; the run from an id's home slot ends at an empty slot,
    and holds its product if the catalog has the id. Twice the products' number of slots, or more.
    """

    hash_mask: int  # the bits of an id's hash that its key keeps
    shift: int  # the hash's bits below the slot number
    slots: array[int]

    @classmethod
    def of(cls, keys: array[float], position_bits: int, slots: array[int] | None = None) -> IdTable:
        """The table of these keys (CatalogRecords.id_keys), with no Python step per product.

        The keys are sorted by hash, so each goes to the later of its home and the slot after the previous
        one's: with i its index, slot - i is a running maximum of home - i, which `accumulate` computes.
        `slots`, made so before (a saved catalog's), are used as they are: ValueError if they cannot be.
        """
        hash_mask = _hash_mask(position_bits)
        hash_bits = min(_ID_HASH_BITS, hash_mask.bit_length())
        slot_bits = min(hash_bits, len(keys).bit_length() + 1)
        shift = hash_bits - slot_bits
        if slots is not None:
            if len(slots) <= 1 << slot_bits or slots[-1]:
                raise ValueError(f"{len(slots)} id table slots cannot hold {len(keys)} keys")
        else:
            try:
                slots = _filled(keys, position_bits, shift, (1 << slot_bits) + _OVERFLOW_SLOTS)
            except IndexError:  # a run passes the room left for it: a catalog of a few hash bits (tests) does
                slots = _filled(keys, position_bits, shift, (1 << slot_bits) + len(keys))
        return cls(hash_mask, shift, slots)


def _hash_mask(position_bits: int) -> int:
    """The bits of an id's hash that its key keeps, beside a position of `position_bits` bits."""
    return _HASH_MASK & ((1 << (_KEY_BITS - position_bits)) - 1)


def _filled(keys: array[float], position_bits: int, shift: int, size: int) -> array[int]:
    """The id table's slots for these keys: `size` of them, then one more, always empty so every run ends.

    IndexError if a run does not end before it.
    """
    slots = array("I", bytes(4 * (size + 1)))
    homes = map(rshift, map(int, keys), repeat(position_bits + shift))
    entries = map(add, map(and_, map(int, keys), repeat((1 << position_bits) - 1)), repeat(1))
    deque(map(slots.__setitem__, _probed(homes), entries), 0)
    if slots[-1]:
        raise IndexError("the id table's last slot is taken")
    return slots


def _probed(homes: Iterable[int]) -> Iterator[int]:
    """Each key's slot, given their home slots in ascending order: its home, or the slot after the last."""
    return map(add, accumulate(map(sub, homes, count()), max), count())


class CatalogBuilder:
    """Validates products one at a time and packs them into CatalogRecords, holding no product object.

    `add` refuses a product the server would not serve (CatalogError naming the source, the position and
    the field); `finish` refuses a duplicate id, naming both products.
    """

    def __init__(self, source: str = "<memory>") -> None:
        self._source = source
        self._data = bytearray()
        self._offsets = array("Q", [0])
        self._id_hashes = array("q")  # each id's _id_hash, in catalog order: keyed once their number is known
        self._positions_by_category: dict[str, array[int]] = _PositionsByCategory()
        self._texts = SearchTexts()

    def add(self, product: Product) -> None:
        """Validate `product` and append it in catalog order."""
        self.add_serialized(
            (
                product.SerializeToString(),
                product.id,
                product.name,
                product.description,
                product.price,
                product.category,
            )
        )

    def add_serialized(self, fields: ProductFields) -> None:
        """`add` for a product already serialized, given with the fields validation and the indexes need."""
        serialized, product_id, name, description, price, category = fields
        position = len(self._id_hashes)
        problem = _product_problem(product_id, name, price)
        if problem:
            raise CatalogError(f"{self._source}: {where(position, product_id)}: {problem}")
        data = self._data
        data += serialized
        self._offsets.append(len(data))
        self._id_hashes.append(_id_hash(product_id.encode("utf-8", "surrogatepass")))
        self._texts.add(name, description)
        self._positions_by_category[category].append(position)

    def add_columns(
        self,
        *,
        ids: Sequence[str],
        names: Sequence[str],
        descriptions: Sequence[str],
        prices: Sequence[float],
        categories: Sequence[str],
        in_stock: Sequence[bool],
    ) -> bool:
        """Add products given field by field (the i-th of each is product i's), with C doing the loops.

        Serialized as protobuf does (`Product.SerializeToString`: fields in number order, proto3 defaults
        left out), a third of what building each Product took. Returns False, having added nothing, if a
        product is invalid: `add_serialized`, one product at a time, then says which and why.
        """
        position = len(self._id_hashes)
        added = len(ids)
        if "" in ids or "" in names or not all(map(math.isfinite, prices)) or (added and min(prices) < 0):
            return False
        try:
            ids_utf8, names_utf8, descriptions_utf8, categories_utf8 = (
                list(map(str.encode, column)) for column in (ids, names, descriptions, categories)
            )
        except UnicodeEncodeError:  # a lone surrogate: protobuf refuses it, saying so
            return False
        price_fields = list(map(_PRICE_FIELD, repeat(_PRICE_TAG), prices))
        if 0.0 in prices:  # proto3 leaves out a price of +0.0, though not -0.0
            for at in compress(count(), map(eq, prices, repeat(0.0))):
                if math.copysign(1.0, prices[at]) > 0:
                    price_fields[at] = b""
        serialized = list(
            map(
                b"".join,
                zip(
                    map(_ID_HEADS.__getitem__, map(len, ids_utf8)),
                    ids_utf8,
                    map(_NAME_HEADS.__getitem__, map(len, names_utf8)),
                    names_utf8,
                    map(_DESCRIPTION_HEADS.__getitem__, map(len, descriptions_utf8)),
                    descriptions_utf8,
                    price_fields,
                    map(_CATEGORY_HEADS.__getitem__, map(len, categories_utf8)),
                    categories_utf8,
                    map(_IN_STOCK_FIELD.__getitem__, in_stock),
                    strict=True,
                ),
            )
        )
        data = self._data
        self._offsets.extend(islice(accumulate(map(len, serialized), initial=len(data)), 1, None))
        data += b"".join(serialized)
        self._id_hashes.extend(map(_id_hash, ids_utf8))
        self._texts.add_many(names, descriptions, (names_utf8, descriptions_utf8))
        positions = range(position, position + added)
        deque(map(array.append, map(self._positions_by_category.__getitem__, categories), positions), 0)
        return True

    def finish(self) -> CatalogRecords:
        """The records, once all products are added; CatalogError if two products share an id."""
        hashes, self._id_hashes = self._id_hashes, array("q")
        position_bits = max(1, (len(hashes) - 1).bit_length())
        if position_bits > _MAX_POSITION_BITS:
            raise CatalogError(f"{self._source}: more than {2**_MAX_POSITION_BITS} products")
        mask = _hash_mask(position_bits)
        keys = map(or_, map(lshift, map(and_, hashes, repeat(mask)), repeat(position_bits)), count())
        id_keys = array("d", sorted(map(float, keys)))
        del hashes
        records = CatalogRecords(
            self._data,
            self._offsets,
            id_keys,
            position_bits,
            dict(self._positions_by_category),
            self._texts,
        )
        duplicate = _first_duplicate(records)
        if duplicate is not None:
            position, first = duplicate
            product_id = _id_at(records, position).decode()
            raise CatalogError(
                f"{self._source}: {where(position, product_id)}: id: duplicates products[{first}]"
            )
        return records


class CatalogStore:
    """An immutable, validated catalog with the indexes behind every RPC; answers are serialized Products.

    Build it with `service.catalog_file.load_catalog` (from a file) or `from_products`; both refuse an
    invalid catalog whole. `search_index` says when the search index (about half the build time) is built.
    """

    def __init__(
        self,
        products: Iterable[Product] | CatalogRecords,
        source: str = "<memory>",
        *,
        search_index: Indexing = "now",
        fingerprint: bytes | None = None,
        index: SearchIndex | None = None,
    ) -> None:
        """`index`: the search index of these records, made before (read with them from a saved catalog).

        With it, searches use it from the start and `search_index` is not read.
        """
        if not isinstance(products, CatalogRecords):
            builder = CatalogBuilder(source)
            for product in products:
                builder.add(product)
            products = builder.finish()
        self._records = products
        if index is not None or search_index != "never":
            # Made now, on the loading thread, not by the first GetProduct. A store never to be searched is
            # one being checked (service/catalog.py: preview, `check`), not served: 0.6 s or more less at 1M.
            products.id_table  # noqa: B018
        self._serialized = products.data  # compared in place by GetProduct (a memoryview has no startswith)
        self._data = memoryview(products.data)  # slices of it copy only the product asked for
        self._offsets = products.offsets
        self._all_positions = range(len(products.offsets) - 1)
        # Identifies the catalog, so page tokens are refused by a server with another one: the digest of
        # the file it came from, or else of the products themselves.
        self.fingerprint = self._products_digest() if fingerprint is None else fingerprint
        self._search_index = index
        self._indexed = threading.Event()
        if index is not None:
            self._indexed.set()
        elif search_index == "background":
            threading.Thread(target=self._build_search_index, name="search-index", daemon=True).start()
        elif search_index == "now":
            self._build_search_index()
        else:
            self._indexed.set()

    @classmethod
    def from_products(cls, products: Iterable[Product], *, search_index: Indexing = "now") -> CatalogStore:
        """Validate and index products given in catalog order."""
        return cls(products, search_index=search_index)

    def __len__(self) -> int:
        return len(self._all_positions)

    @property
    def categories(self) -> list[str]:
        """The catalog's category names, sorted (products without one have none)."""
        return sorted(category for category in self._records.positions_by_category if category)

    def get(self, product_id: str) -> bytes | None:
        """The serialized product with this id, or None."""
        encoded = product_id.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes no product's id has
        if not encoded:
            return None  # no product has an empty id (CatalogBuilder refuses one)
        return self._find(encoded, _ID_HEADS[len(encoded)] + encoded)

    def get_by_id_field(self, id_field: bytes) -> bytes | None:
        """The serialized product that begins with `id_field`: a Product's id field, as serialized.

        That is its tag (field 1), the id's length in one byte, and the id: also a whole GetProductRequest
        as clients write it (catalog.proto), which GetProduct hands here unparsed. None if no product
        begins so, or if `id_field` is not such a field (an empty or a long id, other fields, bad bytes):
        the caller parses the request then, and asks `get`.
        """
        size = len(id_field) - 2
        if 0 < size < 0x80 and id_field[1] == size:  # a complete field: a prefix of one would match too
            return self._find(id_field[2:], id_field)
        return None

    def count(self, category: str) -> int:
        """How many products ListProducts matches for this category filter ("" = all)."""
        return len(self._matching(category))

    def page(self, category: str, offset: int, limit: int) -> list[bytes]:
        """Matching products offset..offset+limit in catalog order: a slice, whatever the catalog size."""
        return [self._product(i) for i in self._matching(category)[offset : offset + limit]]

    def search(self, query: str, limit: int) -> Iterator[bytes]:
        """Products whose lower-cased name or description contains query.lower(), in catalog order."""
        return (product for product in self.search_in_steps(query, limit) if product is not None)

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        """`search`, with a None between every two stretches of SEARCH_STEP products checked.

        A needle the index cannot narrow (only very common fragments, or any needle before the index
        is ready) checks much of the catalog, about 15 ms at 100k products; the Nones are where an
        async caller lets other calls run meanwhile, instead of holding its event loop that long.
        """
        if limit <= 0:
            return
        needle = to_needle(query)
        index = self._search_index
        found = 0
        for position in self._scan(needle) if index is None else index.matches(needle):
            if position is None:
                yield None
                continue
            yield self._product(position)
            found += 1
            if found == limit:  # stop without looking for one more match, as the seed's loop does
                return

    @property
    def indexed(self) -> bool:
        """Whether searches go through the search index (False: they scan the catalog)."""
        return self._search_index is not None

    def parts(self) -> tuple[CatalogRecords, SearchIndex]:
        """The records and the search index (built now, if it is not yet): what a saved catalog holds."""
        return self._records, self._search_index or SearchIndex(self._records.texts)

    def wait_indexed(self, timeout: float | None = None) -> bool:
        """Wait for the search index build to end (at once unless in the background); False on timeout."""
        return self._indexed.wait(timeout)

    def _find(self, encoded_id: bytes, id_field: bytes) -> bytes | None:
        """The serialized product with this UTF-8 id, whose id field is `id_field`, or None.

        Every GetProduct runs this: as few Python operations as find an id (CatalogRecords.id_table).
        """
        hash_mask, shift, slots = self._records.id_table
        slot = (_id_hash(encoded_id) & hash_mask) >> shift
        entry = slots[slot]
        offsets = self._offsets
        while entry:
            start = offsets[entry - 1]
            # A serialized product begins with its id field, compared in place; a varint is never a prefix
            # of another, so the whole field matching means the whole id does.
            if self._serialized.startswith(id_field, start):
                return self._data[start : offsets[entry]].tobytes()
            slot += 1
            entry = slots[slot]
        return None

    def _product(self, position: int) -> bytes:
        offsets = self._offsets
        return self._data[offsets[position] : offsets[position + 1]].tobytes()

    def _build_search_index(self) -> None:
        started = time.perf_counter()
        try:
            with gc_paused():
                self._search_index = SearchIndex(self._records.texts)
        except Exception:  # e.g. MemoryError: searches keep scanning, slower but right
            _log.exception("cannot build the search index; searches will scan the catalog")
            return
        finally:
            self._indexed.set()
        elapsed = time.perf_counter() - started
        _log.info("search index over %d products ready in %.2f s", len(self), elapsed)

    def _scan(self, needle: bytes) -> Iterator[int | None]:
        """The seed's search, for the moments before the index is ready; a None between steps."""
        contains = self._records.texts.contains
        for position in self._all_positions:
            if position and not position % SEARCH_STEP:
                yield None
            if contains(position, needle):
                yield position

    def _matching(self, category: str) -> Sequence[int]:
        if not category:
            return self._all_positions
        return self._records.positions_by_category.get(category, ())

    def _products_digest(self) -> bytes:
        # The same digest as serializing each product deterministically, which Product's plain
        # serialization is (it has no map fields).
        digest = hashlib.sha256()
        for position in self._all_positions:
            serialized = self._product(position)
            digest.update(len(serialized).to_bytes(4, "big"))
            digest.update(serialized)
        return digest.digest()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside this block.

    Loading allocates millions of objects that all survive; the collector's passes over them (none of
    them garbage) cost about a quarter of the load time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def where(position: int, product_id: str) -> str:
    """How an error names a product: `products[3] (id '42')`, or `products[3]` without an id."""
    return f"products[{position}] (id {product_id!r})" if product_id else f"products[{position}]"


def _product_problem(product_id: str, name: str, price: float) -> str | None:
    if not product_id:
        return "id: must not be empty"
    if not name:
        return "name: must not be empty"
    if not (math.isfinite(price) and price >= 0):
        return f"price: must be a finite number >= 0, got {price}"
    return None


def _first_duplicate(records: CatalogRecords) -> tuple[int, int] | None:
    """(position, first) for the earliest product whose id an earlier one has, or None."""
    keys, bits = records.id_keys, records.position_bits
    position_mask = (1 << bits) - 1
    # The keys' hash parts; the keys that share one with the next are found in C (a Python loop over a
    # million keys took 0.2 s of start-up).
    hashes = array("q", map(rshift, map(int, keys), repeat(bits)))
    found: tuple[int, int] | None = None
    run_end = 0
    for start in compress(count(), map(eq, hashes, islice(hashes, 1, None))):
        if start < run_end:
            continue  # inside the run already checked
        run_end = start + 2
        while run_end < len(keys) and hashes[run_end] == hashes[start]:
            run_end += 1
        # Equal hashes: equal ids, or (rarely) a collision. Ascending positions within a run.
        first_by_id: dict[bytes, int] = {}
        for key in keys[start:run_end]:
            position = int(key) & position_mask
            first = first_by_id.setdefault(_id_at(records, position), position)
            if first != position and (found is None or position < found[0]):
                found = (position, first)
    return found


def _varint(value: int) -> bytes:
    """`value` as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytearray, at: int) -> tuple[int, int]:
    """The varint at `at` and the index after it."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _id_at(records: CatalogRecords, position: int) -> bytes:
    """The UTF-8 id of the product at `position`, from its serialized form (field 1, never empty)."""
    data, start = records.data, records.offsets[position]
    length, at = _read_varint(data, start + 1)
    return bytes(data[at : at + length])
