"""Two stacks in one project, with different serviceName and ciPoolSuffix, name no Google resource alike.

Each resource with a name of the program's choosing is reduced to what Google identifies it by (its type
and naming fields); the two stacks' sets must not meet. Resources Google or Pulumi names (auto-named
compute resources, dashboards, alert policies, notification channels) cannot collide and are left out, and
so are the project's APIs, which both stacks enable and neither disables on destroy (apis.py).
"""

from __future__ import annotations

import json

from tests.docs.markdown import REPO_ROOT
from tests.infra.harness import API, PROJECT, Deployment, run_program, stack_config

# Named by Google or by Pulumi's auto-naming (a random suffix), never by the program.
GENERATED = (
    "gcp:compute/",
    "gcp:monitoring/dashboard:",
    "gcp:monitoring/alertPolicy:",
    "gcp:monitoring/notificationChannel:",
    "time:index/sleep:",
)
# The inputs that make up a resource's identity, whichever of them its type has.
NAMING_FIELDS = (
    "project",
    "location",
    "name",
    "accountId",
    "repositoryId",
    "serviceId",
    "service",
    "sloId",
    "workloadIdentityPoolId",
    "workloadIdentityPoolProviderId",
    "bucket",
    "serviceAccountId",
    "role",
    "member",
    "tags",
)


def identities(deployment: Deployment) -> dict[str, str]:
    """Each named resource's identity (type and naming fields, as JSON) mapped to its logical name."""
    found: dict[str, str] = {}
    for resource in deployment.declared:
        if resource.type.startswith(("catalog:", *GENERATED)) or resource.type == API:
            continue
        fields = {key: resource.inputs[key] for key in NAMING_FIELDS if key in resource.inputs}
        assert set(fields) - {"project"}, f"{resource.type} {resource.name} has no naming field"
        found[json.dumps([resource.type, fields], sort_keys=True)] = resource.name
    return found


def shared_names(**overrides: object) -> list[str]:
    """The resources of dev that a second stack in its project, dev with `overrides`, would name alike."""
    dev = stack_config("dev")
    first = identities(run_program(dev, stack="dev"))
    # Enough named resources to make the check mean something: services, accounts, metrics, CI, bucket.
    assert len(first) >= 20
    other = {**dev, **{f"{PROJECT}:{key}": value for key, value in overrides.items()}}
    second = identities(run_program(other, stack="edge"))
    return sorted(first[identity] for identity in first.keys() & second.keys())


def test_two_stacks_with_their_own_service_name_and_pool_suffix_share_no_resource_name() -> None:
    shared = shared_names(serviceName="catalog-edge", ciPoolSuffix="edge1")
    assert not shared, f"both stacks would create these under the same name: {shared}"


def test_every_name_but_the_pools_derives_from_the_service_name() -> None:
    # The Workload Identity pool keeps github-<ciPoolSuffix>, which existing stacks' CI refers to.
    assert shared_names(serviceName="catalog-edge") == ["ci-pool", "ci-provider"]


def test_deploying_says_how_stacks_share_a_project() -> None:
    text = (REPO_ROOT / "docs" / "deploying-notes.md").read_text(encoding="utf-8")
    section = text.split("### Several stacks, one project", 1)[1].split("\n#", 1)[0]
    assert "its own project" in section
    assert "a distinct `serviceName`\nand `ciPoolSuffix`" in section
