"""Release drills against the fake Cloud Run and Cloud Monitoring, with real catalog servers behind the tags.

A good candidate is promoted step by step; one that answers wrongly, one that never becomes ready, one that
breaks at the second step, one whose error ratio rises at the second step and one that gets no calls to
judge are each rolled back: traffic back on the old revision, the command failing with a line that names
the check.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field

import grpc
import pytest
from google.cloud import monitoring_v3

from catalog import catalog_pb2
from contract.release import CANDIDATE, PREVIOUS, STABLE
from release import rollout
from release.cli import EXIT_CHECK_FAILED, EXIT_CLOUD_RUN, EXIT_OK, main
from release.cloudrun import CloudRun
from release.gates import CallCounts, Candidate, ErrorRatioGate, Gate, ReadyGate, SmokeGate, Verdict
from release.traffic import Route, TrafficError
from service.store import CatalogStore
from tests.release.conftest import CALLS_METRIC, NEW, OLD, REF, Drill, Edge, template
from tests.release.fake_monitoring import FakeMonitoring
from tests.release.fake_run import FakeCloudRun
from tests.servers import InProcessServer

StartServer = Callable[[CatalogStore | None], InProcessServer]
STEPS = (10, 50, 100)
# Everything promote takes from a plan, as options.
PROMOTE = ["promote", "--project", REF.project, "--region", REF.region, "--service", REF.service]
PROMOTE += ["--steps", "100", "--pause-seconds", "0", "--calls-metric", CALLS_METRIC]
PROMOTE += ["--max-error-ratio", "0.01", "--min-calls", "0"]


@dataclass
class Clock:
    """Time that passes only when someone sleeps: the ready gate's timeout without the wait."""

    now: float = 1_780_000_000.0  # Unix time: Monitoring's intervals are real timestamps
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class WrongStore(CatalogStore):
    """A catalog that answers GetProduct with another product: a regression in a handler."""

    def get(self, product_id: str) -> bytes | None:
        return _wrong(super().get(product_id))

    def get_by_id_field(self, id_field: bytes) -> bytes | None:
        return _wrong(super().get_by_id_field(id_field))


def _wrong(serialized: bytes | None) -> bytes | None:
    if serialized is None:
        return None
    product = catalog_pb2.Product.FromString(serialized)
    return catalog_pb2.Product(id=product.id, name=product.name + " (wrong)").SerializeToString()


def gates(edge: Edge, clock: Clock, counts: CallCounts | None = None, min_calls: int = 20) -> list[Gate]:
    """Ready and smoke; with `counts`, the error-ratio gate too (1% allowed, 60 s to find evidence)."""
    checks: list[Gate] = [
        ReadyGate(edge, timeout=5, call_timeout=2, sleep=clock.sleep, clock=clock),
        SmokeGate(edge, call_timeout=5),
    ]
    if counts is not None:
        checks.append(
            ErrorRatioGate(
                counts,
                max_ratio=0.01,
                min_calls=min_calls,
                evidence_timeout=60,
                poll_seconds=15,
                sleep=clock.sleep,
                clock=clock,
                log=lambda _: None,
            )
        )
    return checks


@dataclass
class Pauses:
    """The pause between steps, on `clock`; `at[n]` runs at the end of the n-th pause (from 1): traffic the
    candidate served meanwhile, or a fault."""

    clock: Clock = field(default_factory=Clock)
    at: dict[int, Callable[[], object]] = field(default_factory=dict)
    count: int = 0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.clock.sleep(seconds)
        if self.count in self.at:
            self.at[self.count]()


def served(monitoring: FakeMonitoring, clock: Clock, ok: int, failed: int = 0) -> Callable[[], None]:
    """The candidate's calls during a pause, as the server's exported call counter counts them."""

    def record() -> None:
        monitoring.record(clock.now - 1, NEW, "OK", ok)
        if failed:
            monitoring.record(clock.now - 1, NEW, "INTERNAL", failed)

    return record


def written_splits(fake: FakeCloudRun) -> list[list[tuple[str, int, str]]]:
    """Each traffic write's split, as (revision, percent, tag)."""
    return [[(t.revision, t.percent, t.tag) for t in write.service.traffic] for write in fake.writes]


# The writes of a release that fails at its second step: 10%, 50%, then the rollback.
FAILED_AT_50 = [
    [(OLD, 90, STABLE), (NEW, 10, CANDIDATE)],
    [(OLD, 50, STABLE), (NEW, 50, CANDIDATE)],
    [(OLD, 100, STABLE), (NEW, 0, CANDIDATE)],
]


