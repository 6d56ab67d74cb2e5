"""The program and the release command together over the fake Cloud Run: what Pulumi declares is live.

Each `pulumi up` here is the program under mocks, fed the split the fake serves, and its declared service
then written to the fake as the provider would. After a release, a rollback, or nothing at all, the next
`pulumi up` declares exactly what is live: no diff, no traffic moved, nothing brought back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import run_v2

from contract.release import DECISION, DECISION_ANNOTATIONS
from release import rollout
from release.cloudrun import CloudRun, ServiceRef, connect
from release.gates import Candidate, Verdict
from release.traffic import Route
from tests.infra.harness import SERVICE, infra_module, run_program, stack_config
from tests.release.fake_run import FakeCloudRun, serve

REF = ServiceRef(project="my-gcp-project-prod", region="us-central1", service="catalog-grpc")


class Told:
    """A gate that passes or fails as told."""

    name = "told"

    def __init__(self, passes: bool) -> None:
        self.passes = passes

    def check(self, candidate: Candidate) -> Verdict:
        return Verdict(True) if self.passes else Verdict(False, "told to fail")


@pytest.fixture
def fake() -> FakeCloudRun:
    return FakeCloudRun()


@pytest.fixture
def client(fake: FakeCloudRun) -> Iterator[Any]:
    with serve(fake) as address:
        yield connect(address, insecure=True)


def pulumi_up(fake: FakeCloudRun, client: Any, **config: object) -> tuple[str, list[Route]]:
    """Run the prod program on the live split, apply what it declares; its revision and split."""
    live = infra_module("live").read_service(REF.project, REF.region, REF.service, client)
    settings = {**stack_config("prod"), **{f"catalog-grpc:{key}": value for key, value in config.items()}}
    inputs = run_program(settings, stack="prod", live=live).one(SERVICE).inputs
    revision = inputs["template"]["revision"]
    # Numbers come back from the mocks as floats (protobuf Struct).
    declared = [Route(t["revision"], int(t["percent"]), t.get("tag", "")) for t in inputs["traffics"]]
    image = inputs["template"]["containers"][0]["image"]
    template = run_v2.RevisionTemplate(revision=revision, containers=[run_v2.Container(image=image)])
    # The provider's PATCH has no update mask and sends the annotations it knows: those in its state (which
    # holds nothing the release wrote since, CI does not refresh) and those declared. The worst case here:
    # only the declared ones.
    fake.deploy(REF.path, template, declared, annotations=inputs.get("annotations", {}))
    return revision, declared


def test_up_release_up_declares_what_is_live(fake: FakeCloudRun, client: Any) -> None:
    run = CloudRun(client, REF, timeout=10)
    first, _ = pulumi_up(fake, client)
    second, declared = pulumi_up(fake, client, memory="2Gi")
    assert declared == [Route(first, 100, "stable"), Route(second, 0, "candidate")]

    assert rollout.release([run], (10, 50, 100), 0, [Told(passes=True)], log=lambda _: None).ok
    live = fake.routes(REF.path)
    assert live[0] == Route(second, 100, "stable")
    # The next `pulumi up`, nothing changed: the same revision, the split as the release left it.
    again, declared = pulumi_up(fake, client, memory="2Gi")
    assert again == second
    assert declared == live


def test_the_up_after_a_release_patches_the_live_service_and_changes_nothing(
    fake: FakeCloudRun, client: Any
) -> None:
    # What docs/releases.md says of the `traffics` update the first `up` after a release shows: the
    # provider's PATCH sends the existing revision's template and the live split, so Cloud Run creates no
    # revision and moves no traffic.
    run = CloudRun(client, REF, timeout=10)
    pulumi_up(fake, client)
    second, _ = pulumi_up(fake, client, memory="2Gi")
    assert rollout.release([run], (10, 50, 100), 0, [Told(passes=True)], log=lambda _: None).ok
    live, revisions = fake.routes(REF.path), set(fake.revisions)
    again, _ = pulumi_up(fake, client, memory="2Gi")
    assert again == second
    assert set(fake.revisions) == revisions
    assert fake.routes(REF.path) == live


def test_the_up_after_a_release_keeps_its_recorded_decisions(fake: FakeCloudRun, client: Any) -> None:
    run = CloudRun(client, REF, timeout=10)
    pulumi_up(fake, client)
    pulumi_up(fake, client, memory="2Gi")
    assert DECISION not in fake.services[REF.path].annotations  # nothing decided yet: nothing declared
    assert rollout.release([run], (10, 50, 100), 0, [Told(passes=True)], log=lambda _: None).ok
    recorded = {key: fake.services[REF.path].annotations[key] for key in DECISION_ANNOTATIONS}
    assert json.loads(recorded[DECISION])["verdict"] == "released"

    fake.services[REF.path].annotations["ops.example.com/owner"] = "team-catalog"
    live = infra_module("live").read_service(REF.project, REF.region, REF.service, client)
    assert dict(live.annotations) == recorded  # the release's own, and only those
    pulumi_up(fake, client, memory="2Gi")
    assert {key: fake.services[REF.path].annotations[key] for key in DECISION_ANNOTATIONS} == recorded


def test_up_after_a_rollback_brings_nothing_back(fake: FakeCloudRun, client: Any) -> None:
    run = CloudRun(client, REF, timeout=10)
    first, _ = pulumi_up(fake, client)
    second, _ = pulumi_up(fake, client, memory="2Gi")

    assert not rollout.release([run], (10, 50, 100), 0, [Told(passes=False)], log=lambda _: None).ok
    live = fake.routes(REF.path)
    assert live == [Route(first, 100, "stable"), Route(second, 0, "candidate")]
    _, declared = pulumi_up(fake, client, memory="2Gi")
    assert declared == live
    # A fixed build replaces the rolled-back candidate, still at 0%.
    third, declared = pulumi_up(fake, client, memory="1Gi")
    assert declared == [Route(first, 100, "stable"), Route(third, 0, "candidate")]
