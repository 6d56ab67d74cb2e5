"""The limits table of docs/hardening.md gives the values service/limits.py sets, and every one of them.

The options are read from `server_options` at the default settings (what `python -m service` passes
gRPC), and the environment rows from `Settings`' defaults and service/config.py's bounds, so a changed
constant, a limit added without a row, or a row for an option no longer set fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service import config
from service.config import Settings
from service.limits import MIN_STREAMS_PER_CONNECTION, server_options, streams_per_connection
from service.server import SPARE_CALLS
from tests.docs.markdown import REPO_ROOT, Page, Table, first_code

PAGE = REPO_ROOT / "docs" / "hardening.md"
# A figure and its unit, as the table writes them; each unit in the option's own (bytes or ms).
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|min|ms|s)?\b")
_UNITS = {None: 1, "KiB": 1024, "MiB": 1024 * 1024, "ms": 1, "s": 1000, "min": 60_000}
_STREAMS = "grpc.max_concurrent_streams"


def limits_table(page: Page) -> Table:
    (table,) = [t for t in page.tables() if len(t.header) > 1 and t.header[1].startswith("gRPC option")]
    return table


def quantity(cell: str) -> float:
    """The first figure of `cell` in its option's unit: "16 KiB" is 16384, "5 min" 300000, "2" 2."""
    match = _QUANTITY.search(cell)
    assert match, f"no figure in {cell!r}"
    return float(match[1]) * _UNITS[match[2]]


def mismatches(table: Table) -> list[str]:
    """What the table says that the code does not, row by row, and the options it leaves out."""
    defaults = Settings()
    options = dict(server_options(defaults.max_concurrent_rpcs, SPARE_CALLS, defaults.connection_limits))
    name_column = table.column("grpc option / variable")
    value_column = table.column("value")
    assert name_column is not None
    assert value_column is not None
    problems: list[str] = []
    documented: set[str] = set()
    for row in table.rows:
        name, value = first_code(row[name_column]) or row[name_column], row[value_column]
        documented.add(name)
        if name == _STREAMS:
            streams = streams_per_connection(defaults.max_concurrent_rpcs, SPARE_CALLS)
            expected = (
                f"+ {SPARE_CALLS}",
                f"at least {MIN_STREAMS_PER_CONNECTION}",
                f"({streams} at the default {defaults.max_concurrent_rpcs})",
            )
            problems += [f"{name}: {value!r} does not say {part!r}" for part in expected if part not in value]
        elif name in options:
            if quantity(value) != options[name]:
                problems.append(f"{name}: the table says {value!r}, service/limits.py sets {options[name]}")
        elif name == "STALLED_STREAM_SECONDS":
            low, high = config.MIN_STALLED_STREAM_SECONDS, config.MAX_STALLED_STREAM_SECONDS
            if quantity(value) != defaults.stalled_stream_seconds * 1000:
                problems.append(f"{name}: {value!r}, the default is {defaults.stalled_stream_seconds:g} s")
            if f"{low:g} to {high:g}" not in row[name_column]:
                problems.append(f"{name}: {row[name_column]!r} does not give its bounds, {low:g} to {high:g}")
        elif name == "MAX_CONCURRENT_RPCS":
            if quantity(value) != defaults.max_concurrent_rpcs:
                problems.append(f"{name}: {value!r}, the default is {defaults.max_concurrent_rpcs}")
        else:
            problems.append(f"{name}: the server sets no such option or variable")
    problems += [
        f"{name}: set by service/limits.py, not in the table" for name in options.keys() - documented
    ]
    return problems


def test_the_hardening_limits_table_is_what_the_server_sets() -> None:
    assert mismatches(limits_table(Page.read(PAGE))) == []


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("| idle connection | `grpc.max_connection_idle_ms` | 4 min | never | why |", "says '4 min'"),
        ("| largest request | `grpc.max_receive_message_length` | 16 MiB | 4 MiB | why |", "sets 16384"),
        ("| typo | `grpc.max_conection_age_ms` | 5 min | never | why |", "no such option"),
        ("| stalled stream | `STALLED_STREAM_SECONDS` (env, 1 to 3600) | 30 s | none | why |", "bounds"),
    ],
)
def test_a_drift_is_caught(row: str, problem: str, tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    header = "| limit | gRPC option / variable | value | core's default | why |\n|---|---|---|---|---|\n"
    start = text.index(header) + len(header)
    path = tmp_path / "hardening.md"
    path.write_text(text[:start] + row + "\n" + text[start:], encoding="utf-8")
    found = mismatches(limits_table(Page.read(path)))
    assert any(problem in line for line in found), found


def test_a_limit_left_out_is_caught(tmp_path: Path) -> None:
    lines = PAGE.read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "hardening.md"
    path.write_text("".join(line for line in lines if "`grpc.server_handshake_timeout_ms`" not in line))
    found = mismatches(limits_table(Page.read(path)))
    assert found == ["grpc.server_handshake_timeout_ms: set by service/limits.py, not in the table"]
