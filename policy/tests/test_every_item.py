"""Each item of the lists the access and storage rules decide by, one case each, from the lists themselves.

A rule that matched only some public members, only some IAM resource kinds, or only some of Cloud Run's IAM
types would pass tests written with one example of each; these cases fail for the item it dropped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from catalog_policy import access, identity, props, registry, storage
from catalog_policy.settings import ALLOW_PUBLIC
from engine import Diagnostic, Resource, evaluate
from pulumi_policy import ResourceValidationPolicy

PRIVATE = next(p for p in access.POLICIES if p.name == "cloudrun-private")
UNIFORM = next(p for p in storage.POLICIES if p.name == "storage-uniform-access")
PREVENTION = next(p for p in storage.POLICIES if p.name == "storage-public-access-prevention")
NOT_PUBLIC = "serviceAccount:reader@my-project.iam.gserviceaccount.com"
# What every refusal of a public service tells the reader to do, word for word.
HINT = (
    "grant roles/run.invoker to the callers that need it (this program: catalog-grpc:invokers), or, for a "
    f"stack meant to be public, set {ALLOW_PUBLIC}: true for this policy in its policy config."
)
# pulumi-gcp's IAM resources that can make a service or a bucket public: the platform's names, not the pack's
# (a rule that read one of them wrongly must fail here).
RUN_IAM = (
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
    "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
    "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
    "gcp:cloudrun/iamMember:IamMember",
    "gcp:cloudrun/iamBinding:IamBinding",
    "gcp:cloudrun/iamPolicy:IamPolicy",
)
BUCKET_IAM = (
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:storage/bucketIAMBinding:BucketIAMBinding",
    "gcp:storage/bucketIAMPolicy:BucketIAMPolicy",
)


def grant_props(type_: str, role: str, member: str) -> dict[str, Any]:
    """An IAM resource's props granting `role` to `member`, shaped as its kind declares grants."""
    kind = type_.rpartition(":")[2].lower()
    if kind.endswith("member"):
        return {"role": role, "member": member}
    if kind.endswith("binding"):
        return {"role": role, "members": [member]}
    return {"policyData": json.dumps({"bindings": [{"role": role, "members": [member]}]})}


def run(
    policy: ResourceValidationPolicy, type_: str, resource_props: dict[str, Any], **config: Any
) -> list[str]:
    resource: Resource = {
        "type": type_,
        "name": "r",
        "urn": f"urn:pulumi:dev::p::{type_}::r",
        "props": resource_props,
    }
    found: list[Diagnostic] = evaluate(policy, resource, {policy.name: config} if config else {})
    return [d.message for d in found]


def test_the_public_members_are_google_s_two() -> None:
    # The list decides what "public" means; each member then has its cases below.
    assert {"allUsers", "allAuthenticatedUsers"} == props.PUBLIC_MEMBERS


@pytest.mark.parametrize("type_", RUN_IAM)
@pytest.mark.parametrize("member", sorted(props.PUBLIC_MEMBERS))
def test_a_public_invoker_grant_is_refused_for_every_member_and_cloud_run_iam_type(
    type_: str, member: str
) -> None:
    messages = run(PRIVATE, type_, grant_props(type_, "roles/run.invoker", member))
    assert len(messages) == 1, messages
    assert messages[0].endswith(
        f"\ngrants roles/run.invoker to {member}, which makes the service public; {HINT}"
    )
    # The same grant to a named identity is what the rule asks for; a stack that allows public access passes.
    assert run(PRIVATE, type_, grant_props(type_, "roles/run.invoker", NOT_PUBLIC)) == []
    assert run(PRIVATE, type_, grant_props(type_, "roles/run.invoker", member), **{ALLOW_PUBLIC: True}) == []


@pytest.mark.parametrize("type_", BUCKET_IAM)
def test_public_grants_on_other_resources_are_not_the_invoker_rule_s_business(type_: str) -> None:
    assert run(PRIVATE, type_, grant_props(type_, "roles/storage.objectViewer", "allUsers")) == []


