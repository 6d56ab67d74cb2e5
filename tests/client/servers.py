"""Servers the client tests talk to: the real catalog, and special ones (TLS, a token check, stalls)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import HEALTH_NAMES, catalog_pb2
from service.call_guard import Context
from service.catalog_file import load_catalog
from service.servicer import CatalogServicer, add_to_server
from service.store import CatalogStore
from tests.servers import in_thread


@dataclass(frozen=True)
class SelfSignedCert:
    """A certificate for localhost (DNS and loopback IPs) that is its own CA, and its key, in PEM."""

    cert_pem: bytes
    key_pem: bytes


def make_self_signed_cert(dns_names: Sequence[str] = ()) -> SelfSignedCert:
    """Issue a fresh self-signed certificate for localhost (and `dns_names`), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(name) for name in dns_names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SelfSignedCert(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass
class TokenCheck(aio.ServerInterceptor):
    """Answers UNAUTHENTICATED unless `authorization: Bearer <accepted>`; records every header it saw."""

    accepted: Callable[[str], bool]
    seen: list[str | None] = field(default_factory=list)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization")
        self.seen.append(header if isinstance(header, str) else None)
        handler = await continuation(handler_call_details)
        if handler is None or (
            isinstance(header, str) and header.startswith("Bearer ") and self.accepted(header[7:])
        ):
            return handler

        async def deny(request: Any, context: Context) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny, handler.request_deserializer)
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer)


@dataclass
class Started:
    """A test server's port and what its health servicer reports."""

    port: int
    health: health.aio.HealthServicer

    @property
    def target(self) -> str:
        """The `localhost:PORT` the client dials."""
        return f"localhost:{self.port}"


@contextmanager
def serve(
    servicer: CatalogServicer | None = None,
    *,
    interceptors: Sequence[aio.ServerInterceptor] = (),
    tls: SelfSignedCert | None = None,
    host: str = "localhost",
    health_names: Sequence[str] = HEALTH_NAMES,
    options: Sequence[tuple[str, Any]] = (),
) -> Iterator[Started]:
    """A grpc.aio server on a free port with `servicer` (default: the seed catalog); `health_names` SERVING.

    `options` are gRPC server options (channel arguments), such as a maximum connection age.

    Not the service's own server (tests.servers.in_process starts that): one the client tests shape as
    they need, with TLS, interceptors, or a servicer that misbehaves. Run as tests.servers runs every one.
    """

    @asynccontextmanager
    async def started() -> AsyncIterator[Started]:
        server = aio.server(interceptors=list(interceptors), options=list(options))
        add_to_server(servicer or CatalogServicer(load_catalog()), server)
        health_servicer = health.aio.HealthServicer()
        for name in health_names:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        if tls is None:
            port = server.add_insecure_port(f"{host}:0")
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
            port = server.add_secure_port(f"{host}:0", credentials)
        await server.start()
        try:
            yield Started(port, health_servicer)
        finally:
            await server.stop(0)

    with in_thread(started()) as (running, _loop):
        yield running


def seed_product(product_id: str) -> catalog_pb2.Product:
    """A product of the embedded seed catalog."""
    product = load_catalog().get(product_id)
    assert product is not None
    return catalog_pb2.Product.FromString(product)


def many_products(count: int) -> CatalogStore:
    """A catalog of `count` products, ids p0000.., every third one in category "books"."""
    return CatalogStore.from_products(
        [
            catalog_pb2.Product(
                id=f"p{i:04d}",
                name=f"Item {i}",
                description=f"Thing number {i}",
                price=float(i) + 0.5,
                category="books" if i % 3 == 0 else "tools",
                in_stock=i % 2 == 0,
            )
            for i in range(count)
        ]
    )


class StallingServicer(CatalogServicer):
    """Answers nothing until released (or 30 s pass): a server that is up but never replies in time."""

    def __init__(self) -> None:
        super().__init__(load_catalog())
        self.release = threading.Event()

    async def GetProduct(self, request: bytes, context: Any) -> bytes:
        await asyncio.to_thread(self.release.wait, 30)
        return await super().GetProduct(request, context)


class RepeatingTokenServicer(CatalogServicer):
    """A broken ListProducts: every page says there is a next page, behind the same token."""

    def __init__(self) -> None:
        super().__init__(load_catalog())
        self.calls = 0

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Any) -> bytes:
        self.calls += 1
        products = [seed_product("1"), seed_product("2")]
        page = catalog_pb2.ListProductsResponse(products=products, next_page_token="again", total_count=5)
        return page.SerializeToString()


class GatedSearchServicer(CatalogServicer):
    """Streams one product, then the next only once `delivered` is set (by the test, on seeing the first)."""

    def __init__(self) -> None:
        super().__init__(load_catalog())
        self.delivered = threading.Event()

    async def SearchProducts(self, request: catalog_pb2.SearchRequest, context: Any) -> AsyncIterator[bytes]:
        yield seed_product("3").SerializeToString()
        if not await asyncio.to_thread(self.delivered.wait, 10):
            await context.abort(
                grpc.StatusCode.ABORTED, "the client did not print the first product on arrival"
            )
        yield seed_product("5").SerializeToString()


class FlakyServicer(CatalogServicer):
    """GetProduct answers UNAVAILABLE `failures` times, then normally: what a retry policy is for."""

    def __init__(self, failures: int) -> None:
        super().__init__(load_catalog())
        self.failures = failures
        self.calls = 0

    async def GetProduct(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return await super().GetProduct(request, context)


class FailingServicer(CatalogServicer):
    """GetProduct always fails with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(load_catalog())
        self.code = code
        self.message = message

    async def GetProduct(self, request: bytes, context: Any) -> bytes:
        await context.abort(self.code, self.message)
        raise AssertionError("abort() raises")
