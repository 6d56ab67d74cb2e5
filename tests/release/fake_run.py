"""An in-process Cloud Run Admin API: google.cloud.run.v2.Services from the package's own protos.

It keeps what a release relies on: services in any number of regions, each with its own revisions made from
templates (a named one only once per service; the same name with another configuration is refused, as Cloud
Run does), traffic targets with unique tags that add up to
100, tag URLs in traffic_statuses, and an etag that changes with every write. Writes answer with a finished
long-running operation, so the real client's `update_service(...).result()` returns at once.

Annotations as the Admin API v2 reference describes them: "This field follows Kubernetes annotations'
namespacing, limits, and rules" (keys are qualified names, 256 KiB in all), and new keys in the
run.googleapis.com, cloud.googleapis.com, serving.knative.dev and autoscaling.knative.dev namespaces are
refused. A mask that names `annotations` replaces the whole map with the request's (AIP-134: the fields in
the mask are written as sent), the strict reading: a write that sent only its own keys would drop everyone
else's here.

Each service also has an IAM policy (GetIamPolicy, SetIamPolicy with its etag), so a test can hold members
in it that the release does not own and see whether anything rewrote it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2  # type: ignore[import-untyped]
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from release.traffic import Route
from tests.release.fake_api import serve_fake

BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
PROJECT_NUMBER = "123456789012"


class RefusedError(Exception):
    """What the fake answers with a gRPC status instead of a result."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class FakeCloudRun:
    """Services and revisions by name, and every write request received, in order."""

    services: dict[str, run_v2.Service] = field(default_factory=dict)
    # By full name: SERVICE_NAME/revisions/REVISION (each region's service has its own).
    revisions: dict[str, run_v2.RevisionTemplate] = field(default_factory=dict)
    writes: list[run_v2.UpdateServiceRequest] = field(default_factory=list)
    # When set, reads are refused with this status (and ErrorInfo reason), as an IAM or API problem would.
    refuse_reads: tuple[grpc.StatusCode, str] | None = None
    # Images whose revisions never start: the rollout ends with a failed terminal condition.
    failing_images: set[str] = field(default_factory=set)
    # Reads after each write that still see the rollout in progress (reconciling, an older generation).
    reconciling_reads: int = 0
    # Each service's IAM policy by service name, and every SetIamPolicy request received, in order.
    iam_policies: dict[str, policy_pb2.Policy] = field(default_factory=dict)
    iam_writes: list[iam_policy_pb2.SetIamPolicyRequest] = field(default_factory=list)
    _still_reconciling: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # What the tests look at.
    def routes(self, name: str) -> list[Route]:
        """The service's traffic as (revision, percent, tag)."""
        return [Route(t.revision, t.percent, t.tag) for t in self.services[name].traffic]

    def revision_of(self, name: str, tag: str) -> str:
        """The revision carrying `tag`."""
        return next(t.revision for t in self.services[name].traffic if t.tag == tag)

    def deploy(
        self,
        name: str,
        template: run_v2.RevisionTemplate,
        traffic: list[Route],
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """What a `pulumi up` does: create or update the service with this template and traffic.

        `annotations`, when given, replace all of the service's: the provider's update has no mask.
        """
        with self._lock:
            service = self.services.get(name) or run_v2.Service(name=name, generation=0)
            service.uri = service_uri(name)
            if annotations is not None:
                check_annotations(annotations, service.annotations)
                service.annotations = dict(annotations)
            self._write(
                service,
                template,
                [
                    run_v2.TrafficTarget(type_=BY_REVISION, revision=r.revision, percent=r.percent, tag=r.tag)
                    for r in traffic
                ],
            )

    # The API.
    def get_service(self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext) -> run_v2.Service:
        if self.refuse_reads is not None:
            code, reason = self.refuse_reads
            context.abort_with_status(_status(code, reason))
        with self._lock:
            service = self.services.get(request.name)
            if service is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.name}' was not found")
            answer = run_v2.Service(service)
            if self._still_reconciling:
                self._still_reconciling -= 1
                answer.reconciling = True
                answer.observed_generation = service.generation - 1
            return answer

    def update_service(
        self, request: run_v2.UpdateServiceRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        with self._lock:
            self.writes.append(request)
            current = self.services.get(request.service.name)
            if current is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.service.name}' was not found")
            if request.service.etag and request.service.etag != current.etag:
                context.abort(grpc.StatusCode.ABORTED, "the service's etag does not match: it changed")
            # Without a mask every field is written (field_mask.proto), the annotations among them.
            paths = set(request.update_mask.paths) or set(UPDATABLE)
            unknown = paths - set(UPDATABLE)
            if unknown:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"update_mask: unknown paths {sorted(unknown)}"
                )
            template = request.service.template if "template" in paths else None
            traffic = list(request.service.traffic) if "traffic" in paths else list(current.traffic)
            try:
                service = run_v2.Service(current)
                if "annotations" in paths:
                    annotations = dict(request.service.annotations)
                    check_annotations(annotations, current.annotations)
                    service.annotations = annotations
                service = self._write(service, template, traffic)
            except RefusedError as refused:
                context.abort(refused.code, str(refused))
        response = any_pb2.Any()
        response.Pack(run_v2.Service.pb(service))
        return operations_pb2.Operation(
            name=f"{service.name}/operations/{service.generation}", done=True, response=response
        )

    def get_iam_policy(
        self, request: iam_policy_pb2.GetIamPolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb2.Policy:
        with self._lock:
            if request.resource not in self.services:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.resource}' was not found")
            answer = policy_pb2.Policy()
            answer.CopyFrom(self.iam_policies.get(request.resource, policy_pb2.Policy()))
            return answer

    def set_iam_policy(
        self, request: iam_policy_pb2.SetIamPolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb2.Policy:
        """Replace the whole policy, as IAM does; refused when its etag is not the current one's."""
        with self._lock:
            self.iam_writes.append(request)
            if request.resource not in self.services:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.resource}' was not found")
            current = self.iam_policies.get(request.resource, policy_pb2.Policy())
            if request.policy.etag and request.policy.etag != current.etag:
                context.abort(grpc.StatusCode.ABORTED, "the policy's etag does not match: it changed")
            policy = policy_pb2.Policy()
            policy.CopyFrom(request.policy)
            policy.etag = str(int(current.etag or b"0") + 1).encode()
            self.iam_policies[request.resource] = policy
            answer = policy_pb2.Policy()
            answer.CopyFrom(policy)
            return answer

    def _write(
        self,
        service: run_v2.Service,
        template: run_v2.RevisionTemplate | None,
        traffic: list[run_v2.TrafficTarget],
    ) -> run_v2.Service:
        service_id = service.name.rsplit("/", 1)[-1]
        if template is not None:
            revision = template.revision or f"{service_id}-{service.generation + 1:05d}-auto"
            if not revision.startswith(f"{service_id}-"):
                raise RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"revision {revision} must start with {service_id}-"
                )
            known = self.revisions.get(f"{service.name}/revisions/{revision}")
            stored = run_v2.RevisionTemplate(template, revision=revision)
            if known is not None and known != stored:
                raise RefusedError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Revision named '{revision}' with different configuration already exists.",
                )
            self.revisions[f"{service.name}/revisions/{revision}"] = stored
            service.template = stored
            service.latest_created_revision = revision
            if any(container.image in self.failing_images for container in stored.containers):
                service.terminal_condition = run_v2.Condition(
                    type_="Ready",
                    state=run_v2.Condition.State.CONDITION_FAILED,
                    message=f"Revision '{revision}' is not ready and cannot serve traffic.",
                )
            else:
                service.latest_ready_revision = revision
                service.terminal_condition = run_v2.Condition(
                    type_="Ready", state=run_v2.Condition.State.CONDITION_SUCCEEDED
                )
        tags = [t.tag for t in traffic if t.tag]
        if len(tags) != len(set(tags)):
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, f"tags repeat: {tags}")
        if sum(t.percent for t in traffic) != 100:
            raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "traffic percentages must add up to 100")
        for target in traffic:
            if (
                target.type_ == BY_REVISION
                and f"{service.name}/revisions/{target.revision}" not in self.revisions
            ):
                raise RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"revision {target.revision} does not exist"
                )
        host = service.uri.removeprefix("https://")
        service.traffic = traffic
        service.traffic_statuses = [
            run_v2.TrafficTargetStatus(
                type_=t.type_,
                revision=t.revision,
                percent=t.percent,
                tag=t.tag,
                uri=f"https://{t.tag}---{host}" if t.tag else "",
            )
            for t in traffic
        ]
        service.generation += 1
        service.observed_generation = service.generation
        self._still_reconciling = self.reconciling_reads
        service.etag = f'"{service.generation}"'
        self.services[service.name] = service
        return run_v2.Service(service)


