"""CiIdentity: keyless access for one GitHub repository's workflows to preview and deploy this program.

Two service accounts: a previewer with read-only roles, which any workflow of the repository may use (pull
request previews), and a deployer, which only tokens for the main branch may use (dev's deploy on a push to
main, prod's dispatch from main). With a deploy environment (prod's `production`), the deployer also requires
the token's `environment` claim: IAM refuses a job that does not declare the environment, so its reviewers
(enforced by GitHub) cannot be skipped by a workflow that leaves it out. The provider admits only tokens whose
repository and owner ids match as well as the name. With pull-request revisions on (config prRevisions), a
third account, usable only by pull_request workflows, may deploy no-traffic revisions of this stack's service
and nothing else.

Refresh: neither account may read the pool, the provider, the service accounts or IAM policies, so `pulumi
refresh` (or `refresh: true`) fails with 403 for them. No workflow refreshes: the program reads the service's
live traffic through the Admin API instead (docs/releases.md); a refresh is for a human with project roles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

REQUIRED_APIS = (
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",  # the auth action mints the deployer's access token here
    "sts.googleapis.com",  # and exchanges GitHub's OIDC token here first
    "cloudresourcemanager.googleapis.com",  # project IAM bindings
    # Preflight runs as the deployer before each CI deploy, and its calls count against this project: the
    # organization policies it reads, and the billing link.
    "orgpolicy.googleapis.com",
    "cloudbilling.googleapis.com",
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
PROVIDER_ID = "github-actions"
# The deployer trusts the token's `ref` claim rather than its `sub`, whose default format GitHub changed
# for repositories created or renamed after mid-2026 (immutable owner and repository ids); `ref`'s is fixed.
DEPLOY_REF = "refs/heads/main"

# What `pulumi up` of this program changes, and no more: the Cloud Run services and their invoker bindings,
# enabled APIs, and the observability component's log-based metrics, dashboard, SLOs, alert policies and
# notification channels (the registry's role is on the repository alone, below). Deliberately absent: project
# IAM admin, workload identity pool admin and service account admin, any of which would let the deployer
# widen its own access, and the basic roles. Changes to this identity or to the runtime service account are
# applied by a human `pulumi up`. Each Monitoring role is the editor of one kind of resource, narrower than
# monitoring.editor (which also writes metric descriptors, uptime checks, groups and snoozes).
# serviceUsageAdmin enables (and disables) any API in the project: kept, because enabling an API grants no
# access by itself, and without it every merge that adds an API to the program would fail CI until a human
# `up` (docs/ci-cd.md, "What the deployer may change").
DEPLOYER_PROJECT_ROLES = (
    "roles/run.admin",
    "roles/serviceusage.serviceUsageAdmin",
    # `python -m release promote` reads the candidate's error ratio (monitoring.timeSeries.list); it also
    # lets the editors below read the channels and metrics what they write refers to.
    "roles/monitoring.viewer",
    "roles/monitoring.dashboardEditor",  # the dashboard
    "roles/monitoring.servicesEditor",  # the custom service and its SLOs
    "roles/monitoring.alertPolicyEditor",  # the burn-rate and other alert policies
    "roles/monitoring.notificationChannelEditor",  # one email channel per alertEmails entry
    # Preflight (`python -m preflight --deployer`) reads the effective organization policies the stack's
    # settings must meet (orgpolicy.policy.get): reads only.
    "roles/orgpolicy.policyViewer",
)
# With a domain, the front door: serverless NEGs, backend service, URL map, managed certificate, HTTPS proxy,
# global address and forwarding rule (loadBalancerAdmin, which also attaches a security policy to the
# backend), and the Cloud Armor policy itself (securityAdmin: compute.securityPolicies.*). Not networkAdmin:
# the program declares no VPC, subnet or route.
DEPLOYER_FRONT_DOOR_ROLES = (
    "roles/compute.loadBalancerAdmin",
    "roles/compute.securityAdmin",
)
# The image pushes and the cleanup policy, on the stack's one repository (not the project: no other
# repository, no new ones). Cleanup-policy edits need artifactregistry.repositories.update, which among the
# predefined roles only artifactregistry.admin holds (repoAdmin has pushes and deletes of versions, not
# repositories.update); on the repository it still allows that repository's deletion and IAM policy.
DEPLOYER_REPOSITORY_ROLE = "roles/artifactregistry.admin"
# Deploying a revision that runs as the runtime service account needs actAs on that account alone.
DEPLOYER_RUNTIME_ACCOUNT_ROLE = "roles/iam.serviceAccountUser"
# Creating (and reading back) catalog objects in the catalog bucket alone.
DEPLOYER_CATALOG_BUCKET_ROLE = "roles/storage.objectUser"
# What `pulumi preview` needs: an access token (the program reads one for the image's registry login; a
# preview does not build, build_on_preview=False) and reads of what it shows. It changes nothing, so a pull
# request from any branch may use it.
# `pulumi preview --refresh` would also need to read IAM policies and the identity pool: not granted (see
# the module's docstring).
PREVIEWER_PROJECT_ROLES = (
    "roles/run.viewer",
    "roles/artifactregistry.reader",
    "roles/serviceusage.serviceUsageViewer",
)
# What deploying a pull request's build as a no-traffic revision of one service takes, each granted on that
# one resource and not on the project: push to its repository, update that service (a template and a tag;
# roles/run.developer has no IAM permissions), call it for the smoke check, and act as its runtime account.
PR_DEPLOYER_REPOSITORY_ROLE = "roles/artifactregistry.writer"
PR_DEPLOYER_SERVICE_ROLES = ("roles/run.developer", "roles/run.invoker")
PR_DEPLOYER_RUNTIME_ACCOUNT_ROLE = "roles/iam.serviceAccountUser"
# Only workflows started by a pull request event may use the PR deployer (the provider admits this
# repository's tokens only; GitHub gives fork pull requests no token at all).
PR_EVENT = "pull_request"


@dataclass(frozen=True)
class PullRequestRevisionsArgs:
    """The one service (and its registry repository) pull requests may deploy no-traffic revisions of."""

    account_id: str
    service_name: pulumi.Input[str]
    location: str
    repository_id: pulumi.Input[str]


@dataclass(frozen=True)
class CiIdentityArgs:
    """Which repository may preview and deploy, and the ids and runtime account its accounts work with."""

    project: str
    github_repository: str
    github_repository_id: int
    github_repository_owner_id: int
    pool_id: str
    deployer_account_id: str
    previewer_account_id: str
    runtime_service_account: pulumi.Input[str]  # full name: projects/P/serviceAccounts/EMAIL
    # The stack's image repository (ContainerImage.repository_id, so the grant waits for it) and its region.
    image_repository: pulumi.Input[str]
    image_repository_location: str
    # The GitHub environment a deploy job must declare (its token's `environment` claim); None: any on main.
    deploy_environment: str | None = None
    depends_on: Sequence[pulumi.Resource] = ()
    # A third account, for pull-request revisions of one service (docs/releases.md); None creates none.
    pull_requests: PullRequestRevisionsArgs | None = None
    # Whether the program declares a front door (a domain): the deployer then manages load balancers too.
    front_door: bool = False
    # The catalog bucket (catalog_data), whose objects a release uploads; None: no catalog file.
    catalog_bucket: pulumi.Input[str] | None = None


def attribute_condition(repository: str, repository_id: int, owner_id: int) -> str:
    """The provider's condition: only this repository's tokens, by name and by the ids no one can reuse."""
    return (
        f"assertion.repository == '{repository}'"
        f" && assertion.repository_id == '{repository_id}'"
        f" && assertion.repository_owner_id == '{owner_id}'"
    )


# GitHub's tokens carry ids as strings. `environment` is only in tokens of jobs that declare one: without the
# has() guard the mapping would fail for every other token (previews, dev's deploy) and refuse them.
ENVIRONMENT = "(has(assertion.environment) ? assertion.environment : '')"
ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.repository_id": "assertion.repository_id",
    "attribute.repository_owner_id": "assertion.repository_owner_id",
    "attribute.ref": "assertion.ref",
    # Only pull_request workflows may impersonate the pull-request deployer (prRevisions).
    "attribute.event_name": "assertion.event_name",
    "attribute.environment": ENVIRONMENT,
    # A principal set matches one attribute: the branch and the environment together are one value.
    "attribute.ref_environment": f"assertion.ref + ':' + {ENVIRONMENT}",
}


@dataclass(frozen=True)
class Target:
    """A resource CI accounts get roles on: the IAM member resource that grants them, and its naming args."""

    binding: Callable[..., pulumi.CustomResource]
    names: Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True)
class Grant:
    """One role on one target; `name` ends the binding's resource name, after the account's."""

    name: str
    role: str
    on: Target


@dataclass(frozen=True)
class CiAccount:
    """A CI service account, the tokens that may impersonate it (a principal set of the pool), its grants."""

    kind: str  # "deployer": its resource names and display name
    account_id: str
    description: str
    impersonators: str  # the principal set's short name, in the impersonation binding's resource name
    principals: pulumi.Input[str]
    grants: Sequence[Grant]


def _each(roles: Sequence[str], on: Target) -> list[Grant]:
    """A grant of each role, named after the role."""
    return [Grant(role.removeprefix("roles/").replace(".", "-"), role, on) for role in roles]


def ci_accounts(
    args: CiIdentityArgs, principals: Callable[[str, str], pulumi.Output[str]]
) -> list[CiAccount]:
    """The accounts this repository's workflows use, one row each (gh-oidc's sa_mapping).

    `principals(attribute, value)`: the pool's principal set of tokens whose mapped attribute has that value.
    """
    project = Target(gcp.projects.IAMMember, {"project": args.project})
    runtime = Target(gcp.serviceaccount.IAMMember, {"service_account_id": args.runtime_service_account})
    registry = Target(
        gcp.artifactregistry.RepositoryIamMember,
        {
            "project": args.project,
            "location": args.image_repository_location,
            "repository": args.image_repository,
        },
    )
    if (environment := args.deploy_environment) is None:
        deployers, only = "main", "for the main branch only"
        deploy_tokens = principals("ref", DEPLOY_REF)
    else:
        deployers, only = environment, f"for jobs on the main branch in the {environment} environment only"
        deploy_tokens = principals("ref_environment", f"{DEPLOY_REF}:{environment}")
    deployer = [
        *_each(DEPLOYER_PROJECT_ROLES + (DEPLOYER_FRONT_DOOR_ROLES if args.front_door else ()), project),
        Grant("registry", DEPLOYER_REPOSITORY_ROLE, registry),
        Grant("acts-as-runtime", DEPLOYER_RUNTIME_ACCOUNT_ROLE, runtime),
    ]
    if args.catalog_bucket is not None:
        # A new catalog is a new object in the stack's bucket, so a release writes objects there; the bucket
        # itself (and who reads it) changes with a human `pulumi up`, like the runtime account.
        bucket = Target(gcp.storage.BucketIAMMember, {"bucket": args.catalog_bucket})
        deployer.append(Grant("catalog-objects", DEPLOYER_CATALOG_BUCKET_ROLE, bucket))
    accounts = [
        CiAccount(
            "deployer",
            args.deployer_account_id,
            f"Runs pulumi up from GitHub Actions, {only}.",
            deployers,
            deploy_tokens,
            deployer,
        ),
        CiAccount(
            "previewer",
            args.previewer_account_id,
            "Runs pulumi preview from GitHub Actions pull requests; read-only.",
            "repository",
            principals("repository_id", str(args.github_repository_id)),
            _each(PREVIEWER_PROJECT_ROLES, project),
        ),
    ]
    if (pr := args.pull_requests) is not None:
        # Roles on one service, its repository and its runtime account; none on the project, so nothing else
        # (and no IAM policy) is within its reach.
        where = {"project": args.project, "location": pr.location}
        service = Target(gcp.cloudrunv2.ServiceIamMember, {**where, "name": pr.service_name})
        pushes = Target(gcp.artifactregistry.RepositoryIamMember, {**where, "repository": pr.repository_id})
        pr_deployer = [
            Grant("pushes", PR_DEPLOYER_REPOSITORY_ROLE, pushes),
            Grant("acts-as-runtime", PR_DEPLOYER_RUNTIME_ACCOUNT_ROLE, runtime),
            *_each(PR_DEPLOYER_SERVICE_ROLES, service),
        ]
        accounts.append(
            CiAccount(
                "pr-deployer",
                pr.account_id,
                "Deploys pull requests as no-traffic revisions of one Cloud Run service.",
                "pull-requests",
                principals("event_name", PR_EVENT),
                pr_deployer,
            )
        )
    return accounts


class CiIdentity(pulumi.ComponentResource):
    """A Workload Identity pool and GitHub OIDC provider, and the CI accounts (ci_accounts) in one loop."""

    workload_identity_provider: pulumi.Output[str]
    deployer_service_account: pulumi.Output[str]
    previewer_service_account: pulumi.Output[str]
    pr_deployer_service_account: pulumi.Output[str] | None

    def __init__(self, name: str, args: CiIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:CiIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=args.project,
            workload_identity_pool_id=args.pool_id,
            display_name="GitHub Actions",
            description=f"Workflows of {args.github_repository}",
            opts=child,
        )
        provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            project=args.project,
            workload_identity_pool_id=pool.workload_identity_pool_id,
            workload_identity_pool_provider_id=PROVIDER_ID,
            display_name="GitHub OIDC",
            attribute_mapping=ATTRIBUTE_MAPPING,
            attribute_condition=attribute_condition(
                args.github_repository, args.github_repository_id, args.github_repository_owner_id
            ),
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
            opts=child,
        )

        # Principal sets span the pool, whose one provider admits this repository's tokens only.
        def principals(attribute: str, value: str) -> pulumi.Output[str]:
            return pool.name.apply(
                lambda pool_name: (
                    f"principalSet://iam.googleapis.com/{pool_name}/attribute.{attribute}/{value}"
                )
            )

        emails: dict[str, pulumi.Output[str]] = {}
        for ci in ci_accounts(args, principals):
            account = gcp.serviceaccount.Account(
                f"{name}-{ci.kind}",
                project=args.project,
                account_id=ci.account_id,
                display_name=f"{ci.kind.capitalize()} for {args.github_repository}",
                description=ci.description,
                opts=child,
            )
            gcp.serviceaccount.IAMMember(
                f"{name}-{ci.impersonators}-impersonates-{ci.kind}",
                service_account_id=account.name,
                role="roles/iam.workloadIdentityUser",
                member=ci.principals,
                opts=child,
            )
            for grant in ci.grants:
                grant.on.binding(
                    f"{name}-{ci.kind}-{grant.name}",
                    role=grant.role,
                    member=account.member,
                    opts=child,
                    **grant.on.names,
                )
            emails[ci.kind] = account.email

        self.workload_identity_provider = provider.name
        self.deployer_service_account = emails["deployer"]
        self.previewer_service_account = emails["previewer"]
        self.pr_deployer_service_account = emails.get("pr-deployer")
        self.register_outputs(
            {
                "workloadIdentityProvider": self.workload_identity_provider,
                "deployerServiceAccount": self.deployer_service_account,
                "previewerServiceAccount": self.previewer_service_account,
                "prDeployerServiceAccount": self.pr_deployer_service_account,
            }
        )
