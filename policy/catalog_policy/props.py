"""Resource properties as the engine hands them to a pack: camelCase names, maybe absent, maybe unknown.

Every read goes through the SDK's unknown-checking proxy: touching a value that is unknown at preview (an
output of a resource not created yet) raises `UnknownValueError`, which the SDK reports as "can't run policy
during preview" (advisory) instead of a violation. So these helpers read only what a rule needs, and treat
an absent value as absent (None), never as a violation by itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# How pulumi-gcp's IAM member, binding and policy resources end their type tokens, which end with the kind
# (`gcp:projects/iAMMember:IAMMember`).
_MEMBER_SUFFIX = ("IamMember", "IAMMember")
_BINDING_SUFFIX = ("IamBinding", "IAMBinding")
_POLICY_SUFFIX = ("IamPolicy", "IAMPolicy")
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


def get(value: Any, *path: str) -> Any:
    """The value at `path` (object keys), or None when any step is absent or not an object."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def is_list(value: Any) -> bool:
    """Whether a property value is a list (the proxy's lists are Sequences; strings are not lists here)."""
    return isinstance(value, Sequence) and not isinstance(value, str)


def as_list(value: Any) -> list[Any]:
    """A property that is one object in newer provider versions and a list in older ones, as a list."""
    if value is None:
        return []
    if is_list(value):
        return list(value)
    return [value]


def text(value: Any) -> str | None:
    """A string property, or None when it is absent or not a string."""
    return value if isinstance(value, str) else None


def number(value: Any) -> float | None:
    """A number property (numbers cross the wire as doubles), or None when it is absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def containers(props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """A Cloud Run v2 service's containers with a label for messages (their name, else their position)."""
    found = []
    for index, container in enumerate(as_list(get(props, "template", "containers"))):
        if isinstance(container, Mapping):
            label = text(get(container, "name")) or f"#{index}"
            found.append((f"container {label}", container))
    return found


def serving_containers(props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The containers Cloud Run sends requests to: the one that declares a port, or the only one."""
    all_containers = containers(props)
    with_ports = [(label, c) for label, c in all_containers if as_list(get(c, "ports"))]
    if with_ports:
        return with_ports
    return all_containers if len(all_containers) == 1 else []


def is_iam_resource(resource_type: str) -> bool:
    """Whether a type token names an IAM member, binding or policy resource."""
    return resource_type.endswith(_MEMBER_SUFFIX + _BINDING_SUFFIX + _POLICY_SUFFIX)


def iam_grants(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, member) pairs an IAM member, binding or policy resource grants; [] for other resources."""
    if resource_type.endswith(_MEMBER_SUFFIX):
        role, member = text(get(props, "role")), text(get(props, "member"))
        return [(role, member)] if role is not None and member is not None else []
    if resource_type.endswith(_BINDING_SUFFIX):
        role = text(get(props, "role"))
        members = [text(m) for m in as_list(get(props, "members"))]
        return [(role, m) for m in members if role is not None and m is not None]
    if resource_type.endswith(_POLICY_SUFFIX):
        return _policy_grants(text(get(props, "policyData")))
    return []


def _policy_grants(policy_data: str | None) -> list[tuple[str, str]]:
    # policyData is the whole IAM policy as JSON, as gcp.organizations.get_iam_policy renders it.
    if not policy_data:
        return []
    try:
        document = json.loads(policy_data)
    except ValueError:
        return []
    grants = []
    for binding in as_list(get(document, "bindings")):
        role = text(get(binding, "role"))
        for member in as_list(get(binding, "members")):
            if role is not None and isinstance(member, str):
                grants.append((role, member))
    return grants
