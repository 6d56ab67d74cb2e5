"""Catalog files the server refuses, with the words its message must carry: one list for every test.

The server's loader (tests/service/test_catalog_file.py), the checker (tests/service/test_catalog_check.py)
and the Pulumi program (tests/infra/test_catalog_data.py) are held to the same cases, so a file one of them
refuses is refused by all three with the same message.
"""

from __future__ import annotations

import json
from typing import Any

GOOD = {
    "id": "a",
    "name": "Anvil",
    "description": "Heavy",
    "price": 10.5,
    "category": "tools",
    "inStock": True,
}

# (the file's products, what the message says after "FILE: ")
BAD_PRODUCTS: list[tuple[list[Any], str]] = [
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
]

# (the file's whole text, what the message says)
BAD_CONTENTS: list[tuple[str, str]] = [
    ("{not json", "not valid JSON"),
    ("[]", 'expected a JSON object {"products": [...]}'),
    ('{"items": []}', 'expected a JSON object {"products": [...]}'),
    ('{"products": [], "extra": 1}', "unknown top-level field 'extra'"),
    (b"\xff\xfe".decode("latin-1"), "not valid JSON"),
    ('{"products": [{"id": "a", "name": "A", "price": 1' + "0" * 5000 + "}]}", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
]


def bad_files() -> list[tuple[str, bytes, str]]:
    """Every bad file as (a test id, its bytes, what the message says), products and contents alike."""
    files = [
        (f"products-{index}", json.dumps({"products": products}).encode(), expected)
        for index, (products, expected) in enumerate(BAD_PRODUCTS)
    ]
    files += [
        (f"content-{index}", content.encode("utf-8"), expected)
        for index, (content, expected) in enumerate(BAD_CONTENTS)
    ]
    # Bytes that are not UTF-8 at all.
    files.append(("not-utf8", b'{"products": [{"id": "\xe9", "name": "x"}]}', "cannot read"))
    return files
