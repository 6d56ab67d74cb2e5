"""How the rules read properties: absent, of another type, one object or a list, and IAM grants of each kind.

Every rule reads through these helpers, so a helper that misread one shape would make several rules pass a
resource they should refuse. Each IAM kind's cases come from the suffixes that define it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from catalog_policy import props
from catalog_policy.props import (
    as_list,
    containers,
    get,
    iam_grants,
    is_iam_resource,
    is_list,
    number,
    serving_containers,
    text,
)
from pulumi_policy.proxy import unknown_checking_proxy

MEMBER_KINDS = [f"gcp:some/thing{suffix}:Thing{suffix}" for suffix in props._MEMBER_SUFFIX]
BINDING_KINDS = [f"gcp:some/thing{suffix}:Thing{suffix}" for suffix in props._BINDING_SUFFIX]
POLICY_KINDS = [f"gcp:some/thing{suffix}:Thing{suffix}" for suffix in props._POLICY_SUFFIX]
ACCOUNT = "serviceAccount:a@p.iam.gserviceaccount.com"


@pytest.mark.parametrize(
    ("value", "path", "found"),
    [
        ({"a": {"b": 1}}, ("a", "b"), 1),
        ({"a": {"b": 1}}, ("a",), {"b": 1}),
        ({"a": {"b": 1}}, (), {"a": {"b": 1}}),
        ({"a": {"b": None}}, ("a", "b"), None),
        ({"a": {"b": 1}}, ("a", "c"), None),
        ({"a": {"b": 1}}, ("x", "b"), None),
        ({"a": [{"b": 1}]}, ("a", "b"), None),  # a list is not an object
        ({"a": "b"}, ("a", "b"), None),  # nor is a string
        (None, ("a",), None),
    ],
)
def test_get_reads_a_path_of_object_keys(value: Any, path: tuple[str, ...], found: Any) -> None:
    assert get(value, *path) == found
    # The SDK hands rules its proxy, not plain dicts: the same reads must hold through it.
    if isinstance(value, dict):
        assert get(unknown_checking_proxy(value), *path) == found


@pytest.mark.parametrize(
    ("value", "listed", "as_a_list"),
    [
        (None, False, []),
        ([], True, []),
        ([1, 2], True, [1, 2]),
        ((1, 2), True, [1, 2]),
        ({"name": "h2c"}, False, [{"name": "h2c"}]),  # one object, as newer providers send `ports`
        ("h2c", False, ["h2c"]),  # a string is one value, not a list of characters
        (0, False, [0]),
    ],
)
def test_one_object_or_a_list_reads_as_a_list(value: Any, listed: bool, as_a_list: list[Any]) -> None:
    assert is_list(value) is listed
    assert as_list(value) == as_a_list
    assert type(as_list(value)) is list


def test_a_list_read_as_a_list_is_a_copy() -> None:
    original = [1]
    as_list(original).append(2)
    assert original == [1]


@pytest.mark.parametrize(
    ("value", "as_text", "as_number"),
    [
        ("8080", "8080", None),
        ("", "", None),
        (8080, None, 8080.0),
        (0, None, 0.0),
        (0.5, None, 0.5),
        (True, None, None),  # a boolean is not a number, though Python says it is an int
        (False, None, None),
        (None, None, None),
        ([1], None, None),
    ],
)
def test_text_and_numbers_are_read_only_from_their_own_types(
    value: Any, as_text: str | None, as_number: float | None
) -> None:
    assert text(value) == as_text
    assert number(value) == as_number
    if as_number is not None:
        assert type(number(value)) is float


def service_with(*containers_: Any) -> dict[str, Any]:
    return {"template": {"containers": list(containers_)}}


@pytest.mark.parametrize(
    ("service", "labels"),
    [
        (service_with({"name": "server"}, {"name": "proxy"}), ["container server", "container proxy"]),
        (service_with({}, {"name": ""}, {"name": 7}), ["container #0", "container #1", "container #2"]),
        (service_with("not an object", {}), ["container #1"]),  # the position is the container's own
        ({"template": {"containers": {"name": "server"}}}, ["container server"]),  # one object
        ({"template": {}}, []),
        ({}, []),
    ],
)
def test_containers_are_labelled_by_name_else_position(service: dict[str, Any], labels: list[str]) -> None:
    found = containers(service)
    assert [label for label, _ in found] == labels
    assert all(isinstance(container, dict) for _, container in found)


@pytest.mark.parametrize(
    ("service", "serving"),
    [
        (service_with({"name": "server", "ports": {"name": "h2c"}}, {"name": "proxy"}), ["container server"]),
        (
            service_with({"name": "proxy"}, {"name": "server", "ports": [{"name": "h2c"}]}),
            ["container server"],
        ),
        (
            service_with({"name": "a", "ports": {"name": "h2c"}}, {"name": "b", "ports": {"name": "h2c"}}),
            ["container a", "container b"],
        ),
        (service_with({"name": "only"}), ["container only"]),  # the only container serves, port or not
        (service_with({"name": "a"}, {"name": "b"}), []),  # none declares a port: none can be told apart
        (service_with({"name": "a", "ports": []}, {"name": "b"}), []),  # an empty list declares no port
        (service_with(), []),
    ],
)
def test_the_serving_container_is_the_one_with_a_port_or_the_only_one(
    service: dict[str, Any], serving: list[str]
) -> None:
    assert [label for label, _ in serving_containers(service)] == serving


@pytest.mark.parametrize("type_", [*MEMBER_KINDS, *BINDING_KINDS, *POLICY_KINDS])
def test_every_iam_kind_is_an_iam_resource(type_: str) -> None:
    assert is_iam_resource(type_)


@pytest.mark.parametrize(
    "type_",
    [
        "gcp:storage/bucket:Bucket",
        "gcp:cloudrunv2/service:Service",
        "gcp:some/thingIamMember:Thing",  # the suffix must be the kind's, not the module's
        "gcp:some/group:GroupMember",
        "gcp:some/thing:IamMemberList",
    ],
)
def test_other_resources_are_not_iam_resources_and_grant_nothing(type_: str) -> None:
    assert not is_iam_resource(type_)
    grants = {"role": "roles/owner", "member": ACCOUNT, "members": [ACCOUNT]}
    policy = json.dumps({"bindings": [{"role": "roles/owner", "members": [ACCOUNT]}]})
    assert iam_grants(type_, {**grants, "policyData": policy}) == []


@pytest.mark.parametrize("type_", MEMBER_KINDS)
@pytest.mark.parametrize(
    ("resource", "grants"),
    [
        ({"role": "roles/owner", "member": ACCOUNT}, [("roles/owner", ACCOUNT)]),
        ({"role": "roles/owner"}, []),
        ({"member": ACCOUNT}, []),
        ({"role": "roles/owner", "member": [ACCOUNT]}, []),
        ({"role": None, "member": ACCOUNT}, []),
        # A member resource grants one member: `members` is a binding's.
        ({"role": "roles/owner", "members": [ACCOUNT]}, []),
    ],
)
def test_a_member_resource_grants_its_role_to_its_member(
    type_: str, resource: dict[str, Any], grants: list[tuple[str, str]]
) -> None:
    assert iam_grants(type_, resource) == grants


@pytest.mark.parametrize("type_", BINDING_KINDS)
@pytest.mark.parametrize(
    ("resource", "grants"),
    [
        (
            {"role": "roles/owner", "members": [ACCOUNT, "allUsers"]},
            [("roles/owner", ACCOUNT), ("roles/owner", "allUsers")],
        ),
        ({"role": "roles/owner", "members": "allUsers"}, [("roles/owner", "allUsers")]),
        ({"role": "roles/owner", "members": [1, "allUsers"]}, [("roles/owner", "allUsers")]),
        ({"role": "roles/owner", "members": []}, []),
        ({"role": "roles/owner"}, []),
        ({"members": [ACCOUNT]}, []),
        ({"role": "roles/owner", "member": ACCOUNT}, []),
    ],
)
def test_a_binding_grants_its_role_to_each_member(
    type_: str, resource: dict[str, Any], grants: list[tuple[str, str]]
) -> None:
    assert iam_grants(type_, resource) == grants


@pytest.mark.parametrize("type_", POLICY_KINDS)
@pytest.mark.parametrize(
    ("policy", "grants"),
    [
        (
            {
                "bindings": [
                    {"role": "roles/owner", "members": [ACCOUNT, "allUsers"]},
                    {"role": "roles/viewer", "members": ["allAuthenticatedUsers"]},
                ]
            },
            [
                ("roles/owner", ACCOUNT),
                ("roles/owner", "allUsers"),
                ("roles/viewer", "allAuthenticatedUsers"),
            ],
        ),
        ({"bindings": {"role": "roles/owner", "members": "allUsers"}}, [("roles/owner", "allUsers")]),
        ({"bindings": [{"role": "roles/owner", "members": [7, "allUsers"]}]}, [("roles/owner", "allUsers")]),
        ({"bindings": [{"members": ["allUsers"]}, {"role": 1, "members": ["allUsers"]}]}, []),
        ({"bindings": []}, []),
        ({}, []),
    ],
)
def test_a_policy_grants_what_its_policy_data_binds(
    type_: str, policy: dict[str, Any], grants: list[tuple[str, str]]
) -> None:
    assert iam_grants(type_, {"policyData": json.dumps(policy)}) == grants
    # The role and members of a member or binding resource are not a policy's.
    assert iam_grants(type_, {"role": "roles/owner", "member": "allUsers", "members": ["allUsers"]}) == []


@pytest.mark.parametrize("type_", POLICY_KINDS)
@pytest.mark.parametrize("policy_data", ["", "not json", None, 7])
def test_policy_data_that_is_absent_or_not_json_grants_nothing(type_: str, policy_data: Any) -> None:
    assert iam_grants(type_, {"policyData": policy_data}) == []
