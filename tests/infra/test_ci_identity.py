"""The CI identity: only with githubRepository (and its ids); a read-only previewer, a deployer for main."""

from __future__ import annotations

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
    Deployment,
    Mocks,
    RecordingMonitor,
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


def with_ci(**overrides: object) -> Deployment:
    config = {
        **BASE,
        f"{PROJECT}:githubRepository": REPOSITORY,
        f"{PROJECT}:githubRepositoryId": REPOSITORY_ID,
        f"{PROJECT}:githubRepositoryOwnerId": OWNER_ID,
    }
    config.update({f"{PROJECT}:{key}": value for key, value in overrides.items()})
    return run_program(config)


def test_no_repository_no_ci_identity() -> None:
    deployment = run_program(BASE)
    for type_ in CI_TYPES:
        assert deployment.all(type_) == [], type_
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
        "roles/artifactregistry.admin",
        "roles/run.admin",
        "roles/serviceusage.serviceUsageAdmin",
    ]
    assert roles_of(deployment, PREVIEWER) == [
        "roles/artifactregistry.reader",
        "roles/run.viewer",
        "roles/serviceusage.serviceUsageViewer",
    ]
    assert {g.inputs["member"] for g in deployment.all(PROJECT_IAM)} == {
        f"serviceAccount:{DEPLOYER}",
        f"serviceAccount:{PREVIEWER}",
    }


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


def test_outputs_feed_the_workflows() -> None:
    outputs = with_ci().outputs
    assert outputs["workloadIdentityProvider"] == f"{POOL_NAME}/providers/github-actions"
    assert outputs["deployerServiceAccount"] == DEPLOYER
    assert outputs["previewerServiceAccount"] == PREVIEWER


def test_ci_resources_belong_to_the_ci_component() -> None:
    deployment = with_ci()
    ci = next(r for r in deployment.declared if r.type == "catalog:index:CiIdentity")
    for type_ in CI_TYPES:
        assert {resource.parent for resource in deployment.all(type_)} == {ci.urn}, type_
