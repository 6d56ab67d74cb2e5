"""Every IAM grant the program declares leaves the members others hold on the same resource as they were.

Google Cloud keeps one IAM policy per resource (the project, a bucket, a key, a service account, a service, a
repository), shared by everyone who grants on it. pulumi-gcp has three kinds of resource for it (its page of
each, e.g. gcp.storage.BucketIAMMember): `*IAMPolicy` is authoritative, it replaces the whole policy;
`*IAMBinding` is authoritative for a given role, it replaces that role's members; `*IAMMember` is
non-authoritative, it adds one member to one role and the other members are preserved. An operator's grant, a
platform team's, another stack's in the same project: one authoritative resource would drop them all at the
next `pulumi up`, and nothing in a preview would say so.

These tests start every policy the program grants on from members it does not own, apply what the program
declares the way Google applies each kind, and check those members are still there; and that every grant
names one member, one the program made or was configured with.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.harness import ACCOUNT, POOL, PROJECT, Declared, Deployment, recorded, stack_config
from tests.infra.test_admission import DOMAIN, MATRIX

# The configurations that declare grants: the admission matrix, and the settings it leaves off that add
# grants of their own (the CI state bucket and key, alert channels, callers named by config).
OWNERSHIP_MATRIX: list[tuple[str, str, dict[str, object]]] = [
    *MATRIX,
    ("dev-ci-state", "dev", {"ciStateBackend": True}),
    (
        "prod-ci-state-domain-invokers-alerts",
        "prod",
        {
            "ciStateBackend": True,
            "domain": DOMAIN,
            "invokers": [
                "group:catalog-clients@example.com",
                "serviceAccount:caller@other.iam.gserviceaccount.com",
            ],
            "alertEmails": ["oncall@example.com"],
        },
    ),
]

# How a type token ends for each kind (pulumi-gcp spells it IAM or Iam, module by module).
MEMBER, BINDING, POLICY = "member", "binding", "policy"
_KINDS = {
    MEMBER: ("IAMMember", "IamMember"),
    BINDING: ("IAMBinding", "IamBinding"),
    POLICY: ("IAMPolicy", "IamPolicy"),
}
# Storage's ACL resources replace a bucket's or an object's access list: authoritative too, whatever the name.
_ACL_MARKERS = ("ACL:", "AccessControl:")
# The inputs that say what is granted; every other input names the resource the policy belongs to.
_GRANT_INPUTS = frozenset({"role", "member", "members", "condition", "policyData", "etag"})

# Members no stack of this program makes: an operator, a platform team's group, another workload.
OPERATOR = "user:operator@example.com"
PLATFORM = "group:platform-admins@example.com"
OTHER_WORKLOAD = "serviceAccount:billing-export@other-project.iam.gserviceaccount.com"
# A role the program never grants, held by someone on every resource it grants on.
OTHER_ROLE = "roles/viewer"


def iam_kind(type_: str) -> str | None:
    """Whether a type token is an IAM member, binding or policy resource (None: not an IAM resource)."""
    name = type_.rsplit(":", 1)[-1]
    return next((kind for kind, endings in _KINDS.items() if name.endswith(endings)), None)


def is_acl(type_: str) -> bool:
    """Whether a type token is one of Cloud Storage's access-control-list resources."""
    return type_.startswith("gcp:storage/") and any(marker in type_ for marker in _ACL_MARKERS)


@dataclass(frozen=True)
class Grant:
    """One member in one role, under a condition (its expression) or none, as an IAM policy holds it."""

    role: str
    member: str
    condition: str = ""


Policy = set[Grant]


