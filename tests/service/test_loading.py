"""While the catalog loads, every RPC of catalog.ProductCatalog answers UNAVAILABLE, which clients retry.

Parametrized from the service descriptor, not from the servicer: an RPC added to the proto but not to
LoadingServicer would not answer UNAVAILABLE, which clients retry, while the catalog loads.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from catalog import SERVICE_NAME, catalog_pb2
from service.config import Settings
from tests.servers import in_process

METHODS = tuple(catalog_pb2.DESCRIPTOR.services_by_name["ProductCatalog"].methods)
LOADING = "the catalog is still loading; retry shortly"


@pytest.fixture(scope="module")
def loading_channel() -> Iterator[grpc.Channel]:
    """A channel to a server that has no catalog yet (none is ever served to it)."""
    with (
        in_process(Settings(port=0)) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        yield channel


def call(channel: grpc.Channel, method: MethodDescriptor) -> None:
    """Call `method` with an empty request, as its streaming kind requires, and read the whole answer."""
    path = f"/{SERVICE_NAME}/{method.name}"
    request = GetMessageClass(method.input_type)().SerializeToString()
    identity = {"request_serializer": bytes, "response_deserializer": bytes}
    if method.client_streaming and method.server_streaming:
        list(channel.stream_stream(path, **identity)(iter([request]), timeout=5))
    elif method.client_streaming:
        channel.stream_unary(path, **identity)(iter([request]), timeout=5)
    elif method.server_streaming:
        list(channel.unary_stream(path, **identity)(request, timeout=5))
    else:
        channel.unary_unary(path, **identity)(request, timeout=5)


@pytest.mark.parametrize("method", METHODS, ids=[method.name for method in METHODS])
def test_every_rpc_answers_unavailable_while_the_catalog_loads(
    loading_channel: grpc.Channel, method: MethodDescriptor
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call(loading_channel, method)
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.UNAVAILABLE, LOADING)
