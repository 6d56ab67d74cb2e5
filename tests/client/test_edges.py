"""The client's limits at, just inside and just outside them: page sizes, ports and the deadline."""

from __future__ import annotations

import argparse

import pytest

from client import cli, commands
from client.target import TargetError, parse_target

INT32_MAX = 2**31 - 1


@pytest.mark.parametrize("value", [0, 1, INT32_MAX - 1, INT32_MAX])
def test_a_count_takes_zero_to_int32_max(value: int) -> None:
    assert commands._non_negative_int(str(value)) == value


@pytest.mark.parametrize("value", [-1, INT32_MAX + 1])
def test_a_count_beyond_int32_is_refused_with_the_range(value: int) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        commands._non_negative_int(str(value))
    assert str(refused.value) == f"must be from 0 to {INT32_MAX}: '{value}'"


@pytest.mark.parametrize("port", [1, 2, 65534, 65535])
def test_a_target_takes_every_port_from_1_to_65535(port: int) -> None:
    assert parse_target(f"localhost:{port}").address == f"localhost:{port}"


@pytest.mark.parametrize("port", [0, 65536])
def test_a_target_refuses_port_0_and_65536(port: int) -> None:
    with pytest.raises(TargetError, match="is not host:port"):
        parse_target(f"localhost:{port}")


@pytest.mark.parametrize(("text", "value"), [("0.001", 0.001), ("1", 1.0), ("30", 30.0)])
def test_the_deadline_takes_any_positive_number(text: str, value: float) -> None:
    assert cli._positive_float(text) == value


@pytest.mark.parametrize("text", ["0", "-0.001", "-1"])
def test_the_deadline_refuses_zero_and_below(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be a positive number"):
        cli._positive_float(text)