UPDATABLE = ("template", "traffic", "annotations")  # the fields a mask may name here
# The namespaces the v2 reference says Cloud Run does not support in annotations.
SYSTEM_NAMESPACES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
ANNOTATIONS_MAX_BYTES = 256 * 1024  # Kubernetes' limit on all of an object's annotations, keys and values
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_annotations(annotations: Mapping[str, str], before: Mapping[str, str]) -> None:
    """Refuse what Cloud Run refuses in annotations (the module's docstring says where that is written).

    A key that is not a qualified name, a new key in a system namespace, more than 256 KiB in all.
    """
    for key in annotations:
        prefix, _, name = key.rpartition("/")
        if not _NAME.fullmatch(name) or (
            "/" in key and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))
        ):
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT, f"annotation key {key!r}: not a qualified name"
            )
        system = any(prefix == space or prefix.endswith(f".{space}") for space in SYSTEM_NAMESPACES)
        if system and key not in before:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"annotation {key!r}: the {prefix} namespace is not supported",
            )
    size = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT, f"annotations: {size} bytes, more than {ANNOTATIONS_MAX_BYTES}"
        )


def service_uri(name: str) -> str:
    """Cloud Run's deterministic URL of projects/P/locations/REGION/services/S: S-NUMBER.REGION.run.app."""
    parts = name.split("/")
    return f"https://{parts[5]}-{PROJECT_NUMBER}.{parts[3]}.run.app"


