"""What the release prints, line by line: the command's output is how an operator follows a release."""

from __future__ import annotations

import grpc
import pytest

from contract.release import CANDIDATE, STABLE
from release import decisions, rollout
from release.cloudrun import CloudRun, connect
from release.gates import Candidate, Verdict
from release.traffic import Route, TrafficError
from tests.release.conftest import NEW, OLD, REF, Drill, ref_in, template
from tests.release.test_release import Clock, Pauses, gates

TAG_URL = "https://candidate---catalog-grpc-123456789012.us-central1.run.app"


class Seen:
    """A gate that passes (or fails, refusing reads of the service as it does) and keeps what it checked."""

    name = "seen"

    def __init__(self, drill: Drill | None = None) -> None:
        self.drill = drill
        self.candidates: list[Candidate] = []

    def check(self, candidate: Candidate) -> Verdict:
        self.candidates.append(candidate)
        if self.drill is None:
            return Verdict(True, f"{candidate.percent}% seen")
        self.drill.fake.refuse_reads = (grpc.StatusCode.PERMISSION_DENIED, "IAM_PERMISSION_DENIED")
        return Verdict(False, "told to fail")


def test_a_release_prints_each_check_decision_and_step(drill: Drill) -> None:
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    clock = Clock()
    start = clock.now
    log: list[str] = []
    outcome = rollout.release(
        [drill.run], (50, 100), 30, gates(drill.edge, clock), log=log.append, sleep=Pauses(clock), clock=clock
    )

    assert outcome.ok, outcome.line
    checks = [
        "  us-central1 ready: ok, catalog.ProductCatalog SERVING",
        "  us-central1 smoke: ok, 7 checks passed",
    ]
    recorded = "us-central1: decision recorded on the service: "
    assert log == [
        f"us-central1: candidate {NEW} at {TAG_URL}",
        "releasing in 1 region(s), 0% now, in steps [50, 100]",
        *checks,
        f"{recorded}{decisions.stamp(start)} advanced {NEW} from 0% to 50% (stable {OLD})",
        f"us-central1: {NEW} has 50% of requests",
        "  waiting 30 s",
        *checks,
        f"{recorded}{decisions.stamp(start + 30)} advanced {NEW} from 50% to 100% (stable {OLD})",
        f"us-central1: {NEW} has 100% of requests",
        "  waiting 30 s",
        *checks,
        f"{recorded}{decisions.stamp(start + 60)} released {NEW} at 100% (stable {OLD})",
    ]


def test_a_step_without_a_pause_does_not_say_it_waits(drill: Drill) -> None:
    log: list[str] = []
    assert rollout.release([drill.run], (100,), 0, [Seen()], log=log.append).ok
    assert not any("waiting" in line for line in log)
    assert "  us-central1 seen: ok, 100% seen" in log


def test_a_rollback_prints_what_it_puts_back_and_what_it_records(drill: Drill) -> None:
    assert rollout.release([drill.run], (100,), 0, [Seen()], log=lambda _: None).ok
    log: list[str] = []
    clock = Clock()
    outcome = rollout.rollback([drill.run], log=log.append, clock=clock)
    assert (
        outcome.line
        == f"rolled back every region: us-central1: all traffic on {OLD}, {NEW} keeps the tag candidate at 0%"
    )
    assert log == [
        f"rolling back us-central1: all traffic on {OLD}, {NEW} keeps the tag candidate at 0%",
        f"us-central1: decision recorded on the service: {decisions.stamp(clock.now)} rolled back {NEW} "
        f"from 100% to 0% (stable {OLD}): `python -m release rollback`",
    ]


def test_a_rollback_mid_release_keeps_stable_and_records_the_candidate_s_share(drill: Drill) -> None:
    drill.run.set_traffic(drill.run.get(), [Route(OLD, 90, STABLE), Route(NEW, 10, CANDIDATE)])
    log: list[str] = []
    outcome = rollout.rollback([drill.run], log=log.append, clock=Clock())
    assert outcome.line == f"rolled back every region: us-central1: all traffic on {OLD}"
    assert log[-1].endswith(f" rolled back {NEW} from 10% to 0% (stable {OLD}): `python -m release rollback`")
    assert drill.fake.routes(REF.path)[:2] == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]


def test_a_rollback_cloud_run_refuses_is_named_with_what_to_run(drill: Drill) -> None:
    log: list[str] = []
    outcome = rollout.release([drill.run], (10, 100), 0, [Seen(drill)], log=log.append)
    drill.fake.refuse_reads = None
    assert outcome.ok is False
    assert outcome.line.startswith(
        f"release of {NEW} failed in us-central1: check seen at 0%: told to fail; ROLLBACK REFUSED in "
        f"us-central1: reading {REF.path}: "
    )
    assert outcome.line.endswith(
        "; run `python -m release rollback`, and the candidates keep the tag candidate"
    )
    assert drill.fake.writes == []


def test_the_checks_go_through_the_front_door_with_the_region_s_header(drill: Drill) -> None:
    seen = Seen()
    log: list[str] = []
    door = rollout.FrontDoorRoute(url="https://catalog.example.com", header="x-catalog-candidate")
    assert rollout.release([drill.run], (100,), 0, [seen], log=log.append, front_door=door).ok
    assert (
        log[0]
        == f"us-central1: candidate {NEW} at https://catalog.example.com (x-catalog-candidate: us-central1)"
    )
    assert {(c.uri, c.metadata) for c in seen.candidates} == {
        ("https://catalog.example.com", (("x-catalog-candidate", "us-central1"),))
    }