def release_gated(
    drill: Drill, pauses: Pauses, seconds: float = 30, steps: tuple[int, ...] = STEPS, min_calls: int = 20
) -> rollout.Outcome:
    """Healthy catalog servers behind both revisions, released with every gate (the error ratio's too) on
    the pauses' clock."""
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    clock = pauses.clock
    checks = gates(drill.edge, clock, drill.counts, min_calls=min_calls)
    return rollout.release([drill.run], steps, seconds, checks, log=lambda _: None, sleep=pauses, clock=clock)


def test_a_good_candidate_is_promoted_step_by_step(drill: Drill) -> None:
    run, fake, edge, monitoring = drill.run, drill.fake, drill.edge, drill.monitoring
    clock = Clock()
    healthy = served(monitoring, clock, ok=200)
    pauses = Pauses(clock, at={1: healthy, 2: healthy, 3: healthy})
    outcome = release_gated(drill, pauses)

    assert outcome.ok, outcome.line
    assert [split[:2] for split in written_splits(fake)] == [
        [(OLD, 90, STABLE), (NEW, 10, CANDIDATE)],
        [(OLD, 50, STABLE), (NEW, 50, CANDIDATE)],
        [(OLD, 0, STABLE), (NEW, 100, CANDIDATE)],
        [(NEW, 100, STABLE), (NEW, 0, CANDIDATE)],
    ]
    assert fake.routes(REF.path) == [
        Route(NEW, 100, STABLE),
        Route(NEW, 0, CANDIDATE),
        Route(OLD, 0, PREVIOUS),
    ]
    assert pauses.count == 3
    # The error ratio was read at each of the three steps (all calls, then failures), for the candidate.
    assert len(monitoring.requests) == 6
    assert all(f'metric.label.revision = "{NEW}"' in request.filter for request in monitoring.requests)
    assert all(f'metric.type="{CALLS_METRIC}"' in request.filter for request in monitoring.requests)
    # Every check went through the candidate's tag, to the candidate's server.
    assert set(edge.opened) == {f"candidate->{NEW}"}
    # Once released, running it again moves nothing.
    writes = len(fake.writes)
    again = rollout.release([run], STEPS, 30, gates(edge, Clock()), log=lambda _: None, sleep=pauses)
    assert again.ok
    assert "already serves all traffic" in again.line
    assert len(fake.writes) == writes


