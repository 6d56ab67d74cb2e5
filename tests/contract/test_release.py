"""The release's shared rule and names, at their one definition (contract/release.py)."""

from __future__ import annotations

import pytest

from contract.release import CANDIDATE, PREVIOUS, RELEASE_TAGS, STABLE, check_steps, pr_tag


@pytest.mark.parametrize("steps", [[100], [1, 100], [10, 50, 100], [99, 100], list(range(1, 101))], ids=str)
def test_increasing_percentages_ending_at_100_are_steps(steps: list[int]) -> None:
    assert check_steps(steps) == tuple(steps)


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([], "each must be a percentage from 1 to 100"),
        ([0, 100], "each must be a percentage from 1 to 100"),  # just below the lowest
        ([10, 101], "each must be a percentage from 1 to 100"),  # just above the highest
        ([10, 50.0, 100], "each must be a percentage from 1 to 100"),
        ([True, 100], "each must be a percentage from 1 to 100"),  # JSON true is not a percentage
        (["10", 100], "each must be a percentage from 1 to 100"),
        ([50, 10, 100], "must increase"),
        ([50, 50, 100], "must increase"),
        ([10, 50], "the last must be 100"),
        ([99], "the last must be 100"),
    ],
    ids=str,
)
def test_anything_else_is_refused_with_the_reason(steps: list[object], reason: str) -> None:
    with pytest.raises(ValueError, match=f"steps .*: {reason}"):
        check_steps(steps)


def test_the_release_tags_are_three_distinct_names_and_pull_requests_get_their_own() -> None:
    assert RELEASE_TAGS == (STABLE, CANDIDATE, PREVIOUS)
    assert len(set(RELEASE_TAGS)) == 3
    assert pr_tag(12) == "pr-12"
    assert pr_tag(12) not in RELEASE_TAGS
