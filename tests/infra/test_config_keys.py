"""config_keys on its own: every kind of key read through `pulumi.Config`, at its edges, and its refusals word
for word.

The program's own keys (config.py) are tried against their bounds in test_config.py and test_config_edges.py;
these are the reader's rules for each kind of key, with a settings class of this file's own, so a kind no
program key uses today (an optional choice, an integer array) is tried too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pytest
from catalog_infra.config_keys import ConfigError, Key, declared, integer, one_of, read, read_all

from tests.infra.harness import PROJECT, Mocks, wire_value


@dataclass(frozen=True)
class Sample:
    """One key of each kind."""

    count: Annotated[int, integer("count", 2, 5)]
    explained: Annotated[int, integer("explained", 0, 9, "a reason")]
    size: Annotated[int, one_of("size", (8, 16, 32))]
    word: Annotated[str, Key("word", choices=("a", "b"))]
    maybe: Annotated[str | None, Key("maybe", choices=("x",))]
    flag: Annotated[bool, Key("flag")]
    names: Annotated[tuple[str, ...], Key("names", "each must be lowercase", pattern="[a-z]+", high=2)]
    numbers: Annotated[
        tuple[int, ...], Key("numbers", "must add up to 10 at most", test=lambda v: sum(v) <= 10)
    ]
    share: Annotated[float, Key("share", "must be a share", pattern=r"0\.[0-9]+")]
    zone: Annotated[str, Key("gcp:zone", "must be a zone", pattern="z[0-9]")]


VALID: dict[str, object] = {
    "count": 3,
    "explained": 0,
    "size": 16,
    "word": "a",
    "maybe": "x",
    "flag": True,
    "names": ["ab", "cd"],
    "numbers": [4, 6],
    "share": "0.5",
    "gcp:zone": "z1",
}


def configure(**overrides: object) -> None:
    values = {**VALID, **{key.replace("_", ":"): value for key, value in overrides.items()}}
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack="dev")
    pulumi.runtime.set_all_config(
        {(key if ":" in key else f"{PROJECT}:{key}"): wire_value(value) for key, value in values.items()}
    )


def refused(**overrides: object) -> str:
    """The refusal of Sample's config with `overrides`, after checking it names the overridden key."""
    configure(**overrides)
    with pytest.raises(ConfigError) as failure:
        read_all(Sample)
    (name,) = overrides
    assert failure.value.key == (name.replace("_", ":") if "_" in name else f"{PROJECT}:{name}")
    return str(failure.value)


KEYS = declared(Sample)


def test_each_field_gets_the_kind_its_python_type_says() -> None:
    kinds = {field: (key.type, key.items, key.optional, key.share) for field, key in KEYS.items()}
    assert kinds == {
        "count": ("integer", "string", False, False),
        "explained": ("integer", "string", False, False),
        "size": ("integer", "string", False, False),
        "word": ("string", "string", False, False),
        "maybe": ("string", "string", True, False),
        "flag": ("boolean", "string", False, False),
        "names": ("array", "string", False, False),
        "numbers": ("array", "integer", False, False),
        "share": ("string", "string", False, True),
        "zone": ("string", "string", False, False),
    }


def test_valid_values_come_back_as_the_fields_types() -> None:
    configure()
    assert read_all(Sample) == {
        "count": 3,
        "explained": 0,
        "size": 16,
        "word": "a",
        "maybe": "x",
        "flag": True,
        "names": ("ab", "cd"),
        "numbers": (4, 6),
        "share": 0.5,
        "zone": "z1",
    }


def test_an_empty_optional_is_none_and_a_share_a_float() -> None:
    configure(maybe="", share="0.25")
    values = read_all(Sample)
    assert values["maybe"] is None
    assert values["share"] == 0.25
    assert isinstance(values["share"], float)


def test_the_full_name_is_the_projects_or_the_providers() -> None:
    configure()
    assert KEYS["count"].full_name == f"{PROJECT}:count"
    assert KEYS["zone"].full_name == "gcp:zone"


def test_each_kind_says_what_it_allows() -> None:
    assert KEYS["count"].refusal() == "must be an integer from 2 to 5"
    assert KEYS["explained"].refusal() == "must be an integer from 0 to 9 (a reason)"
    assert KEYS["size"].refusal() == "must be one of 8, 16, 32 (an integer from 8 to 32)"
    assert KEYS["word"].refusal() == "must be one of a, b"
    assert KEYS["maybe"].refusal() == "must be one of x, or empty"
    assert KEYS["flag"].refusal() == "must be true or false"
    assert KEYS["names"].refusal() == "each must be lowercase"


@pytest.mark.parametrize(
    ("value", "accepted"), [(1, False), (2, True), (3, True), (4, True), (5, True), (6, False)]
)
def test_an_integer_at_and_beyond_each_bound(value: int, accepted: bool) -> None:
    if accepted:
        configure(count=value)
        assert read_all(Sample)["count"] == value
    else:
        assert (
            refused(count=value)
            == f"invalid config {PROJECT}:count = {value}: must be an integer from 2 to 5"
        )


def test_one_of_takes_its_smallest_and_largest_as_bounds() -> None:
    assert (KEYS["size"].low, KEYS["size"].high, KEYS["size"].choices) == (8, 32, (8, 16, 32))
    assert refused(size=9) == f"invalid config {PROJECT}:size = 9: " + KEYS["size"].refusal()


