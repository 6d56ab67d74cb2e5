"""What `pulumi up` asks of the caller: the IAM permissions behind each kind of resource the program declares.

Each row: a resource type, when the program declares it, and what the provider calls to create, read back
and update it. tests/preflight runs the program under mocks over a matrix of stacks and checks that the rows
whose `when` holds are exactly the types the program declares. `deployer` is the part CI's deployer holds on
the project (catalog_infra.ci_identity): what a CI `up` changes. Its other grants sit on one resource each
(the registry repository, the catalog bucket, the runtime account), which a project's testIamPermissions
cannot see, and the identity and IAM resources are changed by a person's `up` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from preflight.stack import Stack

# A resource that runs as a service account takes actAs on it, which the resource's own role does not hold.
ACT_AS = "iam.serviceAccounts.actAs"
ACT_AS_ROLE = "roles/iam.serviceAccountUser"


@dataclass(frozen=True)
class Creates:
    """One kind of resource the program declares, and what creating and updating it takes."""

    type: str
    role: str  # the predefined role that holds `grants` (docs/deploying.md, "Who runs the first `up`")
    grants: tuple[str, ...]
    when: Callable[[Stack], bool]
    deployer: tuple[str, ...] = ()
    acts_as: bool = False

    @property
    def permissions(self) -> tuple[str, ...]:
        """Every permission a person's `up` of this resource uses."""
        return (*self.grants, *((ACT_AS,) if self.acts_as else ()))

    @property
    def roles(self) -> tuple[str, ...]:
        """The predefined roles that together hold `permissions`; none for a resource no API sees."""
        return tuple(role for role in (self.role, ACT_AS_ROLE if self.acts_as else "") if role)

    def roles_for(self, lacking: Sequence[str]) -> tuple[str, ...]:
        """The roles that hold the permissions of this row the caller lacks."""
        return tuple(
            role
            for role, held in ((self.role, self.grants), (ACT_AS_ROLE, (ACT_AS,) if self.acts_as else ()))
            if set(lacking) & set(held)
        )


def _always(_: Stack) -> bool:
    return True


def _with_domain(stack: Stack) -> bool:
    return stack.config.domain is not None


def _with_catalog(stack: Stack) -> bool:
    return stack.config.catalog_file is not None


def _with_ci(stack: Stack) -> bool:
    return stack.config.github_repository is not None


def _crud(collection: str, *extra: str) -> tuple[str, ...]:
    """create, get and update on one collection ("run.services"), and any other permissions named."""
    return (f"{collection}.create", f"{collection}.get", f"{collection}.update", *extra)


_SERVICE = _crud("run.services")
_COMPUTE_OPERATIONS = ("compute.globalOperations.get", "compute.regionOperations.get")

