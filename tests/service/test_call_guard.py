"""The call guard around every catalog call (service/call_guard.py): what callers, shutdown and logs see.

Most tests run a real grpc.aio server on loopback whose method table is the guard's own (GuardedHandlers)
over a scripted servicer, called by real aio clients on the same event loop: each request says how its call
ends (`_act`). The guard's count of calls in flight is read as the shutdown reads it (`idle`) and as callers
feel it (a call beyond the limit is refused). The few paths a real server cannot reach on demand are unit
tests with a small fake context, each saying why.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from catalog import (
    GET_PRODUCT_METHOD,
    HEALTH_CHECK_METHOD,
    SEARCH_PRODUCTS_METHOD,
    SERVICE_NAME,
    catalog_pb2,
    catalog_pb2_grpc,
)
from contract.server_metrics import CALL_DURATION, CALLS
from service.call_guard import (
    DEADLINE_SLACK_SECONDS,
    CallGuard,
    Context,
    GuardedHandlers,
    StreamBehavior,
    UnaryBehavior,
    _abandoned_code,
    _CallFacts,
)
from service.logs import AccessLog
from service.telemetry import CallTracing, Telemetry
from service.telemetry_export import InMemoryReader, call_metrics
from tests.service.test_telemetry import points

ACCESS_LOGGER = "tests.call_guard.access"
SERVING = health_pb2.HealthCheckResponse.SERVING
DRAINING = "the server is shutting down; retry"
TRUNCATED = b"\x0a\x05ab"  # field 1, a string of 5 bytes, of which 2 came
# What a call's access line says, as a test compares it.
Line = tuple[str, str, str]  # method, code, severity


# ---- The scripted server ----


async def _act(script: str, context: Context, releases: dict[str, asyncio.Event]) -> None:
    """What a request's id (unary) or query (stream) asks the behaviour to do before it answers.

    "": answer at once; "hold..." : wait until the test sets `releases[script]`; "hang": wait until
    cancelled; "raise": a bug; "abort:CODE": end the call with that status, as servicers do;
    "abort-error": raise gRPC's AbortError without a status, which gRPC answers UNKNOWN.
    """
    if script.startswith("hold"):
        await releases[script].wait()
    elif script == "hang":
        await asyncio.Event().wait()
    elif script == "raise":
        raise RuntimeError("secret internals")
    elif script == "abort-error":
        raise aio.AbortError
    elif script.startswith("abort:"):
        await context.abort(grpc.StatusCode[script.removeprefix("abort:")], "scripted")


class _Scripted(catalog_pb2_grpc.ProductCatalogServicer):
    """GetProduct acts on its id, then answers; SearchProducts sends one, acts on its query, sends another."""

    def __init__(self, answer: str = "scripted") -> None:
        self.answer = answer  # the name of every product it sends: which servicer answered
        self.releases: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.entered = 0  # calls that reached the behaviour (admitted by the guard)
        self.steps_taken = 0  # messages of "steps" streams that gRPC has taken

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: Context
    ) -> catalog_pb2.Product:
        self.entered += 1
        await _act(request.id, context, self.releases)
        return catalog_pb2.Product(id=request.id, name=self.answer)

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: Context
    ) -> catalog_pb2.ListProductsResponse:
        raise NotImplementedError  # no test calls it

    async def SearchProducts(
        self, request: catalog_pb2.SearchRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.Product]:
        self.entered += 1
        if request.query == "steps":  # one product each time the test sets releases["step"]
            while True:
                await self.releases["step"].wait()
                self.releases["step"].clear()
                yield catalog_pb2.Product(id="step", name=self.answer)
                self.steps_taken += 1  # resumed: the guard has counted the message
        yield catalog_pb2.Product(id="first", name=self.answer)
        await _act(request.query, context, self.releases)
        yield catalog_pb2.Product(id="last", name=self.answer)


@dataclass
class _Guarded:
    """A running server with the guard, its scripted servicer, and a client channel to it."""

    guard: CallGuard
    handlers: GuardedHandlers
    servicer: _Scripted
    channel: aio.Channel
    stub: catalog_pb2_grpc.ProductCatalogAsyncStub
    health: Any  # grpc_health's stubs are untyped
    started: list[Any] = field(default_factory=list)  # calls begun with `begin`, cancelled at the end

    async def call(self, kind: str, script: str, timeout: float = 10) -> tuple[grpc.StatusCode, str]:
        """One call of `kind` ("unary" or "stream") to its end: its status and details."""
        try:
            if kind == "unary":
                await self.stub.GetProduct(catalog_pb2.GetProductRequest(id=script), timeout=timeout)
            else:
                async for _ in self.stub.SearchProducts(
                    catalog_pb2.SearchRequest(query=script), timeout=timeout
                ):
                    pass
        except aio.AioRpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""

    async def begin(self, kind: str, script: str, timeout: float = 10) -> Any:
        """Start a call of `kind`; return it once its behaviour runs (a stream: once it sent a product)."""
        entered = self.servicer.entered
        if kind == "unary":
            call: Any = self.stub.GetProduct(catalog_pb2.GetProductRequest(id=script), timeout=timeout)
        else:
            call = self.stub.SearchProducts(catalog_pb2.SearchRequest(query=script), timeout=timeout)
            assert (await call.read()).id == "first"
        self.started.append(call)
        await _until(lambda: self.servicer.entered > entered, "the call reaches the behaviour")
        return call

    async def check_health(self) -> int:
        """The status of the health check of the whole server."""
        response = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return int(response.status)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition`, letting the loop run (bounded, so a broken guard fails instead of hanging)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still waiting for: {what}")


@asynccontextmanager
async def _guarded(
    limit: int = 4,
    *,
    ok_rate: float = 1.0,
    project_id: str | None = None,
    telemetry: Telemetry | None = None,
    random: Callable[[], float] | None = None,
    stalled_stream_seconds: float = 30.0,
) -> AsyncIterator[_Guarded]:
    """The server: catalog and health methods in the guard's table, as service/server.py builds it."""
    access_log = AccessLog(logging.getLogger(ACCESS_LOGGER))  # writes to sys.stdout: capsys reads it
    guard = CallGuard(
        limit,
        project_id,
        access_log,
        stalled_stream_seconds,
        telemetry=telemetry,
        ok_log_sample_rate=ok_rate,
    )
    if random is not None:
        guard._random = random  # the sampling draw, fixed to test the rate's edges
    handlers = GuardedHandlers(guard)
    servicer = _Scripted()
    handlers.add(catalog_pb2_grpc.add_ProductCatalogServicer_to_server, servicer)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", SERVING)
    handlers.add(health_pb2_grpc.add_HealthServicer_to_server, health_servicer)
    server = aio.server(handlers=[handlers])
    port = server.add_insecure_port("localhost:0")
    await server.start()
    channel = aio.insecure_channel(f"localhost:{port}")
    guarded = _Guarded(
        guard,
        handlers,
        servicer,
        channel,
        catalog_pb2_grpc.ProductCatalogStub(channel),
        health_pb2_grpc.HealthStub(channel),
    )
    try:
        yield guarded
    finally:
        for call in guarded.started:
            call.cancel()
        await channel.close()
        await server.stop(0)
        await asyncio.sleep(0.05)  # the stopped calls' guards unwind and write their lines
        access_log.close()


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(cast(Any, test()))


