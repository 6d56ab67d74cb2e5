"""Release decisions recorded on each region's service, read back by operators.

Drills run the real release against the in-process Cloud Run (served from google-cloud-run's own protos,
which keeps annotations as the v2 reference describes them and replaces the whole map a mask names) and
Cloud Monitoring; then the service's annotations are read as an operator would, and with `status`.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import run_v2

from contract.release import CANDIDATE, DECISION, DECISION_HISTORY, STABLE
from release import decisions, rollout
from release.cli import EXIT_OK, main
from release.cloudrun import CloudRun, CloudRunError, connect
from release.decisions import (
    ADVANCED,
    FIGURES_MAX_CHARS,
    HISTORY_LENGTH,
    RELEASED,
    ROLLED_BACK,
    Decision,
    Judged,
)
from release.gates import LatencyBounds
from release.traffic import Route
from tests.release.conftest import NEW, OLD, REF, Drill, ref_in, template
from tests.release.fake_run import ANNOTATIONS_MAX_BYTES, FakeCloudRun, serve
from tests.release.test_latency import release_with_latency
from tests.release.test_latency import served as served_latency
from tests.release.test_release import STEPS, Clock, Pauses, gates

EU = "europe-west1"
EU_PATH = ref_in(EU).path
OPERATORS = {"ops.example.com/owner": "team-catalog", "note": "keep for the audit"}


def recorded(fake: FakeCloudRun, path: str = REF.path) -> list[Decision]:
    """Every decision on the service, oldest first (the history, then the last)."""
    annotations = fake.services[path].annotations
    if DECISION not in annotations:
        return []
    history = [Decision.from_document(entry) for entry in json.loads(annotations[DECISION_HISTORY])]
    return [*history, Decision.from_json(annotations[DECISION])]


def in_both_regions(drill: Drill) -> list[CloudRun]:
    """The drill's stack deployed in europe-west1 too; the real client for both regions."""
    drill.fake.deploy(EU_PATH, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    drill.fake.deploy(EU_PATH, template(NEW), [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill.fake.writes.clear()
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    client = connect(drill.api, insecure=True)
    return [CloudRun(client, REF, timeout=10), CloudRun(client, ref_in(EU), timeout=10)]


def test_a_passing_release_records_each_step_in_each_region_with_its_figures(drill: Drill) -> None:
    runs = in_both_regions(drill)
    clock = Clock()

    def calls() -> None:
        for region in (REF.region, EU):
            drill.monitoring.record(clock.now - 1, NEW, "OK", 200, region=region)

    pauses = Pauses(clock, at={1: calls, 2: calls, 3: calls})
    log: list[str] = []
    checks = gates(drill.edge, clock, drill.counts)
    # Pauses of 120 s: each step's read (at least a minute, Monitoring's smallest alignment) is its own.
    outcome = rollout.release(runs, STEPS, 120, checks, log=log.append, sleep=pauses, clock=clock)

    assert outcome.ok, outcome.line
    for region, path in ((REF.region, REF.path), (EU, EU_PATH)):
        history = recorded(drill.fake, path)
        assert [(d.step, d.verdict, d.to) for d in history] == [
            (0, ADVANCED, 10),
            (10, ADVANCED, 50),
            (50, ADVANCED, 100),
            (100, RELEASED, 100),
        ]
        assert {(d.region, d.candidate, d.stable) for d in history} == {(region, NEW, OLD)}
        assert all(d.reason == "" for d in history)
        # Every gate's verdict with its figures; the error ratio is judged from the first step on.
        assert history[0].gates == (
            Judged("ready", True, "catalog.ProductCatalog SERVING"),
            Judged("smoke", True, history[0].gates[1].line),
            Judged("error-ratio", True, "not judged at 0% (the smoke check judges its own calls)"),
        )
        assert history[0].gates[1].line.endswith(" checks passed")
        for later in history[1:]:
            assert later.gates[2] == Judged("error-ratio", True, "0 of 200 calls failed (0.0%)")
        assert history[0].time == decisions.stamp(clock.now - 3 * 120)  # before the first pause
    # Each decision went in the same write as the traffic it caused: 4 writes per region, no other.
    assert len(drill.fake.writes) == 8
    for write in drill.fake.writes:
        assert list(write.update_mask.paths) == ["traffic", "annotations"]
        assert write.service.etag
        decision = Decision.from_json(write.service.annotations[DECISION])
        candidate = next(t for t in write.service.traffic if t.tag == CANDIDATE and t.revision == NEW)
        assert decision.to == candidate.percent or decision.verdict == RELEASED
    # And the command's output says what was recorded, region by region.
    assert f"us-central1: decision recorded on the service: {recorded(drill.fake)[-1].summary()}" in log
    assert f"{EU}: decision recorded on the service: {recorded(drill.fake, EU_PATH)[1].summary()}" in log
    assert "  us-central1 error-ratio: ok, 0 of 200 calls failed (0.0%)" in log


def test_a_latency_failure_records_the_rollback_with_the_figures(drill: Drill) -> None:
    clock = Clock()
    log: list[str] = []
    pauses = Pauses(clock, at={1: served_latency(drill, clock, 0.002), 2: served_latency(drill, clock, 0.06)})
    outcome = release_with_latency(drill, pauses, LatencyBounds(max_ratio=1.5), log)

    assert not outcome.ok
    history = recorded(drill.fake)
    assert [(d.step, d.verdict, d.to) for d in history] == [
        (0, ADVANCED, 10),
        (10, ADVANCED, 50),
        (50, ROLLED_BACK, 0),
    ]
    last = history[-1]
    assert [(judged.gate, judged.passed) for judged in last.gates] == [
        ("ready", True),
        ("smoke", True),
        ("error-ratio", True),
        ("latency", False),
    ]
    latency = last.gates[-1].line
    assert latency.startswith("p95 ")
    assert "x the stable revision's (at most 1.5x)" in latency
    assert f"stable {OLD}: p95 " in latency
    assert latency.endswith(" over 200 calls)")  # both revisions' figures, whole
    assert last.reason.startswith("check latency failed in us-central1 at 50%: p95 ")
    assert drill.fake.routes(REF.path)[:2] == [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)]
    assert f"us-central1: decision recorded on the service: {last.summary()}" in log
    assert any(line.startswith("  us-central1 latency: FAILED, p95 ") for line in log)


def test_a_failure_in_one_region_is_recorded_in_both_with_each_one_s_own_verdicts(drill: Drill) -> None:
    runs = in_both_regions(drill)
    broken = drill.servers(drill.catalog)
    drill.edge.servers[(EU, NEW)] = broken
    pauses = Pauses(at={2: lambda: broken.shut_down(0.0)})
    outcome = rollout.release(runs, STEPS, 30, gates(drill.edge, Clock()), log=lambda _: None, sleep=pauses)

    assert not outcome.ok
    us, eu = recorded(drill.fake)[-1], recorded(drill.fake, EU_PATH)[-1]
    assert (us.verdict, us.step, eu.verdict, eu.step) == (ROLLED_BACK, 50, ROLLED_BACK, 50)
    assert us.reason == eu.reason
    assert us.reason.startswith(f"check ready failed in {EU} at 50%: catalog.ProductCatalog not SERVING")
    assert [judged.passed for judged in us.gates] == [True, True]  # us-central1 passed its checks
    assert [(judged.gate, judged.passed) for judged in eu.gates] == [("ready", False)]


def test_an_operator_s_annotations_survive_every_write(drill: Drill) -> None:
    drill.fake.services[REF.path].annotations = OPERATORS
    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    outcome = rollout.release([drill.run], STEPS, 0, gates(drill.edge, Clock()), log=lambda _: None)
    assert outcome.ok, outcome.line
    assert rollout.rollback([drill.run], log=lambda _: None).ok

    annotations = dict(drill.fake.services[REF.path].annotations)
    assert {key: annotations[key] for key in OPERATORS} == OPERATORS
    assert set(annotations) == {*OPERATORS, DECISION, DECISION_HISTORY}
    # The fake replaces the whole map a mask names: each write must have carried them.
    assert all(
        {key: write.service.annotations[key] for key in OPERATORS} == OPERATORS for write in drill.fake.writes
    )
    back = recorded(drill.fake)[-1]
    assert (back.verdict, back.candidate, back.stable, back.step, back.to) == (ROLLED_BACK, NEW, OLD, 100, 0)
    assert back.reason == "`python -m release rollback`"
    assert back.gates == ()


def test_a_write_refused_for_a_stale_etag_records_nothing_and_says_so(drill: Drill) -> None:
    def concurrent_up() -> None:
        # A `pulumi up` during the first pause: the release's next write carries a stale etag.
        service = drill.fake.services[REF.path]
        drill.fake.deploy(REF.path, service.template, drill.fake.routes(REF.path))

    drill.edge.servers = {OLD: drill.servers(drill.catalog), NEW: drill.servers(drill.catalog)}
    log: list[str] = []
    pauses = Pauses(at={1: concurrent_up})
    outcome = rollout.release(
        [drill.run], STEPS, 30, gates(drill.edge, Clock()), log=log.append, sleep=pauses
    )

    assert not outcome.ok
    refused = drill.fake.writes[1]
    assert Decision.from_json(refused.service.annotations[DECISION]).to == 50  # sent, not applied
    assert [line for line in log if "NOT recorded" in line] == [
        "us-central1: decision NOT recorded (Cloud Run refused the write): "
        + Decision.from_json(refused.service.annotations[DECISION]).summary()
    ]
    # What the service holds: the step to 10%, then the rollback the refusal caused, never the step to 50%.
    history = recorded(drill.fake)
    assert [(d.step, d.verdict, d.to) for d in history] == [(0, ADVANCED, 10), (10, ROLLED_BACK, 0)]
    assert history[-1].reason.startswith("check cloud-run failed in us-central1 at 50%: setting traffic on ")
    assert "the service changed while this ran" in history[-1].reason


def test_a_first_deploy_moves_no_traffic_and_records_nothing(drill: Drill) -> None:
    drill.fake.deploy(REF.path, template(NEW), [Route(NEW, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    drill.fake.writes.clear()
    drill.edge.servers = {NEW: drill.servers(drill.catalog)}
    assert rollout.release([drill.run], STEPS, 0, gates(drill.edge, Clock()), log=lambda _: None).ok
    assert drill.fake.writes == []
    assert DECISION not in drill.fake.services[REF.path].annotations


def run_status(drill: Drill, *regions: str) -> tuple[int, str]:
    argv = ["status", "--project", REF.project, "--service", REF.service]
    argv += [arg for region in regions for arg in ("--region", region)]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, "--api-endpoint", drill.api, "--insecure-api"], channels=drill.edge)
    assert err.getvalue() == ""
    return code, out.getvalue()


def test_status_prints_each_region_s_decisions_the_last_first(drill: Drill) -> None:
    runs = in_both_regions(drill)
    assert rollout.release(runs, (50, 100), 0, gates(drill.edge, Clock()), log=lambda _: None).ok
    writes = len(drill.fake.writes)

    code, out = run_status(drill, REF.region, EU)

    assert code == EXIT_OK
    us, eu = recorded(drill.fake), recorded(drill.fake, EU_PATH)
    assert out.splitlines() == [
        f"us-central1: {us[2].line()}",
        f"  earlier: {us[1].line()}",
        f"  earlier: {us[0].line()}",
        f"{EU}: {eu[2].line()}",
        f"  earlier: {eu[1].line()}",
        f"  earlier: {eu[0].line()}",
    ]
    assert out.startswith(f"us-central1: {us[2].time} released {NEW} at 100% (stable {OLD}); ready: ok, ")
    assert len(drill.fake.writes) == writes  # read only


def test_status_says_when_nothing_or_something_else_is_recorded(drill: Drill) -> None:
    assert run_status(drill, REF.region) == (EXIT_OK, "us-central1: no decision recorded\n")
    drill.fake.services[REF.path].annotations = {DECISION: "by hand"}
    code, out = run_status(drill, REF.region)
    assert code == EXIT_OK
    assert out.startswith(f"us-central1: {DECISION} holds no decision this tool wrote (")
    assert out.endswith(": 'by hand'\n")


# The decision's own rules: its bound, its history, what it refuses to read.


def decision(step: int = 10, to: int = 50, verdict: str = ADVANCED, **fields: object) -> Decision:
    values: dict[str, object] = {
        "time": "2026-12-06T19:48:00Z",
        "region": "us-central1",
        "candidate": NEW,
        "stable": OLD,
        "step": step,
        "verdict": verdict,
        "to": to,
        **fields,
    }
    return Decision(**values)  # type: ignore[arg-type]


def test_a_decision_reads_back_as_written() -> None:
    written = decision(
        gates=(Judged("ready", True, "SERVING"), Judged("latency", False, "p95 slow")), reason="r"
    )
    assert Decision.from_json(written.to_json()) == written
    assert json.loads(written.to_json())["gates"][1] == {
        "gate": "latency",
        "passed": False,
        "figures": "p95 slow",
    }
    assert "reason" not in json.loads(decision().to_json())


@pytest.mark.parametrize(
    ("length", "cut"),
    [(FIGURES_MAX_CHARS - 1, False), (FIGURES_MAX_CHARS, False), (FIGURES_MAX_CHARS + 1, True)],
)
def test_figures_and_reasons_are_cut_beyond_their_limit(length: int, cut: bool) -> None:
    text = "x" * length
    document = json.loads(decision(gates=(Judged("smoke", False, text),), reason=text).to_json())
    for kept in (document["gates"][0]["figures"], document["reason"]):
        assert (kept != text) is cut
        assert len(kept) == min(length, FIGURES_MAX_CHARS)
        if cut:
            assert kept.endswith("...")


def test_a_decision_of_the_command_s_four_gates_stays_under_2_kib_and_its_history_under_20() -> None:
    long = "y" * 1000
    worst = decision(
        candidate="c" * 63,
        stable="s" * 63,
        region="northamerica-northeast1",
        gates=tuple(Judged(name, False, long) for name in ("ready", "smoke", "error-ratio", "latency")),
        reason=long,
    )
    assert len(worst.to_json().encode()) <= 2048
    current: dict[str, str] = {}
    for _ in range(3 * HISTORY_LENGTH):
        current = decisions.annotations_after(worst, current)
    assert sum(len(value.encode()) for value in current.values()) <= 20 * 1024


@pytest.mark.parametrize("before", [0, 1, HISTORY_LENGTH - 1, HISTORY_LENGTH, HISTORY_LENGTH + 1])
def test_the_history_keeps_the_newest_decisions_oldest_first(before: int) -> None:
    current: dict[str, str] = {"other": "kept out of it"}
    for step in range(before + 1):
        current = {**current, **decisions.annotations_after(decision(step=step), current)}
    assert set(current) == {"other", DECISION, DECISION_HISTORY}
    assert Decision.from_json(current[DECISION]).step == before
    history = [Decision.from_document(entry).step for entry in json.loads(current[DECISION_HISTORY])]
    assert history == list(range(before))[-HISTORY_LENGTH:]


def test_what_cannot_be_read_as_a_decision_is_dropped_from_the_history() -> None:
    after = decisions.annotations_after(decision(), {DECISION: "by hand", DECISION_HISTORY: "{not json"})
    assert after[DECISION_HISTORY] == "[]"
    after = decisions.annotations_after(decision(), {DECISION_HISTORY: json.dumps({"not": "a list"})})
    assert after[DECISION_HISTORY] == "[]"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": True}, "step: True, expected int"),
        ({"step": "10"}, "step: '10', expected int"),
        ({"verdict": "paused"}, "verdict 'paused': not one of"),
        ({"gates": "ready"}, "gates: not a list of objects"),
        ({"gates": ["ready"]}, "gates: not a list of objects"),
        ({"gates": [{"gate": "ready", "passed": "yes", "figures": ""}]}, "passed: 'yes', expected bool"),
        ({"reason": 3}, "reason: 3, expected str"),
        ({"time": None}, "time: None, expected str"),
    ],
)
def test_a_document_that_is_not_a_decision_is_refused_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    document = {**json.loads(decision().to_json()), **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        Decision.from_document(document)
    with pytest.raises(ValueError, match="not a JSON object"):
        Decision.from_document([document])


def test_the_lines_an_operator_reads() -> None:
    assert decisions.stamp(1_780_000_000.4) == "2026-05-28T20:26:40Z"
    assert Judged("ready", True).text() == "ready: ok"
    assert Judged("smoke", False, "get: NOT_FOUND").text() == "smoke: FAILED, get: NOT_FOUND"
    step = decision(gates=(Judged("ready", True, "SERVING"),))
    assert step.summary() == f"2026-12-06T19:48:00Z advanced {NEW} from 10% to 50% (stable {OLD})"
    assert step.line() == step.summary() + "; ready: ok, SERVING"
    done = decision(step=100, to=100, verdict=RELEASED)
    assert done.line() == f"2026-12-06T19:48:00Z released {NEW} at 100% (stable {OLD})"
    back = decision(step=50, to=0, verdict=ROLLED_BACK, reason="check smoke failed")
    assert back.summary().endswith("from 50% to 0% (stable OLD): check smoke failed".replace("OLD", OLD))


# The fake refuses what Cloud Run refuses, so a release that wrote something else would fail here too.


@pytest.mark.parametrize(
    ("annotations", "refused"),
    [
        ({"run.googleapis.com/launch-stage": "BETA"}, "the run.googleapis.com namespace is not supported"),
        ({"x.serving.knative.dev/y": "1"}, "the x.serving.knative.dev namespace is not supported"),
        ({"autoscaling.knative.dev/maxScale": "3"}, "namespace is not supported"),
        ({"cloud.googleapis.com/location": "x"}, "namespace is not supported"),
        ({"Bad_Prefix/key": "v"}, "not a qualified name"),
        ({"-starts-with-a-dash": "v"}, "not a qualified name"),
        # 256 KiB in all, keys and values: at the limit, and a byte above it.
        ({"googleapis.com/ok": "v", "n": "v" * (ANNOTATIONS_MAX_BYTES - 19)}, None),
        (
            {"googleapis.com/ok": "v", "n": "v" * (ANNOTATIONS_MAX_BYTES - 18)},
            f"more than {ANNOTATIONS_MAX_BYTES}",
        ),
    ],
)
def test_the_fake_refuses_the_annotations_cloud_run_refuses(
    annotations: dict[str, str], refused: str | None
) -> None:
    fake = FakeCloudRun()
    fake.deploy(REF.path, template(OLD), [Route(OLD, 100, STABLE)])
    with serve(fake) as address:
        run = CloudRun(connect(address, insecure=True), REF, timeout=10)
        current = run.get()
        if refused is None:
            run.set_traffic(current, [Route(OLD, 100, STABLE)], annotations)
            assert dict(fake.services[REF.path].annotations) == annotations
            return
        with pytest.raises(CloudRunError, match=refused):
            run.set_traffic(current, [Route(OLD, 100, STABLE)], annotations)
    assert dict(fake.services[REF.path].annotations) == {}


def test_the_fake_refuses_a_mask_path_it_does_not_know(api: str) -> None:
    request = run_v2.UpdateServiceRequest(
        service=run_v2.Service(name=REF.path), update_mask={"paths": ["labels"]}
    )
    with pytest.raises(api_exceptions.InvalidArgument, match="unknown paths"):
        connect(api, insecure=True).update_service(request=request)
