"""Pulumi.yaml: valid for Pulumi, every key documented, and its defaults the program's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.infra.harness import PROJECT, REPO_ROOT, STACKS, project_file, run_program, stack_config

# Pulumi's project schema (pulumi/pulumi sdk/go/common/workspace/project.json, Apache-2.0), copied from
# shared/schemas/ so that the test also runs where shared/ is not beside the checkout (GitHub Actions).
SCHEMA = Path(__file__).with_name("pulumi-project.schema.json")
SHARED_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "pulumi-project.schema.json"
YAML_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}
GCP: dict[str, object] = {"gcp:project": "my-gcp-project-dev"}


def declared() -> dict[str, Any]:
    config: dict[str, Any] = project_file()["config"]
    return config


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


def test_every_key_is_documented_with_type_description_and_default() -> None:
    for key, declaration in declared().items():
        assert ":" not in key, "provider keys cannot be typed in Pulumi.yaml"
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


@pytest.mark.parametrize("github_repository", ["", "octo-org/catalog-grpc"])
def test_defaults_in_pulumi_yaml_are_the_programs_defaults(github_repository: str) -> None:
    # The CLI hands Pulumi.yaml's defaults to the program; mocks do not. Both must declare the same thing.
    defaults = {f"{PROJECT}:{key}": d["default"] for key, d in declared().items()}
    repository = {f"{PROJECT}:githubRepository": github_repository}
    from_yaml = run_program({**GCP, **defaults, **repository})
    from_code = run_program({**GCP, **repository})
    # Registration order is up to the event loop: compare by URN.
    assert {r.urn: r.inputs for r in from_yaml.declared} == {r.urn: r.inputs for r in from_code.declared}
    assert from_yaml.outputs == from_code.outputs
