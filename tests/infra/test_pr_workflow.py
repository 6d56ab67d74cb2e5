"""The pull-request revision workflow: this repository's pull requests only, the PR deployer, the tool."""

from __future__ import annotations

import re
from typing import Any

import pytest

from release.cli import build_parser
from tests.infra.test_workflows import steps_using, workflow

FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"


def jobs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow("pr-revision.yml")["jobs"]
    return found


def test_runs_for_pull_requests_opening_updating_and_closing() -> None:
    assert workflow("pr-revision.yml")["on"] == {
        "pull_request": {"types": ["opened", "synchronize", "reopened", "closed"]}
    }
    for job in ("build", "deploy"):
        assert "closed" not in jobs()[job]["if"].replace("!= 'closed'", "")
    assert "== 'closed'" in jobs()["remove"]["if"]
    assert jobs()["deploy"]["needs"] == "build"


@pytest.mark.parametrize("job", ["build", "deploy", "remove"])
def test_forks_never_reach_the_cloud_and_only_the_pr_deployer_is_used(job: str) -> None:
    assert FORK_GUARD in jobs()[job]["if"]
    (auth,) = steps_using(jobs()[job], "google-github-actions/auth")
    (pulumi,) = steps_using(jobs()[job], "pulumi/auth-actions")
    assert pulumi["with"]["scope"] == "team:${{ vars.PULUMI_PREVIEW_TEAM }}"  # read-only
    assert auth["with"]["service_account"] == "${{ vars.GCP_PR_DEPLOYER_SERVICE_ACCOUNT_DEV }}"
    assert auth["with"]["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER_DEV }}"
    assert "prod" not in str(jobs()[job]).lower()


def test_one_build_per_pull_request_at_a_time_and_the_writes_queue_with_devs_deploy() -> None:
    # The build only pushes an image: it holds no lock on the service, so a queue of writes never waits on it.
    assert jobs()["build"]["concurrency"] == {
        "group": "pr-revision-${{ github.event.pull_request.number }}",
        "cancel-in-progress": False,
    }
    assert not release_commands("build")
    dev_deploy = workflow("pulumi.yml")["jobs"]["up-dev"]["concurrency"]
    for job in ("deploy", "remove"):
        assert (
            jobs()[job]["concurrency"]
            == dev_deploy
            == {
                "group": "dev-service",
                "cancel-in-progress": False,
                "queue": "max",
            }
        )
        assert not any("docker" in step.get("run", "") for step in jobs()[job]["steps"])


def release_commands(job: str) -> list[list[str]]:
    """The arguments of every `python -m release` the job runs."""
    found = []
    for step in jobs()[job]["steps"]:
        for match in re.finditer(r"python -m release ([^\n|)]*)", step.get("run", "")):
            found.append(match.group(1).split())
    return found


def test_the_build_is_deployed_by_digest_and_the_tag_removed_on_close() -> None:
    ((deploy,),) = [[c] for c in release_commands("deploy")]
    assert deploy[:3] == ["pr-deploy", "--plan", "-"]
    build = next(s for s in jobs()["build"]["steps"] if s.get("id") == "build")
    assert "docker buildx build --platform linux/amd64 --push" in build["run"]
    assert '"containerimage.digest"' in build["run"]
    assert jobs()["build"]["outputs"] == {"digest": "${{ steps.build.outputs.digest }}"}
    step = next(s for s in jobs()["deploy"]["steps"] if s.get("id") == "revision")
    assert step["env"]["IMAGE"].endswith("@${{ needs.build.outputs.digest }}")
    ((remove,),) = [[c] for c in release_commands("remove")]
    assert remove[:3] == ["pr-remove", "--plan", "-"]
    # The commands parse as the tool's own parser reads them.
    for command in (deploy, remove):
        args = [
            part.strip('"').replace("$PR_NUMBER", "1").replace("$IMAGE", "i@sha256:" + "0" * 64)
            for part in command
        ]
        build_parser().parse_args(args)


def test_untrusted_values_reach_scripts_only_through_the_environment() -> None:
    for job in jobs().values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")
            assert "${{" not in step.get("with", {}).get("script", ""), step.get("name")
