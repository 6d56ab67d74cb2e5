"""The product catalog: loaded once, validated whole, indexed for the queries the API answers.

Plain Python over protobuf messages; nothing here knows about gRPC.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any

from catalog.catalog_pb2 import Product

# Found beside this file rather than through importlib.resources, which costs 5% of start-up to import.
EMBEDDED_CATALOG = os.path.join(os.path.dirname(__file__), "data", "products.json")
# Products a search checks between two chances for other calls to run: about half a millisecond.
SEARCH_STEP = 2000

_log = logging.getLogger(__name__)


class CatalogError(ValueError):
    """The catalog cannot be served: the message names the file, the product and the field."""


class CatalogStore:
    """An immutable, validated catalog with the indexes behind every RPC.

    Build it with `load_catalog` (from JSON) or `from_products`; both refuse an invalid catalog whole.
    With `index_in_background`, the search index (about half the build time) is built on a thread after
    the constructor returns; until it is ready, searches scan the catalog, with the same answers.
    """

    def __init__(
        self,
        products: Sequence[Product],
        source: str = "<memory>",
        *,
        index_in_background: bool = False,
        fingerprint: bytes | None = None,
    ) -> None:
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
        # Identifies the catalog, so page tokens are refused by a server with another one: the digest of
        # the file it came from, or else of the products themselves.
        self.fingerprint = _fingerprint(self._products) if fingerprint is None else fingerprint
        self._search_index: _SearchIndex | None = None
        self._indexed = threading.Event()
        if index_in_background:
            threading.Thread(target=self._build_search_index, name="search-index", daemon=True).start()
        else:
            self._build_search_index()

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
        return (product for product in self.search_in_steps(query, limit) if product is not None)

    def search_in_steps(self, query: str, limit: int) -> Iterator[Product | None]:
        """`search`, with a None between every two stretches of SEARCH_STEP products checked.

        A needle the index cannot narrow (only very common fragments, or any needle before the index
        is ready) checks much of the catalog, about 15 ms at 100k products; the Nones are where an
        async caller lets other calls run meanwhile, instead of holding its event loop that long.
        """
        if limit <= 0:
            return
        needle = query.lower()
        index = self._search_index
        found = 0
        for position in self._scan(needle) if index is None else index.matches(needle):
            if position is None:
                yield None
                continue
            yield self._products[position]
            found += 1
            if found == limit:  # stop without looking for one more match, as the seed's loop does
                return

    def wait_indexed(self, timeout: float | None = None) -> bool:
        """Wait for the search index (ready at once unless built in the background); False on timeout."""
        return self._indexed.wait(timeout)

    def _build_search_index(self) -> None:
        started = time.perf_counter()
        try:
            self._search_index = _SearchIndex(self._products)
        except Exception:  # e.g. MemoryError: searches keep scanning, slower but right
            _log.exception("cannot build the search index; searches will scan the catalog")
            return
        finally:
            self._indexed.set()
        _log.info(
            "search index over %d products ready in %.2f s",
            len(self._products),
            time.perf_counter() - started,
        )

    def _scan(self, needle: str) -> Iterator[int | None]:
        """The seed's search, for the moments before the index is ready; a None between steps."""
        products = self._products
        for start in range(0, len(products), SEARCH_STEP):
            if start:
                yield None
            for position in range(start, min(start + SEARCH_STEP, len(products))):
                product = products[position]
                if needle in product.name.lower() or needle in product.description.lower():
                    yield position

    def _matching(self, category: str) -> Sequence[int]:
        if not category:
            return self._all_positions
        return self._positions_by_category.get(category, ())


