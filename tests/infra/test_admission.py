"""Every resource the committed stacks and a matrix of configurations declare passes the admission model,
and each rule catches a declaration that breaks it (tests/infra/admission.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from contract import cloudrun
from tests.infra.admission import RULES, admit
from tests.infra.harness import ACCOUNT, NEG, PROJECT, SERVICE, URL_MAP, Deployment, recorded
from tests.infra.harness import stack_config as committed

DOMAIN = "catalog.example.com"
THREE_REGIONS = ["us-central1", "europe-west1", "asia-northeast1"]

# (name, stack, overrides): the committed stacks as they are, then the settings that change what is declared.
MATRIX: list[tuple[str, str, dict[str, object]]] = [
    ("dev", "dev", {}),
    ("prod", "prod", {}),
    ("prod-domain", "prod", {"domain": DOMAIN}),
    (
        "prod-domain-three-regions-invokers",
        "prod",
        {
            "domain": DOMAIN,
            "regions": THREE_REGIONS,
            "invokers": ["group:catalog-clients@example.com"],
            "deniedIpRanges": ["203.0.113.0/24"],
        },
    ),
    ("prod-catalog-file", "prod", {"catalogFile": "service/data/products.json"}),
    ("prod-two-regions", "prod", {"regions": ["us-central1", "europe-west1"]}),
    ("dev-embedded-catalog", "dev", {"catalogFile": ""}),
    ("dev-public-by-binding", "dev", {"invokerIamDisabled": False, "allowUnauthenticated": True}),
    (
        "dev-domain-regions-no-pr",
        "dev",
        {"domain": DOMAIN, "prRevisions": False, "regions": THREE_REGIONS, "minInstances": 1},
    ),
    ("prod-small-cpu", "prod", {"cpu": "0.5", "memory": "512Mi", "concurrency": 1}),
    ("prod-pr-revisions", "prod", {"prRevisions": True}),
]


def _deploy(name: str) -> Deployment:
    """A matrix entry's deployment, shared (the harness records it once): read it, do not change it."""
    _, stack, overrides = next(entry for entry in MATRIX if entry[0] == name)
    config = {**committed(stack), **{f"{PROJECT}:{key}": value for key, value in overrides.items()}}
    return recorded(stack, config=config)


def deployment(name: str) -> Deployment:
    """A fresh copy of a matrix entry's deployment (what it declared and exported), to break at will."""
    found = _deploy(name)
    return Deployment(copy.deepcopy(found.declared), outputs=copy.deepcopy(found.outputs))


@pytest.mark.parametrize("name", [entry[0] for entry in MATRIX])
def test_every_declared_resource_passes(name: str) -> None:
    assert admit(deployment(name)) == {}


def test_every_rule_has_its_source() -> None:
    for rule in RULES:
        assert "cloud.google.com/" in rule.source or ".go" in rule.source, rule.name


def test_the_matrix_declares_what_the_rules_are_about() -> None:
    # A rule with nothing to check would pass by checking nothing.
    declared = {name: _deploy(name) for name, _, _ in MATRIX}
    assert any(d.all(NEG) for d in declared.values())
    assert any("volumes" in s.inputs["template"] for d in declared.values() for s in d.all(SERVICE))
    assert any("prDeployerServiceAccount" in d.outputs for d in declared.values())
    assert any(d.outputs["release"]["frontDoor"] for d in declared.values())
    assert all(s.inputs.get("launchStage") == "BETA" for d in declared.values() for s in d.all(SERVICE))


# ---- Each rule catches a declaration that breaks it ----


def service(found: Deployment, index: int = 0) -> dict[str, Any]:
    inputs: dict[str, Any] = found.all(SERVICE)[index].inputs
    return inputs


def container(found: Deployment) -> dict[str, Any]:
    first: dict[str, Any] = service(found)["template"]["containers"][0]
    return first


def _without_launch_stage(found: Deployment) -> None:
    del service(found)["launchStage"]


def _ga_launch_stage(found: Deployment) -> None:
    service(found)["launchStage"] = "GA"


def _timeout_equal_to_period(found: Deployment) -> None:
    probe = container(found)["startupProbe"]
    probe["timeoutSeconds"] = probe["periodSeconds"]


