"""The catalog API's generated Python code (`make proto` rewrites every module here but this one).

Import as `from catalog import catalog_pb2, catalog_pb2_grpc`. The API's names are defined here once, from the
generated descriptors, for the server, the client, the bench, the Pulumi program and the tests.
"""

from grpc_health.v1 import health_pb2

from catalog import catalog_pb2

# "catalog.ProductCatalog": what clients call, and the health name a startup probe asks for.
SERVICE_NAME: str = catalog_pb2.DESCRIPTOR.services_by_name["ProductCatalog"].full_name
# "grpc.health.v1.Health": the standard health service every probe calls.
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# The health names the server reports: the whole server ("") and the catalog service.
HEALTH_NAMES: tuple[str, ...] = ("", SERVICE_NAME)