def _lines(capsys: pytest.CaptureFixture[str]) -> list[Line]:
    """The access lines written so far: (method, code, severity) each."""
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    return [(record["method"], record["code"], record["severity"]) for record in records]


@pytest.fixture(autouse=True)
def access_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Every access line is written, health checks' (DEBUG) too, unless a test sets another level."""
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)


KINDS = ["unary", "stream"]
METHOD_OF = {"unary": GET_PRODUCT_METHOD, "stream": SEARCH_PRODUCTS_METHOD}


# ---- The drain ----


@pytest.mark.parametrize("kind", KINDS)
def test_during_the_drain_new_calls_are_unavailable_while_health_and_calls_in_flight_go_on(
    capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    async def test() -> None:
        async with _guarded(limit=2) as server:
            held = await server.begin(kind, "hold")  # one call in flight, one slot still free
            server.guard.refuse_new_calls()
            for new in KINDS:
                assert await server.call(new, "") == (grpc.StatusCode.UNAVAILABLE, DRAINING)
            assert await server.check_health() == SERVING
            server.servicer.releases["hold"].set()
            await _finish(kind, held)
            await asyncio.wait_for(server.guard.idle(), timeout=5)

    _run(test)
    lines = _lines(capsys)
    assert sorted(lines) == sorted(
        [
            (GET_PRODUCT_METHOD, "UNAVAILABLE", "WARNING"),
            (SEARCH_PRODUCTS_METHOD, "UNAVAILABLE", "WARNING"),
            (HEALTH_CHECK_METHOD, "OK", "DEBUG"),
            (METHOD_OF[kind], "OK", "INFO"),
        ]
    )


def test_during_the_drain_a_full_server_says_it_is_shutting_down_not_full() -> None:
    async def test() -> None:
        async with _guarded(limit=1) as server:
            held = await server.begin("unary", "hold")
            server.guard.refuse_new_calls()
            assert await server.call("unary", "") == (grpc.StatusCode.UNAVAILABLE, DRAINING)
            server.servicer.releases["hold"].set()
            await held

    _run(test)


# ---- The count of calls in flight ----

# How a call ends, the script that ends it so, and the codes its access line may have. "cancel" and
# "deadline" are the client's doing: the server's behaviour is cancelled mid-call. At the deadline, the
# client's own deadline cancels the call a moment before the server's expires, within the guard's slack
# (the boundary itself: test_an_abandoned_call_is_past_its_deadline_...).
ENDINGS = {
    "ok": ("", {"OK"}, "INFO"),
    "abort": ("abort:NOT_FOUND", {"NOT_FOUND"}, "INFO"),
    "bug": ("raise", {"INTERNAL"}, "ERROR"),
    "cancel": ("hang", {"CANCELLED"}, "WARNING"),
    "deadline": ("hang", {"DEADLINE_EXCEEDED"}, "WARNING"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_call_gives_its_slot_back_however_it_ends(
    capsys: pytest.CaptureFixture[str], kind: str, ending: str
) -> None:
    script, codes, severity = ENDINGS[ending]

    async def test() -> None:
        async with _guarded(limit=1) as server:
            if ending == "cancel":
                call = await server.begin(kind, script)
                call.cancel()
            elif ending == "deadline":
                call = await server.begin(kind, script, timeout=1)
                with pytest.raises(aio.AioRpcError) as raised:
                    await (call if kind == "unary" else call.read())
                assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                assert (await server.call(kind, script))[0].name in codes
            # The shutdown's wait ends, and the one slot is free again: the next call is admitted.
            await asyncio.wait_for(server.guard.idle(), timeout=5)
            assert await server.call(kind, "") == (grpc.StatusCode.OK, "")

    _run(test)
    (method, code, level), after = _lines(capsys)
    assert (method, level) == (METHOD_OF[kind], severity)
    assert code in codes
    assert after == (METHOD_OF[kind], "OK", "INFO")


@pytest.mark.parametrize("kind", KINDS)
def test_refused_and_malformed_calls_take_no_slot_and_give_none_back(kind: str) -> None:
    full = "the server is at its limit of 1 concurrent calls; retry with backoff"

    async def test() -> None:
        async with _guarded(limit=1) as server:
            await server.begin(kind, "hold")
            for _ in range(2):  # a refusal that gave a slot back would let the second call in
                assert await server.call(kind, "") == (grpc.StatusCode.RESOURCE_EXHAUSTED, full)
            malformed = await _send_raw_details(server.channel, METHOD_OF[kind], TRUNCATED, kind)
            assert malformed[0] is grpc.StatusCode.INVALID_ARGUMENT
            assert await server.call(kind, "") == (grpc.StatusCode.RESOURCE_EXHAUSTED, full)
            assert await server.check_health() == SERVING  # health checks are not counted
            server.servicer.releases["hold"].set()
            await asyncio.wait_for(server.guard.idle(), timeout=5)
            assert await server.call(kind, "") == (grpc.StatusCode.OK, "")

    _run(test)


@pytest.mark.parametrize("kind", KINDS)
def test_idle_returns_at_once_or_as_the_last_call_in_flight_ends(kind: str) -> None:
    async def test() -> None:
        async with _guarded() as server:
            await asyncio.wait_for(server.guard.idle(), timeout=5)  # nothing in flight: at once
            for drain in range(2):  # the second wait must not reuse the first one's finished event
                first, last = f"hold-first-{drain}", f"hold-last-{drain}"
                calls = [await server.begin(kind, first), await server.begin(kind, last)]
                # Two waiters: a second signal's shutdown joins the first.
                waiters = [asyncio.ensure_future(server.guard.idle()) for _ in range(2)]
                server.servicer.releases[first].set()
                await _finish(kind, calls[0])  # the guard counted it out before its status was sent
                await _turns(3)
                assert not any(waiter.done() for waiter in waiters)  # one call is still in flight
                server.servicer.releases[last].set()
                await _finish(kind, calls[1])
                await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)

    _run(test)


async def _finish(kind: str, call: Any) -> None:
    """Read a begun call to its OK end."""
    if kind == "unary":
        await call
    else:
        rest = []
        while (message := await call.read()) is not aio.EOF:
            rest.append(message.id)
        assert rest == ["last"]


async def _turns(count: int) -> None:
    """Let the loop run `count` times round: enough to wake anything waiting on an event, not on a timer."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_stream_is_cut_for_stalling_only_after_a_bound_without_a_message_taken(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The watchdog's checks are run by hand (its own task sleeps for an hour between checks), so that
    each check falls between known messages: a stream is cut at the fourth check in a row that saw no
    new message, counted from the last message gRPC took, whatever the stream sent before.
    """
    caplog.set_level(logging.WARNING, logger="service.stalls")

    def cut() -> bool:
        return any(record.name == "service.stalls" for record in caplog.records)

    async def test() -> None:
        async with _guarded(limit=1, stalled_stream_seconds=3600) as server:
            check = server.guard._stalls._check
            stream: Any = server.stub.SearchProducts(catalog_pb2.SearchRequest(query="steps"), timeout=10)
            for taken in (1, 2):
                server.servicer.releases["step"].set()
                assert (await stream.read()).id == "step"
                await _until(lambda: server.servicer.steps_taken == taken, "the message is taken")  # noqa: B023
                for _ in range(4):  # one check sees the new message, three see none
                    check()
                assert not cut()
            check()  # the fourth in a row without a message
            assert cut()
            # Its slot is back (the client is left waiting: gRPC keeps a cancelled call until it leaves).
            await asyncio.wait_for(server.guard.idle(), timeout=5)
            stream.cancel()
            assert await server.call("stream", "") == (grpc.StatusCode.OK, "")
            for _ in range(5):  # streams that ended, however, are no longer watched
                check()

    _run(test)
    (warning,) = [record.getMessage() for record in caplog.records if record.name == "service.stalls"]
    assert warning.startswith(f"cancelled {SEARCH_PRODUCTS_METHOD}: no message sent for 3600 s")
    assert _lines(capsys) == [
        (SEARCH_PRODUCTS_METHOD, "CANCELLED", "WARNING"),
        (SEARCH_PRODUCTS_METHOD, "OK", "INFO"),
    ]


# ---- The access line ----

# The client's doing, and the server's.
QUIET = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


def _severity(code: grpc.StatusCode) -> str:
    return "INFO" if code in QUIET else "ERROR" if code in SERVER_FAULTS else "WARNING"


@pytest.mark.parametrize("code", [code for code in grpc.StatusCode if code is not grpc.StatusCode.OK])
def test_each_code_has_its_level_and_health_checks_are_debug(
    capsys: pytest.CaptureFixture[str], code: grpc.StatusCode
) -> None:
    async def test() -> None:
        async with _guarded() as server:
            assert (await server.call("unary", f"abort:{code.name}"))[0] is code
            assert (await server.call("stream", f"abort:{code.name}"))[0] is code
            assert (await server.call("unary", ""))[0] is grpc.StatusCode.OK
            assert await server.check_health() == SERVING

    _run(test)
    assert _lines(capsys) == [
        (GET_PRODUCT_METHOD, code.name, _severity(code)),
        (SEARCH_PRODUCTS_METHOD, code.name, _severity(code)),
        (GET_PRODUCT_METHOD, "OK", "INFO"),
        (HEALTH_CHECK_METHOD, "OK", "DEBUG"),
    ]


def test_an_abort_without_a_status_is_logged_unknown_as_the_client_sees_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def test() -> None:
        async with _guarded() as server:
            for kind in KINDS:
                assert (await server.call(kind, "abort-error"))[0] is grpc.StatusCode.UNKNOWN
            await asyncio.wait_for(server.guard.idle(), timeout=5)

    _run(test)
    assert _lines(capsys) == [(method, "UNKNOWN", "ERROR") for method in METHOD_OF.values()]


def test_at_info_health_checks_leave_no_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)

    async def test() -> None:
        async with _guarded() as server:
            assert await server.check_health() == SERVING
            assert (await server.call("unary", "abort:NOT_FOUND"))[0] is grpc.StatusCode.NOT_FOUND

    _run(test)
    assert _lines(capsys) == [(GET_PRODUCT_METHOD, "NOT_FOUND", "INFO")]


def test_the_line_names_the_peer_the_duration_and_the_callers_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"

    async def test() -> None:
        async with _guarded(project_id="my-project") as server:
            header = (("x-cloud-trace-context", f"{trace}/1;o=1"),)
            call = server.stub.GetProduct(
                catalog_pb2.GetProductRequest(id="hold"), metadata=header, timeout=10
            )
            await _until(lambda: server.servicer.entered == 1, "the call reaches the behaviour")
            await asyncio.sleep(0.1)
            server.servicer.releases["hold"].set()
            await call
            await server.stub.GetProduct(catalog_pb2.GetProductRequest(id=""), timeout=10)  # no header

    _run(test)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    assert [record.get("logging.googleapis.com/trace") for record in records] == [
        f"projects/my-project/traces/{trace}",
        None,
    ]
    assert all(record["peer"].startswith(("ipv4:", "ipv6:")) for record in records)
    assert records[0]["duration_ms"] >= 100  # held that long once inside: in milliseconds, not seconds


# ---- Sampled OK lines ----

BELOW_ONE = math.nextafter(1.0, 0.0)  # the largest draw random.random() can make


@pytest.mark.parametrize(
    ("rate", "draw", "kept"),
    [
        (0.0, 0.0, False),  # rate 0 keeps no OK line, even on the smallest draw
        (1.0, BELOW_ONE, True),  # rate 1 keeps every OK line, even on the largest
        (0.5, 0.5, False),  # a draw at the rate is outside the sample
        (0.5, math.nextafter(0.5, 0.0), True),
    ],
)
def test_ok_lines_are_sampled_at_the_rate_and_every_other_line_is_kept(
    capsys: pytest.CaptureFixture[str], rate: float, draw: float, kept: bool
) -> None:
    async def test() -> None:
        async with _guarded(ok_rate=rate, random=lambda: draw) as server:
            for kind in KINDS:
                assert (await server.call(kind, ""))[0] is grpc.StatusCode.OK
                assert (await server.call(kind, "abort:NOT_FOUND"))[0] is grpc.StatusCode.NOT_FOUND
                assert (await server.call(kind, "raise"))[0] is grpc.StatusCode.INTERNAL

    _run(test)
    oks = [(method, "OK", "INFO") for method in (GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD)]
    expected = [
        line
        for method, ok in zip((GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD), oks, strict=True)
        for line in ([ok] if kept else []) + [(method, "NOT_FOUND", "INFO"), (method, "INTERNAL", "ERROR")]
    ]
    assert _lines(capsys) == expected


def _tracing(sample_rate: float = 1.0) -> tuple[Telemetry, InMemorySpanExporter]:
    """Telemetry that traces into memory every call (or the share `sample_rate` picks, and the sampled)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Telemetry(None, CallTracing(provider.get_tracer("test"), sample_rate=sample_rate)), spans


@pytest.mark.parametrize("project_id", ["my-project", None])
def test_a_traced_ok_call_keeps_its_line_beside_its_trace(
    capsys: pytest.CaptureFixture[str], project_id: str | None
) -> None:
    telemetry, spans = _tracing()

    async def test() -> None:
        async with _guarded(
            ok_rate=0.0, random=lambda: BELOW_ONE, project_id=project_id, telemetry=telemetry
        ) as server:
            for kind in KINDS:
                assert (await server.call(kind, ""))[0] is grpc.StatusCode.OK
            assert (await server.call("unary", "abort:NOT_FOUND"))[0] is grpc.StatusCode.NOT_FOUND

    _run(test)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    finished = spans.get_finished_spans()
    assert [(record["method"], record["code"]) for record in records] == [
        (GET_PRODUCT_METHOD, "OK"),
        (SEARCH_PRODUCTS_METHOD, "OK"),
        (GET_PRODUCT_METHOD, "NOT_FOUND"),
    ]
    assert [(span.name, (span.attributes or {})["rpc.grpc.status_code"]) for span in finished] == [
        (GET_PRODUCT_METHOD.lstrip("/"), "OK"),
        (SEARCH_PRODUCTS_METHOD.lstrip("/"), "OK"),
        (GET_PRODUCT_METHOD.lstrip("/"), "NOT_FOUND"),
    ]
    traces = [record.get("logging.googleapis.com/trace") for record in records]
    if project_id is None:  # the trace field names a project: without one, none
        assert traces == [None] * 3
    else:
        assert traces == [f"projects/{project_id}/traces/{span.context.trace_id:032x}" for span in finished]


def test_each_call_is_counted_under_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    reader = InMemoryReader()
    metrics, provider = call_metrics(Resource.create({}), [reader], "rev-1")

    async def test() -> None:
        async with _guarded(telemetry=Telemetry(metrics, None, provider)) as server:
            for kind in KINDS:
                for script in ("", "abort:NOT_FOUND", "raise"):
                    await server.call(kind, script)
            assert await server.check_health() == SERVING

    _run(test)
    counted = {series: point.value for series, point in points(reader, CALLS).items()}
    assert counted == {
        **{
            (method.lstrip("/"), code): 1
            for method in METHOD_OF.values()
            for code in ("OK", "NOT_FOUND", "INTERNAL")
        },
        (HEALTH_CHECK_METHOD.lstrip("/"), "OK"): 1,
    }


def test_the_lines_duration_is_the_timed_duration_in_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    reader = InMemoryReader()
    metrics, provider = call_metrics(Resource.create({}), [reader], "rev-1")

    async def test() -> None:
        async with _guarded(telemetry=Telemetry(metrics, None, provider)) as server:
            held = await server.begin("unary", "hold")
            await asyncio.sleep(0.05)  # long enough that a thousandth of it shows in the line's 3 decimals
            server.servicer.releases["hold"].set()
            await held

    _run(test)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"method"' in line]
    (timed,) = points(reader, CALL_DURATION).values()
    assert [record["duration_ms"] for record in records] == [round(timed.sum * 1000, 3)]
    assert timed.sum >= 0.05


# ---- Request bytes ----


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        (GET_PRODUCT_METHOD, "unary", "catalog.GetProductRequest"),
        (SEARCH_PRODUCTS_METHOD, "stream", "catalog.SearchRequest"),
        (HEALTH_CHECK_METHOD, "unary", "grpc.health.v1.HealthCheckRequest"),
    ],
)
def test_bytes_that_are_not_the_request_are_invalid_argument_naming_the_message(
    capsys: pytest.CaptureFixture[str], path: str, kind: str, message: str
) -> None:
    async def test() -> None:
        async with _guarded() as server:
            assert await _send_raw_details(server.channel, path, TRUNCATED, kind) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request body is not a valid {message} message",
            )
            assert server.servicer.entered == 0

    _run(test)
    severity = "DEBUG" if path == HEALTH_CHECK_METHOD else "INFO"
    assert _lines(capsys) == [(path, "INVALID_ARGUMENT", severity)]


def _register_get_product(deserializer: Callable[[bytes], Any] | None, service: str = SERVICE_NAME) -> Any:
    """A register function, as generated code has, adding `behavior` as `service`'s GetProduct, bytes out."""

    def register(behavior: UnaryBehavior, server: Any) -> None:
        handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=deserializer
        )
        server.add_generic_rpc_handlers(())
        server.add_registered_method_handlers(service, {"GetProduct": handler})

    return register


