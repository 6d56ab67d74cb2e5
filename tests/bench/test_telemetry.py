"""The observability bench's targets: log bytes at most 2% of the access line's, CPU per call no more."""

from __future__ import annotations

import pytest

from bench.telemetry import Figures, targets


def figures(cpu_us: float, log_bytes: float) -> Figures:
    return Figures(cpu_us=[cpu_us], log_bytes=[log_bytes], calls_per_second=[1000.0])


@pytest.mark.parametrize(
    ("new_bytes", "met"),
    [(4.0, True), (3.9, True), (4.1, False)],  # at, below and above 2% of 200 bytes
)
def test_the_log_target_is_two_percent_of_the_access_lines_bytes(new_bytes: float, met: bool) -> None:
    lines, ok = targets(figures(100.0, 200.0), figures(100.0, new_bytes))
    assert ok is met
    assert lines[0].endswith("met")
    assert ("NOT" in lines[0]) is not met


@pytest.mark.parametrize(("new_cpu", "met"), [(100.0, True), (99.0, True), (100.5, False)])
def test_the_cpu_target_is_the_access_lines_cost(new_cpu: float, met: bool) -> None:
    lines, ok = targets(figures(100.0, 200.0), figures(new_cpu, 1.0))
    assert ok is met
    assert ("NOT" in lines[1]) is not met
