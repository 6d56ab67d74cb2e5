"""Cloud Storage buckets: access by IAM alone, and never public."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from .props import PUBLIC_MEMBERS, get, iam_grants, is_iam_resource, text
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
    if args.resource_type.startswith("gcp:storage/bucketIAM") and is_iam_resource(args.resource_type):
        # Enforced prevention makes such a grant fail at `pulumi up`: say so at preview instead.
        for role, member in iam_grants(args.resource_type, args.props):
            if member in PUBLIC_MEMBERS:
                yield (
                    f"grants {role} to {member} on a bucket; grant it to the identities that read the bucket "
                    "(public access prevention refuses public grants)."
                )
        return
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
        description="Cloud Storage buckets enforce public access prevention and have no public grants.",
        validate=rule(_public_access_prevention),
    ),
]
