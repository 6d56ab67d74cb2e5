"""Artifact Registry: images do not pile up forever, and only the project's identities can pull them."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from .props import PUBLIC_MEMBERS, as_list, get, iam_grants, is_iam_resource
from .rule import rule

REPOSITORY = "gcp:artifactregistry/repository:Repository"


def _cleanup_policy(args: ResourceValidationArgs) -> Iterator[str]:
    if args.resource_type != REPOSITORY:
        return
    if not as_list(get(args.props, "cleanupPolicies")):
        yield (
            "the repository has no cleanupPolicies, so every pushed image is kept (and billed) forever; add "
            "a KEEP policy for the most recent versions and a DELETE policy for the rest."
        )
    if get(args.props, "cleanupPolicyDryRun") is True:
        yield "cleanupPolicyDryRun is true, so the cleanup policies only log; set it to false."


def _private_repository(args: ResourceValidationArgs) -> Iterator[str]:
    if not (args.resource_type.startswith("gcp:artifactregistry/") and is_iam_resource(args.resource_type)):
        return
    for role, member in iam_grants(args.resource_type, args.props):
        if member in PUBLIC_MEMBERS:
            yield (
                f"grants {role} to {member}: anyone could pull the images; grant "
                "roles/artifactregistry.reader to the service accounts that deploy or run them instead."
            )


POLICIES = [
    ResourceValidationPolicy(
        name="artifact-registry-cleanup",
        description="Artifact Registry repositories have an active cleanup policy.",
        validate=rule(_cleanup_policy),
    ),
    ResourceValidationPolicy(
        name="artifact-registry-private",
        description="Artifact Registry repositories have no public readers.",
        validate=rule(_private_repository),
    ),
]
