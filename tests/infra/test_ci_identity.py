"""The CI identity: only with githubRepository (and its ids); a read-only previewer, a deployer for main."""

from __future__ import annotations

import re

import pulumi
import pytest

from tests.infra.harness import (
    ACCOUNT,
    ACCOUNT_IAM,
    API,
    POOL,
    POOL_NUMBER,
    PROJECT,
    PROJECT_IAM,
    PROVIDER,
    REPO_ROOT,
    Declared,
    Deployment,
    Mocks,
    RecordingMonitor,
    infra_module,
    recorded,
    run_program,
)

REPOSITORY = "octo-org/catalog-grpc"
REPOSITORY_ID = 912345678
OWNER_ID = 87654321
GCP_PROJECT = "my-gcp-project-dev"
BASE: dict[str, object] = {"gcp:project": GCP_PROJECT, "gcp:region": "us-central1"}
POOL_NAME = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/github-1"
DEPLOYER = f"catalog-grpc-deployer@{GCP_PROJECT}.iam.gserviceaccount.com"
PREVIEWER = f"catalog-grpc-preview@{GCP_PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"catalog-grpc-run@{GCP_PROJECT}.iam.gserviceaccount.com"
CI_TYPES = (POOL, PROVIDER, PROJECT_IAM, ACCOUNT_IAM)


def _telemetry_grant(resource: Declared) -> bool:
    """The runtime account's metric and trace writing: the observability component's, not CI's."""
    return "catalog:index:Observability" in resource.urn


def with_ci(**overrides: object) -> Deployment:
    config = {
        **BASE,
        f"{PROJECT}:githubRepository": REPOSITORY,
        f"{PROJECT}:githubRepositoryId": REPOSITORY_ID,
        f"{PROJECT}:githubRepositoryOwnerId": OWNER_ID,
    }
    config.update({f"{PROJECT}:{key}": value for key, value in overrides.items()})
    return recorded("dev", config=config)


def test_no_repository_no_ci_identity() -> None:
    deployment = run_program(BASE)
    for type_ in CI_TYPES:
        assert [r for r in deployment.all(type_) if not _telemetry_grant(r)] == [], type_
    assert [account.name for account in deployment.all(ACCOUNT)] == ["catalog-sa"]
    assert "workloadIdentityProvider" not in deployment.outputs
    assert "deployerServiceAccount" not in deployment.outputs
    assert "previewerServiceAccount" not in deployment.outputs
    assert {api.inputs["service"] for api in deployment.all(API)} == {
        "serviceusage.googleapis.com",
        "run.googleapis.com",
        "artifactregistry.googleapis.com",
        "iam.googleapis.com",
        "monitoring.googleapis.com",
        "logging.googleapis.com",
        "cloudtrace.googleapis.com",
    }


def test_pool_has_a_suffix_that_can_change() -> None:
    assert with_ci().one(POOL).inputs["workloadIdentityPoolId"] == "github-1"
    assert with_ci(ciPoolSuffix="2").one(POOL).inputs["workloadIdentityPoolId"] == "github-2"


def test_provider_trusts_github_and_pins_the_repository_by_name_and_ids() -> None:
    provider = with_ci().one(PROVIDER).inputs
    assert provider["workloadIdentityPoolId"] == "github-1"
    assert provider["oidc"] == {"issuerUri": "https://token.actions.githubusercontent.com"}
    # GitHub's token carries the ids as strings: compared as strings.
    assert provider["attributeCondition"] == (
        f"assertion.repository == '{REPOSITORY}'"
        f" && assertion.repository_id == '{REPOSITORY_ID}'"
        f" && assertion.repository_owner_id == '{OWNER_ID}'"
    )
    environment = "(has(assertion.environment) ? assertion.environment : '')"
    assert provider["attributeMapping"] == {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repository",
        "attribute.repository_id": "assertion.repository_id",
        "attribute.repository_owner_id": "assertion.repository_owner_id",
        "attribute.ref": "assertion.ref",
        "attribute.event_name": "assertion.event_name",  # the pull-request deployer's (prRevisions)
        "attribute.environment": environment,
        "attribute.ref_environment": f"assertion.ref + ':' + {environment}",
    }


