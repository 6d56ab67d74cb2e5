"""Every bounded config key at, just inside and just outside its bounds; every choice of every choice key.

Parametrized from the program's own declarations (config.KEYS), so a key added later is tried too. The
canary's error ratio, a share written as a string, is tried at 0 and 1, which both mean something a user
may want (no failure allowed; never roll back), and just beyond.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.harness import infra_module

config: Any = infra_module("config")
BOUNDED = [
    k for k in config.KEYS if k.type == "integer" and not k.choices and k.low is not None and k.test is None
]
CHOICES = [k for k in config.KEYS if k.choices]


def test_the_lists_below_are_not_empty() -> None:
    assert len(BOUNDED) >= 5
    assert len(CHOICES) >= 2


@pytest.mark.parametrize("key", BOUNDED, ids=lambda k: k.name)
def test_an_integer_key_takes_its_bounds_and_refuses_one_beyond(key: Any) -> None:
    assert key.accepts(key.low)
    assert key.accepts(key.high)
    assert not key.accepts(key.low - 1)
    assert not key.accepts(key.high + 1)
    if key.high > key.low:
        assert key.accepts(key.low + 1)
        assert key.accepts(key.high - 1)
    assert str(key.low) in key.refusal()
    assert str(key.high) in key.refusal()


@pytest.mark.parametrize("key", CHOICES, ids=lambda k: k.name)
def test_a_choice_key_takes_each_choice_and_nothing_between(key: Any) -> None:
    for choice in key.choices:
        assert key.accepts(choice), choice
        assert str(choice) in key.refusal()
    if key.type == "integer":
        between = [n for n in range(key.low, key.high + 1) if n not in key.choices][:3]
        for value in [key.low - 1, *between, key.high + 1]:
            assert not key.accepts(value), value


RATIO = next(k for k in config.KEYS if k.name == "canaryMaxErrorRatio")


@pytest.mark.parametrize("value", ["0", "0.0", "0.001", "0.5", "0.999", "1", "1.0", "1.00"])
def test_the_error_ratio_takes_every_share_from_zero_to_one_included(value: str) -> None:
    assert RATIO.accepts(value)


@pytest.mark.parametrize("value", ["1.001", "1.1", "2", "-0.01", "-0", ".5", "1e-3", "", "0,5"])
def test_the_error_ratio_refuses_what_is_not_a_share_or_beyond_one(value: str) -> None:
    assert not RATIO.accepts(value)
    assert (
        RATIO.refusal()
        == 'must be a share from 0 to 1 (0 and 1 included), written as a string such as "0.01"'
    )
