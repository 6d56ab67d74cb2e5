"""Identity: no keys, no project-wide impersonation or basic roles, CI trust pinned to one repository."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from .props import get, iam_grants, is_iam_resource, text
from .rule import rule

KEY = "gcp:serviceaccount/key:Key"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
# IAM on the resource hierarchy: a grant there applies to everything below it.
_HIERARCHY_PREFIXES = ("gcp:projects/iAM", "gcp:folder/iAM", "gcp:organizations/iAM")
# Roles that let a principal act as a service account; granted on a project they cover every account in it.
IMPERSONATION_ROLES = frozenset(
    {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.workloadIdentityUser",
    }
)
BASIC_ROLES = frozenset({"roles/owner", "roles/editor"})

# One equality on the token's repository (by name or, immune to renames, by id) against one literal.
_REPOSITORY_PIN = re.compile(
    r"""(?:assertion|attribute)\.repository(?:_id)?\s*==\s*(?P<q>['"])[^'"]+(?P=q)"""
    r"""|(?P<r>['"])[^'"]+(?P=r)\s*==\s*(?:assertion|attribute)\.repository(?:_id)?"""
)
# A CEL string literal, escapes included: what it holds is not code, whatever it looks like.
_STRING_LITERAL = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"')
# How each bracket changes the nesting depth.
_NESTING = {"(": 1, "[": 1, ")": -1, "]": -1}


def _no_keys(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type == KEY:
        yield (
            "a service account key is a long-lived secret that can leak; authenticate with Workload "
            "Identity Federation (google-github-actions/auth with workload_identity_provider) or "
            "impersonation instead."
        )


def _hierarchy_grants(args: ResourceValidationArgs) -> list[tuple[str, str]]:
    if not args.resource_type.startswith(_HIERARCHY_PREFIXES):
        return []
    return iam_grants(args.resource_type, args.props)


def _no_project_impersonation(args: ResourceValidationArgs) -> Iterator[str]:
    for role, member in _hierarchy_grants(args):
        if role in IMPERSONATION_ROLES:
            yield (
                f"grants {role} to {member} on the whole project (or folder/organization), which lets it act "
                "as every service account there; grant it on the one account it needs "
                "(gcp.serviceaccount.IAMMember)."
            )


def _no_basic_roles(args: ResourceValidationArgs) -> Iterator[str]:
    if not is_iam_resource(args.resource_type):
        return
    for role, member in iam_grants(args.resource_type, args.props):
        if role in BASIC_ROLES:
            yield (
                f"grants {role} to {member}; basic roles allow nearly everything. Grant the predefined roles "
                "the member needs (e.g. roles/run.admin, roles/artifactregistry.writer)."
            )


def _code(condition: str) -> str:
    """The condition with each string literal blanked out at the same length: what is left is code."""
    return _STRING_LITERAL.sub(lambda literal: "_" * len(literal[0]), condition)


def _parenthesised(part: str) -> str | None:
    """What is inside the parentheses when they enclose the whole part (`(a)`, not `(a) == (b)`)."""
    if not part.startswith("("):
        return None
    depth = 0
    for index, char in enumerate(_code(part)):
        depth += _NESTING.get(char, 0)
        if depth == 0:
            return part[1:index] if index == len(part) - 1 else None
    return None


def top_level_conjuncts(condition: str) -> list[str] | None:
    """The `&&`-separated parts of a CEL condition, None when it has a top-level `||`.

    Parentheses around the whole condition or around a part are dropped, however many (`((a)) && (b && c)`
    is a, b and c): they change nothing a condition admits, and users write them.
    """
    code = _code(condition)
    parts, depth, start = [], 0, 0
    for index, char in enumerate(code):
        depth += _NESTING.get(char, 0)
        if depth:
            continue
        if code.startswith("||", index):
            return None
        if code.startswith("&&", index):
            parts.append(condition[start:index])
            start = index + 2
    parts.append(condition[start:])
    conjuncts = []
    for part in map(str.strip, parts):
        inside = _parenthesised(part)
        nested = top_level_conjuncts(inside) if inside is not None else None
        conjuncts.extend(nested if nested is not None else [part])
    return conjuncts


def pins_one_repository(condition: str) -> bool:
    """Whether every token the condition admits must come from one repository (a top-level `==` on it)."""
    conjuncts = top_level_conjuncts(condition)
    return conjuncts is not None and any(_REPOSITORY_PIN.fullmatch(part) for part in conjuncts)


def _provider_pins_repository(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type != PROVIDER:
        return
    condition = text(get(args.props, "attributeCondition"))
    if not condition:
        yield (
            "the provider has no attributeCondition, so tokens from any repository on the issuer (every "
            "GitHub repository, for GitHub's) are accepted; set attribute_condition="
            "\"assertion.repository_id == '<id>'\" (or assertion.repository == 'owner/repo')."
        )
    elif not pins_one_repository(condition):
        yield (
            f"attributeCondition {condition!r} does not pin one repository; make it, or one of its top-level "
            "`&&` parts, assertion.repository_id == '<id>' or assertion.repository == 'owner/repo' (no `||` "
            "at the top level)."
        )


POLICIES = [
    ResourceValidationPolicy(
        name="no-service-account-keys",
        description="No service account keys.",
        validate=rule(_no_keys),
    ),
    ResourceValidationPolicy(
        name="no-project-wide-impersonation",
        description="No Service Account User, Token Creator or Workload Identity User grants on a project, "
        "folder or organization.",
        validate=rule(_no_project_impersonation),
    ),
    ResourceValidationPolicy(
        name="no-basic-roles",
        description="No owner or editor grants.",
        validate=rule(_no_basic_roles),
    ),
    ResourceValidationPolicy(
        name="workload-identity-pins-repository",
        description="Workload Identity providers accept tokens from one repository only.",
        validate=rule(_provider_pins_repository),
    ),
]
