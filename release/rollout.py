"""The release: check the candidate, move traffic to it step by step, roll back on the first failed check.

With several regions (one service of the same name in each) every step moves every region, and every region's
candidate is checked after it; the first failed check, or a write Cloud Run refuses, rolls every region back.
A release is done when every region is done. Cloud Run holds the truth (which revision has which tag and
share); this reads each region at the start and writes each step with the etag it read, so a concurrent
`pulumi up` fails the step instead of being undone. Each write carries the decision that caused it
(release/decisions.py): what was judged in that region, with the figures, and what was done about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from google.cloud import run_v2

from contract.release import CANDIDATE, PREVIOUS, STABLE, check_steps
from release import decisions, traffic
from release.cloudrun import CloudRun, CloudRunError, routes_of, tag_uri
from release.decisions import ADVANCED, RELEASED, ROLLED_BACK, Decision, Judged
from release.gates import Candidate, Gate
from release.traffic import TrafficError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How a command ended: `ok`, and the line that says so (the failed check when not ok).

    `status` answers a line per recorded decision.
    """

    ok: bool
    line: str


@dataclass
class _Region:
    """One region's service during a release: as last written, its stable revision, its candidate.

    `judged`: the candidate's verdicts at its current share (none until it is judged there).
    """

    run: CloudRun
    service: run_v2.Service
    stable: str
    candidate: Candidate
    judged: list[Judged] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run.ref.region

    @property
    def done(self) -> bool:
        """The candidate already serves all traffic as stable: a first deploy, or a completed release."""
        return self.candidate.revision == self.stable

    def decision(self, clock: Callable[[], float], verdict: str, to: int, reason: str = "") -> Decision:
        """What was decided here now: `verdict`, taking the candidate from its share to `to`."""
        return Decision(
            time=decisions.stamp(clock()),
            region=self.name,
            candidate=self.candidate.revision,
            stable=self.stable,
            step=self.candidate.percent,
            verdict=verdict,
            to=to,
            gates=tuple(self.judged),
            reason=reason,
        )


@dataclass(frozen=True)
class _Failure:
    region: str
    check: str
    reason: str


@dataclass(frozen=True)
class FrontDoorRoute:
    """How a release reaches each region's candidate behind a front door (the plan's `frontDoor`).

    Its services admit only the load balancer, so a candidate's run.app tag URL refuses the checks from the
    internet: they go to `url`, with `header: REGION`, which the URL map routes to that region's candidate.
    """

    url: str
    header: str


def _read(run: CloudRun, front_door: FrontDoorRoute | None = None) -> _Region:
    """The region's service and its release tags; raises TrafficError without them (nothing written yet)."""
    service = run.get()
    routes = routes_of(service)
    stable_route, candidate_route = traffic.tagged(routes, STABLE), traffic.tagged(routes, CANDIDATE)
    if stable_route is None or candidate_route is None:
        raise TrafficError(
            f"{run.ref.path} has no {STABLE!r} and {CANDIDATE!r} tags: deploy it with this repository's "
            "`pulumi up`, which tags the serving revision stable and the new one candidate"
        )
    candidate = Candidate(
        service=run.ref.service,
        revision=candidate_route.revision,
        uri=front_door.url if front_door else tag_uri(service, CANDIDATE),
        percent=traffic.share(routes, candidate_route.revision),
        region=run.ref.region,
        stable=stable_route.revision,
        metadata=((front_door.header, run.ref.region),) if front_door else (),
    )
    return _Region(run, service, stable_route.revision, candidate)


def _gate(gates: Sequence[Gate], regions: Sequence[_Region], log: Log) -> _Failure | None:
    """The first failed gate in the first region that fails one, or None when every region passes all.

    Every verdict is printed and kept in its region (`judged`) for the decision the release takes next.
    """
    for region in regions:
        region.judged = []
    for region in regions:
        for gate in gates:
            verdict = gate.check(region.candidate)
            region.judged.append(Judged(gate.name, verdict.passed, verdict.line))
            log(f"  {region.name} {region.judged[-1].text()}")
            if not verdict.passed:
                return _Failure(region.name, gate.name, verdict.line)
    return None


def _record(
    run: CloudRun, current: run_v2.Service, routes: Sequence[traffic.Route], decision: Decision, log: Log
) -> run_v2.Service:
    """Write `routes` and `decision` in one update of `current`; say whether the decision is recorded."""
    try:
        written = run.set_traffic(current, routes, decisions.annotations_after(decision, current.annotations))
    except CloudRunError:
        log(f"{decision.region}: decision NOT recorded (Cloud Run refused the write): {decision.summary()}")
        raise
    log(f"{decision.region}: decision recorded on the service: {decision.summary()}")
    return written


