"""The call guard, around every catalog call, and the server's method table, whose handlers it wraps.

What every catalog call shares: request decoding, the concurrency limit, the access log, clean errors.

`CallGuard.wrap` wraps a method's handler once, when it is added to the table, rather than an interceptor
looking it up on every call: on grpc.aio an interceptor is one more coroutine per call, and a call here
costs little more than that. Everything runs on the server's one event loop thread, so the bookkeeping
is plain attributes, without locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar, cast

import grpc
from grpc import aio

from catalog import CATALOG_METHOD_PREFIX, HEALTH_CHECK_METHOD
from service.logs import AccessLog, trace_resource
from service.stalls import StallWatchdog, StreamProgress
from service.telemetry import CallTracing, Telemetry, trace_id

if TYPE_CHECKING:
    from opentelemetry.trace import Span

_Servicer = TypeVar("_Servicer")
_log = logging.getLogger(__name__)

_QUIET_CODES = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# Each code's access-line level and name, looked up once per call (an Enum's hash and name are Python code).
_ACCESS_LINE = {
    code: (
        logging.INFO
        if code in _QUIET_CODES
        else logging.ERROR
        if code in _SERVER_FAULTS
        else logging.WARNING,
        code.name,
    )
    for code in grpc.StatusCode
}
# OK, and its line, read once: on Python 3.11 reading `grpc.StatusCode.OK` and hashing it to look its line
# up are Python code, about 0.5 us each, and every call did three of them.
_OK = grpc.StatusCode.OK
_OK_LINE = _ACCESS_LINE[_OK]

# A servicer method's context, as every handler here (the guard's and the servicers') takes it.
Context = aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]


class _Malformed:
    """What the request deserializer hands over when the bytes are not the expected message."""

    def __init__(self, message_name: str) -> None:
        self.message_name = message_name


class _CallFacts(NamedTuple):
    """What the access line needs from a call's context, read when the call starts."""

    peer: str
    time_remaining: float | None
    trace: str | None
    span: Span | None = None  # the call's server span, when it is traced (service/telemetry.py)


_new_facts = tuple.__new__


