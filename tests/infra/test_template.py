"""Pulumi.yaml's `template:` section: `pulumi new` from this repository asks for project, region and name."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.infra.harness import project_file
from tests.infra.test_project_file import SCHEMA


def test_the_template_asks_for_the_project_region_and_service_name() -> None:
    project = project_file()
    prompts = project["template"]["config"]
    assert set(prompts) == {"gcp:project", "gcp:region", "serviceName"}
    assert all(prompt["description"] for prompt in prompts.values())
    assert "default" not in prompts["gcp:project"]  # no placeholder project to deploy to by mistake
    # The defaults it offers are the project's own.
    assert prompts["gcp:region"]["default"] == project["config"]["gcp:region"]
    assert prompts["serviceName"]["default"] == project["config"]["serviceName"]["default"]


def test_pulumis_project_schema_accepts_the_template() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(project_file(), schema)
    broken = {**project_file(), "template": {"config": {}, "prompts": []}}  # an unknown key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
