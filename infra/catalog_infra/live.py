"""The service's live traffic, read through the Cloud Run Admin API before the program declares anything.

Not the provider's `gcp.cloudrunv2.get_service_output`: the program must tell "no service yet" (a first
deploy) from "cannot read it", and an invoke's failure is only a message, while the Admin API raises
NotFound for the one and PermissionDenied (or no credentials) for the other. A wrong guess here would
send a new revision all the traffic, so anything but NotFound stops the program.
"""

from __future__ import annotations

import warnings

import pulumi

from catalog_infra import revisions
from catalog_infra.config import StackConfig
from catalog_infra.revisions import LiveRoute, LiveService
from contract.release import DECISION_ANNOTATIONS

with warnings.catch_warnings():
    # Google's client libraries warn at import that grpcio < 1.83 lacks post-quantum TLS; the 1.81 line is
    # pinned on purpose (requirements-server.txt), and the warning would clutter every preview.
    warnings.simplefilter("ignore", FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import run_v2

_BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
READ_TIMEOUT_SECONDS = 30.0


def read_live_services(
    config: StackConfig, client: run_v2.ServicesClient | None = None
) -> dict[str, LiveService | None]:
    """Each region's live traffic (None: no service there yet), checked before any resource is declared.

    Raises RunError when a region's service cannot be read, and LiveTrafficError, naming the service, when
    its split is one the program cannot build on (revisions.serving_routes says why and how to fix it).
    `client`: tests.
    """
    services: dict[str, LiveService | None] = {}
    for region in config.regions:
        service = read_service(config.project, region, config.service_name, client)
        try:
            revisions.serving_routes(service)
        except revisions.LiveTrafficError as error:
            path = f"projects/{config.project}/locations/{region}/services/{config.service_name}"
            raise revisions.LiveTrafficError(f"{path}: {error}") from None
        services[region] = service
    return services


def read_service(
    project: str, region: str, service_name: str, client: run_v2.ServicesClient | None = None
) -> LiveService | None:
    """The live traffic of the service, or None when it does not exist yet (`client`: tests)."""
    path = f"projects/{project}/locations/{region}/services/{service_name}"
    try:
        service = (client or run_v2.ServicesClient()).get_service(name=path, timeout=READ_TIMEOUT_SECONDS)
    except api_exceptions.NotFound:
        return None
    except api_exceptions.PermissionDenied as error:
        # A project's first deploy enables the Cloud Run API itself: until then no service can exist.
        if error.reason != "SERVICE_DISABLED":
            raise _unreadable(path, error) from error
        return None
    except (api_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError) as error:
        raise _unreadable(path, error) from error
    routes = tuple(
        LiveRoute(
            revision=target.revision if target.type_ == _BY_REVISION else service.latest_ready_revision,
            percent=target.percent,
            tag=target.tag,
        )
        for target in service.traffic
    )
    annotations = tuple(
        (key, service.annotations[key]) for key in DECISION_ANNOTATIONS if key in service.annotations
    )
    return LiveService(
        routes=routes, latest_ready_revision=service.latest_ready_revision, annotations=annotations
    )


def _unreadable(path: str, error: Exception) -> pulumi.RunError:
    if isinstance(error, api_exceptions.GoogleAPICallError):
        reason = f"{error.code} {error.message}" if error.reason is None else f"{error.code} {error.reason}"
    else:
        reason = str(error)
    return pulumi.RunError(
        f"cannot read the live traffic of {path} ({reason}); the program declares the split Cloud Run "
        "serves, so it needs run.services.get there with application default credentials "
        "(`gcloud auth application-default login`, or the CI's workload identity)"
    )
