"""Counts in the lines people read agree with their nouns and verbs, at 0, 1 and 2."""

from __future__ import annotations

import pytest

from client.plural import counted, plural


@pytest.mark.parametrize(
    ("count", "expected"), [(0, "0 products match"), (1, "1 product matches"), (2, "2 products match")]
)
def test_a_noun_and_a_verb_agree_with_the_count(count: int, expected: str) -> None:
    assert f"{counted(count, 'product')} {plural(count, 'matches', 'match')}" == expected