@pytest.mark.parametrize(
    ("disabled", "allowed", "refused"),
    [(True, False, True), (True, True, False), (False, False, False), (None, False, False)],
)
def test_invoker_iam_disabled_is_refused_only_when_true_and_not_allowed(
    disabled: bool | None, allowed: bool, refused: bool
) -> None:
    service_props = {} if disabled is None else {"invokerIamDisabled": disabled}
    config = {ALLOW_PUBLIC: True} if allowed else {}
    messages = run(PRIVATE, "gcp:cloudrunv2/service:Service", service_props, **config)
    assert bool(messages) is refused, messages
    if refused:
        assert messages[0].endswith(
            f"\ninvokerIamDisabled is true, so anyone may call the service without a token; {HINT}"
        )


def test_a_policy_setting_that_is_not_a_boolean_names_the_key() -> None:
    with pytest.raises(TypeError, match=ALLOW_PUBLIC):
        run(PRIVATE, "gcp:cloudrunv2/service:Service", {"invokerIamDisabled": True}, **{ALLOW_PUBLIC: "yes"})


@pytest.mark.parametrize("type_", BUCKET_IAM)
@pytest.mark.parametrize("member", sorted(props.PUBLIC_MEMBERS))
def test_a_public_grant_on_a_bucket_is_refused_for_every_member_and_iam_kind(type_: str, member: str) -> None:
    messages = run(PREVENTION, type_, grant_props(type_, "roles/storage.objectViewer", member))
    assert len(messages) == 1, messages
    assert member in messages[0]
    assert run(PREVENTION, type_, grant_props(type_, "roles/storage.objectViewer", NOT_PUBLIC)) == []
    # Cloud Run's rule is not the bucket's.
    assert run(PREVENTION, RUN_IAM[0], grant_props(RUN_IAM[0], "roles/run.invoker", member)) == []


@pytest.mark.parametrize(("value", "refused"), [(True, False), (False, True), (None, True), ("true", True)])
def test_uniform_access_passes_only_when_exactly_true(value: object, refused: bool) -> None:
    bucket_props = {} if value is None else {"uniformBucketLevelAccess": value}
    messages = run(UNIFORM, storage.BUCKET, bucket_props)
    assert bool(messages) is refused, messages
    # The rule is about buckets: the same props on another type are not its business.
    assert run(UNIFORM, "gcp:storage/bucketObject:BucketObject", bucket_props) == []


@pytest.mark.parametrize(
    ("value", "refused", "said"),
    [("enforced", False, ""), ("inherited", True, "inherited"), (None, True, "unset (inherited)")],
)
def test_public_access_prevention_passes_only_when_enforced(
    value: str | None, refused: bool, said: str
) -> None:
    bucket_props = {} if value is None else {"publicAccessPrevention": value}
    messages = run(PREVENTION, storage.BUCKET, bucket_props)
    assert bool(messages) is refused, messages
    if refused:
        assert f"publicAccessPrevention is {said};" in messages[0]
    assert run(PREVENTION, "gcp:storage/bucketObject:BucketObject", bucket_props) == []


# Identity: every role of each set, on every level of the hierarchy and every IAM kind there.
HIERARCHY_IAM = tuple(
    f"gcp:{level}/iAM{kind}:IAM{kind}"
    for level in ("projects", "folder", "organizations")
    for kind in ("Member", "Binding", "Policy")
)
IMPERSONATION = next(p for p in identity.POLICIES if p.name == "no-project-wide-impersonation")
BASIC = next(p for p in identity.POLICIES if p.name == "no-basic-roles")


def test_the_role_sets_are_the_ones_the_rules_name() -> None:
    assert {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.workloadIdentityUser",
    } == identity.IMPERSONATION_ROLES
    assert {"roles/owner", "roles/editor"} == identity.BASIC_ROLES