@pytest.mark.parametrize(
    ("missing", "jq"), [("githubRepositoryId", ".id"), ("githubRepositoryOwnerId", ".owner.id")]
)
def test_repository_ids_are_required_with_the_repository(missing: str, jq: str) -> None:
    monitor = RecordingMonitor(Mocks())
    config = {
        **BASE,
        f"{PROJECT}:githubRepository": REPOSITORY,
        f"{PROJECT}:githubRepositoryId": REPOSITORY_ID,
        f"{PROJECT}:githubRepositoryOwnerId": OWNER_ID,
    }
    del config[f"{PROJECT}:{missing}"]
    with pytest.raises(pulumi.RunError) as failure:
        run_program(config, monitor=monitor)
    message = str(failure.value)
    assert f"{PROJECT}:{missing}" in message
    assert f"{PROJECT}:githubRepository" in message
    assert f"gh api repos/{REPOSITORY} --jq {jq}" in message
    assert monitor.declared == []


def roles_of(deployment: Deployment, email: str) -> list[str]:
    """The project roles granted to one service account, sorted."""
    grants = deployment.all(PROJECT_IAM)
    assert {grant.inputs["project"] for grant in grants} == {GCP_PROJECT}
    return sorted(g.inputs["role"] for g in grants if g.inputs["member"] == f"serviceAccount:{email}")


def test_project_roles_are_listed_explicitly_and_exclude_iam_administration() -> None:
    deployment = with_ci()
    assert roles_of(deployment, DEPLOYER) == [
        "roles/monitoring.alertPolicyEditor",
        "roles/monitoring.dashboardEditor",
        "roles/monitoring.notificationChannelEditor",
        "roles/monitoring.servicesEditor",  # the custom service and its SLOs
        "roles/monitoring.viewer",  # the release's error-ratio gate
        "roles/orgpolicy.policyViewer",  # preflight's reads of the organization policies
        "roles/run.admin",
        "roles/serviceusage.serviceUsageAdmin",
    ]
    assert roles_of(deployment, PREVIEWER) == [
        "roles/artifactregistry.reader",
        "roles/run.viewer",
        "roles/serviceusage.serviceUsageViewer",
    ]
    assert {g.inputs["member"] for g in deployment.all(PROJECT_IAM) if not _telemetry_grant(g)} == {
        f"serviceAccount:{DEPLOYER}",
        f"serviceAccount:{PREVIEWER}",
    }


REPOSITORY_IAM = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"


def repository_roles_of(deployment: Deployment, email: str) -> list[str]:
    """The roles granted to one service account on the stack's image repository, sorted."""
    grants = [g for g in deployment.all(REPOSITORY_IAM) if g.inputs["member"] == f"serviceAccount:{email}"]
    for grant in grants:
        assert (grant.inputs["project"], grant.inputs["location"]) == (GCP_PROJECT, "us-central1")
        assert grant.inputs["repository"] == "catalog-grpc"
    return sorted(grant.inputs["role"] for grant in grants)


def test_the_deployer_administers_the_stacks_one_repository_and_no_other() -> None:
    # Not project-wide: artifactregistry.admin there would reach every repository (their IAM policies and
    # deletion) and create new ones. On the repository it pushes images and edits the cleanup policy, which
    # needs repositories.update: repoAdmin lacks it, so admin is the narrowest predefined role that has it.
    deployment = with_ci()
    assert not [role for role in roles_of(deployment, DEPLOYER) if role.startswith("roles/artifactregistry.")]
    assert repository_roles_of(deployment, DEPLOYER) == ["roles/artifactregistry.admin"]
    member = f"serviceAccount:{DEPLOYER}"
    (grant,) = [g for g in deployment.all(REPOSITORY_IAM) if g.inputs["member"] == member]
    # It names the repository by the resource's output, so it waits for the repository to exist.
    (repository,) = deployment.all("gcp:artifactregistry/repository:Repository")
    assert repository.urn in grant.dependencies
    assert repository_roles_of(deployment, PREVIEWER) == []


def bindings_on(deployment: Deployment, email: str) -> list[tuple[str, str]]:
    """(role, member) of every IAM binding on one service account, sorted: a duplicate role shows."""
    name = f"projects/{GCP_PROJECT}/serviceAccounts/{email}"
    return sorted(
        (b.inputs["role"], b.inputs["member"])
        for b in deployment.all(ACCOUNT_IAM)
        if b.inputs["serviceAccountId"] == name
    )


def test_deployer_acts_as_the_runtime_account_only() -> None:
    deployment = with_ci()
    assert bindings_on(deployment, RUNTIME) == [
        ("roles/iam.serviceAccountUser", f"serviceAccount:{DEPLOYER}")
    ]
    acting = [b for b in deployment.all(ACCOUNT_IAM) if b.inputs["role"] == "roles/iam.serviceAccountUser"]
    assert len(acting) == 1