class CallGuard:
    """Wraps catalog methods fully and health checks for the access log; leaves the rest untouched.

    The concurrency limit is ours rather than the server's `maximum_concurrent_rpcs` so that it counts
    only catalog calls: Cloud Run's probes must still get an answer when the catalog is at its limit.
    """

    def __init__(
        self,
        max_concurrent_calls: int,
        project_id: str | None,
        access_log: AccessLog,
        stalled_stream_seconds: float = 30.0,
        *,
        telemetry: Telemetry | None = None,
        ok_log_sample_rate: float = 1.0,
    ) -> None:
        self._limit = max_concurrent_calls
        self._metrics = telemetry.metrics if telemetry else None
        self._tracing = telemetry.tracing if telemetry else None
        # OK calls get a line with this probability; every other call always gets one.
        self._ok_log_rate = ok_log_sample_rate
        self._random = random.random
        self._access_log = access_log
        self._in_flight = 0
        self._refusing = False
        self._drained: asyncio.Event | None = None  # set as in-flight calls reach 0 (see `idle`)
        self._project_id = project_id
        # Streams whose client stopped reading are cancelled, so they give their slot back.
        self._stalls = StallWatchdog(stalled_stream_seconds)

    @property
    def sampled(self) -> Callable[[Sequence[tuple[str, str | bytes]]], bool] | None:
        """Whether a call with this metadata is traced (CallTracing.sampled), or None without tracing."""
        return None if self._tracing is None else self._tracing.sampled

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any], *, traced: bool = False
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler for `method` with this guard around it, or `handler` itself if not ours to guard.

        `traced` (with tracing on): each call gets a span. GuardedHandlers picks this handler for the
        calls that `sampled` picks, and the untraced one for the rest.
        """
        is_catalog = method.startswith(CATALOG_METHOD_PREFIX)
        if not (is_catalog or method == HEALTH_CHECK_METHOD):
            return handler
        tracing = self._tracing if traced else None
        deserializer = _safe_deserializer(handler.request_deserializer)
        # On grpc.aio the behaviours are coroutine functions (unary) and async generators (streams).
        if handler.unary_unary is not None:
            unary = cast(UnaryBehavior, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, unary, limited=is_catalog, tracing=tracing),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = cast(StreamBehavior, handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, stream, limited=is_catalog, tracing=tracing),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # the catalog has no client-streaming methods

    # _wrap_unary and _wrap_stream spell out the same steps on purpose: sharing them through a context
    # manager or helper coroutine would add an object or a coroutine to every call on the hot path.
    def _wrap_unary(
        self, method: str, behavior: UnaryBehavior, limited: bool, tracing: CallTracing | None
    ) -> UnaryBehavior:
        async def unary(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            # Its context lives as long as this coroutine, so a unary call's peer and deadline are read only
            # if it needs them: for its line (1% of OK calls) or when it is abandoned. A span starts now.
            span = None if tracing is None else _start_span(tracing, method, context)
            code = _OK
            facts: _CallFacts | Context = context  # read from it if its line is written
            admitted = False
            try:
                if type(request) is _Malformed:
                    await reject_malformed(context, request.message_name)
                if limited:
                    if self._refusing or self._in_flight >= self._limit:
                        await self._refuse(context)
                    self._in_flight += 1
                    admitted = True
                return await behavior(request, context)
            except aio.AbortError:
                code = _aborted_code(context)
                raise
            except Exception:
                # INTERNAL before the await: _fail_cleanly answers it by raising, so no value comes back.
                code = grpc.StatusCode.INTERNAL
                code = await _fail_cleanly(method, context)
            except BaseException:  # asyncio.CancelledError: the client left or time ran out
                facts = self._facts(context, span)  # read once, for its code and its line
                code = _abandoned_code(facts, time.perf_counter())
                raise
            finally:
                if admitted:
                    self._in_flight -= 1
                    if self._drained is not None and not self._in_flight:
                        self._drained.set()
                self._log(method, code, started, span, facts)

        return unary

    def _wrap_stream(
        self, method: str, behavior: StreamBehavior, limited: bool, tracing: CallTracing | None
    ) -> StreamBehavior:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            call = self._begin(method, context, tracing)
            code = _OK
            admitted = False
            progress: StreamProgress | None = None
            try:
                if type(request) is _Malformed:
                    await reject_malformed(context, request.message_name)
                if limited:
                    if self._refusing or self._in_flight >= self._limit:
                        await self._refuse(context)
                    self._in_flight += 1
                    admitted = True
                progress = self._stalls.watch(method)
                async for response in behavior(request, context):
                    yield response
                    progress.sent += 1  # gRPC has taken the message: the client is reading
            except aio.AbortError:
                code = _aborted_code(context)
                raise
            except Exception:
                # INTERNAL before the await: _fail_cleanly answers it by raising, so no value comes back.
                code = grpc.StatusCode.INTERNAL
                code = await _fail_cleanly(method, context)
            except BaseException:  # CancelledError, or GeneratorExit when gRPC drops a cancelled stream
                code = _abandoned_code(call, started)
                raise
            finally:
                if progress is not None:
                    self._stalls.release(progress)
                if admitted:
                    self._in_flight -= 1
                    if self._drained is not None and not self._in_flight:
                        self._drained.set()
                self._log(method, code, started, call.span, call)

        return stream

    def refuse_new_calls(self) -> None:
        """From now on, answer new catalog calls UNAVAILABLE (the server is shutting down)."""
        self._refusing = True

    async def idle(self) -> None:
        """Return once no catalog call is in flight: at once if none is, else as the last one ends."""
        if not self._in_flight:
            return
        # The event exists only while someone waits (a shutdown), so a call ending costs one more test.
        if self._drained is None or self._drained.is_set():
            self._drained = asyncio.Event()
        await self._drained.wait()

    async def _refuse(self, context: Context) -> NoReturn:
        """End a call the guard does not admit: the server is shutting down, or at its limit.

        Only this rare path awaits: an admitted call costs no coroutine beyond its own.
        """
        if self._refusing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the server is at its limit of {self._limit} concurrent calls; retry with backoff",
        )
        raise AssertionError("abort returns only by raising")  # pragma: no cover

    def _begin(self, method: str, context: Context, tracing: CallTracing | None) -> _CallFacts:
        # A stream's facts are read as it starts: a cancelled stream's generator is closed after gRPC has
        # freed the call, when asking the context would touch freed memory.
        span = None if tracing is None else _start_span(tracing, method, context)
        return self._facts(context, span)

    def _facts(self, context: Context, span: Span | None) -> _CallFacts:
        """What the access line needs from the call's context, read now."""
        trace = None
        if self._project_id:  # the trace field needs a project
            if span is not None:
                trace = f"projects/{self._project_id}/traces/{trace_id(span)}"
            else:
                trace = trace_resource(self._project_id, context.invocation_metadata() or ())
        # Built as a plain tuple is: the NamedTuple's own __new__ is Python code, about 0.6 us a call.
        return _new_facts(_CallFacts, (context.peer(), context.time_remaining(), trace, span))

    def _log(
        self,
        method: str,
        code: grpc.StatusCode,
        started: float,
        span: Span | None,
        facts: _CallFacts | Context,
    ) -> None:
        """Count the call; write its line if sampled, with its facts or, for a unary call, its context's."""
        seconds = time.perf_counter() - started
        level, name = _OK_LINE if code is _OK else _ACCESS_LINE[code]
        if self._metrics is not None:
            self._metrics.finished(method, name, seconds)
        if span is not None:
            CallTracing.end(span, name)
        elif code is _OK and self._random() >= self._ok_log_rate:
            return  # an OK call outside the sample (a traced one keeps its line, to read beside its trace)
        if method == HEALTH_CHECK_METHOD:
            level = logging.DEBUG
        if self._access_log.logger.isEnabledFor(level):
            call = facts if isinstance(facts, _CallFacts) else self._facts(facts, span)
            self._access_log.write(level, method, name, seconds * 1000, peer=call.peer, trace=call.trace)