@pytest.mark.parametrize("type_", HIERARCHY_IAM)
@pytest.mark.parametrize("role", sorted(identity.IMPERSONATION_ROLES))
def test_every_impersonation_role_is_refused_on_every_level_of_the_hierarchy(type_: str, role: str) -> None:
    messages = run(IMPERSONATION, type_, grant_props(type_, role, NOT_PUBLIC))
    assert len(messages) == 1, messages
    assert f"grants {role} to {NOT_PUBLIC} on the whole project" in messages[0]
    # On the one account it needs, the grant is what the rule asks for.
    account_iam = "gcp:serviceaccount/iAMMember:IAMMember"
    assert run(IMPERSONATION, account_iam, grant_props("x:IAMMember", role, NOT_PUBLIC)) == []
    assert run(IMPERSONATION, type_, grant_props(type_, "roles/run.invoker", NOT_PUBLIC)) == []


@pytest.mark.parametrize("type_", [*HIERARCHY_IAM, *RUN_IAM, *BUCKET_IAM])
@pytest.mark.parametrize("role", sorted(identity.BASIC_ROLES))
def test_every_basic_role_is_refused_on_every_iam_kind(type_: str, role: str) -> None:
    messages = run(BASIC, type_, grant_props(type_, role, NOT_PUBLIC))
    assert len(messages) == 1, messages
    assert f"grants {role} to {NOT_PUBLIC}; basic roles allow nearly everything" in messages[0]
    assert run(BASIC, type_, grant_props(type_, "roles/viewer", NOT_PUBLIC)) == []


@pytest.mark.parametrize(
    ("condition", "pinned"),
    [
        ("assertion.repository == 'owner/repo'", True),
        ('assertion.repository_id == "123"', True),
        ("attribute.repository == 'owner/repo'", True),
        ("attribute.repository_id == '123'", True),
        ("'owner/repo' == assertion.repository", True),
        ('"123" == attribute.repository_id', True),
        ("assertion.repository=='owner/repo'", True),
        ("assertion.ref == 'refs/heads/main' && assertion.repository == 'owner/repo'", True),
        ("(assertion.repository == 'owner/repo') && assertion.ref == 'refs/heads/main'", True),
        # Parentheses change nothing a condition admits, however many and wherever they go.
        ("((assertion.repository_id == '1'))", True),
        ("( ( assertion.repository_id == '1' ) )", True),
        ("(assertion.ref == 'x' && (assertion.repository == 'o/r'))", True),
        ("assertion.repository == 'a/b' || assertion.repository == 'c/d'", False),
        ("((assertion.repository == 'a/b' || assertion.repository == 'c/d'))", False),
        ("(assertion.repository == 'a/b' || true) && assertion.ref == 'x'", False),
        ("(assertion.repository == 'a/b') || true", False),
        ("!(assertion.repository == 'a/b')", False),
        ("(assertion.repository == 'a/b') == false", False),
        ("assertion.repository != 'owner/repo'", False),
        ("assertion.repository == ''", False),
        ("assertion.repository == 'owner/repo\"", False),
        ("assertion.repository == assertion.ref", False),
        ("assertion.repository_owner == 'owner'", False),
        ("assertion.ref == 'refs/heads/main'", False),
        ("assertion.ref == 'a && assertion.repository == \"x/y\"'", False),
        ("", False),
    ],
)
def test_a_condition_pins_one_repository_only_by_a_top_level_equality(condition: str, pinned: bool) -> None:
    assert identity.pins_one_repository(condition) is pinned


# What each refusal tells the reader, word for word: the fix is the part a user acts on.
CLEANUP = next(p for p in registry.POLICIES if p.name == "artifact-registry-cleanup")
REGISTRY_PRIVATE = next(p for p in registry.POLICIES if p.name == "artifact-registry-private")
REGISTRY_IAM = (
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
    "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding",
    "gcp:artifactregistry/repositoryIamPolicy:RepositoryIamPolicy",
)
NO_CLEANUP = (
    "the repository has no cleanupPolicies, so every pushed image is kept (and billed) forever; add a KEEP "
    "policy for the most recent versions and a DELETE policy for the rest."
)
DRY_RUN = "cleanupPolicyDryRun is true, so the cleanup policies only log; set it to false."


