"""The Cloud Run Admin API (v2) as this tool uses it: read a service, set its traffic or template.

Every write names the fields it changes (update_mask) and carries the etag of the service it was computed
from, so a `pulumi up` or another release that changed the service in between makes the write fail
(ABORTED / FAILED_PRECONDITION) instead of silently undoing that change.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import field_mask_pb2

with warnings.catch_warnings():
    # Google's client libraries warn at import that grpcio < 1.83 lacks post-quantum TLS; the 1.81 line is
    # pinned on purpose (requirements-server.txt), and the warning would clutter every run.
    warnings.simplefilter("ignore", FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.cloud import run_v2
    from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from release.traffic import Route

_BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
_LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


class CloudRunError(Exception):
    """A call to the Admin API failed; the message names the service and what was attempted."""


@dataclass(frozen=True)
class ServiceRef:
    """Which service: project, region and name."""

    project: str
    region: str
    service: str

    @property
    def path(self) -> str:
        """The API's resource name."""
        return f"projects/{self.project}/locations/{self.region}/services/{self.service}"


def connect(endpoint: str | None = None, *, insecure: bool = False) -> run_v2.ServicesClient:
    """A client for the real API (application default credentials), or for `endpoint` (host:port).

    `insecure` speaks cleartext to `endpoint`: for an emulator or the tests' fake on localhost only.
    """
    if endpoint and insecure:
        return run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=grpc.insecure_channel(endpoint)))
    if endpoint:
        return run_v2.ServicesClient(client_options={"api_endpoint": endpoint})
    return run_v2.ServicesClient()


def routes_of(service: run_v2.Service) -> list[Route]:
    """The service's traffic as Routes; a "latest" target is pinned to the latest ready revision."""
    routes = []
    for target in service.traffic:
        revision = target.revision if target.type_ == _BY_REVISION else service.latest_ready_revision
        routes.append(Route(revision=revision, percent=target.percent, tag=target.tag))
    return routes


def tag_uri(service: run_v2.Service, tag: str) -> str:
    """The https URL of `tag`: Cloud Run's own (traffic_statuses), else derived from the service's URL."""
    for status in service.traffic_statuses:
        if status.tag == tag and status.uri:
            return str(status.uri)
    host = service.uri.removeprefix("https://").rstrip("/")
    return f"https://{tag}---{host}"


def copy_template(template: run_v2.RevisionTemplate) -> run_v2.RevisionTemplate:
    """A deep copy of a revision template, to change without touching the service it came from."""
    copy: run_v2.RevisionTemplate = run_v2.RevisionTemplate.deserialize(
        run_v2.RevisionTemplate.serialize(template)
    )
    return copy


def _targets(routes: Sequence[Route]) -> list[run_v2.TrafficTarget]:
    return [
        run_v2.TrafficTarget(
            type_=_BY_REVISION, revision=route.revision, percent=route.percent, tag=route.tag
        )
        for route in routes
    ]


_SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED


class CloudRun:
    """One service's reads and writes, each bounded by `timeout` seconds (writes wait for the rollout)."""

    def __init__(
        self,
        client: run_v2.ServicesClient,
        ref: ServiceRef,
        timeout: float = 300.0,
        poll_seconds: float = 2.0,
    ) -> None:
        self._client = client
        self.ref = ref
        self._timeout = timeout
        self._poll_seconds = poll_seconds

    def get(self) -> run_v2.Service:
        """The service as it is now."""
        try:
            return self._client.get_service(name=self.ref.path, timeout=self._timeout)
        except api_exceptions.NotFound:
            raise CloudRunError(
                f"service {self.ref.path} does not exist: deploy it with `pulumi up` first"
            ) from None
        except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError) as error:
            # RetryError: the client's retries of UNAVAILABLE ran out; not a GoogleAPICallError, and a
            # release must still see it as Cloud Run's refusal (and roll back) rather than crash mid-step.
            raise CloudRunError(f"reading {self.ref.path}: {error}") from error

    def set_traffic(
        self,
        current: run_v2.Service,
        routes: Sequence[Route],
        annotations: Mapping[str, str] | None = None,
    ) -> run_v2.Service:
        """Replace the traffic split of `current` (as read) with `routes`, and set `annotations` with it.

        The annotations are sent merged over all of `current`'s: a mask that names a map replaces the whole
        map, and the etag makes sure none was added since `current` was read.
        """
        service = run_v2.Service(name=current.name, etag=current.etag, traffic=_targets(routes))
        fields = ["traffic"]
        if annotations is not None:
            service.annotations = {**current.annotations, **annotations}
            fields.append("annotations")
        return self._update(service, fields, "setting traffic")

    def set_template(
        self,
        current: run_v2.Service,
        template: run_v2.RevisionTemplate,
        routes: Sequence[Route] | None = None,
    ) -> run_v2.Service:
        """Deploy `template` (a new revision unless its name exists); set traffic too when given `routes`."""
        service = run_v2.Service(name=current.name, etag=current.etag, template=template)
        fields = ["template"]
        if routes is not None:
            service.traffic = _targets(routes)
            fields.append("traffic")
        return self._update(service, fields, f"deploying revision {template.revision or '(unnamed)'}")

    def _update(self, service: run_v2.Service, fields: Sequence[str], what: str) -> run_v2.Service:
        try:
            # The long-running operation is not polled: GetOperation needs run.operations.get on the
            # project, which a role on one service (the pull-request deployer's) does not give. The service
            # itself says when the change is rolled out, and how it ended.
            self._client.update_service(
                request=run_v2.UpdateServiceRequest(
                    service=service, update_mask=field_mask_pb2.FieldMask(paths=list(fields))
                ),
                timeout=self._timeout,
            )
        except (api_exceptions.Aborted, api_exceptions.FailedPrecondition) as error:
            raise CloudRunError(
                f"{what} on {self.ref.path}: the service changed while this ran ({error.message}); "
                "nothing was applied, run it again"
            ) from error
        except api_exceptions.GoogleAPICallError as error:
            raise CloudRunError(f"{what} on {self.ref.path}: {error}") from error
        return self._rolled_out(what)

    def _rolled_out(self, what: str) -> run_v2.Service:
        """Wait until Cloud Run has acted on the latest change; raise if it could not."""
        deadline = time.monotonic() + self._timeout
        service = self.get()
        while service.reconciling or service.observed_generation < service.generation:
            if time.monotonic() >= deadline:
                raise CloudRunError(
                    f"{what} on {self.ref.path}: not done after {self._timeout:g} s; look at its revisions"
                )
            time.sleep(self._poll_seconds)
            service = self.get()
        condition = service.terminal_condition
        if condition.state != _SUCCEEDED:
            raise CloudRunError(f"{what} on {self.ref.path}: {condition.message or condition.state.name}")
        return service
