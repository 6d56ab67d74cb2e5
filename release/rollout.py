"""The release: check the candidate, move traffic to it step by step, roll back on the first failed check.

Cloud Run holds the truth (which revision has which tag and share); this reads it at the start and writes
each step with the etag it read, so a concurrent `pulumi up` fails the step instead of being undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from release import traffic
from release.cloudrun import CloudRun, routes_of, tag_uri
from release.gates import Candidate, Gate
from release.traffic import CANDIDATE, PREVIOUS, STABLE, TrafficError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How a release ended: `ok`, and the one line that says so (the failed check when not ok)."""

    ok: bool
    line: str


def _gate(gates: Sequence[Gate], candidate: Candidate, log: Log) -> tuple[str, str] | None:
    """The first failed gate's name and reason, or None when all pass."""
    for gate in gates:
        reason = gate.check(candidate)
        if reason is not None:
            return gate.name, reason
        log(f"  {gate.name}: ok")
    return None


def release(
    run: CloudRun,
    steps: Sequence[int],
    pause_seconds: float,
    gates: Sequence[Gate],
    *,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Promote the revision tagged candidate over the one tagged stable, in `steps` (percentages)."""
    steps = traffic.check_steps(steps)
    service = run.get()
    routes = routes_of(service)
    stable_route, candidate_route = traffic.tagged(routes, STABLE), traffic.tagged(routes, CANDIDATE)
    if stable_route is None or candidate_route is None:
        raise TrafficError(
            f"{run.ref.path} has no {STABLE!r} and {CANDIDATE!r} tags: deploy it with this repository's "
            "`pulumi up`, which tags the serving revision stable and the new one candidate"
        )
    stable, candidate = stable_route.revision, candidate_route.revision
    target = Candidate(service=run.ref.service, revision=candidate, uri=tag_uri(service, CANDIDATE))
    log(f"candidate {candidate} at {target.uri}")

    if candidate == stable:
        # A first deploy, or a release that already completed: no traffic to move, nothing to go back to.
        failed = _gate(gates, target, log)
        if failed:
            name, reason = failed
            return Outcome(False, f"check {name} failed on {candidate}, which serves all traffic: {reason}")
        return Outcome(True, f"{candidate} already serves all traffic as {STABLE}; checks pass")

    current = traffic.share(routes, candidate)
    log(f"releasing {candidate} over {stable} ({current}% now) in steps {list(steps)}")
    # A resumed release judges the share it already has from now on: when it began is not recorded.
    target = replace(target, percent=current, since=clock())
    failed = _gate(gates, target, log)  # before it gets any traffic (or more of it)
    step = current
    for next_step in (s for s in steps if s > current):
        if failed:
            break
        step = next_step
        service = run.set_traffic(service, traffic.split(routes_of(service), stable, candidate, step))
        target = replace(target, percent=step, since=clock())
        log(f"{candidate} has {step}% of requests")
        if pause_seconds:
            log(f"  waiting {pause_seconds:g} s")
            sleep(pause_seconds)
        failed = _gate(gates, target, log)

    if failed:
        name, reason = failed
        latest = run.get()
        run.set_traffic(latest, traffic.rolled_back(routes_of(latest), stable, candidate))
        return Outcome(
            False,
            f"release of {candidate} failed: check {name} at {step}%: {reason}; all traffic is back on "
            f"{stable}, and {candidate} keeps the tag {CANDIDATE}",
        )
    run.set_traffic(service, traffic.promoted(routes_of(service), stable, candidate))
    return Outcome(True, f"released {candidate}: it serves all traffic as {STABLE}; {stable} is {PREVIOUS}")


def rollback(run: CloudRun, *, log: Log = print) -> Outcome:
    """Put every request back on the revision tagged previous (after a completed release), or on stable."""
    service = run.get()
    routes = routes_of(service)
    stable_route, previous_route = traffic.tagged(routes, STABLE), traffic.tagged(routes, PREVIOUS)
    candidate_route = traffic.tagged(routes, CANDIDATE)
    if stable_route is None or candidate_route is None:
        raise TrafficError(f"{run.ref.path} has no {STABLE!r} and {CANDIDATE!r} tags: nothing to roll back")
    if candidate_route.revision != stable_route.revision:
        # Mid-release (or after a failed one): the stable revision never stopped being stable.
        run.set_traffic(service, traffic.rolled_back(routes, stable_route.revision, candidate_route.revision))
        return Outcome(
            True, f"all traffic is on {stable_route.revision}; {candidate_route.revision} has none"
        )
    if previous_route is None:
        raise TrafficError(
            f"{run.ref.path}: no revision is tagged {PREVIOUS!r}, so there is none to go back to"
        )
    back, bad = previous_route.revision, stable_route.revision
    log(f"rolling back from {bad} to {back}")
    # `back` is stable again and `bad` stays the candidate at 0%: the program keeps it there, and the next
    # image it deploys replaces it.
    routes = [r for r in routes if r.tag != PREVIOUS]
    run.set_traffic(service, traffic.rolled_back(routes, back, bad))
    return Outcome(True, f"rolled back: all traffic is on {back}; {bad} keeps the tag {CANDIDATE} at 0%")