async def _echo(request: Any, _context: Context) -> bytes:
    """Answers with the request's bytes; the request is a product id's bytes once decoded."""
    return request if isinstance(request, bytes) else b"decoded:" + request


def _refuse_bytes(_data: bytes) -> bytes:
    raise ValueError("not for me")


def test_a_method_without_a_deserializer_gets_the_bytes_and_one_that_is_no_message_is_named_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def test() -> None:
        async with _guarded() as server:
            server.handlers.add(_register_get_product(None), _echo)
            assert (
                await _raw_unary(server.channel, GET_PRODUCT_METHOD)(b"\xff raw", timeout=10) == b"\xff raw"
            )
            server.handlers.add(_register_get_product(_refuse_bytes), _echo)
            assert await _send_raw_details(server.channel, GET_PRODUCT_METHOD, b"x", "unary") == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "the request body is not a valid request message",
            )

    _run(test)
    assert _lines(capsys) == [
        (GET_PRODUCT_METHOD, "OK", "INFO"),
        (GET_PRODUCT_METHOD, "INVALID_ARGUMENT", "INFO"),
    ]


def _raw_unary(channel: aio.Channel, path: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary method called with bytes as they are, bypassing the stubs' serializers."""
    return channel.unary_unary(path)


async def _send_raw_details(
    channel: aio.Channel, path: str, body: bytes, kind: str
) -> tuple[grpc.StatusCode, str]:
    """Send `body` as a request, bypassing the stubs' serializers; the call's status and details."""
    try:
        if kind == "unary":
            await _raw_unary(channel, path)(body, timeout=10)
        else:
            raw_stream: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            async for _ in raw_stream(body, timeout=10):
                pass
    except aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


# ---- The method table ----


def test_a_servicer_added_later_replaces_the_first_and_is_guarded_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def test() -> None:
        async with _guarded(limit=1) as server:
            assert (
                await server.stub.GetProduct(catalog_pb2.GetProductRequest(id=""), timeout=10)
            ).name == "scripted"
            later = _Scripted("later")
            server.handlers.add(catalog_pb2_grpc.add_ProductCatalogServicer_to_server, later)
            assert (
                await server.stub.GetProduct(catalog_pb2.GetProductRequest(id=""), timeout=10)
            ).name == "later"
            names = [
                p.name
                async for p in server.stub.SearchProducts(catalog_pb2.SearchRequest(query=""), timeout=10)
            ]
            assert names == ["later", "later"]
            server.servicer = later
            held = await server.begin("unary", "hold")
            refused = await server.call("unary", "")
            assert refused[0] is grpc.StatusCode.RESOURCE_EXHAUSTED  # limited as before
            later.releases["hold"].set()
            await held

    _run(test)
    assert [code for _method, code, _severity in _lines(capsys)] == [
        "OK",
        "OK",
        "OK",
        "RESOURCE_EXHAUSTED",
        "OK",
    ]


def test_methods_of_other_services_are_left_to_grpc(capsys: pytest.CaptureFixture[str]) -> None:
    async def bug(_request: Any, _context: Context) -> bytes:
        raise RuntimeError("secret internals")

    async def test() -> None:
        async with _guarded(limit=1) as server:
            server.handlers.add(_register_get_product(None, service="tests.Other"), _echo)
            held = await server.begin("unary", "hold")  # the catalog is at its limit
            other = _raw_unary(server.channel, "/tests.Other/GetProduct")
            assert await other(b"raw", timeout=10) == b"raw"  # not limited, bytes as they came
            server.handlers.add(_register_get_product(None, service="tests.Other"), bug)
            with pytest.raises(aio.AioRpcError) as raised:
                await other(b"raw", timeout=10)
            assert raised.value.code() is grpc.StatusCode.UNKNOWN  # gRPC's own answer to an exception
            server.servicer.releases["hold"].set()
            await held

    _run(test)
    # No line of theirs: only the held catalog call's.
    assert [method for method, _code, _severity in _lines(capsys)] == [GET_PRODUCT_METHOD]


def test_only_unary_and_server_streaming_catalog_methods_are_wrapped() -> None:
    guard = CallGuard(1, None, AccessLog(logging.getLogger(ACCESS_LOGGER)))
    unary: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_echo)
    client_streaming: grpc.RpcMethodHandler[Any, Any] = grpc.stream_unary_rpc_method_handler(_echo)
    assert guard.wrap("/tests.Other/GetProduct", unary) is unary
    assert guard.wrap(GET_PRODUCT_METHOD, client_streaming) is client_streaming
    assert guard.wrap(GET_PRODUCT_METHOD, unary) is not unary


