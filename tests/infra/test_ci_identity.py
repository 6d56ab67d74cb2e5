"""The CI identity: only with githubRepository, pinned to that repository, with an explicit role list."""

from __future__ import annotations

from tests.infra.harness import (
    ACCOUNT,
    ACCOUNT_IAM,
    API,
    POOL,
    POOL_NUMBER,
    PROJECT,
    PROJECT_IAM,
    PROVIDER,
    Deployment,
    run_program,
)

REPOSITORY = "octo-org/catalog-grpc"
GCP_PROJECT = "my-gcp-project-dev"
BASE: dict[str, object] = {"gcp:project": GCP_PROJECT, "gcp:region": "us-central1"}
POOL_NAME = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/github-1"
DEPLOYER = f"catalog-grpc-deployer@{GCP_PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"catalog-grpc-run@{GCP_PROJECT}.iam.gserviceaccount.com"
CI_TYPES = (POOL, PROVIDER, PROJECT_IAM, ACCOUNT_IAM)


def with_ci(**overrides: object) -> Deployment:
    config = {**BASE, f"{PROJECT}:githubRepository": REPOSITORY}
    config.update({f"{PROJECT}:{key}": value for key, value in overrides.items()})
    return run_program(config)


def test_no_repository_no_ci_identity() -> None:
    deployment = run_program(BASE)
    for type_ in CI_TYPES:
        assert deployment.all(type_) == [], type_
    assert [account.name for account in deployment.all(ACCOUNT)] == ["catalog-sa"]
    assert "workloadIdentityProvider" not in deployment.outputs
    assert "deployerServiceAccount" not in deployment.outputs
    assert {api.inputs["service"] for api in deployment.all(API)} == {
        "run.googleapis.com",
        "artifactregistry.googleapis.com",
        "iam.googleapis.com",
    }


def test_pool_has_a_suffix_that_can_change() -> None:
    assert with_ci().one(POOL).inputs["workloadIdentityPoolId"] == "github-1"
    assert with_ci(ciPoolSuffix="2").one(POOL).inputs["workloadIdentityPoolId"] == "github-2"


def test_provider_trusts_github_and_pins_the_repository() -> None:
    provider = with_ci().one(PROVIDER).inputs
    assert provider["workloadIdentityPoolId"] == "github-1"
    assert provider["oidc"] == {"issuerUri": "https://token.actions.githubusercontent.com"}
    assert provider["attributeCondition"] == f"assertion.repository == '{REPOSITORY}'"
    assert provider["attributeMapping"]["attribute.repository"] == "assertion.repository"
    assert provider["attributeMapping"]["google.subject"] == "assertion.sub"


def test_deployer_roles_are_listed_explicitly_and_exclude_iam_administration() -> None:
    deployment = with_ci()
    grants = deployment.all(PROJECT_IAM)
    assert {grant.inputs["member"] for grant in grants} == {f"serviceAccount:{DEPLOYER}"}
    assert {grant.inputs["project"] for grant in grants} == {GCP_PROJECT}
    assert sorted(grant.inputs["role"] for grant in grants) == [
        "roles/artifactregistry.admin",
        "roles/run.admin",
        "roles/serviceusage.serviceUsageAdmin",
    ]


def test_deployer_acts_as_the_runtime_account_only() -> None:
    bindings = {b.inputs["role"]: b.inputs for b in with_ci().all(ACCOUNT_IAM)}
    act_as = bindings["roles/iam.serviceAccountUser"]
    assert act_as["serviceAccountId"] == f"projects/{GCP_PROJECT}/serviceAccounts/{RUNTIME}"
    assert act_as["member"] == f"serviceAccount:{DEPLOYER}"


def test_only_the_repository_may_impersonate_the_deployer() -> None:
    bindings = {b.inputs["role"]: b.inputs for b in with_ci().all(ACCOUNT_IAM)}
    impersonate = bindings["roles/iam.workloadIdentityUser"]
    assert impersonate["serviceAccountId"] == f"projects/{GCP_PROJECT}/serviceAccounts/{DEPLOYER}"
    assert (
        impersonate["member"]
        == f"principalSet://iam.googleapis.com/{POOL_NAME}/attribute.repository/{REPOSITORY}"
    )
    assert set(bindings) == {"roles/iam.serviceAccountUser", "roles/iam.workloadIdentityUser"}


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


def test_outputs_feed_the_workflows() -> None:
    outputs = with_ci().outputs
    assert outputs["workloadIdentityProvider"] == f"{POOL_NAME}/providers/github-actions"
    assert outputs["deployerServiceAccount"] == DEPLOYER


def test_ci_resources_belong_to_the_ci_component() -> None:
    deployment = with_ci()
    ci = next(r for r in deployment.declared if r.type == "catalog:index:CiIdentity")
    for type_ in CI_TYPES:
        assert {resource.parent for resource in deployment.all(type_)} == {ci.urn}, type_