class _SearchIndex:
    """Which products contain a lower-cased needle in their lower-cased name or description, in order.

    A search must give the seed's answers: product p matches iff `needle in p.name.lower() or needle in
    p.description.lower()`. Scanning every product for that costs the whole catalog per query; instead:

    - Each field is split into whitespace-separated words, and each distinct word (the vocabulary, far
      smaller than the catalog) lists the positions of the products that contain it.
    - The needle's own whitespace-separated pieces can only occur inside words, so a product can match
      only if, for every piece, one of its words contains that piece. Which words contain a piece comes
      from the vocabulary's trigrams: for a 3-character piece, its trigram's words; for a longer one, the
      words of its rarest trigrams, checked; for a 1- or 2-character piece, the words of the trigrams
      containing it (and the words too short to have a trigram, indexed under their own substrings).
    - Those products, taken for the piece with the fewest, are the candidates; each one is checked
      against the real text, so the index only ever narrows the search and never decides a match.

    An absent substring, even one or two characters long, is answered without touching any product. A
    needle whose candidates are a large share of the catalog (a very common fragment) is answered by
    scanning in catalog order instead, which finds `limit` matches after a short stretch because they are
    dense. A needle of whitespace only has no pieces and is scanned too.
    """

    # Candidates above this share of the catalog are scanned in order rather than collected and sorted.
    DENSE_FRACTION = 8

    def __init__(self, products: Sequence[Product]) -> None:
        with _gc_paused():
            # Lower-cased once here, so a candidate check is two substring tests.
            self._texts = tuple((p.name.lower(), p.description.lower()) for p in products)
            positions_by_word: defaultdict[str, list[int]] = defaultdict(list)
            for position, (name, description) in enumerate(self._texts):
                for word in {*name.split(), *description.split()}:
                    positions_by_word[word].append(position)
            self._positions_by_word = dict(positions_by_word)
            # Trigram -> the words containing it; a word shorter than that is listed under its own
            # 1- and 2-character substrings instead.
            words_by_gram: defaultdict[str, list[str]] = defaultdict(list)
            for word in self._positions_by_word:
                for gram in _grams(word):
                    words_by_gram[gram].append(word)
            self._words_by_gram = dict(words_by_gram)
            # 1- or 2-character piece -> the trigrams containing it: a word of 3 or more characters
            # contains such a piece iff one of its trigrams does. Indexing every word's 1- and 2-character
            # substrings directly would triple the index for catalogs with many distinct words.
            trigrams_containing: defaultdict[str, list[str]] = defaultdict(list)
            for gram in self._words_by_gram:
                if len(gram) == _GRAM:
                    for short in _grams(gram[:2]) | _grams(gram[1:]):
                        trigrams_containing[short].append(gram)
            self._trigrams_containing = dict(trigrams_containing)
        self._dense = max(1, len(products) // self.DENSE_FRACTION)

    def matches(self, needle: str) -> Iterator[int | None]:
        """Positions of the products containing `needle` (already lower-cased), in catalog order.

        A None between every two stretches of SEARCH_STEP candidates: see CatalogStore.search_in_steps.
        """
        texts = self._texts
        candidates = self._candidates(needle)
        for start in range(0, len(candidates), SEARCH_STEP):
            if start:
                yield None
            for position in candidates[start : start + SEARCH_STEP]:
                name, description = texts[position]
                if needle in name or needle in description:
                    yield position

    def _candidates(self, needle: str) -> Sequence[int]:
        best: list[list[int]] | None = None
        best_total = len(self._texts) + 1
        for piece in set(needle.split()):
            postings = self._postings(piece)
            if postings is None:
                continue  # a common fragment: it narrows the search too little to be worth collecting
            total = sum(map(len, postings))
            if total == 0:
                return ()  # some piece occurs in no word: nothing can match
            if total < best_total:
                best, best_total = postings, total
        if best is None:
            return range(len(self._texts))
        if len(best) == 1:
            return best[0]  # one word's positions: already in catalog order
        # Sorted runs merge in near-linear time (a set union then a sort took 6x longer); the products
        # listed under more than one of the piece's words are then adjacent.
        return list(_skip_repeats(sorted(chain.from_iterable(best))))

    def _postings(self, piece: str) -> list[list[int]] | None:
        """The positions lists of the words containing `piece`; None when they add up to a large share."""
        postings: list[list[int]] = []
        total = 0
        for word in self._words_containing(piece):
            positions = self._positions_by_word[word]
            postings.append(positions)
            total += len(positions)
            if total >= self._dense and len(postings) > 1:
                return None
        return postings

    def _words_containing(self, piece: str) -> Iterable[str]:
        if len(piece) < _GRAM:
            return self._words_containing_short(piece)
        if len(piece) == _GRAM:
            return self._words_by_gram.get(piece, ())
        lists = []
        for start in range(len(piece) - _GRAM + 1):
            words = self._words_by_gram.get(piece[start : start + _GRAM])
            if words is None:
                return ()
            lists.append(words)
        lists.sort(key=len)
        common = set(lists[0]).intersection(*lists[1:3])  # the rarest few narrow enough; then check
        return [word for word in lists[0] if word in common and piece in word]

    def _words_containing_short(self, piece: str) -> Iterator[str]:
        yield from self._words_by_gram.get(piece, ())  # words shorter than a trigram
        seen: set[str] = set()
        for gram in self._trigrams_containing.get(piece, ()):
            for word in self._words_by_gram[gram]:
                if word not in seen:
                    seen.add(word)
                    yield word


_GRAM = 3


def _skip_repeats(positions: Iterable[int]) -> Iterator[int]:
    previous = -1
    for position in positions:
        if position != previous:
            previous = position
            yield position


@contextmanager
def _gc_paused() -> Iterator[None]:
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


def _grams(word: str) -> set[str]:
    """The word's trigrams; for a word shorter than that, all its 1- and 2-character substrings."""
    if len(word) >= _GRAM:
        return {word[start : start + _GRAM] for start in range(len(word) - _GRAM + 1)}
    return {*word, *(word[start : start + 2] for start in range(len(word) - 1))}


def load_catalog(path: str | os.PathLike[str] | None = None) -> CatalogStore:
    """Load a catalog file (`{"products": [...]}`, protobuf JSON mapping); None loads the embedded one."""
    source = f"embedded catalog {EMBEDDED_CATALOG}" if path is None else os.fspath(path)
    try:
        with open(EMBEDDED_CATALOG if path is None else path, "rb") as file:
            data = file.read()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(f"{source}: cannot read: {error}") from None
    # The file's digest, not the products': every instance of a revision reads the same file, and hashing
    # its bytes takes 12 ms at 100k products where serializing each product took 70.
    fingerprint = hashlib.sha256(data).digest()
    del data
    with _gc_paused():
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:  # also: integers past 4300 digits, deep nesting
            raise CatalogError(f"{source}: not valid JSON: {error}") from None
        del text  # the file's text and its parsed form are the peak of start-up memory: drop each when done
        products = _decode_products(document, source)
        del document
    # The server reports SERVING once this returns: products, ids, categories and page tokens are ready;
    # the search index follows within a second (at 100k products) and searches scan until then.
    return CatalogStore(products, source, index_in_background=True, fingerprint=fingerprint)


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
                f"{source}: {_where(position, raw_id if isinstance(raw_id, str) else '')}: {error}"
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