@dataclass
class _Details:
    """What gRPC hands a method table for each call: the method and the request's metadata."""

    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


def test_the_table_picks_the_traced_handler_for_sampled_calls_only() -> None:
    # The sampling decision reads the metadata gRPC hands the lookup, so an untraced call never asks its
    # context for it (service/call_guard.py's GuardedHandlers says what that would cost).
    tracing, _spans = _tracing(sample_rate=0.0)  # only a caller's sampled flag traces a call
    access_log = AccessLog(logging.getLogger(ACCESS_LOGGER))
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
    sampled = (("traceparent", f"{trace}-01"),)
    for telemetry in (tracing, None):
        handlers = GuardedHandlers(CallGuard(1, None, access_log, telemetry=telemetry))
        handlers.add(catalog_pb2_grpc.add_ProductCatalogServicer_to_server, _Scripted())
        untraced = handlers.service(_Details(GET_PRODUCT_METHOD, (("traceparent", f"{trace}-00"),)))
        chosen = handlers.service(_Details(GET_PRODUCT_METHOD, sampled))
        assert untraced is not None
        assert untraced is handlers.service(_Details(GET_PRODUCT_METHOD, ()))
        if telemetry is None:  # no tracing: one handler, whatever the caller asks
            assert chosen is untraced
        else:
            assert chosen is not None
            assert chosen is not untraced
            assert chosen is handlers.service(_Details(GET_PRODUCT_METHOD, sampled))
        assert handlers.service(_Details("/tests.Other/Nothing", sampled)) is None


