"""Who may call a Cloud Run service: nobody anonymous, unless the stack opts in (dev)."""

from __future__ import annotations

from collections.abc import Iterator

from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from .cloudrun import SERVICE
from .props import PUBLIC_MEMBERS, get, iam_grants, is_iam_resource
from .rule import rule
from .settings import ALLOW_PUBLIC, ALLOW_PUBLIC_SCHEMA, flag

# Cloud Run's IAM resources, v2 and v1: a grant to allUsers on either makes the service public.
_CLOUD_RUN_IAM_PREFIXES = ("gcp:cloudrunv2/service", "gcp:cloudrun/iam")


def _private_invoker(args: ResourceValidationArgs) -> Iterator[str]:
    is_run_iam = is_iam_resource(args.resource_type) and args.resource_type.startswith(
        _CLOUD_RUN_IAM_PREFIXES
    )
    if args.resource_type != SERVICE and not is_run_iam:
        return
    if flag(args, ALLOW_PUBLIC, default=False):
        return
    hint = (
        "grant roles/run.invoker to the callers that need it (this program: catalog-grpc:invokers), or, "
        f"for a stack meant to be public, set {ALLOW_PUBLIC}: true for this policy in its policy config."
    )
    if args.resource_type == SERVICE:
        if get(args.props, "invokerIamDisabled") is True:
            yield f"invokerIamDisabled is true, so anyone may call the service without a token; {hint}"
        return
    for role, member in iam_grants(args.resource_type, args.props):
        if member in PUBLIC_MEMBERS:
            yield f"grants {role} to {member}, which makes the service public; {hint}"


POLICIES = [
    ResourceValidationPolicy(
        name="cloudrun-private",
        description="Cloud Run services are not public (no allUsers or allAuthenticatedUsers, no "
        "invokerIamDisabled) unless the stack allows it.",
        validate=rule(_private_invoker),
        config_schema=ALLOW_PUBLIC_SCHEMA,
    ),
]
