"""The access line written on the hot path is exactly the JSON every other log line is."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from service.logs import TRACE_FIELD, AccessLog, json_line


@pytest.mark.parametrize("trace", [None, "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"])
@pytest.mark.parametrize("peer", ["ipv4:127.0.0.1:5000", 'ipv6:[::1]:1 "odd" \\ café\n'])
def test_access_lines_are_what_json_line_writes(
    capsys: pytest.CaptureFixture[str], trace: str | None, peer: str
) -> None:
    access = AccessLog(logging.getLogger("service.access"))

    async def write() -> None:
        access.write(
            logging.WARNING,
            "/catalog.ProductCatalog/GetProduct",
            "CANCELLED",
            12.3456,
            peer=peer,
            trace=trace,
        )
        access.write(
            logging.INFO, "/catalog.ProductCatalog/SearchProducts", "OK", 0.1, peer=peer, trace=trace
        )
        await asyncio.sleep(0)  # the lines of one turn of the loop are written together

    asyncio.run(write())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, (severity, method, code, duration) in zip(
        lines,
        [
            ("WARNING", "/catalog.ProductCatalog/GetProduct", "CANCELLED", 12.3456),
            ("INFO", "/catalog.ProductCatalog/SearchProducts", "OK", 0.1),
        ],
        strict=True,
    ):
        record = json.loads(line)
        fields = {"method": method, "code": code, "duration_ms": round(duration, 3), "peer": peer}
        if trace:
            fields[TRACE_FIELD] = trace
        created = record["time"]  # the one value that differs between two renderings
        expected = json_line(severity, f"{method} {code} {duration:.2f} ms", 0, "service.access", fields)
        assert line == expected.replace(json.loads(expected)["time"], created)
