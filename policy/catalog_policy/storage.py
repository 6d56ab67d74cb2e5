"""Cloud Storage buckets: access by IAM alone, and never public."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from .props import get, text
from .rule import rule

BUCKET = "gcp:storage/bucket:Bucket"


def _uniform_access(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type != BUCKET:
        return
    if get(args.props, "uniformBucketLevelAccess") is not True:
        yield (
            "uniformBucketLevelAccess is not true, so object ACLs can grant access IAM does not show; set "
            "uniform_bucket_level_access=True."
        )


def _public_access_prevention(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type != BUCKET:
        return
    prevention = text(get(args.props, "publicAccessPrevention"))
    if prevention != "enforced":
        yield (
            f"publicAccessPrevention is {prevention or 'unset (inherited)'}; set "
            "public_access_prevention='enforced' so no grant can make the bucket's objects public."
        )


POLICIES = [
    ResourceValidationPolicy(
        name="storage-uniform-access",
        description="Cloud Storage buckets use uniform bucket-level access.",
        validate=rule(_uniform_access),
    ),
    ResourceValidationPolicy(
        name="storage-public-access-prevention",
        description="Cloud Storage buckets enforce public access prevention.",
        validate=rule(_public_access_prevention),
    ),
]