def _startup_window_too_long(found: Deployment) -> None:
    container(found)["startupProbe"]["failureThreshold"] = 121


def _default_timeout_above_a_short_period(found: Deployment) -> None:
    probe = container(found)["livenessProbe"]
    probe["periodSeconds"] = 1
    del probe["timeoutSeconds"]


def _long_service_name(found: Deployment) -> None:
    service(found)["name"] = "c" * 50


def _revision_of_another_service(found: Deployment) -> None:
    service(found)["template"]["revision"] = "other-1234567890"


def _uppercase_tag(found: Deployment) -> None:
    service(found)["traffics"][-1]["tag"] = "Candidate"


def _short_account_id(found: Deployment) -> None:
    found.all(ACCOUNT)[0].inputs["accountId"] = "run"


def _too_much_memory(found: Deployment) -> None:
    container(found)["resources"]["limits"]["memory"] = "8Gi"


def _small_cpu_with_concurrency(found: Deployment) -> None:
    container(found)["resources"]["limits"] = {"cpu": "0.5", "memory": "512Mi"}


def _volume_without_gen2(found: Deployment) -> None:
    del service(found)["template"]["executionEnvironment"]


def _gen2_with_little_memory(found: Deployment) -> None:
    container(found)["resources"]["limits"]["memory"] = "256Mi"


def _traffic_short_of_100(found: Deployment) -> None:
    service(found)["traffics"][0]["percent"] = 90


def _internal_only_behind_front_door(found: Deployment) -> None:
    service(found)["ingress"] = "INGRESS_TRAFFIC_INTERNAL_ONLY"


def _release_through_tag_urls(found: Deployment) -> None:
    # The release as it was before the front door had a candidate route: run.app tag URLs.
    found.outputs["release"]["frontDoor"] = None


def _load_balancer_only_without_front_door(found: Deployment) -> None:
    service(found)["ingress"] = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


def _candidate_route_to_serving_neg(found: Deployment) -> None:
    for group in found.all(NEG):
        group.inputs["cloudRun"].pop("tag", None)


def _no_candidate_route(found: Deployment) -> None:
    del found.one(URL_MAP).inputs["pathMatchers"][0]["routeRules"][0]


def _audience_not_listed(found: Deployment) -> None:
    service(found)["customAudiences"] = []


def _no_audience_in_the_plan(found: Deployment) -> None:
    found.outputs["release"]["audience"] = None


@dataclass(frozen=True)
class Broken:
    """A matrix entry, a change that breaks one rule, and the rule (with a phrase) that must catch it."""

    entry: str
    change: Callable[[Deployment], None]
    rule: str
    says: str


