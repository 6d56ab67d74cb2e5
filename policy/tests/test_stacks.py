"""The committed stacks pass the pack, with their committed policy config, at `pulumi up` and a preview."""

from __future__ import annotations

import pytest
from engine import MODES, STACKS, analyze, pack_config, resources, violations
from pulumi_policy import EnforcementLevel


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stack", STACKS)
def test_no_violation_on_committed_stacks(stack: str, mode: str) -> None:
    found = violations(analyze(resources(stack, mode), pack_config(stack)))
    assert found == [], "\n\n".join(f"{d.policy} on {d.urn}:\n{d.message}" for d in found)


def test_every_policy_has_something_to_check_in_the_program() -> None:
    # Buckets and keys are not declared yet; every other policy must see at least one resource it is about,
    # or a renamed type token would make it pass by checking nothing. A variant that breaks each one is in
    # test_rules.py.
    types = {r["type"] for stack in STACKS for r in resources(stack)}
    assert {
        "gcp:cloudrunv2/service:Service",
        "gcp:artifactregistry/repository:Repository",
        "gcp:projects/iAMMember:IAMMember",
        "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",
    } <= types


def test_a_first_preview_cannot_check_what_is_not_built_yet() -> None:
    # The image's digest and the runtime account's email exist only once they are created: at a first
    # preview those rules say they cannot run (advisory), and `pulumi up` checks them before creating the
    # service. Everything else is checked at preview.
    found = analyze(resources("prod", "preview"), pack_config("prod"))
    unknown = {(d.policy, d.message) for d in found if d.unknown}
    assert (
        "cloudrun-image-digest",
        "string value at .template.containers.0.image can't be known during preview",
    ) in unknown
    assert (
        "cloudrun-service-account",
        "string value at .template.serviceAccount can't be known during preview",
    ) in unknown
    assert all(d.level == EnforcementLevel.ADVISORY for d in found if d.unknown)


def test_dev_without_its_config_is_held_to_production_rules() -> None:
    # Unconfigured, the pack is strict: dev's public invoker and unprotected service need dev's opt-ins.
    found = violations(analyze(resources("dev"), {}), EnforcementLevel.MANDATORY)
    assert {d.policy for d in found} == {"cloudrun-private", "cloudrun-deletion-protection"}


def test_prod_is_told_to_keep_a_warm_instance_only_as_advice() -> None:
    prod = resources("prod")
    for resource in prod:
        if resource["type"] == "gcp:cloudrunv2/service:Service":
            resource["props"]["template"]["scaling"]["minInstanceCount"] = 0
    found = violations(analyze(prod, pack_config("prod")))
    assert [(d.policy, d.level) for d in found] == [("cloudrun-warm-instance", EnforcementLevel.ADVISORY)]
    assert "set template.scaling.minInstanceCount to at least 1" in found[0].message


def test_an_enforcement_level_in_the_config_wins() -> None:
    config = {"cloudrun-private": "disabled", "cloudrun-deletion-protection": {"production": False}}
    assert violations(analyze(resources("dev"), config), EnforcementLevel.MANDATORY) == []
    prod = resources("prod")
    for resource in prod:
        if resource["type"] == "gcp:cloudrunv2/service:Service":
            del resource["props"]["template"]["scaling"]["maxInstanceCount"]
    config = {**pack_config("prod"), "cloudrun-max-instances": {"enforcementLevel": "mandatory"}}
    found = violations(analyze(prod, config))
    assert [(d.policy, d.level) for d in found] == [("cloudrun-max-instances", EnforcementLevel.MANDATORY)]


def test_all_sets_every_level_and_a_policy_entry_wins_over_it() -> None:
    prod = resources("prod")
    for resource in prod:
        if resource["type"] == "gcp:cloudrunv2/service:Service":
            resource["props"]["template"]["scaling"]["minInstanceCount"] = 0
            resource["props"]["deletionProtection"] = False
    config = {
        **pack_config("prod"),
        "all": "advisory",
        "cloudrun-warm-instance": {"enforcementLevel": "mandatory"},
    }
    found = {(d.policy, d.level) for d in violations(analyze(prod, config))}
    assert found == {
        ("cloudrun-deletion-protection", EnforcementLevel.ADVISORY),
        ("cloudrun-warm-instance", EnforcementLevel.MANDATORY),
    }
