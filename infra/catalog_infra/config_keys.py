"""How a declared config key is read through `pulumi.Config`'s typed getters, and refused with what it takes.

A settings class declares each key on its field: `name: Annotated[<Python type>, Key(...)]`. The Python type
gives the Pulumi type: str, int, bool, a tuple for an array, `| None` where "" turns a feature off, float for
a share written as a string. config.py declares this program's keys; this module knows none of them.
"""

import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args, get_type_hints

import pulumi

Kind = Literal["string", "integer", "boolean", "array"]
_KINDS: dict[object, Kind] = {
    bool: "boolean",
    int: "integer",
    tuple[str, ...]: "array",
    tuple[int, ...]: "array",
}


class ConfigError(pulumi.RunError):
    """A config value the program (or Cloud Run) does not accept; names the key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"invalid config {key} = {value!r}: {allowed}")
        self.key = key


@dataclass(frozen=True)
class Key:
    """One key: its name, what it accepts, and what a refusal says is allowed (made from bounds if empty)."""

    name: str
    allowed: str = ""
    low: int | None = None
    high: int | None = None  # an array's: the most entries
    choices: tuple[str | int, ...] = ()
    pattern: str = ""  # a string's form, or each entry's (fullmatch)
    # What a pattern cannot say: false or ValueError refuses (an integer array's gets the whole list).
    test: Callable[[Any], object] | None = None
    env: str = ""  # the server's environment variable that carries the value
    # Set by `declared` from the field's Python type.
    type: Kind = "string"
    items: Kind = "string"
    optional: bool = False
    share: bool = False

    @property
    def full_name(self) -> str:
        """As the CLI and refusals write it: `project:key`, or a provider's `gcp:key` as it is."""
        return self.name if ":" in self.name else pulumi.Config().full_key(self.name)

    def refusal(self) -> str:
        """What a refusal says is allowed."""
        if self.allowed:
            return self.allowed
        if self.type == "boolean":
            return "must be true or false"
        if self.choices:
            listed = ", ".join(map(str, self.choices)) + (", or empty" if self.optional else "")
            within = f" (an integer from {self.low} to {self.high})" if self.type == "integer" else ""
            return f"must be one of {listed}{within}"
        bounds = {  # by which bounds the key has: low, high
            (True, True): f" from {self.low} to {self.high}",
            (True, False): f" of at least {self.low}",
            (False, True): f" of at most {self.high}",
            (False, False): "",
        }[self.low is not None, self.high is not None]
        return f"must be an integer{bounds}"

    def accepts(self, value: Any) -> bool:
        """Whether a value of the right type (a string array's entry) is allowed."""
        # Each bound on its own: a key with one bound is held to it.
        within = self.type != "integer" or (
            (self.low is None or self.low <= value) and (self.high is None or value <= self.high)
        )
        try:
            passes = self.test is None or bool(self.test(value))
        except ValueError:
            passes = False
        return (
            within
            and passes
            and (not self.pattern or re.fullmatch(self.pattern, value) is not None)
            and (not self.choices or value in self.choices)
        )


def integer(name: str, low: int, high: int, why: str = "") -> Key:
    """An integer key from `low` to `high`; `why` says where the bounds come from."""
    return Key(name, f"must be an integer from {low} to {high} ({why})" if why else "", low=low, high=high)


def one_of(name: str, choices: tuple[int, ...]) -> Key:
    """An integer key that takes only `choices`."""
    return Key(name, low=min(choices), high=max(choices), choices=choices)


@functools.cache
def declared(settings: type) -> dict[str, Key]:
    """Each field of `settings` -> its key, typed from the field's Python type (in the fields' order)."""
    keys = {}
    for field, hint in get_type_hints(settings, include_extras=True).items():
        python_type, key = get_args(hint)
        keys[field] = replace(
            key,
            type=_KINDS.get(python_type, "string"),
            items="integer" if python_type == tuple[int, ...] else "string",
            optional=isinstance(python_type, types.UnionType),
            share=float in (python_type, *get_args(python_type)),  # float, or float | None
        )
    return keys


def read(key: Key) -> Any:
    """The key's value through pulumi.Config's typed getters, checked; ConfigError names what is allowed."""
    namespace, _, name = key.name.rpartition(":")
    config, full = pulumi.Config(namespace or None), key.full_name
    getter: dict[Kind, Callable[[str], Any]] = {
        "string": config.require,
        "integer": config.require_int,
        "boolean": config.require_bool,
    }
    # An array of the wrong shape is refused as a list first, its entries then one by one.
    shape = key.allowed if key.allowed.startswith("must be a list") else f"must be a list of {key.items}s"
    try:
        value = getter.get(key.type, config.require_object)(name)
    except pulumi.ConfigTypeError as error:
        raise ConfigError(full, error.value, shape if key.type == "array" else key.refusal()) from None
    if key.type == "array":
        item_type = int if key.items == "integer" else str
        if not isinstance(value, list) or any(type(item) is not item_type for item in value):
            raise ConfigError(full, value, shape)
        if key.items == "integer" and not key.accepts(value):
            raise ConfigError(full, value, key.refusal())
        for item in value if key.items == "string" else ():
            if not key.accepts(item):
                raise ConfigError(full, item, key.refusal())
        if len(set(value)) != len(value):
            raise ConfigError(full, value, "entries must not repeat")
        if key.high is not None and len(value) > key.high:
            raise ConfigError(full, f"{len(value)} entries", f"at most {key.high} entries")
        return tuple(value)
    if key.optional and value == "":
        return None
    if not key.accepts(value):
        raise ConfigError(full, value, key.refusal())
    return float(value) if key.share else value


def read_all(settings: type, **narrowed: Key) -> dict[str, Any]:
    """Every key `settings` declares, by field name, each checked on its own (or as `narrowed` by another)."""
    keys = declared(settings)
    for field, key in narrowed.items():  # narrowed bounds or words; the type stays the field's
        keys = {**keys, field: replace(key, type=keys[field].type, items=keys[field].items)}
    return {field: read(key) for field, key in keys.items()}
