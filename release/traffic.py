"""Traffic splits as plain values: the tags a release uses and the split each of its moves sets.

Pure functions over `Route`s, so the plan is tested without Cloud Run; release/cloudrun.py converts them
to and from the Admin API's TrafficTarget. The tag names are contract/release.py's, which the Pulumi program
(infra/catalog_infra/revisions.py) declares too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from contract.release import CANDIDATE, PREVIOUS, RELEASE_TAGS, STABLE


class TrafficError(Exception):
    """Live traffic this tool cannot release from; the message says what to do."""


@dataclass(frozen=True)
class Route:
    """One traffic target: a revision, its share of requests, and its tag ("" for none)."""

    revision: str
    percent: int
    tag: str = ""


def tagged(routes: Iterable[Route], tag: str) -> Route | None:
    """The route carrying `tag`, if any (Cloud Run keeps tags unique)."""
    return next((route for route in routes if route.tag == tag), None)


def share(routes: Iterable[Route], revision: str) -> int:
    """Percent of requests `revision` gets, over all its routes."""
    return sum(route.percent for route in routes if route.revision == revision)


def _others(routes: Sequence[Route]) -> list[Route]:
    """Tagged routes a release does not own (pull requests, an operator's own), kept as they are, at 0%.

    Untagged routes are dropped: with no tag and no traffic they mean nothing, and a release always puts
    every percent on the stable or the candidate revision.
    """
    return [replace(route, percent=0) for route in routes if route.tag and route.tag not in RELEASE_TAGS]


def _kept(routes: Sequence[Route], tag: str) -> list[Route]:
    route = tagged(routes, tag)
    return [replace(route, percent=0)] if route else []


def split(routes: Sequence[Route], stable: str, candidate: str, percent: int) -> list[Route]:
    """`percent` on the candidate, the rest on the stable revision; every other tag kept at 0%."""
    return [
        Route(stable, 100 - percent, STABLE),
        Route(candidate, percent, CANDIDATE),
        *_kept(routes, PREVIOUS),
        *_others(routes),
    ]


def promoted(routes: Sequence[Route], stable: str, candidate: str) -> list[Route]:
    """The candidate is the stable revision now; the one it replaced keeps the tag `previous`."""
    return [
        Route(candidate, 100, STABLE),
        Route(candidate, 0, CANDIDATE),
        Route(stable, 0, PREVIOUS),
        *_others(routes),
    ]


def rolled_back(routes: Sequence[Route], stable: str, candidate: str) -> list[Route]:
    """Every request on the stable revision again; the candidate keeps its tag, for debugging."""
    return split(routes, stable, candidate, 0)


def with_tag(routes: Sequence[Route], revision: str, tag: str) -> list[Route]:
    """`routes` with `tag` on `revision` at 0% (replacing wherever it was), the split untouched."""
    return [route for route in routes if route.tag != tag] + [Route(revision, 0, tag)]


def without_tag(routes: Sequence[Route], tag: str) -> list[Route]:
    """`routes` without the route carrying `tag`; refuses if that route serves traffic."""
    route = tagged(routes, tag)
    if route is not None and route.percent:
        raise TrafficError(f"tag {tag} serves {route.percent}% of requests: move that traffic first")
    return [route for route in routes if route.tag != tag]