def _status(code: grpc.StatusCode, reason: str) -> grpc.Status:
    """A status with google.rpc.ErrorInfo details, which the client exposes as the error's `reason`."""
    details = any_pb2.Any()
    details.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="googleapis.com"))
    message = f"refused ({reason})"
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[details]))


@contextmanager
def serve(fake: FakeCloudRun) -> Iterator[str]:
    """Serve `fake` on a free loopback port; yields host:port."""
    handlers = {
        "GetService": grpc.unary_unary_rpc_method_handler(
            fake.get_service,
            request_deserializer=run_v2.GetServiceRequest.deserialize,
            response_serializer=run_v2.Service.serialize,
        ),
        "UpdateService": grpc.unary_unary_rpc_method_handler(
            fake.update_service,
            request_deserializer=run_v2.UpdateServiceRequest.deserialize,
            response_serializer=operations_pb2.Operation.SerializeToString,
        ),
        "GetIamPolicy": grpc.unary_unary_rpc_method_handler(
            fake.get_iam_policy,
            request_deserializer=iam_policy_pb2.GetIamPolicyRequest.FromString,
            response_serializer=policy_pb2.Policy.SerializeToString,
        ),
        "SetIamPolicy": grpc.unary_unary_rpc_method_handler(
            fake.set_iam_policy,
            request_deserializer=iam_policy_pb2.SetIamPolicyRequest.FromString,
            response_serializer=policy_pb2.Policy.SerializeToString,
        ),
    }
    with serve_fake("google.cloud.run.v2.Services", handlers, workers=4) as address:
        yield address
