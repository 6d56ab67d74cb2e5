"""A domain stack's release: the services admit only the load balancer, so every check goes through the
front door, with the header that routes to each region's candidate (infra/catalog_infra/front_door.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from contract.release import CANDIDATE, PREVIOUS, STABLE
from release.cli import EXIT_CHECK_FAILED, EXIT_OK
from release.traffic import Route
from tests.release.conftest import NEW, OLD, REF, Drill, template
from tests.release.fake_front_door import DOMAIN_URL, HEADER, BehindFrontDoor, FakeFrontDoor, serve
from tests.release.test_regions import EU, EU_PATH, plan, run_cli

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture
def door(drill: Drill) -> Iterator[tuple[FakeFrontDoor, BehindFrontDoor]]:
    """Two regions (OLD stable, NEW the candidate) behind the front door; run.app URLs refused."""
    drill.fake.deploy(EU_PATH, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    drill.fake.deploy(EU_PATH, template(NEW), [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill.fake.writes.clear()
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    front = FakeFrontDoor(drill.edge, home=REF.region, regions=(REF.region, EU))
    with serve(front) as address:
        yield front, BehindFrontDoor(address)


def domain_plan(front_door: bool = True) -> str:
    document = json.loads(plan())
    document["audience"] = f"//run.googleapis.com/projects/{REF.project}/services/{REF.service}"
    document["frontDoor"] = {"url": DOMAIN_URL, "candidateHeader": HEADER} if front_door else None
    return json.dumps(document)


def promote(drill: Drill, channels: BehindFrontDoor, plan_text: str) -> tuple[int, str, str]:
    argv = ["promote", "--plan", "-", "--api-endpoint", drill.api, "--insecure-api", "--ready-timeout", "0"]
    argv += ["--monitoring-endpoint", drill.monitoring_api]
    return run_cli(argv, channels, plan_text)  # type: ignore[arg-type]


def test_a_domain_stack_is_released_through_the_front_door(
    drill: Drill, door: tuple[FakeFrontDoor, BehindFrontDoor]
) -> None:
    front, channels = door
    code, _, err = promote(drill, channels, domain_plan())
    assert code == EXIT_OK, err
    for path in (REF.path, EU_PATH):
        assert drill.fake.routes(path) == [
            Route(NEW, 100, STABLE),
            Route(NEW, 0, CANDIDATE),
            Route(OLD, 0, PREVIOUS),
        ]
    # Every check went to the domain, none to a run.app URL, and each region's header reached its candidate.
    assert channels.refused == []
    checked = {(region, revision) for region, revision, method in front.routed if method == HEALTH_CHECK}
    assert checked == {(REF.region, NEW), (EU, NEW)}
    assert f"{EU}: candidate {NEW} at {DOMAIN_URL} ({HEADER}: {EU})" in err


def test_a_broken_candidate_in_one_region_is_caught_through_the_front_door(
    drill: Drill, door: tuple[FakeFrontDoor, BehindFrontDoor]
) -> None:
    _, channels = door
    drill.edge.servers[(EU, NEW)] = drill.servers(None)  # never SERVING in europe-west1
    code, _, err = promote(drill, channels, domain_plan())
    assert code == EXIT_CHECK_FAILED
    assert err.splitlines()[-1].startswith(f"release of {NEW} failed in {EU}: check ready at 0%")
    for path in (REF.path, EU_PATH):
        assert drill.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_without_the_route_the_tag_urls_are_refused_and_no_release_can_pass(
    drill: Drill, door: tuple[FakeFrontDoor, BehindFrontDoor]
) -> None:
    # The release as it was before the front door's candidate route: the checks go to run.app tag URLs,
    # which the load-balancer-only ingress refuses, so even a good candidate fails and is rolled back.
    _, channels = door
    code, _, err = promote(drill, channels, domain_plan(front_door=False))
    assert code == EXIT_CHECK_FAILED
    assert "check ready at 0%" in err.splitlines()[-1]
    assert channels.refused
    assert all("---" in uri for uri in channels.refused)
    assert drill.fake.revision_of(REF.path, STABLE) == OLD


@pytest.mark.parametrize(
    "front_door",
    [{"url": "http://catalog.example.com", "candidateHeader": HEADER}, {"url": DOMAIN_URL}, "yes"],
)
def test_a_bad_front_door_in_the_plan_is_refused(
    drill: Drill, door: tuple[FakeFrontDoor, BehindFrontDoor], front_door: object
) -> None:
    _, channels = door
    document = json.loads(domain_plan())
    document["frontDoor"] = front_door
    with pytest.raises(SystemExit) as exit_:
        promote(drill, channels, json.dumps(document))
    assert exit_.value.code == 2
    assert drill.fake.writes == []