def _start_span(tracing: CallTracing, method: str, context: Context) -> Span:
    return tracing.start(method, context.invocation_metadata() or ())


async def reject_malformed(context: Context, message_name: str) -> NoReturn:
    """End a call whose request bytes are not a `message_name` (a full name): INVALID_ARGUMENT."""
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"the request body is not a valid {message_name} message"
    )
    raise AssertionError("abort returns only by raising")  # pragma: no cover


def _aborted_code(context: Context) -> grpc.StatusCode:
    code: grpc.StatusCode | None = context.code()
    return grpc.StatusCode.UNKNOWN if code is None else code


# A client gives up at its own deadline, which runs out before the server's copy of it: that copy counts from
# when the request arrived, a transit later (a few ms through Cloud Run's front end, more from afar). A call
# abandoned this close to its deadline was abandoned for it, and is counted DEADLINE_EXCEEDED, the code the
# release's gates and a server's latency SLO read, rather than CANCELLED, which they leave to the client.
DEADLINE_SLACK_SECONDS = 0.1


def _abandoned_code(call: _CallFacts, started: float) -> grpc.StatusCode:
    remaining = call.time_remaining
    expired = remaining is not None and time.perf_counter() - started >= remaining - DEADLINE_SLACK_SECONDS
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


async def _fail_cleanly(method: str, context: Context) -> grpc.StatusCode:
    """End a call whose behaviour raised unexpectedly with INTERNAL: a bug, logged whole here.

    gRPC would answer UNKNOWN with the exception's text; the client learns nothing of the internals.
    Unless the call was already ending: an abort (a refusal, say) whose status core could not send
    because the client had left is the client's doing, and returning lets gRPC finish the call quietly.
    """
    if context.done():
        return grpc.StatusCode.CANCELLED
    _log.exception("unexpected error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server's logs")
    raise AssertionError("abort returns only by raising")  # pragma: no cover


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Hand bad request bytes to the behaviour as _Malformed, which answers INVALID_ARGUMENT.

    gRPC's own path would end such a call with INTERNAL, which blames the server for the client's bytes.
    """
    if deserialize is None:
        return None
    message_type = getattr(deserialize, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    message_name = getattr(descriptor, "full_name", "request")

    def safe(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError and friends: any failure means the bytes are not the message
            return _Malformed(message_name)

    return safe


class GuardedHandlers(grpc.GenericRpcHandler):
    """The server's method table: each method's handler, wrapped by the guard once, when it is added.

    With tracing on, each method also has a traced handler, which the table picks for the calls the
    guard's `sampled` picks.

    A servicer added later replaces the handlers of the same methods: the server starts with a catalog
    servicer that answers UNAVAILABLE and swaps in the real one once the catalog is loaded.
    """

    def __init__(self, guard: CallGuard) -> None:
        self._guard = guard
        self._by_method: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        # With tracing on, each method has a second handler that traces its calls, and each call's
        # sampling is decided here, from the metadata gRPC has already read for this lookup. A handler
        # asking its context for the same metadata would have it read again, at about 15,000 instructions
        # a call: 6% of a GetProduct (docs/performance.md).
        self._sampled = guard.sampled
        self._traced: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add(self, register: Callable[[_Servicer, aio.Server], None], servicer: _Servicer) -> None:
        """Add `servicer`'s methods through its generated `add_*_to_server` function (`register`)."""
        collected = _Collected()
        register(servicer, cast(aio.Server, collected))  # _Collected has the two methods it calls
        for method, handler in collected.by_method.items():
            self._by_method[method] = self._guard.wrap(method, handler)
            if self._sampled is not None:
                self._traced[method] = self._guard.wrap(method, handler, traced=True)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler for the call's method, traced if the call is sampled, or None (UNIMPLEMENTED)."""
        if self._sampled is not None and self._sampled(handler_call_details.invocation_metadata):
            return self._traced.get(handler_call_details.method)
        return self._by_method.get(handler_call_details.method)


class _Collected:
    """Stands in for a server to collect the method handlers a generated `add_*_to_server` registers."""

    def __init__(self) -> None:
        self.by_method: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, _handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: the same handlers come by service name in add_registered_method_handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Keep the service's handlers under their full method names."""
        for name, handler in handlers.items():
            self.by_method[f"/{service}/{name}"] = handler
