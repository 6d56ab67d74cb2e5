"""Each check against the fakes, passing and failing, and each organization constraint of the table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import pytest
from google.cloud import orgpolicy_v2

from preflight import checks, permissions
from preflight.checks import Clients, Finding, check_billing, check_constraint, check_permissions, run_checks
from preflight.policies import CONSTRAINTS, Constraint, Use
from preflight.stack import KEY, Stack, validate, with_project_config
from tests.infra.harness import PROJECT, stack_config
from tests.preflight.fake_cloud import FakeCloud

Rule = orgpolicy_v2.PolicySpec.PolicyRule
Values = Rule.StringValues


def stack(overrides: Mapping[str, object] | None = None, name: str = "dev") -> Stack:
    """A committed stack with some keys changed (short names: `domain`, or `gcp:region`), validated."""
    changed = {k if ":" in k else f"{KEY}{k}": v for k, v in (overrides or {}).items()}
    config = {**stack_config(name), **changed}
    return validate(name, with_project_config(config), PROJECT)


def allowing(*values: str) -> orgpolicy_v2.PolicySpec:
    return orgpolicy_v2.PolicySpec(rules=[Rule(values=Values(allowed_values=list(values)))])


def denying(*values: str) -> orgpolicy_v2.PolicySpec:
    return orgpolicy_v2.PolicySpec(rules=[Rule(values=Values(denied_values=list(values)))])


def enforced(enforce: bool) -> orgpolicy_v2.PolicySpec:
    return orgpolicy_v2.PolicySpec(rules=[Rule(enforce=enforce)])


def problems(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.ok]


# --- billing -----------------------------------------------------------------------------------------------


def test_a_project_linked_to_an_open_billing_account_passes(clients: Clients) -> None:
    finding = check_billing(clients, "my-gcp-project-dev")
    assert finding.ok, finding.line()
    assert "billingAccounts/" in finding.text


def test_a_project_without_billing_is_a_problem_whose_fix_links_an_account(
    cloud: FakeCloud, clients: Clients
) -> None:
    cloud.billing_enabled = False
    finding = check_billing(clients, "my-gcp-project-dev")
    assert not finding.ok
    assert finding.line().startswith(
        "PROBLEM billing: project my-gcp-project-dev has no open billing account"
    )
    assert "`gcloud billing projects link my-gcp-project-dev --billing-account ACCOUNT_ID`" in finding.text


def test_billing_that_cannot_be_read_is_a_problem_naming_the_permission(
    cloud: FakeCloud, clients: Clients
) -> None:
    cloud.refuse["GetProjectBillingInfo"] = grpc.StatusCode.PERMISSION_DENIED
    finding = check_billing(clients, "my-gcp-project-dev")
    assert not finding.ok
    assert "PERMISSION_DENIED" in finding.text
    assert "resourcemanager.projects.get" in finding.text


# --- organization policy constraints: one case per row of the table ----------------------------------------


@dataclass(frozen=True)
class ConstraintCase:
    """A stack that meets the constraint, an effective policy that allows it and one that refuses it."""

    stack: dict[str, object]
    allows: orgpolicy_v2.PolicySpec
    refuses: orgpolicy_v2.PolicySpec
    setting: str  # what the problem line must name
    # A stack that sets nothing the constraint governs; None: every stack meets it.
    unused: dict[str, object] | None


CASES = {
    "iam.allowedPolicyMemberDomains": ConstraintCase(
        stack={"invokerIamDisabled": False, "allowUnauthenticated": True},
        allows=orgpolicy_v2.PolicySpec(rules=[Rule(allow_all=True)]),
        refuses=allowing("C0123abcd"),  # the organization's customer id: allUsers is outside it
        setting=f"{KEY}allowUnauthenticated = true",
        unused={},
    ),
    "iam.managed.allowedPolicyMembers": ConstraintCase(
        stack={"invokerIamDisabled": False, "allowUnauthenticated": True},
        allows=orgpolicy_v2.PolicySpec(
            rules=[Rule(enforce=True, parameters={"allowedMemberSubjects": ["allUsers"]})]
        ),
        refuses=orgpolicy_v2.PolicySpec(
            rules=[
                Rule(
                    enforce=True,
                    parameters={
                        "allowedMemberSubjects": ["user:admin@example.com"],
                        "allowedPrincipalSets": ["//cloudresourcemanager.googleapis.com/organizations/123"],
                    },
                )
            ]
        ),
        setting=f"{KEY}allowUnauthenticated = true",
        unused={},
    ),
    "run.managed.requireInvokerIam": ConstraintCase(
        stack={},  # dev: invokerIamDisabled
        allows=enforced(False),
        refuses=enforced(True),
        setting=f"{KEY}invokerIamDisabled = true",
        unused={"invokerIamDisabled": False},
    ),
    "run.allowedIngress": ConstraintCase(
        # A domain refuses pull-request revisions (config), which dev has.
        stack={"domain": "catalog.example.com", "prRevisions": False},
        allows=allowing("internal-and-cloud-load-balancing"),
        refuses=allowing("internal"),
        setting=f"{KEY}ingress = INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        unused=None,
    ),
    "iam.workloadIdentityPoolProviders": ConstraintCase(
        stack={},  # dev: githubRepository
        allows=allowing("https://token.actions.githubusercontent.com"),
        refuses=allowing("https://sts.windows.net/tenant/"),
        setting=f"{KEY}githubRepository = my-org/catalog-grpc",
        unused={"githubRepository": "", "prRevisions": False},
    ),
    "gcp.resourceLocations": ConstraintCase(
        stack={"gcp:region": "europe-west1", "regions": ["europe-west1", "us-east1"], "minInstances": 1},
        allows=allowing("in:europe-locations", "in:us-east1-locations"),
        refuses=allowing("in:europe-locations"),
        setting="region us-east1",
        unused=None,
    ),
}
BY_NAME = {constraint.name: constraint for constraint in CONSTRAINTS}


def test_every_constraint_of_the_table_has_its_cases() -> None:
    assert set(CASES) == set(BY_NAME)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_an_effective_policy_that_allows_the_stacks_settings_passes(
    name: str, cloud: FakeCloud, clients: Clients
) -> None:
    case = CASES[name]
    cloud.policies[name] = case.allows
    findings = list(check_constraint(clients, stack(case.stack), BY_NAME[name]))
    assert findings
    assert problems(findings) == []
    assert cloud.policy_reads == [f"projects/my-gcp-project-dev/policies/{name}"]


@pytest.mark.parametrize("name", list(BY_NAME))
def test_an_effective_policy_that_refuses_a_setting_is_one_line_with_the_setting_and_the_fix(
    name: str, cloud: FakeCloud, clients: Clients
) -> None:
    case = CASES[name]
    cloud.policies[name] = case.refuses
    (problem,) = problems(list(check_constraint(clients, stack(case.stack), BY_NAME[name])))
    line = problem.line()
    assert "\n" not in line
    assert line.startswith(f"PROBLEM constraints/{name}: ")
    assert f"refuses {case.setting}" in line
    assert f"; fix: {BY_NAME[name].fix}" in line


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.unused is not None])
def test_a_constraint_the_stack_does_not_meet_is_not_even_read(
    name: str, cloud: FakeCloud, clients: Clients
) -> None:
    case = CASES[name]
    assert case.unused is not None
    cloud.policies[name] = case.refuses
    findings = list(check_constraint(clients, stack(case.unused), BY_NAME[name]))
    assert problems(findings) == []
    assert cloud.policy_reads == []


@pytest.mark.parametrize("name", list(BY_NAME))
def test_no_policy_anywhere_leaves_the_constraints_default_which_allows(
    name: str, cloud: FakeCloud, clients: Clients
) -> None:
    assert problems(list(check_constraint(clients, stack(CASES[name].stack), BY_NAME[name]))) == []
    assert cloud.policy_reads


def test_a_policy_that_cannot_be_read_is_a_problem_naming_the_viewer_role(
    cloud: FakeCloud, clients: Clients
) -> None:
    cloud.refuse["GetEffectivePolicy"] = grpc.StatusCode.PERMISSION_DENIED
    (problem,) = list(check_constraint(clients, stack(), BY_NAME["run.allowedIngress"]))
    assert not problem.ok
    assert "roles/orgpolicy.policyViewer" in problem.text


# --- how list policies decide ---------------------------------------------------------------------------


def verdict_of(constraint: Constraint, spec: orgpolicy_v2.PolicySpec, value: str) -> str:
    return constraint.verdict(list(spec.rules), Use("setting", value)).value


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (orgpolicy_v2.PolicySpec(rules=[Rule(deny_all=True)]), "all", "refused"),
        (orgpolicy_v2.PolicySpec(rules=[Rule(allow_all=True)]), "all", "allowed"),
        (denying("all"), "all", "refused"),
        (denying("all"), "internal", "allowed"),
        (allowing("is:internal"), "internal", "allowed"),
        # A denial wins over an allowance of the same value, wherever each was set in the hierarchy.
        (
            orgpolicy_v2.PolicySpec(
                rules=[
                    Rule(values=Values(allowed_values=["all"])),
                    Rule(values=Values(denied_values=["all"])),
                ]
            ),
            "all",
            "refused",
        ),
    ],
)
def test_list_policies_deny_first_then_allow_only_what_they_list(
    spec: orgpolicy_v2.PolicySpec, value: str, expected: str
) -> None:
    assert verdict_of(BY_NAME["run.allowedIngress"], spec, value) == expected


@pytest.mark.parametrize(
    ("listed", "region", "expected"),
    [
        ("us-central1", "us-central1", "allowed"),
        ("in:us-central1-locations", "us-central1", "allowed"),
        ("in:us-central1-locations", "us-central2", "refused"),
        ("in:us-locations", "us-east4", "allowed"),
        ("in:northamerica-locations", "us-east4", "allowed"),
        ("in:northamerica-locations", "northamerica-northeast1", "allowed"),
        ("in:us-locations", "europe-west1", "refused"),
        ("in:eu-locations", "europe-west1", "allowed"),
        ("in:eu-locations", "europe-west2", "refused"),  # London is in Europe, not in the EU
        ("in:europe-locations", "europe-west2", "allowed"),
        ("in:asia-locations", "asia-east1", "allowed"),
        # A multi-region does not include its regions (defining-locations: only in: groups do).
        ("us", "us-central1", "refused"),
        ("in:me-locations", "me-central1", "unknown"),
    ],
)
def test_resource_locations_expand_googles_value_groups(listed: str, region: str, expected: str) -> None:
    assert verdict_of(BY_NAME["gcp.resourceLocations"], allowing(listed), region) == expected


def test_a_value_group_preflight_cannot_expand_is_a_problem_saying_how_to_check(
    cloud: FakeCloud, clients: Clients
) -> None:
    cloud.policies["gcp.resourceLocations"] = allowing("in:me-locations")
    (problem,) = problems(list(check_constraint(clients, stack(), BY_NAME["gcp.resourceLocations"])))
    assert "cannot tell whether it allows region us-central1" in problem.text
    assert "gcloud org-policies describe gcp.resourceLocations --project my-gcp-project-dev --effective" in (
        problem.text
    )


# --- the caller's permissions ----------------------------------------------------------------------------


def test_a_caller_with_every_permission_passes_in_one_line(cloud: FakeCloud, clients: Clients) -> None:
    (finding,) = list(check_permissions(clients, stack(), deployer=False))
    assert finding.ok, finding.line()
    asked = {permission for request in cloud.permission_requests for permission in request}
    assert asked == set(permissions.needed(stack(), deployer=False))
    assert all(len(request) <= 100 for request in cloud.permission_requests)


def test_a_missing_permission_is_a_problem_naming_it_the_resource_and_the_role(
    cloud: FakeCloud, clients: Clients
) -> None:
    cloud.granted = set(permissions.needed(stack(), deployer=False)) - {"iam.serviceAccounts.actAs"}
    (problem,) = list(check_permissions(clients, stack(), deployer=False))
    assert problem.line() == (
        "PROBLEM permissions: gcp:cloudrunv2/service:Service needs iam.serviceAccounts.actAs, which the "
        "caller lacks; fix: grant the caller roles/iam.serviceAccountUser on my-gcp-project-dev "
        "(or roles/owner: docs/deploying.md)"
    )


def test_the_deployer_is_asked_only_what_it_holds_on_the_project(cloud: FakeCloud, clients: Clients) -> None:
    cloud.granted = {p for row in permissions.RESOURCES for p in row.deployer}
    dev = stack(
        {"domain": "catalog.example.com", "alertEmails": ["oncall@example.com"], "prRevisions": False}
    )
    findings = list(check_permissions(clients, dev, deployer=True))
    assert problems(findings) == []
    asked = {permission for request in cloud.permission_requests for permission in request}
    # Identity, IAM and the resource-level grants are a person's `up`: not asked of the deployer.
    assert "iam.serviceAccounts.create" not in asked
    assert "resourcemanager.projects.setIamPolicy" not in asked
    assert {
        "run.services.update",
        "compute.urlMaps.update",
        "monitoring.notificationChannels.create",
    } <= asked
    # A person's first `up` of the same stack needs more than the deployer holds.
    assert problems(list(check_permissions(clients, dev, deployer=False)))


def test_every_check_runs_in_order_and_a_fresh_secure_project_passes(
    cloud: FakeCloud, clients: Clients
) -> None:
    findings = run_checks(clients, stack())
    assert [f.check for f in findings][:1] == ["billing"]
    assert [f.check for f in findings][-1] == "permissions"
    assert {f"constraints/{c.name}" for c in CONSTRAINTS} <= {f.check for f in findings}
    assert problems(findings) == []


def test_permissions_are_asked_in_requests_no_larger_than_the_api_takes(
    cloud: FakeCloud, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every stack asks fewer than the API's 100 today: a smaller limit exercises the batching.
    monkeypatch.setattr(checks, "PERMISSIONS_PER_CALL", 7)
    cloud.granted = set(permissions.needed(stack(), deployer=False)) - {"run.services.create"}
    (problem,) = list(check_permissions(clients, stack(), deployer=False))
    assert "run.services.create" in problem.text
    assert len(cloud.permission_requests) > 1
    assert all(len(request) <= 7 for request in cloud.permission_requests)
    asked = [permission for request in cloud.permission_requests for permission in request]
    assert sorted(asked) == sorted(permissions.needed(stack(), deployer=False))