def test_any_workflow_of_the_repository_may_preview() -> None:
    # By the repository's id, which a rename or transfer does not hand to anyone else.
    assert bindings_on(with_ci(), PREVIEWER) == [
        (
            "roles/iam.workloadIdentityUser",
            f"principalSet://iam.googleapis.com/{POOL_NAME}/attribute.repository_id/{REPOSITORY_ID}",
        )
    ]


def test_only_jobs_running_mains_code_may_impersonate_the_deployer() -> None:
    # By the `ref` claim, within a provider that admits this repository's tokens only.
    assert with_ci().one(PROVIDER).inputs["attributeMapping"]["attribute.ref"] == "assertion.ref"
    assert bindings_on(with_ci(), DEPLOYER) == [
        (
            "roles/iam.workloadIdentityUser",
            f"principalSet://iam.googleapis.com/{POOL_NAME}/attribute.ref/refs/heads/main",
        )
    ]


def test_with_a_deploy_environment_only_its_jobs_on_main_may_deploy() -> None:
    # A job that does not declare `environment: production` has no such claim: IAM refuses its token, so a
    # workflow cannot skip the environment's reviewers by leaving it out.
    deployment = with_ci(deployEnvironment="production")
    assert bindings_on(deployment, DEPLOYER) == [
        (
            "roles/iam.workloadIdentityUser",
            f"principalSet://iam.googleapis.com/{POOL_NAME}/attribute.ref_environment/refs/heads/main:production",
        )
    ]
    # Previews still need no environment.
    assert bindings_on(deployment, PREVIEWER) == bindings_on(with_ci(), PREVIEWER)


def test_deploy_environment_is_a_github_environment_name() -> None:
    with pytest.raises(pulumi.RunError, match=f"{PROJECT}:deployEnvironment"):
        with_ci(deployEnvironment="prod:uction")


def test_token_exchange_apis_are_enabled_and_waited_for() -> None:
    deployment = with_ci()
    apis = {api.inputs["service"]: api.urn for api in deployment.all(API)}
    assert {
        "iam.googleapis.com",
        "iamcredentials.googleapis.com",
        "sts.googleapis.com",
        "cloudresourcemanager.googleapis.com",
    } <= set(apis)
    assert set(apis.values()) <= set(deployment.one(POOL).dependencies)


def test_the_apis_preflight_calls_as_the_deployer_are_enabled() -> None:
    # `python -m preflight --deployer` bills its org policy and billing reads to the stack's project.
    apis = {api.inputs["service"] for api in with_ci().all(API)}
    assert {"orgpolicy.googleapis.com", "cloudbilling.googleapis.com"} <= apis


def test_outputs_feed_the_workflows() -> None:
    outputs = with_ci().outputs
    assert outputs["workloadIdentityProvider"] == f"{POOL_NAME}/providers/github-actions"
    assert outputs["deployerServiceAccount"] == DEPLOYER
    assert outputs["previewerServiceAccount"] == PREVIEWER


def test_ci_resources_belong_to_the_ci_component() -> None:
    deployment = with_ci()
    ci = next(r for r in deployment.declared if r.type == "catalog:index:CiIdentity")
    for type_ in CI_TYPES:
        assert {r.parent for r in deployment.all(type_) if not _telemetry_grant(r)} == {ci.urn}, type_


def test_with_a_catalog_file_the_deployer_may_write_catalog_objects_in_that_bucket_only() -> None:
    bucket_grants = "gcp:storage/bucketIAMMember:BucketIAMMember"
    deployment = with_ci(catalogFile="service/data/products.json")
    deployer_grants = [
        g.inputs for g in deployment.all(bucket_grants) if g.inputs["member"] == f"serviceAccount:{DEPLOYER}"
    ]
    assert deployer_grants == [
        {
            "bucket": f"{GCP_PROJECT}-catalog-grpc-catalogs",
            "role": "roles/storage.objectUser",
            "member": f"serviceAccount:{DEPLOYER}",
        }
    ]
    # Nothing on the project: the roles above are all it has there.
    assert "roles/storage.objectUser" not in roles_of(deployment, DEPLOYER)
    assert with_ci().all(bucket_grants) == []
    # What a release's `up` applies with a catalog: the object (this grant); the bucket and the runtime
    # account's read grant are a human's `pulumi up`, as the runtime account is.
    storage = {r.type for r in deployment.declared if r.type.startswith("gcp:storage/")}
    assert storage == {"gcp:storage/bucket:Bucket", "gcp:storage/bucketObject:BucketObject", bucket_grants}


def test_with_a_front_door_the_deployer_manages_load_balancers_and_cloud_armor() -> None:
    without = set(roles_of(with_ci(), DEPLOYER))
    with_domain = set(roles_of(with_ci(domain="catalog.example.com"), DEPLOYER))
    assert with_domain - without == {"roles/compute.loadBalancerAdmin", "roles/compute.securityAdmin"}
    assert not {"roles/compute.loadBalancerAdmin", "roles/compute.securityAdmin"} & without


