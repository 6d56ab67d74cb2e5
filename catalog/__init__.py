"""The catalog API's generated Python code (`make proto` rewrites every module here but this one).

Import as `from catalog import catalog_pb2, catalog_pb2_grpc`. The API's names are defined here once, from the
generated descriptors, for the server, the client, the bench, the Pulumi program and the tests.
"""

from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2

from catalog import catalog_pb2

# The one service proto/catalog/catalog.proto declares: every name below derives from it.
(_SERVICE,) = catalog_pb2.DESCRIPTOR.services_by_name.values()
_HEALTH: ServiceDescriptor = health_pb2.DESCRIPTOR.services_by_name["Health"]


def _method(service: ServiceDescriptor, name: str) -> str:
    """The full method name on the wire (`/package.Service/Method`); a KeyError if the proto lacks it."""
    return f"/{service.full_name}/{service.methods_by_name[name].name}"


# "catalog.ProductCatalog": what clients call, and the health name a startup probe asks for.
SERVICE_NAME: str = _SERVICE.full_name
# "grpc.health.v1.Health": the standard health service every probe calls.
HEALTH_SERVICE_NAME: str = _HEALTH.full_name
# The health names the server reports: the whole server ("") and the service.
HEALTH_NAMES: tuple[str, ...] = ("", SERVICE_NAME)

# Full method names, as access logs, metrics and raw HTTP/2 requests spell them.
# "/catalog.ProductCatalog/": every method of the service starts so (health and reflection do not).
CATALOG_METHOD_PREFIX: str = f"/{SERVICE_NAME}/"
HEALTH_CHECK_METHOD: str = _method(_HEALTH, "Check")
# The service's unary methods (neither side streams), in the proto's order: the latency SLO holds these to its
# threshold, since a stream's duration is the whole stream's (SearchProducts).
UNARY_METHODS: tuple[str, ...] = tuple(
    _method(_SERVICE, method.name)
    for method in _SERVICE.methods
    if not (method.client_streaming or method.server_streaming)
)

# The catalog API's own methods, for the bench and the tests: delete them for another API.
GET_PRODUCT_METHOD: str = _method(_SERVICE, "GetProduct")
LIST_PRODUCTS_METHOD: str = _method(_SERVICE, "ListProducts")
SEARCH_PRODUCTS_METHOD: str = _method(_SERVICE, "SearchProducts")
