"""The revision's name is the hash of the very template the program sends, with the service-level fields
that make a revision (launch stage included): any change to what is sent gives a new name, which Cloud Run
requires (409 "revision named ... with different configuration already exists" otherwise)."""

from __future__ import annotations

import copy
from typing import Any

import pulumi_gcp as gcp
import pytest
from pulumi._types import input_type_py_to_pulumi_names

from tests.infra.harness import (
    PROJECT,
    SERVICE,
    Deployment,
    infra_module,
    reset_pulumi,
    run_program,
    stack_config,
)

revisions = infra_module("revisions")

# Every template field, and every field of its container, by the names the engine receives.
TEMPLATE_FIELDS = sorted(
    set(input_type_py_to_pulumi_names(gcp.cloudrunv2.ServiceTemplateArgs).values()) - {"revision"}
)
CONTAINER_FIELDS = sorted(input_type_py_to_pulumi_names(gcp.cloudrunv2.ServiceTemplateContainerArgs).values())


@pytest.fixture(scope="module", params=["dev", "prod"])
def sent(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The Cloud Run service's inputs as the program sent them for a committed stack."""
    try:
        deployment: Deployment = run_program(stack_config(request.param), stack=request.param)
    finally:
        reset_pulumi()
    inputs: dict[str, Any] = deployment.one(SERVICE).inputs
    return inputs


def material(inputs: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = revisions.revision_material(
        inputs["template"], {field: inputs.get(field) for field in revisions.REVISION_FIELDS}
    )
    return found


def name_of(inputs: dict[str, Any]) -> str:
    name: str = revisions.revision_name(inputs["name"], material(inputs))
    return name


def test_the_name_sent_is_the_hash_of_the_template_sent(sent: dict[str, Any]) -> None:
    assert sent["template"]["revision"] == name_of(sent)
    assert sent["launchStage"] == "BETA"


@pytest.mark.parametrize("field", TEMPLATE_FIELDS)
def test_changing_any_template_field_changes_the_name(sent: dict[str, Any], field: str) -> None:
    changed = copy.deepcopy(sent)
    changed["template"][field] = {"changed": field}
    assert name_of(changed) != name_of(sent)


@pytest.mark.parametrize("field", CONTAINER_FIELDS)
def test_changing_any_container_field_changes_the_name(sent: dict[str, Any], field: str) -> None:
    changed = copy.deepcopy(sent)
    changed["template"]["containers"][0][field] = {"changed": field}
    assert name_of(changed) != name_of(sent)


@pytest.mark.parametrize("field", revisions.REVISION_FIELDS)
def test_changing_a_service_field_that_makes_a_revision_changes_the_name(
    sent: dict[str, Any], field: str
) -> None:
    changed = copy.deepcopy(sent)
    changed[field] = {"changed": field}
    assert name_of(changed) != name_of(sent)


def test_the_fields_must_be_exactly_those_that_make_a_revision() -> None:
    with pytest.raises(ValueError, match="revision fields"):
        revisions.revision_material({}, {"ingress": "INGRESS_TRAFFIC_ALL"})


def test_numbers_sent_as_doubles_name_the_same_revision() -> None:
    fields = dict.fromkeys(revisions.REVISION_FIELDS)
    as_int = revisions.revision_name("s", revisions.revision_material({"timeout": 2}, fields))
    assert as_int == revisions.revision_name("s", revisions.revision_material({"timeout": 2.0}, fields))


# Through the program: each setting that reaches the template (scaling, the one a hand-kept copy left out,
# among them) gives a new name; each run's name is still the hash of what it sent.
CHANGES: list[tuple[str, object]] = [
    ("maxInstances", 7),
    ("minInstances", 2),
    ("concurrency", 40),
    ("cpu", "2"),
    ("memory", "2Gi"),
    ("requestTimeoutSeconds", 60),
    ("logLevel", "DEBUG"),
    ("reflection", True),
    ("catalogFile", "service/data/products.json"),
    ("ingress", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"),
    ("invokerIamDisabled", True),
]


@pytest.mark.parametrize(("key", "value"), CHANGES, ids=[key for key, _ in CHANGES])
def test_a_setting_that_reaches_the_template_gives_a_new_name(key: str, value: object) -> None:
    base = stack_config("prod")
    try:
        before = run_program(base, stack="prod").one(SERVICE).inputs
        reset_pulumi()
        after = run_program({**base, f"{PROJECT}:{key}": value}, stack="prod").one(SERVICE).inputs
    finally:
        reset_pulumi()
    assert after["template"]["revision"] != before["template"]["revision"]
    assert after["template"]["revision"] == name_of(after)
