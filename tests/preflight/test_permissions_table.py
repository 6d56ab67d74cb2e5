"""preflight's table of what `up` creates is the program's: for each stack of a matrix, the rows whose `when`
holds are exactly the resource types the program declares under mocks.
"""

from __future__ import annotations

import pytest

from preflight import permissions
from preflight.stack import KEY, validate, with_project_config
from tests.infra.harness import DIGEST, PROJECT, reset_pulumi, run_program, stack_config

# Each optional part of the program on or off: the committed stacks, then dev changed key by key.
MATRIX: dict[str, tuple[str, dict[str, object]]] = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    # A domain refuses pull-request revisions, which plain dev covers.
    "dev with a domain and alert emails": (
        "dev",
        {"domain": "catalog.example.com", "alertEmails": ["oncall@example.com"], "prRevisions": False},
    ),
    "dev without CI identity or catalog file": (
        "dev",
        {"githubRepository": "", "prRevisions": False, "catalogFile": ""},
    ),
    "dev public through an allUsers binding": (
        "dev",
        {"invokerIamDisabled": False, "allowUnauthenticated": True},
    ),
    "prod with invokers": ("prod", {"invokers": ["group:callers@example.com"]}),
    "prod from a prebuilt image in two regions": (
        "prod",
        {"image": f"us-docker.pkg.dev/p/r/catalog@{DIGEST}", "regions": ["us-central1", "europe-west1"]},
    ),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_the_rows_that_apply_are_the_resource_types_the_program_declares(case: str) -> None:
    name, overrides = MATRIX[case]
    config = {**stack_config(name), **{f"{KEY}{key}": value for key, value in overrides.items()}}
    stack = validate(name, with_project_config(config), PROJECT)
    reset_pulumi()
    declared = {r.type for r in run_program(config, stack=name).declared if not r.type.startswith("catalog:")}
    assert {row.type for row in permissions.declared(stack)} == declared


def test_the_table_has_one_row_per_resource_type() -> None:
    types = [row.type for row in permissions.RESOURCES]
    assert len(types) == len(set(types))


def test_what_the_deployer_is_asked_is_part_of_what_a_person_needs() -> None:
    for row in permissions.RESOURCES:
        assert set(row.deployer) <= set(row.permissions), row.type
