"""The GitHub workflows keep their promises: keyless previews of both stacks, serial deploys, gated prod."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.infra.harness import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as true.
    document["on"] = document.pop(True)
    return document


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def pulumi_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = workflow("pulumi.yml")["jobs"]
    return jobs


def test_tests_run_make_test_on_every_pull_request_and_push() -> None:
    document = workflow("test.yml")
    assert set(document["on"]) == {"pull_request", "push"}
    (job,) = document["jobs"].values()
    assert steps_using(job, "actions/setup-python")[0]["with"]["python-version"] == "3.11"
    assert steps_using(job, "actions/setup-node")
    assert any(".ci/run" in step.get("run", "") for step in job["steps"])


def test_previews_cover_both_stacks_on_pull_requests() -> None:
    preview = pulumi_jobs()["preview"]
    assert "pull_request" in preview["if"]
    assert [entry["stack"] for entry in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    (step,) = steps_using(preview, "pulumi/actions")
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["work-dir"] == "."
    assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}


@pytest.mark.parametrize(
    ("job_name", "stack"), [("preview", "${{ matrix.stack }}"), ("up-dev", "dev"), ("up-prod", "prod")]
)
def test_every_pulumi_job_authenticates_without_keys(job_name: str, stack: str) -> None:
    job = pulumi_jobs()[job_name]
    assert job["permissions"]["id-token"] == "write"
    (auth,) = steps_using(job, "google-github-actions/auth")
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert "credentials_json" not in auth["with"]
    assert steps_using(job, "docker/setup-buildx-action")
    (pulumi,) = steps_using(job, "pulumi/actions")
    assert pulumi["with"]["stack-name"] == stack
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    names = [step.get("uses", "").split("@")[0] for step in job["steps"]]
    assert names.index("google-github-actions/auth") < names.index("pulumi/actions")
    assert names.index("docker/setup-buildx-action") < names.index("pulumi/actions")


def test_dev_deploys_from_main_and_prod_only_by_approved_dispatch() -> None:
    document = workflow("pulumi.yml")
    assert document["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in document["on"]
    jobs = pulumi_jobs()
    assert jobs["up-dev"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert (
        jobs["up-prod"]["if"] == "github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main'"
    )
    assert jobs["up-prod"]["environment"] == "production"
    for job in ("up-dev", "up-prod"):
        (step,) = steps_using(jobs[job], "pulumi/actions")
        assert step["with"]["command"] == "up"


def test_deploys_of_one_stack_never_overlap_nor_cancel_each_other() -> None:
    jobs = pulumi_jobs()
    groups = {job: jobs[job]["concurrency"] for job in ("up-dev", "up-prod")}
    assert groups["up-dev"] == {"group": "pulumi-up-dev", "cancel-in-progress": False}
    assert groups["up-prod"] == {"group": "pulumi-up-prod", "cancel-in-progress": False}


def test_previews_use_the_read_only_previewer_and_deploys_the_deployer() -> None:
    jobs = pulumi_jobs()
    preview_accounts = [
        entry["service_account"] for entry in jobs["preview"]["strategy"]["matrix"]["include"]
    ]
    assert preview_accounts == [
        "${{ vars.GCP_PREVIEWER_SERVICE_ACCOUNT_DEV }}",
        "${{ vars.GCP_PREVIEWER_SERVICE_ACCOUNT_PROD }}",
    ]
    for job, stack in (("up-dev", "DEV"), ("up-prod", "PROD")):
        (auth,) = steps_using(jobs[job], "google-github-actions/auth")
        assert auth["with"]["service_account"] == f"${{{{ vars.GCP_DEPLOYER_SERVICE_ACCOUNT_{stack} }}}}"


def test_only_the_pulumi_jobs_ask_for_cloud_tokens_and_no_workflow_runs_foreign_code_on_main() -> None:
    # The deployer trusts any token for the main branch. Events that run main's workflows on behalf of a pull
    # request (pull_request_target, workflow_run) could hand such a token to a fork's code: none is used.
    for path in sorted(WORKFLOWS.glob("*.yml")):
        document = workflow(path.name)
        triggers = document["on"] if isinstance(document["on"], dict) else dict.fromkeys(document["on"])
        assert not {"pull_request_target", "workflow_run"} & set(triggers), path.name
        assert document.get("permissions", {}).get("id-token") != "write", path.name
        for name, job in document["jobs"].items():
            wants_token = job.get("permissions", {}).get("id-token") == "write"
            assert wants_token == (path.name in ("pulumi.yml", "pr-revision.yml")), f"{path.name}: {name}"