def test_a_value_of_the_wrong_type_is_refused_with_what_the_key_takes() -> None:
    assert refused(count="many") == f"invalid config {PROJECT}:count = 'many': must be an integer from 2 to 5"
    assert refused(flag="yes") == f"invalid config {PROJECT}:flag = 'yes': must be true or false"
    assert refused(word="c") == f"invalid config {PROJECT}:word = 'c': must be one of a, b"
    assert refused(maybe="y") == f"invalid config {PROJECT}:maybe = 'y': must be one of x, or empty"
    assert refused(share="1.5") == f"invalid config {PROJECT}:share = '1.5': must be a share"
    assert refused(gcp_zone="") == "invalid config gcp:zone = '': must be a zone"


@pytest.mark.parametrize("value", ["ab", {"a": "b"}, ["ab", 1], [["ab"]]])
def test_a_string_array_of_another_shape_is_refused_as_a_list(value: object) -> None:
    assert refused(names=value) == f"invalid config {PROJECT}:names = {value!r}: must be a list of strings"


@pytest.mark.parametrize("value", [[4, "6"], [True], 7])
def test_an_integer_array_of_another_shape_is_refused_as_a_list(value: object) -> None:
    assert (
        refused(numbers=value) == f"invalid config {PROJECT}:numbers = {value!r}: must be a list of integers"
    )


def test_an_integer_array_is_tested_whole() -> None:
    configure(numbers=[10])
    assert read_all(Sample)["numbers"] == (10,)
    assert refused(numbers=[5, 6]) == f"invalid config {PROJECT}:numbers = [5, 6]: must add up to 10 at most"


def test_a_string_array_names_the_entry_it_refuses() -> None:
    assert refused(names=["ab", "C"]) == f"invalid config {PROJECT}:names = 'C': each must be lowercase"


@pytest.mark.parametrize(
    ("value", "accepted"), [([], True), (["ab"], True), (["ab", "cd"], True), (["ab", "cd", "ef"], False)]
)
def test_an_array_takes_up_to_its_most_entries(value: list[str], accepted: bool) -> None:
    if accepted:
        configure(names=value)
        assert read_all(Sample)["names"] == tuple(value)
    else:
        assert refused(names=value) == f"invalid config {PROJECT}:names = '3 entries': at most 2 entries"


@pytest.mark.parametrize("field", ["names", "numbers"])
def test_an_array_refuses_a_repeated_entry(field: str) -> None:
    value = ["ab", "ab"] if field == "names" else [1, 1]
    assert (
        refused(**{field: value}) == f"invalid config {PROJECT}:{field} = {value!r}: entries must not repeat"
    )


def test_a_key_narrowed_by_another_keeps_its_type_and_takes_the_new_bounds() -> None:
    configure(count=5)
    narrowed = integer("count", 2, 4, "count is at most 4 here")
    with pytest.raises(ConfigError, match=r"= 5: must be an integer from 2 to 4 \(count is at most 4 here\)"):
        read_all(Sample, count=narrowed)
    configure(count=4)
    assert read_all(Sample, count=narrowed)["count"] == 4


def test_a_test_that_raises_value_error_refuses() -> None:
    key: Any = Key("n", "must be a number", test=float)
    assert key.accepts("1.5")
    assert not key.accepts("one")
    configure()
    pulumi.runtime.set_all_config({f"{PROJECT}:n": "one"})
    with pytest.raises(ConfigError, match="= 'one': must be a number"):
        read(key)


def test_a_narrowed_integer_array_keeps_its_entries_type() -> None:
    narrowed = Key("numbers", "must add up to 5 at most", test=lambda v: sum(v) <= 5)
    configure(numbers=[2, 3])
    assert read_all(Sample, numbers=narrowed)["numbers"] == (2, 3)
    configure(numbers=[4, 6])
    with pytest.raises(ConfigError, match=r"= \[4, 6\]: must add up to 5 at most"):
        read_all(Sample, numbers=narrowed)


# Integer keys held to one bound or none: each says what it takes, and is held to exactly that.
FLOOR = Key("floor", low=2, type="integer")
CEILING = Key("ceiling", high=5, type="integer")
UNBOUNDED = Key("unbounded", type="integer")
ONE_SIDED: list[tuple[Key, int, bool]] = [
    (FLOOR, 1, False),
    (FLOOR, 2, True),
    (FLOOR, 10**12, True),
    (CEILING, -(10**12), True),
    (CEILING, 5, True),
    (CEILING, 6, False),
    (UNBOUNDED, -(10**12), True),
    (UNBOUNDED, 10**12, True),
]


def test_a_key_with_fewer_bounds_says_which_it_has() -> None:
    assert FLOOR.refusal() == "must be an integer of at least 2"
    assert CEILING.refusal() == "must be an integer of at most 5"
    assert UNBOUNDED.refusal() == "must be an integer"


@pytest.mark.parametrize(
    ("key", "value", "accepted"), ONE_SIDED, ids=[f"{key.name}={value}" for key, value, _ in ONE_SIDED]
)
def test_a_key_with_one_bound_is_held_to_it(key: Key, value: int, accepted: bool) -> None:
    configure()
    pulumi.runtime.set_all_config({f"{PROJECT}:{key.name}": str(value)})
    if accepted:
        assert read(key) == value
        return
    with pytest.raises(ConfigError) as failure:
        read(key)
    assert str(failure.value) == f"invalid config {PROJECT}:{key.name} = {value}: {key.refusal()}"
