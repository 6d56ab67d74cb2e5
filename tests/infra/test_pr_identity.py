"""The pull-request deployer: revisions of dev's one service, pushes to its one repository, nothing else."""

from __future__ import annotations

from tests.infra.harness import (
    ACCOUNT,
    ACCOUNT_IAM,
    INVOKER,
    POOL_NUMBER,
    PROJECT,
    PROJECT_IAM,
    PROVIDER,
    Deployment,
    recorded,
    stack_config,
)

REPOSITORY_IAM = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
DEV_PROJECT = "my-gcp-project-dev"
PR_DEPLOYER = f"serviceAccount:catalog-grpc-pr-rev@{DEV_PROJECT}.iam.gserviceaccount.com"
POOL_NAME = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/github-1"


def dev() -> Deployment:
    return recorded("dev")


def grants_to(deployment: Deployment, member: str) -> list[tuple[str, str, str]]:
    """(type, role, resource) of every binding that grants `member` something."""
    found = []
    for resource in deployment.declared:
        if resource.inputs.get("member") == member and "role" in resource.inputs:
            target = (
                resource.inputs.get("name")
                or resource.inputs.get("repository")
                or resource.inputs.get("serviceAccountId", resource.inputs.get("project", ""))
            )
            found.append((resource.type, resource.inputs["role"], target))
    return sorted(found)


def test_dev_has_a_pr_deployer_bound_to_its_service_repository_and_runtime_account_only() -> None:
    deployment = dev()
    assert "catalog-grpc-pr-rev" in {a.inputs["accountId"] for a in deployment.all(ACCOUNT)}
    runtime = f"projects/{DEV_PROJECT}/serviceAccounts/catalog-grpc-run@{DEV_PROJECT}.iam.gserviceaccount.com"
    assert grants_to(deployment, PR_DEPLOYER) == sorted(
        [
            (REPOSITORY_IAM, "roles/artifactregistry.writer", "catalog-grpc"),
            (INVOKER, "roles/run.developer", "catalog-grpc"),
            (INVOKER, "roles/run.invoker", "catalog-grpc"),
            (ACCOUNT_IAM, "roles/iam.serviceAccountUser", runtime),
        ]
    )
    # Not one project-wide role: nothing outside that service, repository and account.
    assert PR_DEPLOYER not in {grant.inputs["member"] for grant in deployment.all(PROJECT_IAM)}
    for grant in deployment.all(REPOSITORY_IAM) + deployment.all(INVOKER):
        assert grant.inputs["location"] == "us-central1"
        assert grant.inputs["project"] == DEV_PROJECT
    assert deployment.outputs["prDeployerServiceAccount"] == PR_DEPLOYER.removeprefix("serviceAccount:")


def test_only_pull_request_workflows_may_impersonate_it() -> None:
    deployment = dev()
    assert (
        deployment.one(PROVIDER).inputs["attributeMapping"]["attribute.event_name"] == "assertion.event_name"
    )
    account = f"projects/{DEV_PROJECT}/serviceAccounts/{PR_DEPLOYER.removeprefix('serviceAccount:')}"
    impersonation = [b for b in deployment.all(ACCOUNT_IAM) if b.inputs["serviceAccountId"] == account]
    assert [(b.inputs["role"], b.inputs["member"]) for b in impersonation] == [
        (
            "roles/iam.workloadIdentityUser",
            f"principalSet://iam.googleapis.com/{POOL_NAME}/attribute.event_name/pull_request",
        )
    ]


def test_prod_has_none() -> None:
    deployment = recorded("prod")
    assert stack_config("prod").get(f"{PROJECT}:prRevisions", False) is False
    assert "catalog-grpc-pr-rev" not in {a.inputs["accountId"] for a in deployment.all(ACCOUNT)}
    # The repository's one grant is the deployer's: no pull-request account pushes there.
    assert [g.inputs["member"] for g in deployment.all(REPOSITORY_IAM)] == [
        "serviceAccount:catalog-grpc-deployer@my-gcp-project-prod.iam.gserviceaccount.com"
    ]
    assert "prDeployerServiceAccount" not in deployment.outputs
