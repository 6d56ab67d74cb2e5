"""A number out of range is refused with the whole line a user reads: the range as written, then its meaning.

Each bounded number is tried past its limit from an option and from the plan's key, and the line is compared
whole, so a note that runs into the range ("from 1 to 1001 allows...") or a bound in exponent form
("3.6e+06") fails here.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from typing import Any

import pytest

from release import cli
from tests.release.test_cli_options import PLAN

LATENCY_RATIO = "must be a latency ratio from 1 to 100 (1 allows no slowdown at all)"
MILLISECONDS = "must be a number of milliseconds from 0 to 3600000 (0 for no bound)"
RATIO = "must be a ratio from 0 to 1 (0.01 is 1%)"
SECONDS = "must be a number of seconds from 0 to 86400"


def refusal(argv: list[str], plan: dict[str, Any] | None = None) -> str:
    """The last line the command prints as it exits 2 on `argv` (with `plan` on stdin, if given)."""
    err = io.StringIO()
    stdin = io.StringIO(json.dumps(plan) if plan is not None else "")
    argv = [*argv, "--plan", "-"] if plan is not None else argv
    with pytest.raises(SystemExit) as exit_info, redirect_stderr(err):
        cli.main(argv, stdin=stdin)
    assert exit_info.value.code == cli.EXIT_USAGE
    return err.getvalue().splitlines()[-1]


@pytest.mark.parametrize(
    ("option", "text", "message"),
    [
        ("--max-latency-ratio", "0.99", LATENCY_RATIO),
        ("--max-latency-ratio", "100.5", LATENCY_RATIO),
        ("--max-p95-ms", "-1", MILLISECONDS),
        ("--max-p99-ms", "3600001", MILLISECONDS),
        ("--max-error-ratio", "1.5", RATIO),
        ("--pause-seconds", "86401", SECONDS),
    ],
)
def test_an_option_past_its_range_is_refused_with_the_range_then_its_meaning(
    option: str, text: str, message: str
) -> None:
    line = refusal(["promote", option, text])
    assert line == f"python -m release: error: argument {option}: {message}: {text!r}"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("maxLatencyRatio", 0.5, LATENCY_RATIO),
        ("maxP95Ms", -1, MILLISECONDS),
        ("maxP99Ms", 3_600_001, MILLISECONDS),
        ("maxErrorRatio", -0.5, RATIO),
        ("ingestionDelaySeconds", 86_401, SECONDS),
    ],
)
def test_a_plan_key_past_its_range_is_refused_with_the_range_then_its_meaning(
    key: str, value: float, message: str
) -> None:
    line = refusal(["promote"], {**PLAN, key: value})
    assert line == f"python -m release: error: the plan's {key} {value!r}: {message}: {value!r}"