def target(resource: Declared) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The resource an IAM resource writes the policy of: its kind (`storage/bucket`, `projects/`) and the
    inputs that name it, the same for the member, binding and policy resources of one resource."""
    module, name = resource.type.split(":")[1:]
    stem = name.lower()
    for ending in ("iammember", "iambinding", "iampolicy"):
        stem = stem.removesuffix(ending)
    names = tuple(sorted((k, str(v)) for k, v in resource.inputs.items() if k not in _GRANT_INPUTS))
    return f"{module.split('/')[0]}/{stem}", names


def _condition(inputs: Mapping[str, Any]) -> str:
    condition = inputs.get("condition") or {}
    return str(condition.get("expression", ""))


def apply(policies: dict[Any, Policy], resource: Declared) -> None:
    """What applying `resource` does to the policy of the resource it grants on, by its kind."""
    kind = iam_kind(resource.type)
    inputs = resource.inputs
    key = target(resource)
    before = policies.get(key, set())
    if kind == MEMBER:
        policies[key] = before | {Grant(inputs["role"], inputs["member"], _condition(inputs))}
    elif kind == BINDING:
        kept = {grant for grant in before if grant.role != inputs["role"]}
        policies[key] = kept | {Grant(inputs["role"], m, _condition(inputs)) for m in inputs["members"]}
    elif kind == POLICY:
        policies[key] = {
            Grant(binding["role"], member)
            for binding in inputs["policyData"]["bindings"]
            for member in binding["members"]
        }


def others(roles: Iterable[str]) -> Policy:
    """The members others hold on a resource: in each role the program grants there, and in another."""
    return {
        Grant(role, member)
        for role in {*roles, OTHER_ROLE}
        for member in (OPERATOR, PLATFORM, OTHER_WORKLOAD)
    }


def granted_roles(resource: Declared) -> set[str]:
    """The roles an IAM resource grants: its `role`, or each role of its policy."""
    if "policyData" in resource.inputs:
        return {binding["role"] for binding in resource.inputs["policyData"]["bindings"]}
    return {resource.inputs["role"]}


def grants(deployment: Deployment) -> list[Declared]:
    return [resource for resource in deployment.declared if iam_kind(resource.type) is not None]


def after_applying(deployment: Deployment) -> tuple[dict[Any, Policy], dict[Any, Policy]]:
    """Every policy the program grants on, as others left it before the `up` and as the `up` leaves it."""
    roles: dict[Any, set[str]] = {}
    for resource in grants(deployment):
        roles.setdefault(target(resource), set()).update(granted_roles(resource))
    before = {key: others(role_set) for key, role_set in roles.items()}
    after = copy.deepcopy(before)
    for resource in grants(deployment):
        apply(after, resource)
    return before, after


def deploy(name: str) -> Deployment:
    _, stack, overrides = next(entry for entry in OWNERSHIP_MATRIX if entry[0] == name)
    return recorded(
        stack, config={**stack_config(stack), **{f"{PROJECT}:{k}": v for k, v in overrides.items()}}
    )


NAMES = [entry[0] for entry in OWNERSHIP_MATRIX]


@pytest.mark.parametrize("name", NAMES)
def test_members_others_hold_are_all_still_there_after_the_programs_grants(name: str) -> None:
    before, after = after_applying(deploy(name))
    assert before  # every configuration grants something: the runtime account's telemetry roles at least
    for key, held in before.items():
        assert held <= after[key], f"{key}: {sorted(held - after[key], key=str)} dropped"


@pytest.mark.parametrize("name", NAMES)
def test_every_iam_resource_is_the_additive_member_kind(name: str) -> None:
    deployment = deploy(name)
    kinds = {resource.type: iam_kind(resource.type) for resource in grants(deployment)}
    assert kinds
    assert {type_ for type_, kind in kinds.items() if kind != MEMBER} == set()
    assert [resource.type for resource in deployment.declared if is_acl(resource.type)] == []


@pytest.mark.parametrize("name", NAMES)
def test_every_grant_names_one_member_the_program_made_or_was_given(name: str) -> None:
    _, stack, overrides = next(entry for entry in OWNERSHIP_MATRIX if entry[0] == name)
    deployment = deploy(name)
    settings = {**stack_config(stack), **{f"{PROJECT}:{k}": v for k, v in overrides.items()}}
    pools = [pool.inputs["name"] for pool in deployment.all(POOL)]
    accounts = {account.inputs["member"] for account in deployment.all(ACCOUNT)}
    invokers = settings.get(f"{PROJECT}:invokers") or []
    assert isinstance(invokers, list)
    configured = set(invokers)
    if settings.get(f"{PROJECT}:allowUnauthenticated") is True:
        configured.add("allUsers")
    for resource in grants(deployment):
        member = resource.inputs["member"]
        assert "members" not in resource.inputs, resource.name
        in_pool = any(member.startswith(f"principalSet://iam.googleapis.com/{pool}/") for pool in pools)
        assert member in accounts or member in configured or in_pool, f"{resource.name}: {member}"


@pytest.mark.parametrize("name", NAMES)
def test_no_grant_is_declared_twice(name: str) -> None:
    """Two resources for one member in one role: deleting either (a setting turned off) revokes both."""
    declared = [
        (target(resource), resource.inputs["role"], resource.inputs["member"], _condition(resource.inputs))
        for resource in grants(deploy(name))
    ]
    assert len(declared) == len(set(declared))


def test_the_matrix_reaches_every_kind_of_policy_the_program_grants_on() -> None:
    """A kind of grant no configuration declares would be checked by nothing."""
    reached = {target(resource)[0] for name in NAMES for resource in grants(deploy(name))}
    assert reached == {
        "projects/",
        "serviceaccount/",
        "artifactregistry/repository",
        "storage/bucket",
        "kms/cryptokey",
        "cloudrunv2/service",
    }


# The model itself: an authoritative grant where the program has a member one would drop the others.


def _as_kind(resource: Declared, kind: str) -> Declared:
    """`resource` declared as the binding or policy kind of the same resource, granting the same member."""
    type_ = resource.type.replace("Member", "Binding" if kind == BINDING else "Policy")
    inputs = {k: v for k, v in resource.inputs.items() if k not in {"member", "condition"}}
    if kind == BINDING:
        inputs["members"] = [resource.inputs["member"]]
    else:
        del inputs["role"]
        inputs["policyData"] = {
            "bindings": [{"role": resource.inputs["role"], "members": [resource.inputs["member"]]}]
        }
    return Declared(
        urn=resource.urn,
        type=type_,
        name=resource.name,
        inputs=inputs,
        parent=resource.parent,
        dependencies=(),
    )


@pytest.mark.parametrize("kind", [BINDING, POLICY])
def test_an_authoritative_grant_would_drop_what_others_hold(kind: str) -> None:
    deployment = deploy("dev-ci-state")
    (state_key_grant, *_) = [r for r in grants(deployment) if r.type.startswith("gcp:kms/")]
    swapped = [_as_kind(r, kind) if r is state_key_grant else r for r in deployment.declared]
    assert iam_kind(_as_kind(state_key_grant, kind).type) == kind
    assert target(_as_kind(state_key_grant, kind)) == target(state_key_grant)
    before, after = after_applying(Deployment(swapped))
    key = target(state_key_grant)
    assert Grant(state_key_grant.inputs["role"], OPERATOR) in before[key]
    assert Grant(state_key_grant.inputs["role"], OPERATOR) not in after[key]
