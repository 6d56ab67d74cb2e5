"""Values unknown at preview, and values left out, never crash a policy nor turn into a violation."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from catalog_policy import POLICIES
from engine import STACKS, Diagnostic, analyze, evaluate, pack_config, resources, violations
from pulumi_policy.deserialize import SPECIAL_SIG_KEY
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

# How the engine marshals a computed value for a pack (MarshalProperties with KeepUnknowns).
UNKNOWN = UNKNOWN_STRING_VALUE
Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every property path in a value, objects and lists included (each may be unknown as a whole)."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, dict) and SPECIAL_SIG_KEY in value:
        return  # a secret (or asset) is one value on the wire: unknown as a whole, never in part
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def replaced(props: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(props)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def dropped(props: dict[str, Any], path: Path) -> dict[str, Any]:
    changed = copy.deepcopy(props)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


def _key(d: Diagnostic) -> tuple[str, str]:
    return d.policy, d.message


@pytest.mark.parametrize("stack", STACKS)
def test_any_value_unknown_is_never_a_violation(stack: str) -> None:
    config = pack_config(stack)
    checked = 0
    for resource in resources(stack):
        for path in paths(resource["props"]):
            variant = {**resource, "props": replaced(resource["props"], path, UNKNOWN)}
            for policy in POLICIES:
                found = evaluate(policy, variant, config)
                assert violations(found) == [], (resource["name"], path, found)
                checked += 1
    assert checked > 1000  # every leaf and subtree of every resource, for every policy


@pytest.mark.parametrize("stack", STACKS)
def test_any_value_left_out_never_crashes(stack: str) -> None:
    # Leaving a value out may break a rule (no ports, no probe): then the rule says so. It must not raise.
    config = pack_config(stack)
    for resource in resources(stack):
        baseline = {_key(d) for d in violations(analyze([resource], config))}
        assert baseline == set()
        for path in paths(resource["props"]):
            variant = {**resource, "props": dropped(resource["props"], path)}
            for d in violations(analyze([variant], config)):
                assert d.message.count("\n") == 1, d  # the description, then the rule's own message


def test_empty_props_of_every_type_never_crash() -> None:
    types = {r["type"] for stack in STACKS for r in resources(stack)} | {
        "gcp:storage/bucket:Bucket",
        "gcp:serviceaccount/key:Key",
        "gcp:projects/iAMPolicy:IAMPolicy",
        "gcp:projects/iAMBinding:IAMBinding",
        "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding",
    }
    for type_ in sorted(types):
        analyze([{"type": type_, "name": "x", "urn": f"urn:pulumi:dev::p::{type_}::x", "props": {}}], {})


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (("deletionProtection",), "absent means the provider's default, true"),
        (("template", "containers", 0, "resources"), "absent means Cloud Run's 1 CPU and 512Mi"),
        (("template", "containers", 0, "readinessProbe"), "a readiness probe is optional"),
        (("template", "maxInstanceRequestConcurrency"), "the default, 80, is fine with 1 CPU"),
    ],
)
def test_values_with_a_compliant_default_may_be_left_out(path: Path, why: str) -> None:
    found = resources("prod")
    service = next(r for r in found if r["type"] == "gcp:cloudrunv2/service:Service")
    # A value the program does not set in the first place is covered by the committed stacks already.
    with contextlib.suppress(KeyError):
        service["props"] = dropped(service["props"], path)
    assert violations(analyze(found, pack_config("prod"))) == [], why
