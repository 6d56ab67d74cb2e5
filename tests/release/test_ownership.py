"""Every traffic write of a release keeps the routes it does not own, item by item; each move at its edges.

The release tests compare the stable and candidate routes a move sets. These start every move from a split
that also holds what belongs to others (a pull request's tag, an operator's tag, with and without traffic)
and check the whole split written: a move that dropped one would stop that URL from serving, and the next
`pulumi up` would declare the damaged split as live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from contract.release import CANDIDATE, PREVIOUS, RELEASE_TAGS, STABLE
from release import traffic
from release.traffic import Route, TrafficError

OLD = "catalog-grpc-0ld0ld0ld0"
NEW = "catalog-grpc-4e74e74e74"
OLDER = "catalog-grpc-01de401de4"
# Routes a release does not own: each must come out of every move with its tag and revision.
UNOWNED = {
    "pull request": Route("catalog-grpc-pr3-12345678", 0, "pr-3"),
    "operator tag": Route(OLDER, 0, "debug"),
    "operator tag on the candidate": Route(NEW, 0, "qa"),
}
Move = Callable[[Sequence[Route]], list[Route]]
MOVES: dict[str, Move] = {
    "step to 10%": lambda routes: traffic.split(routes, OLD, NEW, 10),
    "step to 100%": lambda routes: traffic.split(routes, OLD, NEW, 100),
    "promote": lambda routes: traffic.promoted(routes, OLD, NEW),
    "roll back": lambda routes: traffic.rolled_back(routes, OLD, NEW),
    "tag a pull request": lambda routes: traffic.with_tag(routes, OLDER, "pr-9"),
    "remove another pull request": lambda routes: traffic.without_tag(routes, "pr-9"),
}


def test_the_release_owns_exactly_its_three_tags() -> None:
    assert set(RELEASE_TAGS) == {STABLE, CANDIDATE, PREVIOUS}


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("kind", sorted(UNOWNED))
def test_every_move_keeps_a_route_it_does_not_own(move: str, kind: str) -> None:
    other = UNOWNED[kind]
    before = [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE), Route(OLDER, 0, PREVIOUS), other]
    after = MOVES[move](before)
    assert [route for route in after if route.tag == other.tag] == [other]
    assert sum(route.percent for route in after) == 100
    assert len({route.tag for route in after}) == len(after)  # Cloud Run keeps tags unique


@pytest.mark.parametrize("move", ["step to 10%", "promote", "roll back"])
def test_a_share_an_operator_gave_a_tag_goes_back_to_the_release_but_the_tag_stays(move: str) -> None:
    before = [Route(OLD, 90, STABLE), Route(NEW, 0, CANDIDATE), Route(OLDER, 10, "canary-eu")]
    after = MOVES[move](before)
    assert Route(OLDER, 0, "canary-eu") in after
    assert sum(route.percent for route in after) == 100


@pytest.mark.parametrize("percent", [0, 1, 50, 99, 100])
def test_a_step_puts_exactly_its_percent_on_the_candidate_and_the_rest_on_stable(percent: int) -> None:
    before = [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE), UNOWNED["pull request"]]
    assert traffic.split(before, OLD, NEW, percent) == [
        Route(OLD, 100 - percent, STABLE),
        Route(NEW, percent, CANDIDATE),
        UNOWNED["pull request"],
    ]


def test_a_step_keeps_the_previous_tag_at_zero_and_drops_untagged_routes() -> None:
    before = [Route(OLD, 95, STABLE), Route(NEW, 5, CANDIDATE), Route(OLDER, 0, PREVIOUS), Route(OLDER, 0)]
    assert traffic.split(before, OLD, NEW, 20) == [
        Route(OLD, 80, STABLE),
        Route(NEW, 20, CANDIDATE),
        Route(OLDER, 0, PREVIOUS),
    ]


def test_promoting_moves_stable_to_previous_and_replaces_the_old_previous() -> None:
    before = [Route(OLD, 50, STABLE), Route(NEW, 50, CANDIDATE), Route(OLDER, 0, PREVIOUS)]
    assert traffic.promoted(before, OLD, NEW) == [
        Route(NEW, 100, STABLE),
        Route(NEW, 0, CANDIDATE),
        Route(OLD, 0, PREVIOUS),
    ]


@pytest.mark.parametrize(("percent", "refused"), [(0, False), (1, True), (100, True)])
def test_a_tag_is_removed_only_while_it_serves_nothing(percent: int, refused: bool) -> None:
    before = [Route(OLD, 100 - percent, STABLE), Route(NEW, percent, "pr-9"), UNOWNED["operator tag"]]
    if refused:
        with pytest.raises(TrafficError, match=f"tag pr-9 serves {percent}% of requests: move that traffic"):
            traffic.without_tag(before, "pr-9")
    else:
        assert traffic.without_tag(before, "pr-9") == [before[0], UNOWNED["operator tag"]]


def test_tagging_moves_the_tag_and_leaves_the_split_alone() -> None:
    before = [Route(OLD, 100, STABLE), Route(OLDER, 0, "pr-9"), UNOWNED["operator tag"]]
    assert traffic.with_tag(before, NEW, "pr-9") == [
        before[0],
        UNOWNED["operator tag"],
        Route(NEW, 0, "pr-9"),
    ]


def test_share_adds_every_route_of_a_revision() -> None:
    routes = [Route(OLD, 60, STABLE), Route(NEW, 30, CANDIDATE), Route(NEW, 10, "qa"), Route(OLDER, 0, "x")]
    assert traffic.share(routes, NEW) == 40
    assert traffic.share(routes, OLDER) == 0
    assert traffic.tagged(routes, "qa") == Route(NEW, 10, "qa")
    assert traffic.tagged(routes, "none") is None


def test_a_step_takes_back_a_share_someone_gave_the_previous_revision() -> None:
    # An operator sent 10% back to the previous revision by hand: the step's split still adds up to 100.
    before = [Route(OLD, 85, STABLE), Route(NEW, 5, CANDIDATE), Route(OLDER, 10, PREVIOUS)]
    assert traffic.split(before, OLD, NEW, 20) == [
        Route(OLD, 80, STABLE),
        Route(NEW, 20, CANDIDATE),
        Route(OLDER, 0, PREVIOUS),
    ]
