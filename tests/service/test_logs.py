"""The access line written on the hot path is exactly the JSON every other log line is."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime

import pytest

from catalog import SERVICE_NAME, catalog_pb2
from service.logs import TRACE_FIELD, AccessLog, json_line
from service.store import CatalogStore
from tests.service.helpers import make_products, serving


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
        await asyncio.sleep(AccessLog.FLUSH_SECONDS * 2)  # after the batch's timer, whatever the load

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


def test_access_lines_wait_for_their_batch(capsys: pytest.CaptureFixture[str]) -> None:
    access = AccessLog(logging.getLogger("service.access"))

    async def write() -> tuple[str, str]:
        for method in ("/catalog.ProductCatalog/GetProduct", "/catalog.ProductCatalog/ListProducts"):
            access.write(logging.INFO, method, "OK", 1.0, peer="ipv4:127.0.0.1:1", trace=None)
        await asyncio.sleep(0)
        before = capsys.readouterr().out
        access.flush()
        return before, capsys.readouterr().out

    before, flushed = asyncio.run(write())
    assert before == ""
    assert [json.loads(line)["method"] for line in flushed.splitlines()] == [
        "/catalog.ProductCatalog/GetProduct",
        "/catalog.ProductCatalog/ListProducts",
    ]


def test_times_are_utc_isoformat_with_microseconds(capsys: pytest.CaptureFixture[str]) -> None:
    access = AccessLog(logging.getLogger("service.access"))

    async def write() -> None:
        access.write(logging.INFO, "/m", "OK", 1.0, peer="p", trace=None)
        access.flush()

    before = datetime.now(UTC)
    asyncio.run(write())
    after = datetime.now(UTC)
    written = json.loads(capsys.readouterr().out)["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", written)
    assert before <= datetime.fromisoformat(written) <= after


def test_a_stopping_server_writes_its_last_access_lines(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    with serving(CatalogStore(make_products(3))) as stub:
        stub.GetProduct(catalog_pb2.GetProductRequest(id="p0"), timeout=5)
    # No wait after the call: the server's stop wrote the line still waiting for its batch.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    assert [(line["method"], line["code"]) for line in lines] == [(f"/{SERVICE_NAME}/GetProduct", "OK")]


def test_a_closed_access_log_writes_each_line_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    access = AccessLog(logging.getLogger("service.access"))

    async def write() -> list[str]:
        access.write(logging.INFO, "/m/Pending", "OK", 1.0, peer="p", trace=None)
        access.close()  # writes the pending line
        written = [capsys.readouterr().out]
        access.write(logging.WARNING, "/m/Late", "CANCELLED", 1.0, peer="p", trace=None)
        written.append(capsys.readouterr().out)  # no batch timer: a stopped server's loop may not run it
        return written

    pending, late = asyncio.run(write())
    assert json.loads(pending)["method"] == "/m/Pending"
    assert json.loads(late)["method"] == "/m/Late"
