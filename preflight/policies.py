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


def boolean_verdict(rules: Sequence[Rule]) -> Verdict:
    """A boolean (or managed) constraint refuses once a rule enforces it."""
    return Verdict.REFUSED if any(rule.enforce for rule in rules) else Verdict.ALLOWED


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


@dataclass(frozen=True)
class Constraint:
    """A constraint, the stack settings it can refuse, and what to do when it does."""

    name: str  # without the constraints/ prefix, as policy names carry it
    boolean: bool
    uses: Callable[[Any], tuple[Use, ...]]  # from the program's StackConfig
    fix: str
    match: Callable[[str, str], bool | None] = plain_match

    def verdict(self, rules: Sequence[Rule], use: Use) -> Verdict:
        """What the effective policy's rules say of one use."""
        if self.boolean:
            return boolean_verdict(rules)
        assert use.value is not None, f"{self.name} is a list constraint: each use names a value"
        return list_verdict(rules, use.value, self.match)


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint(
        "iam.allowedPolicyMemberDomains",
        boolean=False,
        uses=lambda config: (
            (Use(f"{KEY}allowUnauthenticated = true (an allUsers invoker binding)", "allUsers"),)
            if config.allow_unauthenticated
            else ()
        ),
        fix=f"make the service public without the binding: `pulumi config set {KEY}invokerIamDisabled true` "
        f"and `pulumi config set {KEY}allowUnauthenticated false`; or ask the policy admin for an exception",
    ),
    Constraint(
        "run.managed.requireInvokerIam",
        boolean=True,
        uses=lambda config: (Use(f"{KEY}invokerIamDisabled = true"),) if config.invoker_iam_disabled else (),
        fix=f"keep the service private: `pulumi config set {KEY}invokerIamDisabled false` and list its "
        f"callers in {KEY}invokers; or ask the policy admin to stop enforcing it on this project",
    ),
    Constraint(
        "run.allowedIngress",
        boolean=False,
        uses=lambda config: (
            Use(
                f"{KEY}ingress = {config.ingress} ({INGRESS_POLICY_VALUES[config.ingress]})",
                INGRESS_POLICY_VALUES[config.ingress],
            ),
        ),
        fix=f"set {KEY}ingress to a setting the policy allows (with a domain, "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER), or ask the policy admin to allow this one",
    ),
    Constraint(
        "iam.workloadIdentityPoolProviders",
        boolean=False,
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
        fix=f"ask the policy admin to allow {ci_identity.GITHUB_ISSUER} on this project; or leave "
        f"{KEY}githubRepository empty (no CI identity: deploy by hand)",
    ),
    Constraint(
        "gcp.resourceLocations",
        boolean=False,
        uses=lambda config: tuple(
            Use(f"region {region} (gcp:region and {KEY}regions)", region) for region in config.regions
        ),
        fix="run in regions the policy allows (gcp:region, regions), or ask the policy admin to allow "
        "in:REGION-locations for this one",
        match=location_match,
    ),
)
