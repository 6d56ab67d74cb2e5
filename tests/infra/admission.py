"""A model of Cloud Run's admission rules: what the platform refuses although Pulumi's mocks accept it.

One table (RULES), each rule with its source. A rule reads what one run of the program declared and exported
(harness.Deployment) and returns one line per problem. The rules about a service alone are
contract/cloudrun.py's functions, which the policy pack (policy/catalog_policy/cloudrun.py) calls too; the
rules that need the whole deployment (who must reach which URL through which ingress, which audience the
release mints) are here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from contract import cloudrun
from tests.infra.harness import ACCOUNT, BACKEND, NEG, SERVICE, URL_MAP, Declared, Deployment

CANDIDATE = "candidate"
SOURCE_TRAFFIC = (
    "cloud.google.com/run/docs/reference/rest/v2/projects.locations.services#TrafficTarget (the percents of "
    "a service's traffic add up to 100; a tag names one target)"
)
SOURCE_FRONT_DOOR = (
    "cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts (a serverless NEG names a Cloud Run "
    "service and optionally a tag; a URL map routes by header with routeRules and headerMatches)"
)


@dataclass(frozen=True)
class Rule:
    """One rule Cloud Run enforces: its name, its source, and the check over a deployment."""

    name: str
    source: str
    check: Callable[[Deployment], list[str]]


def services(deployment: Deployment) -> list[Declared]:
    return deployment.all(SERVICE)


def _per_service(rule: Callable[[Mapping[str, Any]], list[str]]) -> Callable[[Deployment], list[str]]:
    def check(deployment: Deployment) -> list[str]:
        return [f"{s.name}: {problem}" for s in services(deployment) for problem in rule(s.inputs)]

    return check


def _names(deployment: Deployment) -> list[str]:
    problems = []
    for service in services(deployment):
        name = service.inputs["name"]
        problems += [f"{service.name}: {p}" for p in cloudrun.service_name_problems(name)]
        revision = service.inputs["template"].get("revision", "")
        problems += [f"{service.name}: {p}" for p in cloudrun.revision_name_problems(name, revision)]
        for target in service.inputs.get("traffics", []):
            if target.get("tag"):
                problems += [f"{service.name}: {p}" for p in cloudrun.tag_problems(target["tag"])]
    for account in deployment.all(ACCOUNT):
        problems += [
            f"{account.name}: {p}" for p in cloudrun.account_id_problems(account.inputs["accountId"])
        ]
    return problems


def _traffic(deployment: Deployment) -> list[str]:
    problems = []
    for service in services(deployment):
        targets = service.inputs.get("traffics", [])
        total = sum(target.get("percent", 0) for target in targets)
        if targets and total != 100:
            problems.append(f"{service.name}: traffic percents add up to {total:g}, not 100")
        tags = [target["tag"] for target in targets if target.get("tag")]
        if len(tags) != len(set(tags)):
            problems.append(f"{service.name}: tags {tags} repeat")
    return problems


def _plan(deployment: Deployment) -> dict[str, Any]:
    plan: dict[str, Any] = deployment.outputs["release"]
    return plan


def _neg_services(deployment: Deployment, tag: str | None) -> set[tuple[str, str]]:
    """(region, service name) of every serverless NEG on `tag` (None: on the service itself)."""
    return {
        (group.inputs["region"], group.inputs["cloudRun"]["service"])
        for group in deployment.all(NEG)
        if group.inputs["cloudRun"].get("tag") == tag
    }


def _reachers(deployment: Deployment, service: Declared) -> Iterator[tuple[str, str]]:
    """(who, from where) must reach the service: callers, the load balancer, the release, pull requests."""
    plan = _plan(deployment)
    key = (service.inputs["location"], service.inputs["name"])
    behind_door = key in _neg_services(deployment, None)
    if behind_door:
        yield "the load balancer (the front door's NEG)", cloudrun.LOAD_BALANCER
        yield "callers (through the front door)", cloudrun.LOAD_BALANCER
    else:
        yield "callers (its run.app URL)", cloudrun.INTERNET
    if plan.get("frontDoor"):
        yield "the release (the front door's candidate route)", cloudrun.LOAD_BALANCER
    else:
        yield "the release (the candidate's tag URL, from the CI runner)", cloudrun.INTERNET
    if "prDeployerServiceAccount" in deployment.outputs and service.inputs["location"] == plan["region"]:
        yield "pull-request revisions (their tag URLs, from the CI runner)", cloudrun.INTERNET


def _ingress(deployment: Deployment) -> list[str]:
    return [
        f"{service.name}: {problem}"
        for service in services(deployment)
        for who, source in _reachers(deployment, service)
        for problem in cloudrun.ingress_problems(service.inputs, who, source)
    ]


def _release_route(deployment: Deployment) -> list[str]:
    """With a front door, each region's candidate is routed by the plan's header, with that region's name."""
    front_door = _plan(deployment).get("frontDoor")
    if not front_door:
        return []
    backends = {b.id: b for b in deployment.all(BACKEND)}
    groups = {g.id: g for g in deployment.all(NEG)}
    routed: dict[str, set[tuple[str, str, str | None]]] = {}
    for url_map in deployment.all(URL_MAP):
        for matcher in url_map.inputs.get("pathMatchers", []):
            for rule in matcher.get("routeRules", []):
                for match in rule.get("matchRules", []):
                    for header in match.get("headerMatches", []):
                        if header.get("headerName") != front_door["candidateHeader"]:
                            continue
                        backend = backends.get(rule.get("service"))
                        targets = [
                            groups[b["group"]] for b in (backend.inputs["backends"] if backend else [])
                        ]
                        routed[header.get("exactMatch", "")] = {
                            (
                                g.inputs["region"],
                                g.inputs["cloudRun"]["service"],
                                g.inputs["cloudRun"].get("tag"),
                            )
                            for g in targets
                        }
    problems = []
    for service in services(deployment):
        region, name = service.inputs["location"], service.inputs["name"]
        reached = sorted(routed.get(region, set()), key=str)
        if reached != [(region, name, CANDIDATE)]:
            header = front_door["candidateHeader"]
            problems.append(
                f"{service.name}: the release sends {header}: {region}, which the URL map routes to "
                f"{reached}, not to {name}'s {CANDIDATE} tag in {region}"
            )
    return problems