BROKEN = [
    Broken("prod", _without_launch_stage, "launch-stage", "launchStage is BETA or less stable, and it is GA"),
    Broken("dev", _ga_launch_stage, "launch-stage", "readiness probes are a preview feature"),
    Broken("prod", _timeout_equal_to_period, "probe-timings", "must be smaller than periodSeconds"),
    Broken("prod", _startup_window_too_long, "probe-timings", "over the 240 s a startup probe may take"),
    Broken(
        "prod", _default_timeout_above_a_short_period, "probe-timings", "timeoutSeconds 1 must be smaller"
    ),
    Broken("prod", _long_service_name, "names", "at most 49 characters"),
    Broken("prod", _revision_of_another_service, "names", "must start with the service's name"),
    Broken("prod", _uppercase_tag, "names", "tag 'Candidate'"),
    Broken("prod", _short_account_id, "names", "service account id 'run'"),
    Broken("prod", _too_much_memory, "resources", "Cloud Run allows 128Mi to 4Gi"),
    Broken("prod", _small_cpu_with_concurrency, "resources", "only with concurrency 1"),
    Broken("dev", _volume_without_gen2, "execution-environment", "EXECUTION_ENVIRONMENT_GEN2"),
    Broken("dev", _gen2_with_little_memory, "execution-environment", "at least 512Mi"),
    Broken("prod", _traffic_short_of_100, "traffic", "add up to 90"),
    Broken("prod-domain", _internal_only_behind_front_door, "ingress", "the load balancer"),
    Broken("prod-domain", _release_through_tag_urls, "ingress", "the release (the candidate's tag URL"),
    Broken("prod", _load_balancer_only_without_front_door, "ingress", "callers (its run.app URL)"),
    Broken("dev", _load_balancer_only_without_front_door, "ingress", "pull-request revisions"),
    Broken(
        "prod-domain-three-regions-invokers",
        _candidate_route_to_serving_neg,
        "release-route",
        "candidate tag",
    ),
    Broken("prod-domain-three-regions-invokers", _no_candidate_route, "release-route", "routes to []"),
    Broken("prod", _audience_not_listed, "audiences", "not in customAudiences"),
    Broken("dev", _no_audience_in_the_plan, "audiences", "names no audience"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[f"{case.rule}:{case.change.__name__}" for case in BROKEN])
def test_a_declaration_that_breaks_a_rule_is_caught(case: Broken) -> None:
    found = deployment(case.entry)
    case.change(found)
    problems = admit(found)
    assert case.rule in problems, problems
    assert any(case.says in problem for problem in problems[case.rule]), problems[case.rule]


def test_every_rule_has_a_case_that_breaks_it() -> None:
    assert {rule.name for rule in RULES} == {case.rule for case in BROKEN}


# ---- The rules' edges, on the contract's functions alone ----


@pytest.mark.parametrize(
    ("period", "timeout", "ok"),
    [(2, 1, True), (1, 1, False), (1, 2, False), (240, 239, True)],
)
def test_a_probe_timeout_must_be_smaller_than_its_period(period: int, timeout: int, ok: bool) -> None:
    probe = {"periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": 1}
    assert (cloudrun.probe_problems("startupProbe", probe) == []) is ok


@pytest.mark.parametrize(("threshold", "ok"), [(119, True), (120, True), (121, False)])
def test_a_startup_probe_passes_within_240_seconds(threshold: int, ok: bool) -> None:
    probe = {"periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": threshold}
    assert (cloudrun.probe_problems("startupProbe", probe) == []) is ok


@pytest.mark.parametrize(("name", "ok"), [("a" * 49, True), ("a" * 50, False), ("a-", False), ("1a", False)])
def test_service_names(name: str, ok: bool) -> None:
    assert (cloudrun.service_name_problems(name) == []) is ok


@pytest.mark.parametrize(
    ("account", "ok"), [("a" * 5, False), ("a" * 6, True), ("a" * 30, True), ("a" * 31, False)]
)
def test_account_ids(account: str, ok: bool) -> None:
    assert (cloudrun.account_id_problems(account) == []) is ok


@pytest.mark.parametrize(("length", "ok"), [(63, True), (64, False)])
def test_revision_names_are_dns_labels(length: int, ok: bool) -> None:
    revision = "svc-" + "a" * (length - 4)
    assert (cloudrun.revision_name_problems("svc", revision) == []) is ok


@pytest.mark.parametrize(("concurrency", "ok"), [(1000, True), (1001, False), (0, False)])
def test_concurrency_bounds(concurrency: int, ok: bool) -> None:
    assert (cloudrun.resource_problems("1", "512Mi", concurrency) == []) is ok


@pytest.mark.parametrize(
    ("stage", "ok"), [(None, False), ("GA", False), ("BETA", True), ("ALPHA", True), ("PREVIEW", False)]
)
def test_readiness_probes_need_beta_or_less(stage: str | None, ok: bool) -> None:
    service: dict[str, Any] = {"template": {"containers": [{"readinessProbe": {}}]}}
    if stage:
        service["launchStage"] = stage
    assert (cloudrun.launch_stage_problems(service) == []) is ok
    assert cloudrun.required_launch_stage(service) == "BETA"
    assert cloudrun.required_launch_stage({"template": {"containers": [{}]}}) == "GA"


def test_breaking_a_copy_leaves_the_matrix_entry_as_declared() -> None:
    # Each case starts from the deployment as the program declared it, not from another case's breakage.
    found = deployment("prod")
    _without_launch_stage(found)
    assert "launchStage" in service(_deploy("prod"))