# Which role lets the deployer create each kind of resource the program declares (docs/ci-cd-notes.md): a new
# kind of resource fails this test until its role is granted and documented.
ROLE_OF = {
    "gcp:cloudrunv2/service:Service": "roles/run.admin",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": "roles/run.admin",
    # On the repository itself (test_the_deployer_administers_the_stacks_one_repository_and_no_other).
    "gcp:artifactregistry/repository:Repository": "roles/artifactregistry.admin",
    "docker-build:index:Image": "roles/artifactregistry.admin",
    "gcp:projects/service:Service": "roles/serviceusage.serviceUsageAdmin",
    "gcp:monitoring/dashboard:Dashboard": "roles/monitoring.dashboardEditor",
    "gcp:monitoring/customService:CustomService": "roles/monitoring.servicesEditor",
    "gcp:monitoring/slo:Slo": "roles/monitoring.servicesEditor",
    "gcp:monitoring/alertPolicy:AlertPolicy": "roles/monitoring.alertPolicyEditor",
    "gcp:monitoring/notificationChannel:NotificationChannel": "roles/monitoring.notificationChannelEditor",
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": "roles/compute.loadBalancerAdmin",
    "gcp:compute/backendService:BackendService": "roles/compute.loadBalancerAdmin",
    "gcp:compute/uRLMap:URLMap": "roles/compute.loadBalancerAdmin",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": "roles/compute.loadBalancerAdmin",
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": "roles/compute.loadBalancerAdmin",
    "gcp:compute/globalAddress:GlobalAddress": "roles/compute.loadBalancerAdmin",
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": "roles/compute.loadBalancerAdmin",
    "gcp:compute/securityPolicy:SecurityPolicy": "roles/compute.securityAdmin",
}
# Applied by a human `pulumi up` (the CI identity itself, the runtime account), or not in Google Cloud.
NOT_THE_DEPLOYERS = {
    "gcp:serviceaccount/account:Account",
    "gcp:serviceaccount/iAMMember:IAMMember",
    "gcp:projects/iAMMember:IAMMember",
    "gcp:iam/workloadIdentityPool:WorkloadIdentityPool",
    "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
    "time:index/sleep:Sleep",
}


def test_the_deployer_holds_a_role_for_every_kind_of_resource_a_ci_up_applies() -> None:
    deployment = with_ci(
        domain="catalog.example.com",
        regions=["us-central1", "europe-west1"],
        minInstances=1,
        alertEmails=["oncall@example.com"],
    )
    granted = set(roles_of(deployment, DEPLOYER)) | set(repository_roles_of(deployment, DEPLOYER))
    declared = {r.type for r in deployment.declared if r.type.split(":")[0] != "catalog"} - NOT_THE_DEPLOYERS
    # The stack declares every kind the observability component and the front door make.
    assert {
        "gcp:monitoring/notificationChannel:NotificationChannel",
        "gcp:compute/securityPolicy:SecurityPolicy",
        "gcp:compute/globalAddress:GlobalAddress",
    } <= declared
    assert declared <= set(ROLE_OF), sorted(declared - set(ROLE_OF))
    assert {ROLE_OF[type_] for type_ in declared} <= granted


def test_the_modules_docstring_promises_no_refresh_the_workflows_do_not_run() -> None:
    # test_workflows.test_ci_never_refreshes keeps refresh out of every workflow: the docs must agree.
    doc = " ".join((infra_module("ci_identity").__doc__ or "").split())
    assert "No workflow refreshes" in doc
    assert not re.search(r"CI refreshes|refreshes only", doc)


def test_the_docs_table_lists_every_deployer_role_where_it_is_granted() -> None:
    docs = (REPO_ROOT / "docs" / "ci-cd-notes.md").read_text()
    section = docs.split("## What the deployer may change", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(roles/[\w.]+)`([^|]*)\|", section, re.MULTILINE))
    module = infra_module("ci_identity")
    project_roles = set(module.DEPLOYER_PROJECT_ROLES) | set(module.DEPLOYER_FRONT_DOOR_ROLES)
    assert project_roles | {module.DEPLOYER_REPOSITORY_ROLE} <= set(rows)
    assert "repository only" in rows[module.DEPLOYER_REPOSITORY_ROLE]
    assert module.DEPLOYER_REPOSITORY_ROLE not in project_roles
    # What serviceUsageAdmin allows beyond the program, said where the role is listed.
    assert "any API" in " ".join(section.split())
