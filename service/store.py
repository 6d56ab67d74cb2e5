"""The product catalog in memory: validated whole, indexed by id and category, searched by its index.

Plain Python over protobuf messages; nothing here knows about gRPC or about the catalog file's format
(service/catalog_file.py reads files into a store; service/search_index.py is the search index).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from catalog.catalog_pb2 import Product
from service.search_index import SEARCH_STEP, SearchIndex

# When a store builds its search index: in the constructor, on a thread after it (searches scan until the
# index is ready, with the same answers), or never (searches always scan: the reference the index must match).
Indexing = Literal["now", "background", "never"]

_log = logging.getLogger(__name__)


class CatalogError(ValueError):
    """The catalog cannot be served: the message names the file, the product and the field."""


class CatalogStore:
    """An immutable, validated catalog with the indexes behind every RPC.

    Build it with `service.catalog_file.load_catalog` (from a file) or `from_products`; both refuse an
    invalid catalog whole. `search_index` says when the search index (about half the build time) is built.
    """

    def __init__(
        self,
        products: Sequence[Product],
        source: str = "<memory>",
        *,
        search_index: Indexing = "now",
        fingerprint: bytes | None = None,
    ) -> None:
        for position, product in enumerate(products):
            problem = _product_problem(product)
            if problem:
                raise CatalogError(f"{source}: {where(position, product.id)}: {problem}")
        self._products: tuple[Product, ...] = tuple(products)
        self._positions_by_id: dict[str, int] = {}
        positions_by_category: dict[str, list[int]] = {}
        for position, product in enumerate(self._products):
            first = self._positions_by_id.setdefault(product.id, position)
            if first != position:
                raise CatalogError(
                    f"{source}: {where(position, product.id)}: id: duplicates products[{first}]"
                )
            positions_by_category.setdefault(product.category, []).append(position)
        self._positions_by_category = {c: tuple(p) for c, p in positions_by_category.items()}
        self._all_positions = range(len(self._products))
        # Identifies the catalog, so page tokens are refused by a server with another one: the digest of
        # the file it came from, or else of the products themselves.
        self.fingerprint = _fingerprint(self._products) if fingerprint is None else fingerprint
        self._search_index: SearchIndex | None = None
        self._indexed = threading.Event()
        if search_index == "background":
            threading.Thread(target=self._build_search_index, name="search-index", daemon=True).start()
        elif search_index == "now":
            self._build_search_index()
        else:
            self._indexed.set()

    @classmethod
    def from_products(cls, products: Sequence[Product], *, search_index: Indexing = "now") -> CatalogStore:
        """Validate and index products given in catalog order."""
        return cls(products, search_index=search_index)

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

    @property
    def indexed(self) -> bool:
        """Whether searches go through the search index (False: they scan the catalog)."""
        return self._search_index is not None

    def wait_indexed(self, timeout: float | None = None) -> bool:
        """Wait for the search index build to end (at once unless in the background); False on timeout."""
        return self._indexed.wait(timeout)

    def _build_search_index(self) -> None:
        started = time.perf_counter()
        try:
            with gc_paused():
                self._search_index = SearchIndex(self._products)
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


def _product_problem(product: Product) -> str | None:
    if not product.id:
        return "id: must not be empty"
    if not product.name:
        return "name: must not be empty"
    if not (math.isfinite(product.price) and product.price >= 0):
        return f"price: must be a finite number >= 0, got {product.price}"
    return None


def _fingerprint(products: Sequence[Product]) -> bytes:
    digest = hashlib.sha256()
    for product in products:
        serialized = product.SerializeToString(deterministic=True)
        digest.update(len(serialized).to_bytes(4, "big"))
        digest.update(serialized)
    return digest.digest()
