"""What the server serves, declared in one place: the bootstrap (service/server.py) names nothing else.

`service.servicer.SERVED` is the one declaration: how to register the servicer, how to build it from its
data, and how that data loads. The catalog is one such declaration; another API is another
(docs/your-own-service.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import grpc

from service.call_guard import Context
from service.config import Settings

_Data = TypeVar("_Data")


class NeverRaisedError(Exception):
    """The default error types of an API without data: nothing raises it."""


@dataclass(frozen=True)
class ServedApi(Generic[_Data]):
    """The API the server serves, its servicer, and the data the servicer is born with.

    The server listens at once, NOT_SERVING, with `loading` answering the API's calls; it loads the data on
    a thread (`load`, read again while it raises `unreadable`, up to CATALOG_READ_TIMEOUT_SECONDS), then
    adds `servicer(data)` in its place and reports SERVING. `invalid` (and `unreadable` past the timeout)
    stops the server: nothing is served, and `python -m service` exits 1.
    """

    # The generated `add_<Service>Servicer_to_server`, or one of the same shape.
    register: Callable[[Any, Any], None]
    # Builds the servicer from the loaded data.
    servicer: Callable[[_Data], object]
    # Reads the data (`lambda settings: None` when there is none); called on a daemon thread: it may block.
    load: Callable[[Settings], _Data]
    # What the data is called in log lines ("catalog").
    data_name: str = "data"
    # The log line's description of loaded data, and of what is served.
    loaded: Callable[[Settings, _Data], str] = lambda _settings, _data: "no data to load"
    served: Callable[[_Data], str] = lambda _data: "the API"
    # Errors of `load`: worth reading again (a mount warming up; the server raises it again, past the
    # timeout, with one message), and the data's own (stop at once).
    unreadable: type[Exception] = NeverRaisedError
    invalid: type[Exception] = NeverRaisedError
    # Answers the API's calls until the data is loaded; by default each call gets UNAVAILABLE.
    loading: object = None

    def loading_servicer(self) -> object:
        """`loading`, or one whose every method answers UNAVAILABLE."""
        return self.loading if self.loading is not None else _StillLoading(self.data_name)


class _StillLoading:
    """A servicer whose every method ends the call with UNAVAILABLE (retryable): the data is loading."""

    def __init__(self, data_name: str) -> None:
        self._message = f"the service is still loading its {data_name}; retry shortly"

    def __getattr__(self, _method: str) -> Callable[[Any, Context], Any]:
        async def refuse(_request: Any, context: Context) -> NoReturn:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._message)
            raise AssertionError("abort returns only by raising")  # pragma: no cover

        return refuse
