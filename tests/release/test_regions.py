"""Releases of a stack in two regions: every step in every region, every region rolled back on any failure.

The fake Cloud Run holds the service (same name) in us-central1 and europe-west1, each with its own
revisions, tags and traffic; real catalog servers stand behind each region's tag URLs.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest

from contract.release import CANDIDATE, PREVIOUS, STABLE
from release import pr, rollout
from release.cli import EXIT_CHECK_FAILED, EXIT_CLOUD_RUN, EXIT_OK, main
from release.cloudrun import CloudRun, connect
from release.traffic import Route
from tests.release.conftest import CALLS_METRIC, NEW, OLD, REF, Drill, Edge, ref_in, template
from tests.release.test_release import STEPS, Clock, Pauses, gates

EU = "europe-west1"
EU_PATH = ref_in(EU).path


@pytest.fixture
def drill2(drill: Drill) -> Drill:
    """The drill with the same stack deployed in europe-west1 too: OLD stable, NEW the candidate."""
    drill.fake.deploy(EU_PATH, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    drill.fake.deploy(EU_PATH, template(NEW), [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill.fake.writes.clear()
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    return drill


def runs(drill: Drill) -> list[CloudRun]:
    client = connect(drill.api, insecure=True)
    return [CloudRun(client, REF, timeout=10), CloudRun(client, ref_in(EU), timeout=10)]


def splits_by_region(drill: Drill) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each traffic write: its region and its (revision, percent) pairs."""
    return [
        (write.service.name.split("/")[3], [(t.revision, t.percent) for t in write.service.traffic][:2])
        for write in drill.fake.writes
    ]


def plan() -> str:
    """A two-region stack's `release` output, as infra/__main__.py exports it."""
    return json.dumps(
        {
            "project": REF.project,
            "region": REF.region,
            "regions": {
                region: {"url": f"https://{REF.service}-x.{region}.run.app", "candidateUrl": "unused"}
                for region in (REF.region, EU)
            },
            "service": REF.service,
            "steps": [50, 100],
            "pauseSeconds": 0,
            "callsMetric": CALLS_METRIC,
            "maxErrorRatio": 0.01,
            "minCalls": 0,
            "ingestionDelaySeconds": 0,
            "audience": None,
        }
    )


def run_cli(argv: list[str], edge: Edge, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv, channels=edge, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_a_good_release_moves_every_step_in_every_region(drill2: Drill) -> None:
    outcome = rollout.release(
        runs(drill2), STEPS, 30, gates(drill2.edge, Clock()), log=lambda _: None, sleep=Pauses()
    )

    assert outcome.ok, outcome.line
    assert outcome.line == (
        f"released in every region: stable (all traffic) is us-central1 {NEW}, {EU} {NEW}; "
        f"previous is us-central1 {OLD}, {EU} {OLD}"
    )
    us, eu = REF.region, EU
    assert splits_by_region(drill2) == [
        (us, [(OLD, 90), (NEW, 10)]),
        (eu, [(OLD, 90), (NEW, 10)]),
        (us, [(OLD, 50), (NEW, 50)]),
        (eu, [(OLD, 50), (NEW, 50)]),
        (us, [(OLD, 0), (NEW, 100)]),
        (eu, [(OLD, 0), (NEW, 100)]),
        (us, [(NEW, 100), (NEW, 0)]),  # promoted: NEW stable and candidate, OLD previous
        (eu, [(NEW, 100), (NEW, 0)]),
    ]
    for path in (REF.path, EU_PATH):
        assert drill2.fake.routes(path) == [
            Route(NEW, 100, STABLE),
            Route(NEW, 0, CANDIDATE),
            Route(OLD, 0, PREVIOUS),
        ]
    # Each region's candidate was checked through its own tag URL, before and after every step.
    assert (
        drill2.edge.opened.count(f"{EU}:candidate->{NEW}")
        == drill2.edge.opened.count(f"candidate->{NEW}")
        > 0
    )


def test_a_candidate_that_breaks_in_one_region_at_the_second_step_rolls_back_both(drill2: Drill) -> None:
    broken = drill2.servers(drill2.catalog)
    drill2.edge.servers[(EU, NEW)] = broken
    # At the second step's pause europe-west1's candidate starts shutting down; us-central1's stays healthy.
    pauses = Pauses(at={2: lambda: broken.shut_down(0.0)})
    outcome = rollout.release(
        runs(drill2), STEPS, 30, gates(drill2.edge, Clock()), log=lambda _: None, sleep=pauses
    )

    assert not outcome.ok
    assert outcome.line.startswith(f"release of {NEW} failed in {EU}: check ready at 50%: ")
    assert f"all traffic is back on stable in every region (us-central1 {OLD}, {EU} {OLD})" in outcome.line
    assert splits_by_region(drill2)[-2:] == [
        (REF.region, [(OLD, 100), (NEW, 0)]),
        (EU, [(OLD, 100), (NEW, 0)]),
    ]
    for path in (REF.path, EU_PATH):
        # The candidate keeps its tag in both, for debugging.
        assert drill2.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_the_error_ratio_is_judged_per_region(drill2: Drill) -> None:
    clock = Clock()

    def traffic_at_50() -> None:
        # Pooled, 30 failures in 5200 calls would be 0.6%, under the 1% allowed; europe-west1's own is 15%.
        drill2.monitoring.record(clock.now - 1, NEW, "OK", 5000, region=REF.region)
        drill2.monitoring.record(clock.now - 1, NEW, "OK", 170, region=EU)
        drill2.monitoring.record(clock.now - 1, NEW, "INTERNAL", 30, region=EU)

    def traffic_at_10() -> None:
        for region in (REF.region, EU):
            drill2.monitoring.record(clock.now - 1, NEW, "OK", 100, region=region)

    pauses = Pauses(clock, at={1: traffic_at_10, 2: traffic_at_50})
    checks = gates(drill2.edge, clock, drill2.counts)
    outcome = rollout.release(runs(drill2), STEPS, 120, checks, log=lambda _: None, sleep=pauses, clock=clock)

    assert not outcome.ok
    assert outcome.line.startswith(
        f"release of {NEW} failed in {EU}: check error-ratio at 50%: 30 of 200 calls failed (15.0%)"
    )
    for path in (REF.path, EU_PATH):
        assert drill2.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]
    assert all('resource.label.location="' in request.filter for request in drill2.monitoring.requests)