def test_a_region_already_released_is_said_and_left_alone(drill: Drill) -> None:
    eu = ref_in("europe-west1")
    drill.fake.deploy(eu.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill.fake.writes.clear()
    runs = [drill.run, CloudRun(connect(drill.api, insecure=True), eu, timeout=10)]
    log: list[str] = []
    seen = Seen()
    outcome = rollout.release(runs, (100,), 0, [seen], log=log.append)
    assert outcome.ok, outcome.line
    assert f"europe-west1: {NEW} already serves all traffic as stable" in log
    assert {write.service.name for write in drill.fake.writes} == {REF.path}
    assert {c.region for c in seen.candidates} == {"us-central1"}


def test_a_release_or_a_rollback_of_no_region_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a release needs at least one region$"):
        rollout.release([], (100,), 0, [], log=lambda _: None)
    with pytest.raises(ValueError, match=r"^a rollback needs at least one region$"):
        rollout.rollback([], log=lambda _: None)


def test_a_rollback_without_a_previous_revision_is_refused_naming_it(drill: Drill) -> None:
    drill.fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    with pytest.raises(TrafficError, match=f"{REF.path}: no revision is tagged 'previous'"):
        rollout.rollback([drill.run], log=lambda _: None)


def two_regions(drill: Drill, us: int, eu: int) -> list[CloudRun]:
    """The stack in both regions, its candidate at `us`% and `eu`% (a release interrupted midway)."""
    eu_path = ref_in("europe-west1").path
    drill.fake.deploy(eu_path, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    drill.fake.deploy(eu_path, template(NEW), [Route(OLD, 100 - eu, STABLE), Route(NEW, eu, CANDIDATE)])
    drill.fake.deploy(REF.path, template(NEW), [Route(OLD, 100 - us, STABLE), Route(NEW, us, CANDIDATE)])
    drill.fake.writes.clear()
    return [drill.run, CloudRun(connect(drill.api, insecure=True), ref_in("europe-west1"), timeout=10)]


def test_a_resumed_release_moves_each_region_only_up_and_judges_from_now(drill: Drill) -> None:
    runs = two_regions(drill, us=50, eu=10)
    clock = Clock()
    pauses = Pauses(clock)
    seen = Seen()
    outcome = rollout.release(runs, (10, 50, 100), 30, [seen], log=lambda _: None, sleep=pauses, clock=clock)

    assert outcome.ok, outcome.line
    written = [
        (
            write.service.name.split("/")[3],
            next(t.percent for t in write.service.traffic if t.tag == CANDIDATE),
        )
        for write in drill.fake.writes
    ]
    # From the lowest share (10%): 50% only where it is not there yet, then 100% and the promotion in both.
    assert written == [
        ("europe-west1", 50),
        ("us-central1", 100),
        ("europe-west1", 100),
        ("us-central1", 0),
        ("europe-west1", 0),
    ]
    assert pauses.count == 2  # the steps above 10%: 50 and 100
    # Each share is judged on its calls from the moment this run saw it, not from an unknown past.
    first = seen.candidates[:2]
    assert [(c.region, c.percent, c.since) for c in first] == [
        ("us-central1", 50, 1_780_000_000.0),
        ("europe-west1", 10, 1_780_000_000.0),
    ]


def test_a_service_without_both_release_tags_is_refused_by_release_and_rollback(drill: Drill) -> None:
    drill.fake.deploy(REF.path, template(OLD), [Route(OLD, 100, STABLE)])
    with pytest.raises(TrafficError) as refused:
        rollout.release([drill.run], (100,), 0, [], log=lambda _: None)
    assert str(refused.value) == (
        f"{REF.path} has no 'stable' and 'candidate' tags: deploy it with this repository's `pulumi up`, "
        "which tags the serving revision stable and the new one candidate"
    )
    with pytest.raises(TrafficError) as refused:
        rollout.rollback([drill.run], log=lambda _: None)
    assert str(refused.value) == f"{REF.path} has no 'stable' and 'candidate' tags: nothing to roll back"


def test_a_first_deploy_says_it_serves_all_traffic_and_passes_or_fails_plainly(drill: Drill) -> None:
    drill.fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    passed = rollout.release([drill.run], (100,), 0, [Seen()], log=lambda _: None)
    assert passed == rollout.Outcome(
        True,
        f"the candidate already serves all traffic as stable in every region (us-central1 {NEW}); "
        "checks pass",
    )
    failed = rollout.release([drill.run], (100,), 0, [Seen(drill)], log=lambda _: None)
    assert failed.ok is False


def test_rollbacks_refused_in_several_regions_are_each_named(drill: Drill) -> None:
    runs = two_regions(drill, us=0, eu=0)
    outcome = rollout.release(runs, (100,), 0, [Seen(drill)], log=lambda _: None)
    drill.fake.refuse_reads = None
    assert outcome.ok is False
    assert "ROLLBACK REFUSED in us-central1: reading " in outcome.line
    assert "; europe-west1: reading " in outcome.line