def _step(regions: Sequence[_Region], percent: int, clock: Callable[[], float], log: Log) -> _Failure | None:
    """`percent` on every region's candidate (none is ever lowered); the first refused write, if any."""
    for region in regions:
        if region.candidate.percent >= percent:
            continue
        try:
            routes = traffic.split(
                routes_of(region.service), region.stable, region.candidate.revision, percent
            )
            decision = region.decision(clock, ADVANCED, percent)
            region.service = _record(region.run, region.service, routes, decision, log)
        except CloudRunError as error:
            return _Failure(region.name, "cloud-run", str(error))
        region.candidate = replace(region.candidate, percent=percent, since=clock())
        region.judged = []
    return None


def _roll_back(regions: Sequence[_Region], reason: str, clock: Callable[[], float], log: Log) -> list[str]:
    """Every request on each region's stable revision again; what could not be written, per region."""
    refused = []
    for region in regions:
        try:
            latest = region.run.get()
            routes = traffic.rolled_back(routes_of(latest), region.stable, region.candidate.revision)
            _record(region.run, latest, routes, region.decision(clock, ROLLED_BACK, 0, reason), log)
        except CloudRunError as error:
            refused.append(f"{region.name}: {error}")
    return refused


def _where(regions: Sequence[_Region], revision: Callable[[_Region], str]) -> str:
    return ", ".join(f"{region.name} {revision(region)}" for region in regions)


def release(
    runs: Sequence[CloudRun],
    steps: Sequence[int],
    pause_seconds: float,
    gates: Sequence[Gate],
    *,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    front_door: FrontDoorRoute | None = None,
) -> Outcome:
    """Promote each region's candidate over its stable revision, in `steps` (percentages), in every region.

    With `front_door`, every check reaches the candidates through it (FrontDoorRoute).
    """
    steps = check_steps(steps)
    if not runs:
        raise ValueError("a release needs at least one region")
    regions = [
        _read(run, front_door) for run in runs
    ]  # every region's tags checked before anything is written
    for region in regions:
        route = "".join(f" ({key}: {value})" for key, value in region.candidate.metadata)
        log(f"{region.name}: candidate {region.candidate.revision} at {region.candidate.uri}{route}")
        if region.done:
            log(f"{region.name}: {region.stable} already serves all traffic as {STABLE}")
    moving = [region for region in regions if not region.done]
    if moving:
        return _move(moving, steps, pause_seconds, gates, log, sleep, clock)
    # A first deploy, or a release that already completed everywhere: nothing to move or go back to.
    failed = _gate(gates, regions, log)
    if failed:
        serving = next(region.stable for region in regions if region.name == failed.region)
        return Outcome(
            False,
            f"check {failed.check} failed in {failed.region} on {serving}, which serves all traffic: "
            f"{failed.reason}",
        )
    return Outcome(
        True,
        f"the candidate already serves all traffic as {STABLE} in every region "
        f"({_where(regions, lambda r: r.stable)}); checks pass",
    )