def test_a_region_cloud_run_refuses_at_a_step_rolls_back_both(drill2: Drill) -> None:
    def concurrent_up() -> None:
        # Someone changes europe-west1 during the first pause: its next write carries a stale etag.
        service = drill2.fake.services[EU_PATH]
        drill2.fake.deploy(
            EU_PATH, service.template, [Route(t.revision, t.percent, t.tag) for t in service.traffic]
        )

    pauses = Pauses(at={1: concurrent_up})
    outcome = rollout.release(
        runs(drill2), STEPS, 30, gates(drill2.edge, Clock()), log=lambda _: None, sleep=pauses
    )

    assert not outcome.ok
    assert outcome.line.startswith(f"release of {NEW} failed in {EU}: check cloud-run at 50%: ")
    for path in (REF.path, EU_PATH):
        assert drill2.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_the_command_releases_and_rolls_back_every_region_of_the_plan(drill2: Drill) -> None:
    argv = ["--api-endpoint", drill2.api, "--monitoring-endpoint", drill2.monitoring_api, "--insecure-api"]
    drill2.monitoring.record(time.time() - 1, NEW, "OK", 50)
    code, out, err = run_cli(["promote", "--plan", "-", *argv], drill2.edge, plan())
    assert code == EXIT_OK, err
    assert f"{EU}: {NEW} has 50% of requests" in err
    assert drill2.fake.revision_of(EU_PATH, STABLE) == NEW

    code, out, err = run_cli(["rollback", "--plan", "-", *argv], drill2.edge, plan())
    assert code == EXIT_OK, err
    assert out.strip() == (
        f"rolled back every region: us-central1: all traffic on {OLD}, {NEW} keeps the tag candidate at 0%; "
        f"{EU}: all traffic on {OLD}, {NEW} keeps the tag candidate at 0%"
    )
    for path in (REF.path, EU_PATH):
        assert drill2.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_the_command_fails_naming_the_region_and_the_check(drill2: Drill) -> None:
    drill2.edge.servers[(EU, NEW)] = drill2.servers(None)  # never SERVING in europe-west1
    argv = ["promote", "--plan", "-", "--api-endpoint", drill2.api, "--insecure-api", "--ready-timeout", "0"]
    code, _, err = run_cli([*argv, "--monitoring-endpoint", drill2.monitoring_api], drill2.edge, plan())
    assert code == EXIT_CHECK_FAILED
    assert err.splitlines()[-1].startswith(f"release of {NEW} failed in {EU}: check ready at 0%")
    # Nothing moved anywhere: the failure came before the first step, and the rollback wrote 0% again.
    for path in (REF.path, EU_PATH):
        assert drill2.fake.routes(path) == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_a_rollback_one_region_cannot_do_changes_no_region(drill2: Drill) -> None:
    # us-central1 completed a release (NEW stable, OLD previous); europe-west1 was first deployed with NEW.
    drill2.fake.deploy(
        REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE), Route(OLD, 0, PREVIOUS)]
    )
    drill2.fake.deploy(EU_PATH, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill2.fake.writes.clear()
    argv = ["rollback", "--plan", "-", "--api-endpoint", drill2.api, "--insecure-api"]
    code, _, err = run_cli(argv, drill2.edge, plan())
    assert code == EXIT_CLOUD_RUN
    assert f"{EU_PATH}: no revision is tagged 'previous'" in err
    assert drill2.fake.writes == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "--region", "us-central1", "--region", "us-central1"], "a region is named twice"),
        (["pr-remove", "--pr", "3", "--region", "us-central1", "--region", EU], "works in one region"),
    ],
)
def test_region_options_are_checked(argv: list[str], message: str, edge: Edge) -> None:
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main([*argv, "--plan", "-"], channels=edge, stdin=io.StringIO(plan()))
    assert exit_.value.code == 2
    assert message in err.getvalue()


def test_pull_request_revisions_go_to_the_home_region(drill2: Drill) -> None:
    image = f"us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:{'a' * 64}"
    drill2.edge.servers[pr.pr_revision_name(REF.service, 5, image)] = drill2.servers(drill2.catalog)
    argv = ["pr-deploy", "--plan", "-", "--pr", "5", "--image", image, "--api-endpoint", drill2.api]
    code, out, err = run_cli([*argv, "--insecure-api"], drill2.edge, plan())
    assert code == EXIT_OK, err
    assert out.strip() == f"https://pr-5---{REF.service}-123456789012.us-central1.run.app"
    assert {write.service.name for write in drill2.fake.writes} == {REF.path}


def test_one_token_for_several_regions_needs_an_audience_they_share(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_ID_TOKEN", "a-token")
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(
            ["promote", "--plan", "-", "--token-env", "CATALOG_ID_TOKEN"],
            channels=edge,
            stdin=io.StringIO(plan()),
        )
    assert exit_.value.code == 2
    assert "needs an audience every region accepts" in err.getvalue()
