"""Revision names and declared traffic, item by item, starting from routes the program does not own.

A deploy declares the whole split. A route it dropped (a pull request's tag, an operator's tag) would stop
serving at the next `pulumi up`; a setting left out of a revision's name would make Cloud Run refuse the
deploy. So every route kind here starts in the live split and must come out as it went in, and every
setting changes the name on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.harness import infra_module

revisions: Any = infra_module("revisions")
LiveRoute = revisions.LiveRoute
LiveService = revisions.LiveService

STABLE_REV = "catalog-grpc-0ld0ld0ld0"
OLDER = "catalog-grpc-01de401de4"
NEW = "catalog-grpc-4e74e74e74"
# Routes the program does not own, each with and without a share of traffic where Cloud Run allows it.
UNOWNED = {
    "pull request": LiveRoute("catalog-grpc-pr3-12345678", 0, "pr-3"),
    "operator tag": LiveRoute(OLDER, 0, "debug"),
    "operator tag with traffic": LiveRoute(OLDER, 10, "canary-eu"),
    "untagged share": LiveRoute(OLDER, 5, ""),
}
# A template as the program sends it (wire names), with a value of each kind.
TEMPLATE: dict[str, Any] = {
    "serviceAccount": "catalog-grpc-run@p.iam.gserviceaccount.com",
    "timeout": "300s",
    "maxInstanceRequestConcurrency": 80,
    "scaling": {"minInstanceCount": 0, "maxInstanceCount": 3},
    "containers": [
        {
            "image": "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:" + "a" * 64,
            "envs": [{"name": "LOG_LEVEL", "value": "INFO"}],
            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "cpuIdle": True},
        }
    ],
}
# A value for each service-level field that names a revision.
FIELD_VALUES: dict[str, object] = {
    "customAudiences": ["https://catalog.example.com"],
    "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "invokerIamDisabled": True,
    "launchStage": "BETA",
}
UNSET = dict.fromkeys(revisions.REVISION_FIELDS)


def name(template: dict[str, Any] = TEMPLATE, /, **fields: object) -> str:
    material = revisions.revision_material(template, {**UNSET, **fields})
    result: str = revisions.revision_name("catalog-grpc", material)
    return result


def changed(value: Any) -> Any:
    """Another value of the same shape: every leaf of it differs."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        return {key: changed(item) for key, item in value.items()}
    return [changed(item) for item in value]


def test_every_revision_field_has_a_case() -> None:
    assert set(FIELD_VALUES) == set(revisions.REVISION_FIELDS)


@pytest.mark.parametrize("field", revisions.REVISION_FIELDS)
def test_every_service_level_field_renames_the_revision_on_its_own(field: str) -> None:
    assert name(**{field: FIELD_VALUES[field]}) != name()


@pytest.mark.parametrize("key", sorted(TEMPLATE))
def test_every_template_setting_renames_the_revision_on_its_own(key: str) -> None:
    assert name({**TEMPLATE, key: changed(TEMPLATE[key])}) != name()


def test_the_same_template_gives_the_same_name_whatever_its_order_or_number_form_or_own_name() -> None:
    reordered = dict(reversed(list(TEMPLATE.items())))
    as_doubles = {**TEMPLATE, "maxInstanceRequestConcurrency": 80.0}
    named = {**TEMPLATE, "revision": "catalog-grpc-0123456789"}
    assert name(reordered) == name(as_doubles) == name(named) == name()
    assert name({**TEMPLATE, "maxInstanceRequestConcurrency": 80.5}) != name()


def test_a_name_is_the_service_a_dash_and_ten_hex_digits() -> None:
    prefix, _, digits = name().rpartition("-")
    assert prefix == "catalog-grpc"
    assert len(digits) == revisions.HASH_LENGTH == 10
    assert int(digits, 16) >= 0


@pytest.mark.parametrize(
    "fields",
    [
        {key: None for key in revisions.REVISION_FIELDS[1:]},  # one missing
        {**UNSET, "timeout": "300s"},  # one that does not name a revision
    ],
)
def test_the_fields_must_be_exactly_the_revision_fields(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="revision fields"):
        revisions.revision_material(TEMPLATE, fields)


@pytest.mark.parametrize("kind", sorted(UNOWNED))
def test_a_deploy_keeps_every_route_it_does_not_own_as_it_was(kind: str) -> None:
    other = UNOWNED[kind]
    stable = LiveRoute(STABLE_REV, 100 - other.percent, "stable")
    live = LiveService(
        routes=(stable, other, LiveRoute(STABLE_REV, 0, "candidate")), latest_ready_revision=NEW
    )
    serving = revisions.serving_routes(live)
    assert revisions.declared_traffic(serving, NEW) == [stable, other, LiveRoute(NEW, 0, "candidate")]


@pytest.mark.parametrize("kind", sorted(k for k, r in UNOWNED.items() if r.tag and not r.percent))
def test_adopting_an_untagged_service_keeps_its_tagged_routes(kind: str) -> None:
    other = UNOWNED[kind]
    live = LiveService(routes=(LiveRoute(STABLE_REV, 100), other), latest_ready_revision=STABLE_REV)
    assert revisions.serving_routes(live) == (LiveRoute(STABLE_REV, 100, "stable"), other)


@pytest.mark.parametrize(
    "routes",
    [
        (LiveRoute(STABLE_REV, 50), LiveRoute(OLDER, 50)),  # two serving, neither stable
        (LiveRoute(STABLE_REV, 99), LiveRoute(OLDER, 1, "debug")),  # an operator's share, no stable
        (LiveRoute("", 100),),  # LATEST, no named revision to tag
    ],
)
def test_a_split_without_stable_that_cannot_be_adopted_is_refused_naming_the_fix(
    routes: tuple[Any, ...],
) -> None:
    with pytest.raises(revisions.LiveTrafficError) as refused:
        revisions.serving_routes(LiveService(routes=routes, latest_ready_revision=STABLE_REV))
    assert "--set-tags stable=REVISION" in str(refused.value)
    assert "with no revision tagged 'stable'" in str(refused.value)


@pytest.mark.parametrize(("share", "kept"), [(0, False), (1, True), (50, True)])
def test_a_replaced_candidate_keeps_its_share_untagged_from_one_percent_on(share: int, kept: bool) -> None:
    routes = (LiveRoute(STABLE_REV, 100 - share, "stable"), LiveRoute(OLDER, share, "candidate"))
    declared = revisions.declared_traffic(routes, NEW)
    expected = [routes[0], *([LiveRoute(OLDER, share)] if kept else []), LiveRoute(NEW, 0, "candidate")]
    assert declared == expected


def test_redeploying_the_candidate_declares_the_split_unchanged() -> None:
    routes = (LiveRoute(STABLE_REV, 90, "stable"), LiveRoute(NEW, 10, "candidate"), UNOWNED["pull request"])
    assert revisions.declared_traffic(routes, NEW) == list(routes)


def test_a_first_deploy_serves_the_revision_as_stable_and_candidate() -> None:
    assert revisions.serving_routes(None) is None
    assert revisions.declared_traffic(None, NEW) == [
        LiveRoute(NEW, 100, "stable"),
        LiveRoute(NEW, 0, "candidate"),
    ]