@pytest.mark.parametrize(
    ("repository", "said"),
    [
        ({}, [NO_CLEANUP]),
        ({"cleanupPolicies": []}, [NO_CLEANUP]),
        ({"cleanupPolicies": [{"id": "keep"}]}, []),
        ({"cleanupPolicies": {"id": "keep"}}, []),  # one object, as newer providers send it
        ({"cleanupPolicies": [{"id": "keep"}], "cleanupPolicyDryRun": True}, [DRY_RUN]),
        ({"cleanupPolicies": [{"id": "keep"}], "cleanupPolicyDryRun": False}, []),
        ({"cleanupPolicyDryRun": True}, [NO_CLEANUP, DRY_RUN]),
    ],
)
def test_a_repository_needs_an_active_cleanup_policy(repository: dict[str, Any], said: list[str]) -> None:
    messages = run(CLEANUP, registry.REPOSITORY, repository)
    assert [m.partition("\n")[2] for m in messages] == said
    assert run(CLEANUP, "gcp:artifactregistry/other:Other", repository) == []


@pytest.mark.parametrize("type_", REGISTRY_IAM)
@pytest.mark.parametrize("member", sorted(props.PUBLIC_MEMBERS))
def test_a_public_reader_of_the_registry_is_refused_for_every_member_and_iam_kind(
    type_: str, member: str
) -> None:
    messages = run(REGISTRY_PRIVATE, type_, grant_props(type_, "roles/artifactregistry.reader", member))
    assert [m.partition("\n")[2] for m in messages] == [
        f"grants roles/artifactregistry.reader to {member}: anyone could pull the images; grant "
        "roles/artifactregistry.reader to the service accounts that deploy or run them instead."
    ]
    assert run(REGISTRY_PRIVATE, type_, grant_props(type_, "roles/artifactregistry.reader", NOT_PUBLIC)) == []
    assert run(REGISTRY_PRIVATE, BUCKET_IAM[0], grant_props(BUCKET_IAM[0], "roles/x", member)) == []


@pytest.mark.parametrize(
    ("bucket", "said"),
    [
        (
            {"uniformBucketLevelAccess": False, "publicAccessPrevention": "enforced"},
            [
                "uniformBucketLevelAccess is not true, so object ACLs can grant access IAM does not show; "
                "set uniform_bucket_level_access=True."
            ],
        ),
        (
            {"uniformBucketLevelAccess": True, "publicAccessPrevention": "inherited"},
            [
                "publicAccessPrevention is inherited; set public_access_prevention='enforced' so no grant "
                "can make the bucket's objects public."
            ],
        ),
    ],
)
def test_each_bucket_refusal_says_what_to_set(bucket: dict[str, Any], said: list[str]) -> None:
    messages = run(UNIFORM, storage.BUCKET, bucket) + run(PREVENTION, storage.BUCKET, bucket)
    assert [m.partition("\n")[2] for m in messages] == said


@pytest.mark.parametrize("member", sorted(props.PUBLIC_MEMBERS))
def test_a_public_bucket_grant_says_whom_to_grant_instead(member: str) -> None:
    type_ = BUCKET_IAM[0]
    messages = run(PREVENTION, type_, grant_props(type_, "roles/storage.objectViewer", member))
    assert [m.partition("\n")[2] for m in messages] == [
        f"grants roles/storage.objectViewer to {member} on a bucket; grant it to the identities that read "
        "the bucket (public access prevention refuses public grants)."
    ]


