"""The organization policy constraints that can refuse what a stack declares: one table, one evaluator.

Each row names a constraint, the stack settings that meet it (none: the constraint cannot refuse this stack),
and the fix. The project's effective policy (Org Policy v2 GetEffectivePolicy: the hierarchy merged and tag
conditions evaluated) decides: a boolean constraint refuses when a rule enforces it; a list constraint refuses
a value it denies, or one missing from the values it allows.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import orgpolicy_v2

from preflight.program import ci_identity
from preflight.program import config as program_config
from preflight.stack import KEY

# Cloud Run's ingress settings as run.allowedIngress names them (cloud.google.com/run/docs/securing/ingress:
# "internal-and-cloud-load-balancing" is the gcloud spelling of "Internal and Cloud Load Balancing").
INGRESS_POLICY_VALUES = {
    "INGRESS_TRAFFIC_ALL": "all",
    "INGRESS_TRAFFIC_INTERNAL_ONLY": "internal",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": "internal-and-cloud-load-balancing",
}


class Verdict(enum.Enum):
    """What a policy says of one setting."""

    ALLOWED = "allowed"
    REFUSED = "refused"
    # A value group the table below cannot expand: the policy may or may not include the value.
    UNKNOWN = "unknown"


# An Org Policy v2 rule: allow_all, deny_all, enforce, or values (allowed_values, denied_values).
Rule = orgpolicy_v2.PolicySpec.PolicyRule


@dataclass(frozen=True)
class Use:
    """One setting of the stack that a constraint can refuse; `value` is what a list constraint is asked."""

    setting: str
    value: str | None = None


# Google's curated location groups (cloud.google.com/resource-manager/docs/organization-policy/defining-
# locations): `in:REGION-locations` holds the region and its zones, the continental groups hold regions by
# name prefix. EU lists member states' regions only (not London, europe-west2, nor Zurich, europe-west6).
_CONTINENT_GROUPS: dict[str, Callable[[str], bool]] = {
    "us-locations": lambda region: region.startswith("us-"),
    "northamerica-locations": lambda region: region.startswith(("us-", "northamerica-")),
    "southamerica-locations": lambda region: region.startswith("southamerica-"),
    "europe-locations": lambda region: region.startswith("europe-"),
    "asia-locations": lambda region: region.startswith("asia-"),
    "australia-locations": lambda region: region.startswith("australia-"),
    "eu-locations": lambda region: (
        region
        in {
            "europe-central2",
            "europe-north1",
            "europe-north2",
            "europe-southwest1",
            "europe-west1",
            "europe-west3",
            "europe-west4",
            "europe-west8",
            "europe-west9",
            "europe-west10",
            "europe-west12",
        }
    ),
}
_REGION_GROUP = re.compile(r"(?P<region>[a-z]+-[a-z]+[0-9]+)-locations")


def plain_match(listed: str, value: str) -> bool | None:
    """Whether a policy's value names `value`; `is:` is the optional prefix of a literal value."""
    return listed.removeprefix("is:") == value


def location_match(listed: str, region: str) -> bool | None:
    """Whether a gcp.resourceLocations value includes the region; None: a value group not known here.

    A bare multi-region (`us`, `europe`) does not include its regions; only `in:` groups do.
    """
    if not listed.startswith("in:"):
        return listed.removeprefix("is:") == region
    group = listed.removeprefix("in:")
    by_region = _REGION_GROUP.fullmatch(group)
    if by_region:
        return by_region["region"] == region
    if group in _CONTINENT_GROUPS:
        return _CONTINENT_GROUPS[group](region)
    return None


def _any(matches: Sequence[bool | None]) -> bool | None:
    """True if one value matches, False if none can, None if only an unknown group might."""
    if any(match is True for match in matches):
        return True
    return None if any(match is None for match in matches) else False


def list_verdict(
    rules: Sequence[Rule], value: str, match: Callable[[str, str], bool | None] = plain_match
) -> Verdict:
    """A list constraint's answer for one value: denials first, then the allowed values, if any are listed."""
    if any(rule.deny_all for rule in rules):
        return Verdict.REFUSED
    denied = _any(
        [match(listed, value) for rule in rules if rule.values for listed in rule.values.denied_values]
    )
    if denied is True:
        return Verdict.REFUSED
    allowed_values = [listed for rule in rules if rule.values for listed in rule.values.allowed_values]
    if any(rule.allow_all for rule in rules) or not allowed_values:
        allowed: bool | None = True
    else:
        allowed = _any([match(listed, value) for listed in allowed_values])
    if allowed is False:
        return Verdict.REFUSED
    if allowed is None or denied is None:
        return Verdict.UNKNOWN
    return Verdict.ALLOWED


def boolean_verdict(rules: Sequence[Rule], _: str | None = None) -> Verdict:
    """A boolean (or managed) constraint refuses once a rule enforces it."""
    return Verdict.REFUSED if any(rule.enforce for rule in rules) else Verdict.ALLOWED


