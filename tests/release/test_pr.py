"""Pull-request revisions: tagged pr-N at 0%, checked, the program's template and split left as they were."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contract import cloudrun
from contract.release import CANDIDATE, STABLE, pr_tag
from release import pr
from release.cloudrun import CloudRun, CloudRunError
from release.gates import Gate, ReadyGate, SmokeGate
from release.traffic import Route, TrafficError
from service.store import CatalogStore
from tests.release.conftest import NEW, OLD, REF, Edge
from tests.release.fake_run import FakeCloudRun
from tests.servers import InProcessServer

IMAGE = "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:" + "7" * 64
StartServer = Callable[[CatalogStore | None], InProcessServer]


def checks(edge: Edge) -> list[Gate]:
    return [ReadyGate(edge, timeout=1, call_timeout=2, sleep=lambda _: None), SmokeGate(edge, call_timeout=5)]


def test_a_pull_request_gets_a_tagged_revision_and_nothing_else_changes(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    before = fake.services[REF.path]
    revision = pr.pr_revision_name(REF.service, 42, IMAGE)
    edge.servers = {revision: servers(catalog)}

    outcome = pr.deploy(run, 42, IMAGE, checks(edge), log=lambda _: None)

    assert outcome.ok, outcome.line
    assert outcome.line == "https://pr-42---catalog-grpc-123456789012.us-central1.run.app"
    after = fake.services[REF.path]
    assert fake.routes(REF.path) == [
        Route(OLD, 100, STABLE),
        Route(NEW, 0, CANDIDATE),
        Route(revision, 0, "pr-42"),
    ]
    # The program's template is back, and its revision is the latest again: a refresh finds no drift.
    assert after.template == before.template
    assert after.latest_created_revision == NEW
    assert fake.revisions[f"{REF.path}/revisions/{revision}"].containers[0].image == IMAGE
    assert edge.opened == [f"pr-42->{revision}", f"pr-42->{revision}"]


def test_a_new_push_moves_the_tag_to_the_new_build(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    second = IMAGE.replace("7" * 64, "8" * 64)
    edge.servers = {
        pr.pr_revision_name(REF.service, 42, image): servers(catalog) for image in (IMAGE, second)
    }
    assert pr.deploy(run, 42, IMAGE, checks(edge), log=lambda _: None).ok
    assert pr.deploy(run, 42, second, checks(edge), log=lambda _: None).ok
    assert fake.revision_of(REF.path, "pr-42") == pr.pr_revision_name(REF.service, 42, second)
    assert [r.tag for r in fake.routes(REF.path)] == [STABLE, CANDIDATE, "pr-42"]


def test_a_broken_pull_request_build_fails_and_keeps_its_tag(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer
) -> None:
    edge.servers = {pr.pr_revision_name(REF.service, 7, IMAGE): servers(None)}
    outcome = pr.deploy(run, 7, IMAGE, checks(edge), log=lambda _: None)
    assert not outcome.ok
    assert outcome.line.startswith("pull request 7: check ready failed on https://pr-7---")
    assert fake.routes(REF.path)[:2] == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_closing_the_pull_request_removes_its_tag(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    edge.servers = {pr.pr_revision_name(REF.service, 42, IMAGE): servers(catalog)}
    assert pr.deploy(run, 42, IMAGE, checks(edge), log=lambda _: None).ok
    assert pr.remove(run, 42).ok
    assert fake.routes(REF.path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]
    again = pr.remove(run, 42)
    assert again.ok
    assert "nothing to remove" in again.line


def test_a_tag_with_traffic_is_not_removed(run: CloudRun, fake: FakeCloudRun) -> None:
    run.set_traffic(run.get(), [Route(OLD, 90, STABLE), Route(NEW, 0, CANDIDATE), Route(NEW, 10, "pr-3")])
    with pytest.raises(TrafficError, match="serves 10%"):
        pr.remove(run, 3)


def test_images_must_be_pinned_by_digest(run: CloudRun) -> None:
    with pytest.raises(ValueError, match="by digest"):
        pr.deploy(run, 1, "us-central1-docker.pkg.dev/p/r/i:pr-1", [], log=lambda _: None)


def test_pr_revision_names_start_with_the_service_and_differ_per_build() -> None:
    first = pr.pr_revision_name("catalog-grpc", 42, IMAGE)
    assert first.startswith("catalog-grpc-pr42-")
    assert first != pr.pr_revision_name("catalog-grpc", 42, IMAGE.replace("7", "8"))


@pytest.mark.parametrize("number", [1, 99_999_999])
def test_pr_revision_names_and_tags_pass_cloud_runs_name_rules(number: int) -> None:
    # The longest service name config allows (21 characters) and a large pull-request number.
    service = "c" * 21
    assert cloudrun.revision_name_problems(service, pr.pr_revision_name(service, number, IMAGE)) == []
    assert cloudrun.tag_problems(pr_tag(number)) == []


def test_a_build_that_never_starts_fails_and_the_template_is_put_back(
    run: CloudRun, fake: FakeCloudRun
) -> None:
    before = fake.services[REF.path].template
    fake.failing_images.add(IMAGE)
    with pytest.raises(CloudRunError, match="is not ready and cannot serve traffic"):
        pr.deploy(run, 9, IMAGE, [], log=lambda _: None)
    assert fake.services[REF.path].template == before
    assert fake.routes(REF.path)[:2] == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]