RESOURCES: tuple[Creates, ...] = (
    Creates(
        "gcp:projects/service:Service",
        "roles/serviceusage.serviceUsageAdmin",
        ("serviceusage.services.enable", "serviceusage.services.get"),
        _always,
        deployer=("serviceusage.services.enable", "serviceusage.services.get"),
    ),
    Creates("time:index/sleep:Sleep", "", (), _always),
    Creates(
        "gcp:artifactregistry/repository:Repository",
        "roles/artifactregistry.admin",
        _crud("artifactregistry.repositories"),
        _always,
    ),
    Creates(
        "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
        "roles/artifactregistry.admin",
        ("artifactregistry.repositories.getIamPolicy", "artifactregistry.repositories.setIamPolicy"),
        _with_ci,
    ),
    # Built and pushed unless the stack deploys a prebuilt `image`.
    Creates(
        "docker-build:index:Image",
        "roles/artifactregistry.admin",
        ("artifactregistry.repositories.uploadArtifacts", "artifactregistry.repositories.downloadArtifacts"),
        lambda stack: stack.config.image is None,
    ),
    # The program also reads the live service's traffic (run.services.get) before it declares anything.
    Creates(
        "gcp:cloudrunv2/service:Service",
        "roles/run.admin",
        _SERVICE,
        _always,
        deployer=_SERVICE,
        acts_as=True,
    ),
    # allUsers, each of `invokers`, and the pull-request deployer's grants on the service.
    Creates(
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "roles/run.admin",
        ("run.services.getIamPolicy", "run.services.setIamPolicy"),
        lambda stack: bool(
            stack.config.allow_unauthenticated
            or stack.config.invokers
            or (stack.config.github_repository and stack.config.pr_revisions)
        ),
        deployer=("run.services.getIamPolicy", "run.services.setIamPolicy"),
    ),
    Creates(
        "gcp:serviceaccount/account:Account",
        "roles/iam.serviceAccountAdmin",
        _crud("iam.serviceAccounts"),
        _always,
    ),
    Creates(
        "gcp:serviceaccount/iAMMember:IAMMember",
        "roles/iam.serviceAccountAdmin",
        ("iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy"),
        _with_ci,
    ),
    Creates(
        "gcp:monitoring/dashboard:Dashboard",
        "roles/monitoring.editor",
        _crud("monitoring.dashboards"),
        _always,
        deployer=_crud("monitoring.dashboards"),
    ),
    Creates(
        "gcp:monitoring/customService:CustomService",
        "roles/monitoring.editor",
        _crud("monitoring.services"),
        _always,
        deployer=_crud("monitoring.services"),
    ),
    Creates(
        "gcp:monitoring/slo:Slo",
        "roles/monitoring.editor",
        _crud("monitoring.slos"),
        _always,
        deployer=_crud("monitoring.slos"),
    ),
    Creates(
        "gcp:monitoring/alertPolicy:AlertPolicy",
        "roles/monitoring.editor",
        _crud("monitoring.alertPolicies"),
        _always,
        deployer=_crud("monitoring.alertPolicies"),
    ),
    Creates(
        "gcp:monitoring/notificationChannel:NotificationChannel",
        "roles/monitoring.editor",
        _crud("monitoring.notificationChannels"),
        lambda stack: bool(stack.observability.alert_emails),
        deployer=_crud("monitoring.notificationChannels"),
    ),
    Creates(
        "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup",
        "roles/compute.loadBalancerAdmin",
        (
            "compute.regionNetworkEndpointGroups.create",
            "compute.regionNetworkEndpointGroups.get",
            *_COMPUTE_OPERATIONS,
        ),
        _with_domain,
        deployer=("compute.regionNetworkEndpointGroups.create", "compute.regionNetworkEndpointGroups.get"),
    ),
    Creates(
        "gcp:compute/backendService:BackendService",
        "roles/compute.loadBalancerAdmin",
        _crud(
            "compute.backendServices",
            "compute.regionNetworkEndpointGroups.use",
            "compute.securityPolicies.use",
        ),
        _with_domain,
        deployer=_crud(
            "compute.backendServices",
            "compute.regionNetworkEndpointGroups.use",
            "compute.securityPolicies.use",
        ),
    ),
    Creates(
        "gcp:compute/uRLMap:URLMap",
        "roles/compute.loadBalancerAdmin",
        _crud("compute.urlMaps", "compute.backendServices.use"),
        _with_domain,
        deployer=_crud("compute.urlMaps", "compute.backendServices.use"),
    ),
    Creates(
        "gcp:compute/managedSslCertificate:ManagedSslCertificate",
        "roles/compute.loadBalancerAdmin",
        ("compute.sslCertificates.create", "compute.sslCertificates.get"),
        _with_domain,
        deployer=("compute.sslCertificates.create", "compute.sslCertificates.get"),
    ),
    Creates(
        "gcp:compute/targetHttpsProxy:TargetHttpsProxy",
        "roles/compute.loadBalancerAdmin",
        (
            "compute.targetHttpsProxies.create",
            "compute.targetHttpsProxies.get",
            "compute.urlMaps.use",
            "compute.sslCertificates.get",
        ),
        _with_domain,
        deployer=(
            "compute.targetHttpsProxies.create",
            "compute.targetHttpsProxies.get",
            "compute.urlMaps.use",
            "compute.sslCertificates.get",
        ),
    ),
    Creates(
        "gcp:compute/globalAddress:GlobalAddress",
        "roles/compute.loadBalancerAdmin",
        ("compute.globalAddresses.create", "compute.globalAddresses.get", "compute.globalAddresses.use"),
        _with_domain,
        deployer=(
            "compute.globalAddresses.create",
            "compute.globalAddresses.get",
            "compute.globalAddresses.use",
        ),
    ),
    Creates(
        "gcp:compute/globalForwardingRule:GlobalForwardingRule",
        "roles/compute.loadBalancerAdmin",
        (
            "compute.globalForwardingRules.create",
            "compute.globalForwardingRules.get",
            "compute.targetHttpsProxies.use",
        ),
        _with_domain,
        deployer=(
            "compute.globalForwardingRules.create",
            "compute.globalForwardingRules.get",
            "compute.targetHttpsProxies.use",
        ),
    ),
    Creates(
        "gcp:compute/securityPolicy:SecurityPolicy",
        "roles/compute.securityAdmin",
        _crud("compute.securityPolicies"),
        _with_domain,
        deployer=_crud("compute.securityPolicies"),
    ),
    Creates("gcp:storage/bucket:Bucket", "roles/storage.admin", _crud("storage.buckets"), _with_catalog),
    Creates(
        "gcp:storage/bucketObject:BucketObject",
        "roles/storage.admin",
        ("storage.objects.create", "storage.objects.get"),
        _with_catalog,
    ),
    Creates(
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        "roles/storage.admin",
        ("storage.buckets.getIamPolicy", "storage.buckets.setIamPolicy"),
        _with_catalog,
    ),
    Creates(
        "gcp:iam/workloadIdentityPool:WorkloadIdentityPool",
        "roles/iam.workloadIdentityPoolAdmin",
        _crud("iam.workloadIdentityPools"),
        _with_ci,
    ),
    Creates(
        "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",
        "roles/iam.workloadIdentityPoolAdmin",
        _crud("iam.workloadIdentityPoolProviders"),
        _with_ci,
    ),
    # The runtime account's telemetry writers (observability), and the CI accounts' project roles.
    Creates(
        "gcp:projects/iAMMember:IAMMember",
        "roles/resourcemanager.projectIamAdmin",
        ("resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"),
        _always,
    ),
)


def declared(stack: Stack) -> tuple[Creates, ...]:
    """The rows of the resource kinds this stack's `up` declares."""
    return tuple(row for row in RESOURCES if row.when(stack))


def needed(stack: Stack, *, deployer: bool) -> dict[str, tuple[Creates, ...]]:
    """Each permission the caller needs, with the rows that need it (a person's `up`, or CI's deployer's)."""
    by_permission: dict[str, list[Creates]] = {}
    for row in declared(stack):
        for permission in row.deployer if deployer else row.permissions:
            by_permission.setdefault(permission, []).append(row)
    return {permission: tuple(rows) for permission, rows in by_permission.items()}
