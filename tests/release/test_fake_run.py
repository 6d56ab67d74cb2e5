"""The fake Cloud Run refuses what Cloud Run refuses, so the release tests cannot pass on bad writes."""

from __future__ import annotations

import pytest

from contract.release import CANDIDATE, STABLE
from release.cloudrun import CloudRun, CloudRunError
from release.traffic import Route
from tests.release.conftest import NEW, OLD, REF, template
from tests.release.fake_run import FakeCloudRun


def test_traffic_must_add_up_to_100(run: CloudRun) -> None:
    with pytest.raises(CloudRunError, match="add up to 100"):
        run.set_traffic(run.get(), [Route(OLD, 90, STABLE), Route(NEW, 0, CANDIDATE)])


def test_tags_are_unique(run: CloudRun) -> None:
    with pytest.raises(CloudRunError, match="tags repeat"):
        run.set_traffic(run.get(), [Route(OLD, 100, STABLE), Route(NEW, 0, STABLE)])


def test_a_stale_etag_is_refused(run: CloudRun, fake: FakeCloudRun) -> None:
    read = run.get()
    fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    with pytest.raises(CloudRunError, match="changed while this ran"):
        run.set_traffic(read, [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    assert fake.routes(REF.path) == [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_a_revision_name_is_used_once_per_configuration(run: CloudRun, fake: FakeCloudRun) -> None:
    with pytest.raises(CloudRunError, match="different configuration already exists"):
        run.set_template(run.get(), template(NEW, image="elsewhere@sha256:" + "0" * 64))
    # The same name and configuration makes no new revision and is accepted.
    before = dict(fake.revisions)
    run.set_template(run.get(), template(NEW))
    assert fake.revisions == before


def test_tag_urls_are_the_services_host_behind_the_tag(run: CloudRun) -> None:
    statuses = {status.tag: status.uri for status in run.get().traffic_statuses}
    assert statuses[CANDIDATE] == "https://candidate---catalog-grpc-123456789012.us-central1.run.app"


def test_a_missing_service_is_named(api: str) -> None:
    from release.cloudrun import ServiceRef, connect  # noqa: PLC0415

    missing = CloudRun(connect(api, insecure=True), ServiceRef("p-123456", "us-central1", "nope"), timeout=5)
    with pytest.raises(CloudRunError, match="does not exist: deploy it with `pulumi up` first"):
        missing.get()


def test_a_write_returns_once_cloud_run_has_rolled_it_out(api: str, fake: FakeCloudRun) -> None:
    from release.cloudrun import connect  # noqa: PLC0415

    fake.reconciling_reads = 3
    run = CloudRun(connect(api, insecure=True), REF, timeout=10, poll_seconds=0)
    written = run.set_traffic(run.get(), [Route(OLD, 50, STABLE), Route(NEW, 50, CANDIDATE)])
    assert not written.reconciling
    assert written.observed_generation == written.generation
    assert fake.routes(REF.path) == [Route(OLD, 50, STABLE), Route(NEW, 50, CANDIDATE)]


def test_a_rollout_that_never_ends_is_reported(api: str, fake: FakeCloudRun) -> None:
    from release.cloudrun import connect  # noqa: PLC0415

    fake.reconciling_reads = 10_000
    run = CloudRun(connect(api, insecure=True), REF, timeout=0.2, poll_seconds=0.05)
    with pytest.raises(CloudRunError, match=r"not done after 0.2 s"):
        run.set_traffic(run.get(), [Route(OLD, 50, STABLE), Route(NEW, 50, CANDIDATE)])