def assert_rolled_back(fake: FakeCloudRun) -> None:
    assert fake.routes(REF.path)[:2] == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_a_candidate_that_answers_wrongly_never_gets_traffic(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    edge.servers = {
        OLD: servers(catalog),
        NEW: servers(WrongStore.from_products(map(catalog_pb2.Product.FromString, catalog.page("", 0, 50)))),
    }
    outcome = rollout.release([run], STEPS, 30, gates(edge, Clock()), log=lambda _: None, sleep=Pauses())

    assert not outcome.ok
    # The client's own smoke check names the check that failed, and how.
    assert outcome.line.startswith(
        f"release of {NEW} failed in us-central1: check smoke at 0%: get-product: GetProduct("
    )
    assert "differs from the listed product in name" in outcome.line
    assert f"all traffic is back on stable in every region (us-central1 {OLD})" in outcome.line
    assert_rolled_back(fake)
    # It never had a share: the only write is the rollback, which leaves the split as it was.
    assert written_splits(fake) == [[(OLD, 100, STABLE), (NEW, 0, CANDIDATE)]]


def test_a_candidate_that_never_becomes_ready_is_rolled_back(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    edge.servers = {OLD: servers(catalog), NEW: servers(None)}  # never installs a catalog: NOT_SERVING
    clock = Clock()
    outcome = rollout.release([run], STEPS, 30, gates(edge, clock), log=lambda _: None, sleep=Pauses())

    assert not outcome.ok
    assert outcome.line.startswith(
        f"release of {NEW} failed in us-central1: check ready at 0%: catalog.ProductCatalog not SERVING"
    )
    assert "last answer: NOT_SERVING" in outcome.line
    assert sum(clock.slept) >= 5
    assert_rolled_back(fake)


def test_a_candidate_that_breaks_at_the_second_step_is_rolled_back(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    new = servers(catalog)
    edge.servers = {OLD: servers(catalog), NEW: new}
    # At the second step's pause the candidate starts shutting down: NOT_SERVING, then gone.
    pauses = Pauses(at={2: lambda: new.shut_down(0.0)})
    outcome = rollout.release([run], STEPS, 30, gates(edge, Clock()), log=lambda _: None, sleep=pauses)

    assert not outcome.ok
    assert outcome.line.startswith(f"release of {NEW} failed in us-central1: check ready at 50%")
    assert [split[:2] for split in written_splits(fake)] == FAILED_AT_50
    assert_rolled_back(fake)


def test_an_error_ratio_that_rises_at_the_second_step_rolls_back(drill: Drill) -> None:
    fake, monitoring = drill.fake, drill.monitoring
    clock = Clock()
    # Fine at 10%; at 50% 30 of its 200 calls fail, though every smoke check still passes.
    pauses = Pauses(
        clock, at={1: served(monitoring, clock, ok=200), 2: served(monitoring, clock, ok=170, failed=30)}
    )
    outcome = release_gated(drill, pauses, seconds=120)

    assert not outcome.ok
    assert outcome.line.startswith(
        f"release of {NEW} failed in us-central1: check error-ratio at 50%: 30 of 200 calls failed (15.0%) "
        "since it got 50%, above the 1.0% allowed"
    )
    assert [split[:2] for split in written_splits(fake)] == FAILED_AT_50
    assert_rolled_back(fake)
    # The failures were read with the server-side codes only, over the step's own two minutes.
    bad = monitoring.requests[-1]
    assert 'metric.label.grpc_status = one_of("INTERNAL"' in bad.filter
    assert monitoring_v3.ListTimeSeriesRequest.pb(bad).aggregation.alignment_period.seconds == 120


def test_a_step_without_enough_calls_to_judge_is_rolled_back(drill: Drill) -> None:
    """No calls is no evidence: the gate reads again until its evidence timeout, then fails the step."""
    fake, monitoring = drill.fake, drill.monitoring
    clock = Clock()
    pauses = Pauses(clock, at={1: served(monitoring, clock, ok=5)})
    outcome = release_gated(drill, pauses)

    assert not outcome.ok
    assert (
        "check error-ratio at 10%: only 5 calls since it got 10%, fewer than the 20 needed to judge its "
        "error ratio (waited 60 s): no evidence"
    ) in outcome.line
    # Read once, then every 15 s for the 60 s it waited: five reads of both filters.
    assert len(monitoring.requests) == 10
    assert_rolled_back(fake)


def test_a_quiet_service_with_min_calls_0_passes_steps_without_calls(drill: Drill) -> None:
    fake, monitoring = drill.fake, drill.monitoring
    outcome = release_gated(drill, Pauses(), seconds=0, steps=(100,), min_calls=0)
    assert outcome.ok, outcome.line
    assert len(monitoring.requests) == 2  # read once at 100%, nothing to judge, no waiting
    assert fake.revision_of(REF.path, STABLE) == NEW


def test_monitoring_that_cannot_be_read_fails_the_step(drill: Drill) -> None:
    drill.monitoring.fail_with = grpc.StatusCode.PERMISSION_DENIED
    outcome = release_gated(drill, Pauses())
    assert not outcome.ok
    assert (
        f"check error-ratio at 10%: cannot read {CALLS_METRIC} in projects/{REF.project}: 403" in outcome.line
    )
    assert "monitoring.timeSeries.list" in outcome.line
    assert_rolled_back(drill.fake)


def test_a_later_release_of_the_rolled_back_revision_only_retries_it(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    """A second run checks the same candidate again (a retry); it never resurrects traffic on its own."""
    edge.servers = {OLD: servers(catalog), NEW: servers(None)}
    clock = Clock()
    for _ in range(2):
        outcome = rollout.release([run], STEPS, 30, gates(edge, clock), log=lambda _: None, sleep=Pauses())
        assert not outcome.ok
        assert_rolled_back(fake)


def test_an_interrupted_release_resumes_from_its_share(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    edge.servers = {OLD: servers(catalog), NEW: servers(catalog)}
    run.set_traffic(run.get(), [Route(OLD, 50, STABLE), Route(NEW, 50, CANDIDATE)])
    fake.writes.clear()
    outcome = rollout.release([run], STEPS, 0, gates(edge, Clock()), log=lambda _: None)
    assert outcome.ok
    assert [split[:2] for split in written_splits(fake)] == [
        [(OLD, 0, STABLE), (NEW, 100, CANDIDATE)],
        [(NEW, 100, STABLE), (NEW, 0, CANDIDATE)],
    ]


def test_a_first_deploy_has_nothing_to_move(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    fake.writes.clear()
    edge.servers = {NEW: servers(catalog)}
    outcome = rollout.release([run], STEPS, 30, gates(edge, Clock()), log=lambda _: None)
    assert outcome.ok
    assert fake.writes == []


def test_a_broken_first_deploy_fails_without_a_rollback(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer
) -> None:
    fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    fake.writes.clear()
    edge.servers = {NEW: servers(None)}
    outcome = rollout.release([run], STEPS, 30, gates(edge, Clock()), log=lambda _: None)
    assert not outcome.ok
    assert outcome.line.startswith(f"check ready failed in us-central1 on {NEW}, which serves all traffic")
    assert fake.writes == []


def test_a_service_without_release_tags_is_refused(run: CloudRun, fake: FakeCloudRun, edge: Edge) -> None:
    fake.deploy(REF.path, template(NEW), [Route(NEW, 100)])
    with pytest.raises(TrafficError, match="no 'stable' and 'candidate' tags"):
        rollout.release([run], STEPS, 0, [], log=lambda _: None)


def test_rollback_after_a_release_returns_to_the_previous_revision(
    run: CloudRun, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    edge.servers = {OLD: servers(catalog), NEW: servers(catalog)}
    assert rollout.release([run], (100,), 0, gates(edge, Clock()), log=lambda _: None).ok
    outcome = rollout.rollback([run], log=lambda _: None)
    assert outcome.ok
    # OLD serves again; NEW stays the candidate at 0%, where the program's next `pulumi up` keeps it.
    assert fake.routes(REF.path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


class Never:
    """A gate that fails, to check the failure line's shape."""

    name = "never"

    def check(self, candidate: Candidate) -> Verdict:
        return Verdict(False, f"refused {candidate.revision}")


def run_cli(argv: list[str], edge: Edge, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, channels=edge, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_the_command_promotes_from_the_stacks_plan(drill: Drill) -> None:
    api, monitoring_api, monitoring, fake, edge, servers, catalog = (
        drill.api,
        drill.monitoring_api,
        drill.monitoring,
        drill.fake,
        drill.edge,
        drill.servers,
        drill.catalog,
    )
    edge.servers = {OLD: servers(catalog), NEW: servers(catalog)}
    # Calls the candidate answered just before: what the gate reads at each step (the minute it looks back).
    monitoring.record(time.time() - 1, NEW, "OK", 50)
    plan = json.dumps(
        {
            "project": REF.project,
            "region": REF.region,
            "service": REF.service,
            "steps": [50, 100],
            "pauseSeconds": 0,
            "callsMetric": CALLS_METRIC,
            "maxErrorRatio": 0.01,
            "minCalls": 20,
            "ingestionDelaySeconds": 0,
        }
    )
    argv = ["promote", "--plan", "-", "--api-endpoint", api, "--monitoring-endpoint", monitoring_api]
    code, out, err = run_cli([*argv, "--insecure-api"], edge, plan)
    assert code == EXIT_OK, err
    assert out.strip() == (
        f"released in every region: stable (all traffic) is us-central1 {NEW}; previous is us-central1 {OLD}"
    )
    assert f"{NEW} has 50% of requests" in err
    assert "us-central1 error-ratio: ok, 0 of 50 calls failed (0.0%)" in err
    assert len(monitoring.requests) == 4  # both filters at 50% and at 100%
    assert fake.revision_of(REF.path, STABLE) == NEW


def test_the_command_fails_with_one_line_naming_the_check(drill: Drill) -> None:
    api, monitoring_api, fake, edge = drill.api, drill.monitoring_api, drill.fake, drill.edge
    servers, catalog = drill.servers, drill.catalog
    edge.servers = {OLD: servers(catalog), NEW: servers(None)}
    argv = [*PROMOTE, "--monitoring-endpoint", monitoring_api]
    argv += [
        "--ready-timeout",
        "1",
        "--api-endpoint",
        api,
        "--insecure-api",
    ]
    code, out, err = run_cli(argv, edge)
    assert code == EXIT_CHECK_FAILED
    assert out == ""
    assert err.splitlines()[-1].startswith(f"release of {NEW} failed in us-central1: check ready at 0%")
    assert_rolled_back(fake)


def test_the_command_reports_a_missing_service(api: str, monitoring_api: str, edge: Edge) -> None:
    argv = [*PROMOTE, "--service", "other", "--monitoring-endpoint", monitoring_api]
    code, _, err = run_cli([*argv, "--api-endpoint", api, "--insecure-api"], edge)
    assert code == EXIT_CLOUD_RUN
    assert "does not exist" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "--steps", "50,10"], "must increase"),
        (["promote", "--steps", "10,50"], "the last must be 100"),
        (["promote", "--steps", "0,100"], "from 1 to 100"),
        (["promote", "--pause-seconds", "-1"], "0 to 86400"),
        (["pr-deploy", "--project", "p", "--region", "r", "--service", "s"], "needs --pr N"),
        (["promote", "--region", "r", "--service", "s"], "--project (or the plan's 'project') is required"),
        (
            ["promote", "--project", "p", "--region", "r", "--service", "s"],
            "promote needs --steps (or the plan's 'steps')",
        ),
        (["promote", "--max-error-ratio", "5"], "must be a ratio from 0 to 1"),
        (["promote", "--min-calls", "-1"], "must be 0 or more"),
        (
            [*PROMOTE, "--token-env", "NO_SUCH_VAR_X"],
            "unset",
        ),
    ],
)
def test_bad_arguments_exit_2_naming_them(argv: list[str], message: str, edge: Edge) -> None:
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(io.StringIO()) as err:
        main(argv, channels=edge)
    assert exit_info.value.code == 2
    assert message in err.getvalue()


def test_failure_lines_name_gate_and_step(run: CloudRun, fake: FakeCloudRun) -> None:
    outcome = rollout.release([run], STEPS, 0, [Never()], log=lambda _: None)
    assert outcome.line == (
        f"release of {NEW} failed in us-central1: check never at 0%: refused {NEW}; all traffic is back on "
        f"stable in every region (us-central1 {OLD}), and the candidates keep the tag candidate"
    )


def test_the_command_deploys_a_pull_request_and_prints_only_its_url(
    api: str, fake: FakeCloudRun, edge: Edge, servers: StartServer, catalog: CatalogStore
) -> None:
    from release.pr import pr_revision_name  # noqa: PLC0415

    image = "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:" + "9" * 64
    edge.servers = {pr_revision_name(REF.service, 5, image): servers(catalog)}
    plan = json.dumps({"project": REF.project, "region": REF.region, "service": REF.service})
    argv = [
        "pr-deploy",
        "--plan",
        "-",
        "--pr",
        "5",
        "--image",
        image,
        "--api-endpoint",
        api,
        "--insecure-api",
    ]
    code, out, err = run_cli(argv, edge, plan)
    assert code == EXIT_OK, err
    assert out == "https://pr-5---catalog-grpc-123456789012.us-central1.run.app\n"
    code, out, _ = run_cli(
        ["pr-remove", "--plan", "-", "--pr", "5", "--api-endpoint", api, "--insecure-api"], edge, plan
    )
    assert code == EXIT_OK
    assert "pr-5" not in {route.tag for route in fake.routes(REF.path)}


def test_a_bad_plan_is_refused_naming_it(edge: Edge) -> None:
    plan = json.dumps({"project": "p", "region": "r", "service": "s", "steps": [50, 20]})
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(io.StringIO()) as err:
        main(["promote", "--plan", "-"], channels=edge, stdin=io.StringIO(plan))
    assert exit_info.value.code == 2
    assert "the plan's steps [50, 20]: steps [50, 20]: must increase" in err.getvalue()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("callsMetric", "promote needs --calls-metric (or the plan's 'callsMetric')"),
        ("minCalls", "promote needs --min-calls (or the plan's 'minCalls')"),
    ],
)
def test_promote_takes_no_default_the_stack_does_not_give(key: str, message: str, edge: Edge) -> None:
    """Pulumi.yaml holds the defaults; a plan without a key is not quietly given a second one."""
    plan = {
        "project": "p",
        "region": "r",
        "service": "s",
        "steps": [100],
        "pauseSeconds": 0,
        "callsMetric": CALLS_METRIC,
        "maxErrorRatio": 0.01,
        "minCalls": 20,
    }
    del plan[key]
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(io.StringIO()) as err:
        main(["promote", "--plan", "-"], channels=edge, stdin=io.StringIO(json.dumps(plan)))
    assert exit_info.value.code == 2
    assert message in err.getvalue()
