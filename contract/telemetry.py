"""What counts as the server's failure, and the Cloud Monitoring filter that counts calls, failed or not.

The Pulumi program's dashboard and availability SLO (infra/catalog_infra/observability.py) and the release
gate (release/monitoring.py) read the same call counter through these: a call that spends the error budget
is the call that stops a canary. The counter is the observability component's log-based metric, labelled
`method`, `code` and `revision` from the server's access lines; a move to another counter changes this
module alone.
"""

from __future__ import annotations

from collections.abc import Sequence

# The codes that are the server's failure, not the caller's. They spend the availability budget.
# - INTERNAL, UNKNOWN, DATA_LOSS: a bug or a broken catalog (the server logs these at ERROR).
# - UNAVAILABLE: the server refused the call (starting, shutting down); the caller did nothing wrong.
# - RESOURCE_EXHAUSTED: the server is at its concurrency limit: too little capacity is ours to fix.
# - DEADLINE_EXCEEDED: the call's own deadline passed while the server worked on it. Catalog calls are
#   in-memory lookups of a few milliseconds, so this means the server was slow (overloaded, starved of CPU).
# Not counted: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, FAILED_PRECONDITION (the request's fault), CANCELLED
# (the caller left), and auth codes (Cloud Run's IAM answers those before the server sees the call).
SERVER_FAULT_CODES = (
    "INTERNAL",
    "UNKNOWN",
    "DATA_LOSS",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
)

# The monitored resource of a Cloud Run revision's metrics (cloud.google.com/monitoring/api/resources).
CLOUD_RUN_RESOURCE = "cloud_run_revision"


def one_of(values: Sequence[str]) -> str:
    """A filter's right-hand side matching any of `values`."""
    return "one_of(" + ", ".join(f'"{value}"' for value in values) + ")"


def calls_filter(
    calls_type: str,
    *,
    faults_only: bool = False,
    revision: str | None = None,
    service: str | None = None,
    region: str | None = None,
) -> str:
    """Time series of the call counter `calls_type`: all calls, or those ending in a server fault code.

    Narrowed to one revision, one service, one region (the resource's `location`: a revision has the same
    name in every region) when given.
    """
    parts = [f'metric.type="{calls_type}"', f'resource.type="{CLOUD_RUN_RESOURCE}"']
    if faults_only:
        parts.append(f"metric.label.code = {one_of(SERVER_FAULT_CODES)}")
    if revision is not None:
        parts.append(f'metric.label.revision = "{revision}"')
    if service is not None:
        parts.append(f'resource.label.service_name="{service}"')
    if region:
        parts.append(f'resource.label.location="{region}"')
    return " AND ".join(parts)


def error_ratio_filters(
    calls_type: str, service: str, revision: str, region: str | None = None
) -> tuple[str, str]:
    """(all calls, server-fault calls) of one revision: the release gate divides the second by the first."""
    return (
        calls_filter(calls_type, revision=revision, service=service, region=region),
        calls_filter(calls_type, faults_only=True, revision=revision, service=service, region=region),
    )