@pytest.mark.parametrize(
    ("condition", "parts"),
    [
        ("a", ["a"]),
        ("a&&bc", ["a", "bc"]),
        (" a && b && c ", ["a", "b", "c"]),
        ("f(x) && g(y)", ["f(x)", "g(y)"]),
        ("f(a && b) && c", ["f(a && b)", "c"]),
        ("f(a || b) && c", ["f(a || b)", "c"]),
        ("x[a && b] && c", ["x[a && b]", "c"]),
        ("x[a || b] && c", ["x[a || b]", "c"]),
        ("(a || b) && c", ["(a || b)", "c"]),
        ("((a || b)) && c", ["(a || b)", "c"]),
        # Parentheses around a part, or around a conjunction, are dropped: the parts are what they hold.
        ("(a)", ["a"]),
        ("((a))", ["a"]),
        ("( (a) )", ["a"]),
        ("a&&(b && c)", ["a", "b", "c"]),
        ("((a)) && (b && (c))", ["a", "b", "c"]),
        ("(a) == (b) && c", ["(a) == (b)", "c"]),
        ("(a)(b)", ["(a)(b)"]),
        ("!(a && b)", ["!(a && b)"]),
        ("(x[0])", ["x[0]"]),
        ("a == 'x && y' && b", ["a == 'x && y'", "b"]),
        ('a == "x || y" && b', ['a == "x || y"', "b"]),
        ("a == ')' && (b)", ["a == ')'", "b"]),
        ("a == '(' && (b)", ["a == '('", "b"]),
        ("('(' == a)", ["'(' == a"]),
        ("a == 'it\\'s && y' && b", ["a == 'it\\'s && y'", "b"]),
        ('a == "say \\"&&\\"" && b', ['a == "say \\"&&\\""', "b"]),
        ("a || b", None),
        ("a && b || c", None),
        ("(a && b) || c", None),
        ("(a) || (b)", None),
        ("((a || b))", ["(a || b)"]),
    ],
)
def test_a_condition_splits_at_top_level_ands_only(condition: str, parts: list[str] | None) -> None:
    assert identity.top_level_conjuncts(condition) == parts


KEY_MESSAGE = (
    "a service account key is a long-lived secret that can leak; authenticate with Workload Identity "
    "Federation (google-github-actions/auth with workload_identity_provider) or impersonation instead."
)


def test_each_identity_refusal_says_what_to_do_instead() -> None:
    keys = next(p for p in identity.POLICIES if p.name == "no-service-account-keys")
    assert [m.partition("\n")[2] for m in run(keys, identity.KEY, {})] == [KEY_MESSAGE]
    project = HIERARCHY_IAM[0]
    role = "roles/iam.serviceAccountUser"
    assert [
        m.partition("\n")[2] for m in run(IMPERSONATION, project, grant_props(project, role, NOT_PUBLIC))
    ] == [
        f"grants {role} to {NOT_PUBLIC} on the whole project (or folder/organization), which lets it act as "
        "every service account there; grant it on the one account it needs (gcp.serviceaccount.IAMMember)."
    ]
    assert [
        m.partition("\n")[2] for m in run(BASIC, project, grant_props(project, "roles/owner", NOT_PUBLIC))
    ] == [
        f"grants roles/owner to {NOT_PUBLIC}; basic roles allow nearly everything. Grant the predefined "
        "roles the member needs (e.g. roles/run.admin, roles/artifactregistry.writer)."
    ]


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        (
            None,
            "the provider has no attributeCondition, so tokens from any repository on the issuer (every "
            "GitHub repository, for GitHub's) are accepted; set attribute_condition="
            "\"assertion.repository_id == '<id>'\" (or assertion.repository == 'owner/repo').",
        ),
        (
            "assertion.ref == 'x'",
            "attributeCondition \"assertion.ref == 'x'\" does not pin one repository; make it, or one of its "
            "top-level `&&` parts, assertion.repository_id == '<id>' or assertion.repository == 'owner/repo' "
            "(no `||` at the top level).",
        ),
    ],
)
def test_a_provider_refusal_says_how_to_pin_the_repository(condition: str | None, said: str) -> None:
    pins = next(
        p
        for p in identity.POLICIES
        if p.name not in {"no-service-account-keys", IMPERSONATION.name, BASIC.name}
    )
    provider_props = {} if condition is None else {"attributeCondition": condition}
    assert [m.partition("\n")[2] for m in run(pins, identity.PROVIDER, provider_props)] == [said]