# ---- What a real server cannot be made to do on demand ----


class _DoneContext:
    """A call the client has already left: what core's context says when an abort's status cannot be sent."""

    def __init__(self) -> None:
        self.aborted: list[grpc.StatusCode] = []

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> float | None:
        return None

    def done(self) -> bool:
        return True

    async def abort(self, code: grpc.StatusCode, _details: str) -> None:
        self.aborted.append(code)


@pytest.mark.parametrize("kind", KINDS)
def test_a_bug_in_a_call_already_over_is_no_error(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Unit test: only a race makes core end a call under the guard (an abort it could not send)."""
    guard = CallGuard(1, None, AccessLog(logging.getLogger(ACCESS_LOGGER)))
    context = _DoneContext()

    async def raise_unary(_request: Any, _context: Context) -> Any:
        raise RuntimeError("the call is gone")

    async def raise_stream(_request: Any, _context: Context) -> AsyncIterator[Any]:
        raise RuntimeError("the call is gone")
        yield  # pragma: no cover

    async def test() -> None:
        if kind == "unary":
            handler = guard.wrap(GET_PRODUCT_METHOD, grpc.unary_unary_rpc_method_handler(raise_unary))
            assert await cast(UnaryBehavior, handler.unary_unary)(None, cast(Context, context)) is None
        else:
            handler = guard.wrap(SEARCH_PRODUCTS_METHOD, grpc.unary_stream_rpc_method_handler(raise_stream))
            stream = cast(StreamBehavior, handler.unary_stream)(None, cast(Context, context))
            assert [response async for response in stream] == []
        await asyncio.wait_for(guard.idle(), timeout=5)
        guard._access_log.close()

    _run(test)
    assert context.aborted == []
    assert "unexpected error" not in caplog.text
    assert _lines(capsys) == [(METHOD_OF[kind], "CANCELLED", "WARNING")]


def test_a_bug_is_logged_whole_and_answered_internal(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        async with _guarded() as server:
            for kind in KINDS:
                assert await server.call(kind, "raise") == (
                    grpc.StatusCode.INTERNAL,
                    "internal error; see the server's logs",
                )

    _run(test)
    errors = [record for record in caplog.records if record.name == "service.call_guard"]
    assert [record.getMessage() for record in errors] == [
        f"unexpected error in {method}" for method in METHOD_OF.values()
    ]
    assert all(record.levelno == logging.ERROR and record.exc_info for record in errors)
    assert all("secret internals" in str(record.exc_info[1]) for record in errors if record.exc_info)


STARTED = 0.0  # the frozen clock's reading as the call started: 0, so that each boundary below is exact


@pytest.mark.parametrize(
    ("remaining", "now", "code"),
    [
        (None, STARTED + 1e9, grpc.StatusCode.CANCELLED),  # no deadline: the client left
        (2.0, STARTED + 2.0, grpc.StatusCode.DEADLINE_EXCEEDED),  # at the deadline
        # Within the slack before it: the client's own copy of the deadline ran out first.
        (2.0, STARTED + (2.0 - DEADLINE_SLACK_SECONDS), grpc.StatusCode.DEADLINE_EXCEEDED),
        (2.0, math.nextafter(STARTED + (2.0 - DEADLINE_SLACK_SECONDS), 0.0), grpc.StatusCode.CANCELLED),
        (2.0, STARTED + 3.0, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_an_abandoned_call_is_past_its_deadline_from_the_deadline_on(
    monkeypatch: pytest.MonkeyPatch, remaining: float | None, now: float, code: grpc.StatusCode
) -> None:
    """Unit test: on a real server the boundary's instant cannot be chosen; here the clock is frozen."""
    monkeypatch.setattr(time, "perf_counter", lambda: now)
    assert _abandoned_code(_CallFacts("ipv4:127.0.0.1:1", remaining, None), STARTED) is code


class _TimedContext:
    """A call's context as the guard reads it when the call starts: its peer and the time left to it."""

    def __init__(self, time_remaining: float | None) -> None:
        self._time_remaining = time_remaining

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> float | None:
        return self._time_remaining


@pytest.mark.parametrize(
    ("time_remaining", "code"),
    [(0.0, "DEADLINE_EXCEEDED"), (3600.0, "CANCELLED"), (None, "CANCELLED")],
)
@pytest.mark.parametrize("kind", KINDS)
def test_an_abandoned_call_is_judged_by_the_time_it_had_when_it_started(
    capsys: pytest.CaptureFixture[str], kind: str, time_remaining: float | None, code: str
) -> None:
    """Unit test: on a real server the client's own deadline may cancel the call a moment before the
    server's expires (see ENDINGS), so which ends it cannot be chosen; here the context gives the time.
    """
    guard = CallGuard(1, None, AccessLog(logging.getLogger(ACCESS_LOGGER)))
    context = cast(Context, _TimedContext(time_remaining))

    async def cancelled_unary(_request: Any, _context: Context) -> Any:
        raise asyncio.CancelledError

    async def cancelled_stream(_request: Any, _context: Context) -> AsyncIterator[Any]:
        raise asyncio.CancelledError
        yield  # pragma: no cover

    async def call() -> None:
        if kind == "unary":
            handler = guard.wrap(GET_PRODUCT_METHOD, grpc.unary_unary_rpc_method_handler(cancelled_unary))
            await cast(UnaryBehavior, handler.unary_unary)(None, context)
        else:
            handler = guard.wrap(
                SEARCH_PRODUCTS_METHOD, grpc.unary_stream_rpc_method_handler(cancelled_stream)
            )
            async for _ in cast(StreamBehavior, handler.unary_stream)(None, context):
                pass

    async def test() -> None:
        with pytest.raises(asyncio.CancelledError):
            await call()
        await asyncio.wait_for(guard.idle(), timeout=5)  # the slot is back
        guard._access_log.close()

    _run(test)
    assert _lines(capsys) == [(METHOD_OF[kind], code, "WARNING")]