def members_verdict(rules: Sequence[Rule], member: str | None) -> Verdict:
    """iam.managed.allowedPolicyMembers: enforced, it admits only the members its parameters list.

    Its other parameter, allowedPrincipalSets, names organizations, which allUsers belongs to none of.
    """
    for rule in rules:
        if rule.enforce:
            # A Struct in the stubs; proto-plus hands it over as a mapping (None when unset).
            parameters: Any = rule.parameters
            subjects = list(parameters.get("allowedMemberSubjects") or []) if parameters else []
            if member not in subjects:
                return Verdict.REFUSED
    return Verdict.ALLOWED


def describe(rules: Sequence[Rule]) -> str:
    """The effective policy in a few words, for the problem line."""
    if any(rule.deny_all for rule in rules):
        return "denies all values"
    if any(rule.enforce for rule in rules):
        return "enforced"
    allowed = [v for rule in rules if rule.values for v in rule.values.allowed_values]
    denied = [v for rule in rules if rule.values for v in rule.values.denied_values]
    parts = ([f"allows only {', '.join(allowed)}"] if allowed else []) + (
        [f"denies {', '.join(denied)}"] if denied else []
    )
    return "; ".join(parts) or "not enforced"


def listed(
    match: Callable[[str, str], bool | None] = plain_match,
) -> Callable[[Sequence[Rule], str | None], Verdict]:
    """The verdict of a list constraint whose values `match` compares with the stack's."""

    def verdict(rules: Sequence[Rule], value: str | None) -> Verdict:
        assert value is not None, "a list constraint's use names a value"
        return list_verdict(rules, value, match)

    return verdict


@dataclass(frozen=True)
class Constraint:
    """A constraint, the stack settings it can refuse, how its effective policy decides, and the fix."""

    name: str  # without the constraints/ prefix, as policy names carry it
    uses: Callable[[program_config.StackConfig], tuple[Use, ...]]
    decide: Callable[[Sequence[Rule], str | None], Verdict]
    fix: str

    def verdict(self, rules: Sequence[Rule], use: Use) -> Verdict:
        """What the effective policy's rules say of one use."""
        return self.decide(rules, use.value)


def _public_binding(config: program_config.StackConfig) -> tuple[Use, ...]:
    """The allUsers invoker binding allowUnauthenticated creates, which Domain Restricted Sharing refuses."""
    if not config.allow_unauthenticated:
        return ()
    return (Use(f"{KEY}allowUnauthenticated = true (an allUsers invoker binding)", "allUsers"),)


_PUBLIC_FIX = (
    f"make the service public without the binding: `pulumi config set {KEY}invokerIamDisabled true` and "
    f"`pulumi config set {KEY}allowUnauthenticated false`; or ask the policy admin for an exception"
)


CONSTRAINTS: tuple[Constraint, ...] = (
    # Domain Restricted Sharing, and its managed form (docs/deploying.md, "Organization policies").
    Constraint("iam.allowedPolicyMemberDomains", _public_binding, listed(), _PUBLIC_FIX),
    Constraint("iam.managed.allowedPolicyMembers", _public_binding, members_verdict, _PUBLIC_FIX),
    Constraint(
        "run.managed.requireInvokerIam",
        uses=lambda config: (Use(f"{KEY}invokerIamDisabled = true"),) if config.invoker_iam_disabled else (),
        decide=boolean_verdict,
        fix=f"keep the service private: `pulumi config set {KEY}invokerIamDisabled false` and list its "
        f"callers in {KEY}invokers; or ask the policy admin to stop enforcing it on this project",
    ),
    Constraint(
        "run.allowedIngress",
        uses=lambda config: (
            Use(
                f"{KEY}ingress = {config.ingress} ({INGRESS_POLICY_VALUES[config.ingress]})",
                INGRESS_POLICY_VALUES[config.ingress],
            ),
        ),
        decide=listed(),
        fix=f"set {KEY}ingress to a setting the policy allows (with a domain, "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER), or ask the policy admin to allow this one",
    ),
    Constraint(
        "iam.workloadIdentityPoolProviders",
        uses=lambda config: (
            (
                Use(
                    f"{KEY}githubRepository = {config.github_repository} "
                    f"(a Workload Identity provider for issuer {ci_identity.GITHUB_ISSUER})",
                    ci_identity.GITHUB_ISSUER,
                ),
            )
            if config.github_repository
            else ()
        ),
        decide=listed(),
        fix=f"ask the policy admin to allow {ci_identity.GITHUB_ISSUER} on this project; or leave "
        f"{KEY}githubRepository empty (no CI identity: deploy by hand)",
    ),
    Constraint(
        "gcp.resourceLocations",
        uses=lambda config: tuple(
            Use(f"region {region} (gcp:region and {KEY}regions)", region) for region in config.regions
        ),
        decide=listed(location_match),
        fix="run in regions the policy allows (gcp:region, regions), or ask the policy admin to allow "
        "in:REGION-locations for this one",
    ),
)
