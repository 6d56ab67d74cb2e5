"""The names catalog/__init__.py derives from the generated descriptors, as the wire spells them."""

from __future__ import annotations

import catalog


def test_unary_methods_are_the_ones_that_stream_neither_way() -> None:
    # The latency SLO's methods: SearchProducts streams its answers, so its duration is the whole stream's.
    assert catalog.UNARY_METHODS == (
        "/catalog.ProductCatalog/GetProduct",
        "/catalog.ProductCatalog/ListProducts",
    )
    assert catalog.SEARCH_PRODUCTS_METHOD == "/catalog.ProductCatalog/SearchProducts"
    assert catalog.SEARCH_PRODUCTS_METHOD not in catalog.UNARY_METHODS