def _move(  # noqa: PLR0917 (release()'s arguments, passed on)
    moving: Sequence[_Region],
    steps: Sequence[int],
    pause_seconds: float,
    gates: Sequence[Gate],
    log: Log,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Outcome:
    """The steps in every region that has a candidate to release; every region rolled back on a failure."""
    now = clock()
    # A resumed release judges the share it already has from now on: when it began is not recorded.
    for region in moving:
        region.candidate = replace(region.candidate, since=now)
    current = min(region.candidate.percent for region in moving)
    log(f"releasing in {len(moving)} region(s), {current}% now, in steps {list(steps)}")
    failed = _gate(gates, moving, log)  # before any candidate gets traffic (or more of it)
    step = current
    for next_step in (s for s in steps if s > current):
        if failed:
            break
        step = next_step
        failed = _step(moving, step, clock, log)
        if failed:
            break
        for region in moving:
            log(f"{region.name}: {region.candidate.revision} has {step}% of requests")
        if pause_seconds:
            log(f"  waiting {pause_seconds:g} s")
            sleep(pause_seconds)
        failed = _gate(gates, moving, log)
    if failed:
        return _failed(moving, failed, step, clock, log)
    # Done in every region: a refusal here leaves the regions promoted so far as they are, and running
    # promote again finishes the others (they are at 100% already), or `rollback` undoes it everywhere.
    for region in moving:
        routes = traffic.promoted(routes_of(region.service), region.stable, region.candidate.revision)
        decision = region.decision(clock, RELEASED, 100)
        region.service = _record(region.run, region.service, routes, decision, log)
    return Outcome(
        True,
        f"released in every region: {STABLE} (all traffic) is "
        f"{_where(moving, lambda r: r.candidate.revision)}; "
        f"{PREVIOUS} is {_where(moving, lambda r: r.stable)}",
    )


def _failed(
    moving: Sequence[_Region], failed: _Failure, step: int, clock: Callable[[], float], log: Log
) -> Outcome:
    """Roll every region back and say which region failed which check at which step."""
    why = f"check {failed.check} failed in {failed.region} at {step}%: {failed.reason}"
    refused = _roll_back(moving, why, clock, log)
    broken = next(region for region in moving if region.name == failed.region)
    back = (
        f"all traffic is back on {STABLE} in every region ({_where(moving, lambda r: r.stable)})"
        if not refused
        else f"ROLLBACK REFUSED in {'; '.join(refused)}; run `python -m release rollback`"
    )
    return Outcome(
        False,
        f"release of {broken.candidate.revision} failed in {failed.region}: check {failed.check} at "
        f"{step}%: {failed.reason}; {back}, and the candidates keep the tag {CANDIDATE}",
    )


@dataclass(frozen=True)
class _Back:
    """What rolling one region back writes, computed for every region before any is written."""

    run: CloudRun
    service: run_v2.Service
    routes: list[traffic.Route]
    line: str
    decision: Decision


def _rollback_decision(
    run: CloudRun, routes: Sequence[traffic.Route], bad: str, good: str, clock: Callable[[], float]
) -> Decision:
    return Decision(
        time=decisions.stamp(clock()),
        region=run.ref.region,
        candidate=bad,
        stable=good,
        step=traffic.share(routes, bad),
        verdict=ROLLED_BACK,
        to=0,
        reason="`python -m release rollback`",
    )


def _plan_rollback(run: CloudRun, clock: Callable[[], float]) -> _Back:
    service = run.get()
    routes = routes_of(service)
    stable_route, previous_route = traffic.tagged(routes, STABLE), traffic.tagged(routes, PREVIOUS)
    candidate_route = traffic.tagged(routes, CANDIDATE)
    region = run.ref.region
    if stable_route is None or candidate_route is None:
        raise TrafficError(f"{run.ref.path} has no {STABLE!r} and {CANDIDATE!r} tags: nothing to roll back")
    if candidate_route.revision != stable_route.revision:
        # Mid-release (or after a failed one): the stable revision never stopped being stable.
        good, bad = stable_route.revision, candidate_route.revision
        back = traffic.rolled_back(routes, good, bad)
        decision = _rollback_decision(run, routes, bad, good, clock)
        return _Back(run, service, back, f"{region}: all traffic on {good}", decision)
    if previous_route is None:
        raise TrafficError(
            f"{run.ref.path}: no revision is tagged {PREVIOUS!r}, so there is none to go back to"
        )
    good, bad = previous_route.revision, stable_route.revision
    # `good` is stable again and `bad` stays the candidate at 0%: the program keeps it there, and the next
    # image it deploys replaces it.
    kept = [r for r in routes if r.tag != PREVIOUS]
    return _Back(
        run,
        service,
        traffic.rolled_back(kept, good, bad),
        f"{region}: all traffic on {good}, {bad} keeps the tag {CANDIDATE} at 0%",
        _rollback_decision(run, routes, bad, good, clock),
    )


def rollback(
    runs: Sequence[CloudRun], *, log: Log = print, clock: Callable[[], float] = time.time
) -> Outcome:
    """Every request back on each region's revision tagged previous (after a completed release), or stable.

    Every region is read and judged first: one that cannot roll back refuses the whole command, with nothing
    written. A write Cloud Run refuses stops it, naming the region; run it again (it is idempotent).
    """
    if not runs:
        raise ValueError("a rollback needs at least one region")
    plans = [_plan_rollback(run, clock) for run in runs]
    for plan in plans:
        log(f"rolling back {plan.line}")
        _record(plan.run, plan.service, plan.routes, plan.decision, log)
    return Outcome(True, "rolled back every region: " + "; ".join(plan.line for plan in plans))


def status(runs: Sequence[CloudRun]) -> Outcome:
    """Each region's recorded decisions, the last first: read only."""
    lines = []
    for run in runs:
        first, *earlier = decisions.recorded(run.get().annotations)
        lines += [f"{run.ref.region}: {first}", *earlier]
    return Outcome(True, "\n".join(lines))
