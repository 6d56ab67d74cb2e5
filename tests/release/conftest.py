"""The fake Cloud Run, real catalog servers standing for its revisions, and the edge between them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import grpc
import pytest
from google.cloud import run_v2

from contract.release import CANDIDATE, STABLE
from release.cloudrun import CloudRun, ServiceRef, connect
from release.monitoring import MonitoringCallCounts
from release.monitoring import connect as connect_monitoring
from release.traffic import Route
from service.catalog_file import load_catalog
from service.store import CatalogStore
from tests.release import fake_monitoring
from tests.release.fake_monitoring import FakeMonitoring
from tests.release.fake_run import FakeCloudRun, serve
from tests.servers import InProcessServer, in_process

REF = ServiceRef(project="my-gcp-project-prod", region="us-central1", service="catalog-grpc")
OLD = "catalog-grpc-0ld0ld0ld0"
NEW = "catalog-grpc-4e74e74e74"
CALLS_METRIC = "workload.googleapis.com/catalog.server.calls"


def template(revision: str, image: str = "") -> run_v2.RevisionTemplate:
    """A revision template like the program's: one container, by digest."""
    image = image or f"us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:{revision[-10:]:0>64}"
    return run_v2.RevisionTemplate(revision=revision, containers=[run_v2.Container(image=image)])


@dataclass
class Edge:
    """Cloud Run's front end for the tests: a tag URL reaches the local server of the revision it names.

    `servers` maps a revision to its server in every region, or (region, revision) to the one in that region.
    """

    fake: FakeCloudRun
    servers: dict[str | tuple[str, str], InProcessServer] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)

    def __call__(self, uri: str) -> grpc.Channel:
        host = uri.removeprefix("https://")
        tag, service_host = host.split("---", 1)
        # SERVICE-NUMBER.REGION.run.app, as fake_run.service_uri makes it.
        region = service_host.split(".")[1]
        revision = self.fake.revision_of(ref_in(region).path, tag)
        self.opened.append(f"{tag}->{revision}" if region == REF.region else f"{region}:{tag}->{revision}")
        server = self.servers.get((region, revision)) or self.servers[revision]
        return grpc.insecure_channel(server.target)


def ref_in(region: str) -> ServiceRef:
    """The stack's service in `region`: the same name in every region."""
    return ServiceRef(project=REF.project, region=region, service=REF.service)


@pytest.fixture(scope="session")
def catalog() -> CatalogStore:
    return load_catalog()


@pytest.fixture
def fake() -> FakeCloudRun:
    fake = FakeCloudRun()
    # A stack deployed before: OLD serves everything; `pulumi up` just deployed NEW as the candidate.
    fake.deploy(REF.path, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    fake.deploy(REF.path, template(NEW), [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    return fake


@pytest.fixture
def api(fake: FakeCloudRun) -> Iterator[str]:
    with serve(fake) as address:
        yield address


@pytest.fixture
def run(api: str) -> CloudRun:
    """The real Admin API client, pointed at the fake."""
    return CloudRun(connect(api, insecure=True), REF, timeout=10)


@pytest.fixture
def servers() -> Iterator[Callable[..., InProcessServer]]:
    """Start a real catalog server (with `store`, or none: never SERVING); stopped after the test."""
    with ExitStack() as stack:

        def start(store: CatalogStore | None) -> InProcessServer:
            return stack.enter_context(in_process(store=store))

        yield start


@pytest.fixture
def edge(fake: FakeCloudRun) -> Edge:
    return Edge(fake)


@pytest.fixture
def monitoring() -> FakeMonitoring:
    """Cloud Monitoring with the stack's call counter and no points yet."""
    return FakeMonitoring(project=REF.project, metric_type=CALLS_METRIC, service=REF.service)


@pytest.fixture
def monitoring_api(monitoring: FakeMonitoring) -> Iterator[str]:
    with fake_monitoring.serve(monitoring) as address:
        yield address


@pytest.fixture
def counts(monitoring_api: str) -> MonitoringCallCounts:
    """The real Monitoring client, pointed at the fake."""
    return MonitoringCallCounts(connect_monitoring(monitoring_api, insecure=True), REF.project, CALLS_METRIC)


@dataclass
class Drill:
    """Everything a release drill uses: both fakes, their addresses, the real clients, servers, the edge."""

    api: str
    run: CloudRun
    fake: FakeCloudRun
    edge: Edge
    servers: Callable[..., InProcessServer]
    catalog: CatalogStore
    monitoring_api: str
    monitoring: FakeMonitoring
    counts: MonitoringCallCounts


@pytest.fixture
def drill(  # noqa: PLR0917 (the fixtures it bundles, so that each drill takes one)
    api: str,
    run: CloudRun,
    fake: FakeCloudRun,
    edge: Edge,
    servers: Callable[..., InProcessServer],
    catalog: CatalogStore,
    monitoring_api: str,
    monitoring: FakeMonitoring,
    counts: MonitoringCallCounts,
) -> Drill:
    return Drill(api, run, fake, edge, servers, catalog, monitoring_api, monitoring, counts)
