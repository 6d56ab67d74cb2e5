"""The front door as a release sees it: one address, routing by the candidate header, as the URL map does.

infra/catalog_infra/front_door.py declares the routes: a request with `x-catalog-candidate: REGION` goes to
that region's NEG on the `candidate` tag, any other request to the serving backend. This is a gRPC proxy on
loopback with those routes over the fake Cloud Run's tags and the tests' catalog servers. Behind a front
door the services admit only the load balancer, so the edge refuses every run.app URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from contract.release import CANDIDATE, STABLE
from tests.release.conftest import Edge, ref_in

HEADER = "x-catalog-candidate"
DOMAIN_URL = "https://catalog.example.com"


@dataclass
class FakeFrontDoor(grpc.GenericRpcHandler):
    """Routes each call by its candidate header to a region's candidate, else to the home region's stable."""

    edge: Edge
    home: str
    # The regions whose header value the URL map routes (one route rule each); other values go to stable.
    regions: tuple[str, ...]
    routed: list[tuple[str, str, str]] = field(default_factory=list)  # (region, revision, method)

    def _backend(self, region: str | None) -> tuple[str, str]:
        tag = CANDIDATE if region else STABLE
        region = region or self.home
        revision = self.edge.fake.revision_of(ref_in(region).path, tag)
        server = self.edge.servers.get((region, revision)) or self.edge.servers[revision]
        return region, server.target

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata)
        header = next((value for key, value in metadata if key == HEADER and value in self.regions), None)
        region, target = self._backend(header)
        revision = self.edge.fake.revision_of(ref_in(region).path, CANDIDATE if header else STABLE)
        self.routed.append((region, revision, method))
        pool = descriptor_pool.Default()  # type: ignore[no-untyped-call]
        if pool.FindMethodByName(method.strip("/").replace("/", ".")).server_streaming:
            return grpc.unary_stream_rpc_method_handler(_Forward(target, method).stream)
        return grpc.unary_unary_rpc_method_handler(_Forward(target, method).unary)


@dataclass(frozen=True)
class _Forward:
    """One call passed on to `target` as bytes, its status passed back."""

    target: str
    method: str

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with grpc.insecure_channel(self.target) as channel:
            call: Any = channel.unary_unary(self.method)
            try:
                answer: bytes = call(request, timeout=context.time_remaining())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "")
            return answer

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        with grpc.insecure_channel(self.target) as channel:
            call: Any = channel.unary_stream(self.method)
            try:
                yield from call(request, timeout=context.time_remaining())
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "")


@contextlib.contextmanager
def serve(door: FakeFrontDoor) -> Iterator[str]:
    """Serve the front door on a loopback port; yields host:port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[door])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@dataclass
class BehindFrontDoor:
    """The release's channels when the services admit only the load balancer: the domain reaches the door,
    a run.app URL reaches nothing (its calls fail UNAVAILABLE, as ingress refuses them)."""

    door_address: str
    refused: list[str] = field(default_factory=list)

    def __call__(self, uri: str) -> grpc.Channel:
        if uri.rstrip("/") == DOMAIN_URL:
            return grpc.insecure_channel(self.door_address)
        self.refused.append(uri)
        return grpc.insecure_channel("127.0.0.1:1")
