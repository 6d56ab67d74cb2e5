"""In-process fakes of the three APIs preflight reads, served from the client libraries' own protos.

Cloud Billing's GetProjectBillingInfo, Org Policy v2's GetEffectivePolicy and Resource Manager v3's
TestIamPermissions, each on a loopback port as tests/release's fakes are served; the real clients talk to
them over insecure channels. Each fake records the requests it answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from google.cloud import billing_v1, orgpolicy_v2, resourcemanager_v3
from google.cloud.billing_v1.services.cloud_billing.transports import CloudBillingGrpcTransport
from google.cloud.orgpolicy_v2.services.org_policy.transports import OrgPolicyGrpcTransport
from google.cloud.resourcemanager_v3.services.projects.transports import ProjectsGrpcTransport
from google.iam.v1 import iam_policy_pb2

from preflight.checks import Clients
from tests.release.fake_api import serve_fake

PROJECT = "my-gcp-project-dev"
BILLING_ACCOUNT = "billingAccounts/012345-6789AB-CDEF01"


@dataclass
class FakeCloud:
    """One project's billing, effective policies (by constraint name) and the caller's permissions."""

    project: str = PROJECT
    billing_enabled: bool = True
    # Constraint name (run.allowedIngress) -> the effective policy's spec; absent: no policy anywhere.
    policies: dict[str, orgpolicy_v2.PolicySpec] = field(default_factory=dict)
    # Every permission the caller holds on the project; None: all it is asked.
    granted: set[str] | None = None
    # Method name -> the status it answers with instead (a missing role, an outage).
    refuse: dict[str, grpc.StatusCode] = field(default_factory=dict)
    policy_reads: list[str] = field(default_factory=list)
    permission_requests: list[list[str]] = field(default_factory=list)

    def _refused(self, method: str, context: grpc.ServicerContext) -> None:
        if method in self.refuse:
            context.abort(self.refuse[method], f"the fake refuses {method}")

    def _project(self, name: str, context: grpc.ServicerContext) -> None:
        if name != f"projects/{self.project}":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no project {name} visible to the caller")

    def get_project_billing_info(
        self, request: billing_v1.GetProjectBillingInfoRequest, context: grpc.ServicerContext
    ) -> billing_v1.ProjectBillingInfo:
        self._refused("GetProjectBillingInfo", context)
        self._project(request.name, context)
        return billing_v1.ProjectBillingInfo(
            name=f"{request.name}/billingInfo",
            project_id=self.project,
            billing_account_name=BILLING_ACCOUNT if self.billing_enabled else "",
            billing_enabled=self.billing_enabled,
        )

    def get_effective_policy(
        self, request: orgpolicy_v2.GetEffectivePolicyRequest, context: grpc.ServicerContext
    ) -> orgpolicy_v2.Policy:
        self._refused("GetEffectivePolicy", context)
        self.policy_reads.append(request.name)
        parent, _, constraint = request.name.partition("/policies/")
        self._project(parent, context)
        # With no policy set anywhere, the effective policy is empty: the constraint's default applies.
        return orgpolicy_v2.Policy(name=request.name, spec=self.policies.get(constraint))

    def test_iam_permissions(
        self, request: iam_policy_pb2.TestIamPermissionsRequest, context: grpc.ServicerContext
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        self._refused("TestIamPermissions", context)
        self._project(request.resource, context)
        asked = list(request.permissions)
        self.permission_requests.append(asked)
        if len(asked) > 100:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "at most 100 permissions per request")
        held = [p for p in asked if self.granted is None or p in self.granted]
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=held)


@contextlib.contextmanager
def serve(fake: FakeCloud) -> Iterator[Clients]:
    """Serve the three APIs from `fake`; yields clients of them, as preflight's checks take them."""
    billing = {
        "GetProjectBillingInfo": grpc.unary_unary_rpc_method_handler(
            fake.get_project_billing_info,
            request_deserializer=billing_v1.GetProjectBillingInfoRequest.deserialize,
            response_serializer=billing_v1.ProjectBillingInfo.serialize,
        )
    }
    org_policy = {
        "GetEffectivePolicy": grpc.unary_unary_rpc_method_handler(
            fake.get_effective_policy,
            request_deserializer=orgpolicy_v2.GetEffectivePolicyRequest.deserialize,
            response_serializer=orgpolicy_v2.Policy.serialize,
        )
    }
    projects = {
        "TestIamPermissions": grpc.unary_unary_rpc_method_handler(
            fake.test_iam_permissions,
            request_deserializer=iam_policy_pb2.TestIamPermissionsRequest.FromString,
            response_serializer=iam_policy_pb2.TestIamPermissionsResponse.SerializeToString,
        )
    }
    with (
        serve_fake("google.cloud.billing.v1.CloudBilling", billing, workers=2) as billing_address,
        serve_fake("google.cloud.orgpolicy.v2.OrgPolicy", org_policy, workers=2) as policy_address,
        serve_fake("google.cloud.resourcemanager.v3.Projects", projects, workers=2) as projects_address,
    ):
        yield Clients(
            billing=billing_v1.CloudBillingClient(
                transport=CloudBillingGrpcTransport(channel=grpc.insecure_channel(billing_address))
            ),
            org_policy=orgpolicy_v2.OrgPolicyClient(
                transport=OrgPolicyGrpcTransport(channel=grpc.insecure_channel(policy_address))
            ),
            projects=resourcemanager_v3.ProjectsClient(
                transport=ProjectsGrpcTransport(channel=grpc.insecure_channel(projects_address))
            ),
        )
