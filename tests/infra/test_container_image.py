"""The image repository's cleanup: pull-request builds never push out the images dev's revisions run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.harness import REPOSITORY, STACKS, recorded, stack_config
from tests.infra.test_workflows import workflow

REGISTRY = "us-central1-docker.pkg.dev"
WEEK = f"{7 * 24 * 3600}s"


def policies(stack: str) -> dict[str, dict[str, Any]]:
    repository = recorded(stack).one(REPOSITORY).inputs
    return {policy["id"]: policy for policy in repository["cleanupPolicies"]}


def package(image_repository: str) -> str:
    """The package of REGISTRY/PROJECT/REPOSITORY/PACKAGE."""
    return image_repository.split("/", 3)[3]


@pytest.mark.parametrize("stack", STACKS)
def test_the_deployed_package_keeps_its_newest_versions_and_pull_requests_a_week(stack: str) -> None:
    found = policies(stack)
    assert set(found) == {"keep-recent", "keep-pull-requests", "delete-older"}
    assert found["keep-recent"]["mostRecentVersions"]["packageNamePrefixes"] == ["catalog-grpc"]
    assert found["keep-pull-requests"] == {
        "id": "keep-pull-requests",
        "action": "KEEP",
        "condition": {"packageNamePrefixes": ["pr-catalog-grpc"], "newerThan": WEEK},
    }
    # Everything no keep policy holds goes (keep policies win over delete policies).
    assert found["delete-older"] == {
        "id": "delete-older",
        "action": "DELETE",
        "condition": {"tagState": "ANY"},
    }


@pytest.mark.parametrize("stack", STACKS)
def test_neither_package_prefix_matches_the_other_package(stack: str) -> None:
    # Prefixes, not names: were the pull requests' package REPO-pr, the deployed package's keep (prefix
    # REPO) would count those builds again, and the pull requests' shorter keep would mean nothing.
    plan = recorded(stack).outputs["release"]
    project = stack_config(stack)["gcp:project"]
    assert plan["imageRepository"] == f"{REGISTRY}/{project}/catalog-grpc/catalog-grpc"
    assert plan["prImageRepository"] == f"{REGISTRY}/{project}/catalog-grpc/pr-catalog-grpc"
    deployed, pull_requests = package(plan["imageRepository"]), package(plan["prImageRepository"])
    found = policies(stack)
    (deployed_prefix,) = found["keep-recent"]["mostRecentVersions"]["packageNamePrefixes"]
    (pr_prefix,) = found["keep-pull-requests"]["condition"]["packageNamePrefixes"]
    assert deployed.startswith(deployed_prefix)
    assert not pull_requests.startswith(deployed_prefix)
    assert pull_requests.startswith(pr_prefix)
    assert not deployed.startswith(pr_prefix)


def test_pull_request_builds_push_to_their_own_package_and_deploy_from_it() -> None:
    jobs = workflow("pr-revision.yml")["jobs"]
    (build,) = [step for step in jobs["build"]["steps"] if step.get("id") == "build"]
    assert build["env"]["REPOSITORY"] == "${{ fromJSON(steps.dev.outputs.release).prImageRepository }}"
    assert '--tag "$REPOSITORY:pr-$PR_NUMBER"' in build["run"]
    (revision,) = [step for step in jobs["deploy"]["steps"] if step.get("id") == "revision"]
    assert revision["env"]["IMAGE"] == (
        "${{ fromJSON(steps.dev.outputs.release).prImageRepository }}@${{ needs.build.outputs.digest }}"
    )
    # Nothing in the workflow pushes to the deployed package.
    assert "outputs.release).imageRepository" not in str(jobs)
