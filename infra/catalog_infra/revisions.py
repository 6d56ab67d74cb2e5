"""Revision names and the traffic the program declares, so that `pulumi up` never moves traffic itself.

Cloud Run holds the truth about traffic: which revision is tagged `stable` and serves callers, which is the
`candidate` earning its share, which pull requests have `pr-N` revisions. `python -m release` changes it
through the Admin API. The program reads it (live.py) before declaring the service and declares it as it
is, adding only the tag `candidate` on the revision it deploys, at 0%. So a later `pulumi up` neither
reverts a completed promotion nor brings back a rolled-back revision, and one with nothing changed
declares what is already there. The tag names are the release tool's too (contract/release.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from contract.release import CANDIDATE, STABLE

# Hex digits of the hash in a revision name: 40 bits, so two different builds sharing a name (which Cloud
# Run would refuse) is a one-in-a-trillion event, and "<serviceName>-<hash>" stays far under 63 characters.
HASH_LENGTH = 10


class LiveTrafficError(pulumi.RunError):
    """A live split the program will not declare over; the message says how to fix it."""


@dataclass(frozen=True)
class LiveRoute:
    """One traffic target as Cloud Run serves it: a revision, its percent, its tag ("" for none)."""

    revision: str
    percent: int
    tag: str = ""


@dataclass(frozen=True)
class LiveService:
    """What the program needs of the service as it runs now."""

    routes: tuple[LiveRoute, ...]
    latest_ready_revision: str


def revision_name(service_name: str, image: str, settings: Mapping[str, object]) -> str:
    """`<serviceName>-<hash>` of the image (with its digest) and every setting that makes a revision.

    The same build and settings give the same name, so an unchanged `pulumi up` declares the revision
    that already exists; anything else gives a new name, which Cloud Run requires of a new revision.
    """
    material = json.dumps({"image": image, "settings": settings}, sort_keys=True, separators=(",", ":"))
    return f"{service_name}-{hashlib.sha256(material.encode()).hexdigest()[:HASH_LENGTH]}"


def _tagged(routes: Sequence[LiveRoute], tag: str) -> LiveRoute | None:
    return next((route for route in routes if route.tag == tag), None)


def serving_routes(live: LiveService | None) -> tuple[LiveRoute, ...] | None:
    """The live split to build on (None for a first deploy); raises LiveTrafficError on one it cannot.

    A service deployed before releases existed (all traffic on one untagged revision) is adopted: that
    revision is tagged stable, keeping its traffic.
    """
    if live is None:
        return None
    if _tagged(live.routes, STABLE) is None:
        return tuple(_adopt(live))
    return live.routes


def declared_traffic(serving: Sequence[LiveRoute] | None, revision: str) -> list[LiveRoute]:
    """The split to declare with `revision` as the template's revision, over `serving_routes(...)`.

    First deploy: `revision` is stable with all traffic, and the candidate too (nothing else could
    serve). Later: the live split as it is, with the candidate tag on `revision` (at the share it already
    has if it is the candidate already, else at 0%); a replaced candidate that still has a share keeps it,
    untagged, until the release moves it.
    """
    if serving is None:
        return [LiveRoute(revision, 100, STABLE), LiveRoute(revision, 0, CANDIDATE)]
    routes = list(serving)
    candidate = _tagged(routes, CANDIDATE)
    if candidate is not None and candidate.revision == revision:
        return routes
    kept = [route for route in routes if route.tag != CANDIDATE]
    if candidate is not None and candidate.percent:
        kept.append(LiveRoute(candidate.revision, candidate.percent))
    return [*kept, LiveRoute(revision, 0, CANDIDATE)]


def _adopt(live: LiveService) -> list[LiveRoute]:
    """A service deployed before releases (all traffic on one revision, untagged): tag that one stable."""
    serving = [route for route in live.routes if route.percent]
    if len(serving) != 1 or not serving[0].revision:
        raise LiveTrafficError(
            f"the service's traffic is split {[(r.revision, r.percent, r.tag) for r in live.routes]} "
            f"with no revision tagged {STABLE!r}: tag the one callers should stay on, e.g. "
            "`gcloud run services update-traffic SERVICE --set-tags stable=REVISION`, then run `pulumi up`"
        )
    others = [route for route in live.routes if route.tag and not route.percent]
    return [LiveRoute(serving[0].revision, 100, STABLE), *others]
