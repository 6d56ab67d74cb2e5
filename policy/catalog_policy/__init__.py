"""The catalog's CrossGuard policies: Cloud Run's gRPC contract, access, registry, identity and storage."""

from pulumi_policy import ResourceValidationPolicy

from . import access, cloudrun, identity, registry, storage

PACK_NAME = "catalog-grpc-policies"

POLICIES: list[ResourceValidationPolicy] = [
    *cloudrun.POLICIES,
    *access.POLICIES,
    *registry.POLICIES,
    *identity.POLICIES,
    *storage.POLICIES,
]
