"""What every catalog call shares: request decoding, the concurrency limit, the access log, clean errors.

One server interceptor makes sure no call ends in UNKNOWN or leaks an exception's text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from service.logs import FIELDS, TRACE_FIELD, trace_resource

CATALOG_PREFIX = "/catalog.ProductCatalog/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

access_log = logging.getLogger("service.access")
_log = logging.getLogger(__name__)

_QUIET_CODES = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


class _Malformed:
    """What the request deserializer hands over when the bytes are not the expected message."""

    def __init__(self, message_name: str) -> None:
        self.message_name = message_name


class CatalogInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Wraps catalog methods fully and health checks for the access log; leaves the rest untouched.

    The concurrency limit is ours rather than grpc.server's `maximum_concurrent_rpcs` so that it counts
    only catalog calls: Cloud Run's probes must still get an answer when the catalog is at its limit.
    """

    def __init__(self, max_concurrent_calls: int, project_id: str | None) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent_calls)
        self._limit = max_concurrent_calls
        self._project_id = project_id

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Return the wrapped handler for catalog methods and health checks, the original otherwise."""
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return None
        is_catalog = method.startswith(CATALOG_PREFIX)
        if not (is_catalog or method == HEALTH_CHECK):
            return handler
        call = _Call(self, method, handler_call_details.invocation_metadata, limited=is_catalog)
        deserializer = _safe_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                call.wrap_unary(handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                call.wrap_stream(handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # the catalog has no client-streaming methods

    def try_acquire(self, context: grpc.ServicerContext) -> None:
        """Take a slot for this call, released when the call ends however it ends."""
        if not self._slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is at its limit of {self._limit} concurrent calls; retry with backoff",
            )
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._slots.release()

        if not context.add_callback(release):  # the call already ended
            release()

    @property
    def project_id(self) -> str | None:
        """The project for trace resources in log lines."""
        return self._project_id


class _Call:
    """One call's bookkeeping: its start time, its status code, its access line."""

    def __init__(
        self,
        interceptor: CatalogInterceptor,
        method: str,
        metadata: Any,
        limited: bool,
    ) -> None:
        self._interceptor = interceptor
        self._method = method
        self._metadata = tuple(metadata or ())
        self._limited = limited

    def wrap_unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                self._admit(request, context)
                return behavior(request, context)
            except Exception:
                self._fail_cleanly(context)
                raise
            finally:
                self._log(context, started)

        return unary

    def wrap_stream(
        self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            try:
                self._admit(request, context)
                yield from behavior(request, context)
            except Exception:
                self._fail_cleanly(context)
                raise
            finally:  # also on GeneratorExit, when gRPC drops a cancelled stream
                self._log(context, started)

        return stream

    def _admit(self, request: Any, context: grpc.ServicerContext) -> None:
        if isinstance(request, _Malformed):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request body is not a valid {request.message_name} message",
            )
        if self._limited:
            self._interceptor.try_acquire(context)

    def _fail_cleanly(self, context: grpc.ServicerContext) -> None:
        """Turn an unexpected exception into INTERNAL; gRPC would answer UNKNOWN with its text."""
        if context.code() is None:  # type: ignore[attr-defined]  # not an abort(): a bug. Log it whole, tell the client little.
            _log.exception("unexpected error in %s", self._method)
            context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server's logs")

    def _log(self, context: grpc.ServicerContext, started: float) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        code = _final_code(context)
        if self._method == HEALTH_CHECK:
            level = logging.DEBUG
        elif code in _QUIET_CODES:
            level = logging.INFO
        elif code in _SERVER_FAULTS:
            level = logging.ERROR
        else:
            level = logging.WARNING
        if not access_log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "method": self._method,
            "code": code.name,
            "duration_ms": round(duration_ms, 3),
            "peer": context.peer(),
        }
        trace = trace_resource(self._interceptor.project_id, self._metadata)
        if trace:
            fields[TRACE_FIELD] = trace
        access_log.log(level, "%s %s %.2f ms", self._method, code.name, duration_ms, extra={FIELDS: fields})


def _final_code(context: grpc.ServicerContext) -> grpc.StatusCode:
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    if code is not None:
        return code
    if not context.is_active():  # ended without a status of ours: the client left or time ran out
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK


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