def _audiences(deployment: Deployment) -> list[str]:
    audience = _plan(deployment).get("audience")
    if not audience:
        return ["the release plan names no audience: the release would mint a token per URL dialled"]
    return [
        f"{service.name}: {problem}"
        for service in services(deployment)
        for problem in cloudrun.audience_problems(service.inputs, audience)
    ]


RULES = (
    Rule(
        "launch-stage",
        f"{cloudrun.SOURCE_LAUNCH_STAGE}; {cloudrun.SOURCE_READINESS_PREVIEW}",
        _per_service(cloudrun.launch_stage_problems),
    ),
    Rule("probe-timings", cloudrun.SOURCE_PROBE, _per_service(cloudrun.probes_problems)),
    Rule(
        "names",
        "; ".join(
            (
                cloudrun.SOURCE_SERVICE_NAME,
                cloudrun.SOURCE_REVISION_NAME,
                cloudrun.SOURCE_TAG,
                cloudrun.SOURCE_ACCOUNT_ID,
            )
        ),
        _names,
    ),
    Rule("resources", cloudrun.SOURCE_RESOURCES, _per_service(cloudrun.service_resource_problems)),
    Rule(
        "execution-environment",
        cloudrun.SOURCE_EXECUTION_ENVIRONMENT,
        _per_service(cloudrun.execution_environment_problems),
    ),
    Rule("traffic", SOURCE_TRAFFIC, _traffic),
    Rule("ingress", cloudrun.SOURCE_INGRESS, _ingress),
    Rule("release-route", SOURCE_FRONT_DOOR, _release_route),
    Rule("audiences", cloudrun.SOURCE_AUDIENCES, _audiences),
)


def admit(deployment: Deployment) -> dict[str, list[str]]:
    """Each rule's problems with what the deployment declares; {} when Cloud Run would admit all of it."""
    found = {rule.name: rule.check(deployment) for rule in RULES}
    return {name: problems for name, problems in found.items() if problems}
