"""Pulumi.yaml: valid for Pulumi, every key documented, and the only place that holds the defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
from catalog_infra import config as stack_config_module

from tests.infra.harness import (
    PROJECT,
    REPO_ROOT,
    SERVICE,
    STACKS,
    Mocks,
    project_defaults,
    project_file,
    run_program,
    stack_config,
    wire_value,
)

# Pulumi's project schema (pulumi/pulumi sdk/go/common/workspace/project.json, Apache-2.0), copied from
# shared/schemas/ so that the test also runs where shared/ is not beside the checkout (GitHub Actions).
SCHEMA = Path(__file__).with_name("pulumi-project.schema.json")
SHARED_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "pulumi-project.schema.json"
YAML_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}
GCP: dict[str, object] = {"gcp:project": "my-gcp-project-dev"}


def declared() -> dict[str, Any]:
    """The project's own, typed keys."""
    return {key: value for key, value in project_file()["config"].items() if ":" not in key}


def provider_values() -> dict[str, Any]:
    """Provider keys Pulumi.yaml gives a value (they cannot be typed or have a default)."""
    return {key: value for key, value in project_file()["config"].items() if ":" in key}


def test_project_file_validates_against_pulumis_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(project_file(), schema)


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason="no shared/ beside this checkout")
def test_copied_schema_is_the_shared_one() -> None:
    assert json.loads(SCHEMA.read_text()) == json.loads(SHARED_SCHEMA.read_text())


def test_project_runs_the_program_in_infra_with_the_venv() -> None:
    document = project_file()
    assert document["name"] == PROJECT
    assert document["main"] == "infra/"
    assert document["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert (REPO_ROOT / document["main"] / "__main__.py").is_file()


def test_provider_keys_only_get_a_plain_value() -> None:
    # Pulumi refuses a type or a default on another namespace's key; a bare value is short for `value`.
    assert provider_values() == {"gcp:region": "us-central1"}


def test_every_key_is_documented_with_type_description_and_default() -> None:
    for key, declaration in declared().items():
        assert declaration["type"] in YAML_TYPES, key
        assert declaration["description"].strip(), key
        assert "default" in declaration, key
        assert isinstance(declaration["default"], YAML_TYPES[declaration["type"]]), key


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_only_set_declared_keys_of_the_declared_type(stack: str) -> None:
    for key, value in stack_config(stack).items():
        namespace, name = key.split(":", 1)
        assert namespace in (PROJECT, "gcp"), key
        if namespace == PROJECT:
            assert name in declared(), key
            assert isinstance(value, YAML_TYPES[declared()[name]["type"]]), key


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("catalog-grpc", "catalog-grpc"),
        ("", ""),
        (0, "0"),
        (80, "80"),
        (True, "true"),
        (False, "false"),
        ([], "[]"),
        (["user:a@example.com", "group:b@example.com"], '["user:a@example.com","group:b@example.com"]'),
    ],
)
def test_values_reach_the_program_as_the_cli_sends_them(value: object, wire: str) -> None:
    # pulumi/pulumi pkg/workspace/config.go: strings, integers and booleans as their text, the rest as JSON.
    assert wire_value(value) == wire


def test_the_program_holds_no_defaults_of_its_own() -> None:
    # With Pulumi.yaml's defaults withheld, the program asks for each key by name instead of guessing one.
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack="dev")
    pulumi.runtime.set_all_config({"gcp:project": "my-gcp-project-dev"})
    with pytest.raises(pulumi.ConfigMissingError, match="'gcp:region'"):
        stack_config_module.load()
    pulumi.runtime.set_all_config({"gcp:project": "my-gcp-project-dev", "gcp:region": "us-central1"})
    with pytest.raises(pulumi.ConfigMissingError, match=f"'{PROJECT}:serviceName'"):
        stack_config_module.load()


def test_a_stack_that_sets_nothing_gets_pulumi_yamls_defaults() -> None:
    defaults = project_defaults()
    service = run_program(GCP).one(SERVICE).inputs
    template = service["template"]
    assert service["location"] == defaults["gcp:region"]
    # The empty default without a domain: open to all, as Cloud Run's own default.
    assert defaults[f"{PROJECT}:ingress"] == ""
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert service["deletionProtection"] is defaults[f"{PROJECT}:deletionProtection"]
    assert service["invokerIamDisabled"] is defaults[f"{PROJECT}:invokerIamDisabled"]
    assert template["scaling"] == {
        "minInstanceCount": defaults[f"{PROJECT}:minInstances"],
        "maxInstanceCount": defaults[f"{PROJECT}:maxInstances"],
    }
    assert template["maxInstanceRequestConcurrency"] == defaults[f"{PROJECT}:concurrency"]
    assert template["containers"][0]["resources"]["limits"] == {
        "cpu": defaults[f"{PROJECT}:cpu"],
        "memory": defaults[f"{PROJECT}:memory"],
    }
