"""The GitHub workflows keep their promises: tested, keyless, pinned, least-privileged, gated deploys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.harness import IMAGE, REPO_ROOT, STACKS, recorded

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
IMAGE_SUBJECT = REPO_ROOT / ".ci" / "image_subject.py"
ORG = "${{ vars.PULUMI_ORG }}"
DIGEST = "sha256:" + "a" * 64
# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z`: the commit runs, the comment says which release it is.
PINNED = re.compile(r"uses: (?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40}) # (?P<version>v\d+\.\d+\.\d+)")
DEPLOYS = {"up-dev": "dev", "up-prod": "prod"}


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as true.
    document["on"] = document.pop(True)
    return document


def all_workflows() -> dict[str, dict[str, Any]]:
    return {path.name: workflow(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def step_index(job: dict[str, Any], action: str) -> int:
    (index,) = [i for i, step in enumerate(job["steps"]) if step.get("uses", "").startswith(f"{action}@")]
    return index


def pulumi_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = workflow("pulumi.yml")["jobs"]
    return jobs


def pulumi_steps() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, step)
        for name, job in pulumi_jobs().items()
        if "steps" in job
        for step in steps_using(job, "pulumi/actions")
    ]


# --- tests before deploys (issue 11, item 10) -----------------------------------------------------


def test_tests_run_on_pull_requests_branches_and_for_the_deploy_workflow() -> None:
    document = workflow("test.yml")
    assert set(document["on"]) == {"pull_request", "push", "workflow_call"}
    # Main's pushes are tested once, by pulumi.yml's call, before the deploy that waits on them.
    assert document["on"]["push"] == {"branches-ignore": ["main"]}
    job = document["jobs"]["test"]
    assert steps_using(job, "actions/setup-python")[0]["with"]["python-version"] == "3.11"
    assert steps_using(job, "actions/setup-node")
    assert any(".ci/run" in step.get("run", "") for step in job["steps"])


def test_a_run_on_main_is_never_cancelled_while_a_deploy_waits_on_it() -> None:
    concurrency = workflow("test.yml")["concurrency"]
    assert concurrency["cancel-in-progress"] == "${{ github.ref != 'refs/heads/main' }}"
    # A dispatch and a push on main are different groups: neither queues the other's tests away.
    assert "github.event_name" in concurrency["group"]


def test_both_deploys_wait_for_the_reusable_test_workflow() -> None:
    jobs = pulumi_jobs()
    test = jobs["test"]
    assert test["uses"] == "./.github/workflows/test.yml"
    assert test["permissions"] == {"contents": "read"}
    # The test job runs for every event a deploy runs for.
    assert test["if"] == (
        "(github.event_name == 'push' || github.event_name == 'workflow_dispatch') "
        "&& github.ref == 'refs/heads/main'"
    )
    for job in DEPLOYS:
        needs = jobs[job]["needs"]
        assert "test" in ([needs] if isinstance(needs, str) else needs), job
        # `always()` or `!cancelled()` would let the deploy run after failed tests.
        assert "always()" not in jobs[job]["if"]
        assert "cancelled()" not in jobs[job]["if"]


# --- the image built on every pull request (issue 11, item 3) -------------------------------------


def test_every_pull_request_builds_the_image_for_linux_amd64_on_its_pinned_base() -> None:
    document = workflow("test.yml")
    assert "pull_request" in document["on"]
    job = document["jobs"]["image"]
    assert "if" not in job  # forks too: the build needs no credentials
    (build,) = [step for step in job["steps"] if "docker buildx build" in step.get("run", "")]
    command = build["run"]
    assert "--platform linux/amd64" in command
    assert "--file Dockerfile" in command
    # No BASE_IMAGE override: the build uses the Dockerfile's default, the real base, pinned by digest.
    assert "BASE_IMAGE" not in command
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=[\w.:/-]+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)
    # Then the image must serve: its own command, started as Cloud Run starts it, answers the health check.
    (smoke,) = [step for step in job["steps"] if "docker run" in step.get("run", "")]
    assert "--env PORT=8080" in smoke["run"]
    assert "HealthCheckResponse.SERVING" in smoke["run"]
    index = job["steps"].index
    assert index(build) < index(smoke)


@pytest.mark.parametrize("stack", STACKS)
def test_previews_never_build_the_image_the_pull_requests_image_job_builds(stack: str) -> None:
    # pulumi-docker-build builds on preview by default whenever its inputs are known (any stack after its
    # first `up`): each pull request would build the image again in both previews. The program turns that
    # off, as a preview would run it, and the `image` job builds every pull request's Dockerfile instead.
    for preview in (True, False):
        deployment = recorded(stack, preview=preview)
        image = deployment.one(IMAGE).inputs
        assert image["buildOnPreview"] is False
        assert image["push"] is True  # `up` builds and pushes
    test = workflow("test.yml")
    assert "pull_request" in test["on"]
    assert any("docker buildx build" in step.get("run", "") for step in test["jobs"]["image"]["steps"])
    # And no comment or page claims that pulumi-docker-build skips the preview build on its own.
    for text in (
        (WORKFLOWS / "pulumi.yml").read_text(),
        (WORKFLOWS / "test.yml").read_text(),
        (REPO_ROOT / "docs" / "ci-cd-notes.md").read_text(),
    ):
        flat = " ".join(text.replace("#", " ").split())
        assert "skips the preview build" not in flat
        assert "build_on_preview=False" in flat


# --- state: Pulumi Cloud by OIDC, named ORG/STACK, never refreshed (items 9, 11, 12) --------------


MODES = ("oidc", "token", "gcs")
BACKEND_SCRIPT = REPO_ROOT / ".ci" / "pulumi_backend.sh"


def evaluate(expression: str, variables: dict[str, str], matrix: dict[str, str] | None = None) -> object:
    """A GitHub expression of the few forms the workflows use (==, &&, ||, format, vars., matrix.)."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    python = text.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"vars\.(\w+)", lambda m: repr(variables.get(m[1], "")), python)
    python = re.sub(r"matrix\.(\w+)", lambda m: repr((matrix or {})[m[1]]), python)

    def format_(template: str, *args: object) -> str:
        return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m[1])]), template)

    return eval(python, {"__builtins__": {}}, {"format": format_})


def mode_variables(mode: str) -> dict[str, str]:
    """The repository variables of a repository in `mode` (oidc also as the variable left unset)."""
    return {"PULUMI_ORG": "acme", **({"PULUMI_BACKEND": mode} if mode != "oidc" else {})}


def every_job() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, job_name, job)
        for name, document in all_workflows().items()
        for job_name, job in document["jobs"].items()
        if "steps" in job
    ]


def test_the_access_token_secret_is_read_only_by_the_backend_step() -> None:
    for name, job_name, job in every_job():
        for step in job["steps"]:
            text = yaml.safe_dump(step)
            if "secrets.PULUMI_ACCESS_TOKEN" in text:
                assert step.get("name") == "Reach Pulumi's state", (name, job_name)
                assert step["env"]["TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_every_job_that_runs_pulumi_first_reaches_the_state_as_the_mode_says() -> None:
    seen = 0
    for name, job_name, job in every_job():
        if not steps_using(job, "pulumi/actions"):
            continue
        seen += 1
        steps = job["steps"]
        first_pulumi = (
            step_index(job, "pulumi/actions")
            if len(steps_using(job, "pulumi/actions")) == 1
            else min(i for i, step in enumerate(steps) if step.get("uses", "").startswith("pulumi/actions@"))
        )
        (backend,) = [i for i, step in enumerate(steps) if step.get("name") == "Reach Pulumi's state"]
        assert steps[backend]["run"] == ".ci/pulumi_backend.sh"
        assert steps[backend]["env"]["MODE"] == "${{ vars.PULUMI_BACKEND }}"
        # gcs reads the bucket with the Google identity: it must be in place before Pulumi runs.
        google = min(
            i for i, s in enumerate(steps) if s.get("uses", "").startswith("google-github-actions/auth@")
        )
        assert backend < first_pulumi, (name, job_name)
        assert google < first_pulumi, (name, job_name)
    assert seen == 6  # preview, up-dev, up-prod; pr-revision's build, deploy, remove


@pytest.mark.parametrize("mode", MODES)
def test_the_team_token_exchange_runs_only_in_oidc_mode(mode: str) -> None:
    for name, job_name, job in every_job():
        for auth in steps_using(job, "pulumi/auth-actions"):
            assert evaluate(auth["if"], mode_variables(mode)) is (mode == "oidc"), (name, job_name)


@pytest.mark.parametrize("mode", MODES)
def test_stacks_are_org_slash_stack_on_pulumi_cloud_and_bare_in_a_bucket(mode: str) -> None:
    names: dict[str, set[object]] = {}
    for name, job_name, job in every_job():
        for step in steps_using(job, "pulumi/actions"):
            matrices = job.get("strategy", {}).get("matrix", {}).get("include", [{}])
            for matrix in matrices:
                value = evaluate(step["with"]["stack-name"], mode_variables(mode), matrix)
                names.setdefault(f"{name}:{job_name}", set()).add(value)
    prefix = "" if mode == "gcs" else "acme/"
    assert names == {
        "pulumi.yml:preview": {f"{prefix}dev", f"{prefix}prod"},
        "pulumi.yml:up-dev": {f"{prefix}dev"},
        "pulumi.yml:up-prod": {f"{prefix}prod"},
        "pr-revision.yml:build": {f"{prefix}dev"},
        "pr-revision.yml:deploy": {f"{prefix}dev"},
        "pr-revision.yml:remove": {f"{prefix}dev"},
    }


@pytest.mark.parametrize(
    ("job_name", "stack"), [("preview", "dev"), ("preview", "prod"), ("up-dev", "dev"), ("up-prod", "prod")]
)
def test_each_job_hands_the_script_its_own_stacks_bucket(job_name: str, stack: str) -> None:
    job = pulumi_jobs()[job_name]
    (backend,) = [step for step in job["steps"] if step.get("name") == "Reach Pulumi's state"]
    matrix: dict[str, str] = next(
        (m for m in job.get("strategy", {}).get("matrix", {}).get("include", []) if m["stack"] == stack), {}
    )
    variables = {f"PULUMI_BACKEND_URL_{stack.upper()}": f"gs://{stack}"}
    url = evaluate(backend["env"]["BACKEND_URL"], variables, matrix)
    if isinstance(url, str) and url.startswith("${{"):  # a matrix value is an expression in its turn
        url = evaluate(url, variables)
    assert url == f"gs://{stack}"


def run_backend_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    result = subprocess.run(
        [str(BACKEND_SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "GITHUB_ENV": str(github_env), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, github_env.read_text()


@pytest.mark.parametrize(
    ("env", "exported"),
    [
        ({}, ""),  # the variable unset: oidc, which pulumi/auth-actions does
        ({"MODE": "oidc", "TOKEN": "ignored"}, ""),
        ({"MODE": "token", "TOKEN": "pul-123"}, "PULUMI_ACCESS_TOKEN=pul-123\n"),
        ({"MODE": "gcs", "BACKEND_URL": "gs://p-pulumi-state"}, "PULUMI_BACKEND_URL=gs://p-pulumi-state\n"),
    ],
)
def test_the_backend_script_exports_what_each_mode_needs(
    tmp_path: Path, env: dict[str, str], exported: str
) -> None:
    result, github_env = run_backend_script(tmp_path, **env)
    assert result.returncode == 0, result.stdout
    assert github_env == exported


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODE": "token"}, "the secret PULUMI_ACCESS_TOKEN is empty"),
        ({"MODE": "gcs"}, "set it to the stack's stateBackendUrl output"),
        ({"MODE": "gcs", "BACKEND_URL": "s3://x"}, "set it to the stack's stateBackendUrl output"),
        ({"MODE": "cloud"}, "PULUMI_BACKEND is 'cloud': set it to oidc, token or gcs"),
    ],
)
def test_the_backend_script_refuses_a_mode_it_cannot_serve(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result, github_env = run_backend_script(tmp_path, **env)
    assert result.returncode == 1
    assert message in result.stdout
    assert github_env == ""


@pytest.mark.parametrize(
    ("job_name", "team"),
    [
        ("preview", "PULUMI_PREVIEW_TEAM"),
        ("up-dev", "PULUMI_DEPLOY_TEAM_DEV"),
        ("up-prod", "PULUMI_DEPLOY_TEAM_PROD"),
    ],
)
def test_each_pulumi_job_exchanges_its_oidc_token_for_its_own_team_token(job_name: str, team: str) -> None:
    job = pulumi_jobs()[job_name]
    (auth,) = steps_using(job, "pulumi/auth-actions")
    assert auth["with"] == {
        "organization": ORG,
        "requested-token-type": "urn:pulumi:token-type:access_token:team",
        "scope": f"team:${{{{ vars.{team} }}}}",
        "token-expiration": 3600,
    }
    assert job["timeout-minutes"] * 60 < auth["with"]["token-expiration"]
    assert job["permissions"]["id-token"] == "write"
    assert step_index(job, "pulumi/auth-actions") < step_index(job, "pulumi/actions")


def test_ci_never_refreshes() -> None:
    # Neither CI account may read the identity pool, the CI accounts or IAM policies: a refresh would 403.
    for job, step in pulumi_steps():
        assert step["with"]["command"] in {"preview", "up"}, job
        assert step["with"].get("refresh", False) in {False, "false"}, job
    for name, document in all_workflows().items():
        for job_name, job in document["jobs"].items():
            for step in job.get("steps", []):
                assert "refresh" not in step.get("run", ""), f"{name}: {job_name}"


# --- prod: approval by the production environment (item 7) ----------------------------------------


def test_dev_deploys_from_main_and_prod_only_by_approved_dispatch() -> None:
    document = workflow("pulumi.yml")
    assert document["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in document["on"]
    jobs = pulumi_jobs()
    assert jobs["up-dev"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert (
        jobs["up-prod"]["if"] == "github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main'"
    )
    for job in DEPLOYS:
        (step,) = steps_using(jobs[job], "pulumi/actions")
        assert step["with"]["command"] == "up"


def test_only_prods_deploy_declares_the_production_environment() -> None:
    # Its tokens then carry `environment: production`, the claim prod's deployer and Pulumi team require.
    jobs = pulumi_jobs()
    assert jobs["up-prod"]["environment"] == "production"
    for name, job in jobs.items():
        if name != "up-prod":
            assert "environment" not in job, name


# --- Google Cloud, keyless ------------------------------------------------------------------------


def test_previews_cover_both_stacks_on_pull_requests() -> None:
    preview = pulumi_jobs()["preview"]
    assert "pull_request" in preview["if"]
    assert [entry["stack"] for entry in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    (step,) = steps_using(preview, "pulumi/actions")
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["work-dir"] == "."


@pytest.mark.parametrize("job_name", ["preview", "up-dev", "up-prod"])
def test_every_pulumi_job_authenticates_to_google_without_keys(job_name: str) -> None:
    job = pulumi_jobs()[job_name]
    auth = steps_using(job, "google-github-actions/auth")[0]
    assert {"workload_identity_provider", "service_account"} <= set(auth["with"])
    assert "credentials_json" not in auth["with"]
    assert steps_using(job, "docker/setup-buildx-action")
    assert job["steps"].index(auth) < step_index(job, "pulumi/actions")
    assert step_index(job, "docker/setup-buildx-action") < step_index(job, "pulumi/actions")


def test_previews_use_the_read_only_previewer_and_deploys_the_deployer() -> None:
    jobs = pulumi_jobs()
    preview_accounts = [
        entry["service_account"] for entry in jobs["preview"]["strategy"]["matrix"]["include"]
    ]
    assert preview_accounts == [
        "${{ vars.GCP_PREVIEWER_SERVICE_ACCOUNT_DEV }}",
        "${{ vars.GCP_PREVIEWER_SERVICE_ACCOUNT_PROD }}",
    ]
    for job, stack in DEPLOYS.items():
        auth = steps_using(jobs[job], "google-github-actions/auth")[0]
        assert auth["with"] == {
            "workload_identity_provider": f"${{{{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER_{stack.upper()} }}}}",
            "service_account": f"${{{{ vars.GCP_DEPLOYER_SERVICE_ACCOUNT_{stack.upper()} }}}}",
            # For the registry login that pushes the attestation.
            "token_format": "access_token",
        }


DEV_SERVICE_GROUP = {"group": "dev-service", "cancel-in-progress": False, "queue": "max"}


def test_deploys_of_one_stack_never_overlap_nor_cancel_each_other() -> None:
    jobs = pulumi_jobs()
    # dev's group is shared with the pull-request revisions (below); `queue: max` keeps every pending run.
    assert jobs["up-dev"]["concurrency"] == DEV_SERVICE_GROUP
    assert jobs["up-prod"]["concurrency"] == {"group": "pulumi-up-prod", "cancel-in-progress": False}


def writes_the_dev_service(job: dict[str, Any]) -> bool:
    """Whether a job changes dev's service: `pulumi up` of dev, or the release tool as a dev account."""
    accounts = {
        step["with"].get("service_account", "") for step in steps_using(job, "google-github-actions/auth")
    }
    dev_account = any(account.endswith("_DEV }}") for account in accounts)
    ups_dev = any(
        step["with"].get("command") == "up" and step["with"]["stack-name"].endswith("/dev")
        for step in steps_using(job, "pulumi/actions")
    )
    releases = any("python -m release" in step.get("run", "") for step in job["steps"])
    return ups_dev or (dev_account and releases)


def test_every_write_to_the_dev_service_waits_its_turn_in_one_queue() -> None:
    # `up` reads the live traffic at its start and writes it minutes later: a pr-N tag added or removed in
    # between would be dropped or restored. So every writer of dev's service shares one group, never cancels
    # a running one, and queues the rest (GitHub's default would cancel a pending run for the next one).
    writers = {
        (name, job_name): job["concurrency"]
        for name, document in all_workflows().items()
        for job_name, job in document["jobs"].items()
        if "steps" in job and writes_the_dev_service(job)
    }
    assert set(writers) == {
        ("pulumi.yml", "up-dev"),
        ("pr-revision.yml", "deploy"),
        ("pr-revision.yml", "remove"),
    }
    assert all(concurrency == DEV_SERVICE_GROUP for concurrency in writers.values()), writers
    # Nothing else takes the group: a job that holds it without writing would only delay the writers.
    holders = {
        (name, job_name)
        for name, document in all_workflows().items()
        for job_name, job in document["jobs"].items()
        if job.get("concurrency", {}).get("group") == DEV_SERVICE_GROUP["group"]
    }
    assert holders == set(writers)


def test_only_the_pulumi_jobs_ask_for_oidc_tokens_and_no_workflow_runs_foreign_code_on_main() -> None:
    # The deployer trusts tokens for the main branch. Events that run main's workflows on behalf of a pull
    # request (pull_request_target, workflow_run) could hand such a token to a fork's code: none is used.
    for name, document in all_workflows().items():
        triggers = document["on"] if isinstance(document["on"], dict) else dict.fromkeys(document["on"])
        assert not {"pull_request_target", "workflow_run"} & set(triggers), name
        for job_name, job in document["jobs"].items():
            wants_token = job.get("permissions", {}).get("id-token") == "write"
            expected = name == "pr-revision.yml" or (
                name == "pulumi.yml" and job_name in {"preview", *DEPLOYS}
            )
            assert wants_token == expected, f"{name}: {job_name}"


# --- the release after each deploy (issue 13) -----------------------------------------------------


def release_step(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    (found,) = [(i, s) for i, s in enumerate(job["steps"]) if "python -m release" in s.get("run", "")]
    return found


@pytest.mark.parametrize("job_name", list(DEPLOYS))
def test_each_deploy_releases_its_new_revision_with_the_stacks_plan_after_up(job_name: str) -> None:
    job = pulumi_jobs()[job_name]
    index, step = release_step(job)
    up = next(i for i, s in enumerate(job["steps"]) if s.get("id") == "up")
    assert job["steps"][up]["with"]["command"] == "up"
    assert index > up
    assert index == len(job["steps"]) - 1  # the last step: its failure is the run's
    assert step["env"]["PLAN"] == "${{ steps.up.outputs.release }}"
    command = step["run"].split("python -m release ", 1)[1].split()
    assert command[:3] == ["promote", "--plan", "-"]
    # A rollback exits 1: nothing lets the job pass anyway.
    assert "continue-on-error" not in step
    assert "if" not in step
    assert "|| true" not in step["run"]
    from release.cli import build_parser  # noqa: PLC0415

    build_parser().parse_args([part.strip('"') for part in command])


def test_dev_releases_without_a_token_and_prod_with_an_id_token_for_its_url() -> None:
    jobs = pulumi_jobs()
    assert len(steps_using(jobs["up-dev"], "google-github-actions/auth")) == 1
    assert "--token-env" not in release_step(jobs["up-dev"])[1]["run"]
    deploy_auth, token = steps_using(jobs["up-prod"], "google-github-actions/auth")
    assert token["with"] == {
        "workload_identity_provider": deploy_auth["with"]["workload_identity_provider"],
        "service_account": deploy_auth["with"]["service_account"],
        "token_format": "id_token",
        # The front door's audience, which every region accepts; without one, the service's URL.
        "id_token_audience": "${{ fromJSON(steps.up.outputs.release).audience"
        " || fromJSON(steps.up.outputs.release).url }}",
        "id_token_include_email": True,
    }
    _, step = release_step(jobs["up-prod"])
    assert step["env"]["CATALOG_ID_TOKEN"] == f"${{{{ steps.{token['id']}.outputs.id_token }}}}"
    assert "--token-env CATALOG_ID_TOKEN" in step["run"]


CUSTOM_AUDIENCES = "cloud.google.com/run/docs/configuring/custom-audiences"


def test_what_prods_token_relies_on_is_cited_and_not_claimed_beyond_the_source() -> None:
    # Cloud Run's page says which audiences a service accepts; it names no tag URL. The texts must cite it
    # and say that the tag-URL part is a reading of it, not assert it as a documented fact.
    comment = (WORKFLOWS / "pulumi.yml").read_text().split("- id: idtoken", 1)[0].rsplit("\n\n", 1)[-1]
    docs = " ".join(DOCS.read_text().split())
    for text in (" ".join(comment.replace("#", " ").split()), docs):
        assert "its tag URLs accept it too" not in text
        assert CUSTOM_AUDIENCES in text
    assert "does not name tag URLs" in docs
    assert "before any traffic moves" in docs


def test_prods_job_outlasts_its_stepped_release() -> None:
    prod = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
    steps, pause = prod["catalog-grpc:canarySteps"], prod["catalog-grpc:canaryPauseSeconds"]
    evidence = 300  # python -m release's --evidence-timeout default: a step may wait that long for calls
    up_and_checks = 15 * 60
    assert pulumi_jobs()["up-prod"]["timeout-minutes"] * 60 >= len(steps) * (pause + evidence) + up_and_checks


# --- the policy pack at every preview and deploy (issue 17) ---------------------------------------


def test_every_preview_and_deploy_runs_the_policy_pack_from_its_own_virtualenv() -> None:
    jobs = pulumi_jobs()
    for name in ("preview", *DEPLOYS):
        job = jobs[name]
        (step,) = steps_using(job, "pulumi/actions")
        assert step["with"]["policyPacks"] == "policy"
        # The stack's pack config: dev may be public, prod is production; unconfigured, the pack is strict.
        stack = DEPLOYS.get(name, "${{ matrix.stack }}")
        assert step["with"]["policyPackConfigs"] == f"policy/config/{stack}.json"
        assert "continue-on-error" not in step  # a mandatory violation fails the job
        (install,) = [i for i, s in enumerate(job["steps"]) if "policy/requirements.txt" in s.get("run", "")]
        assert "python -m venv policy/.venv" in job["steps"][install]["run"]
        assert install < step_index(job, "pulumi/actions")


def test_the_policy_virtualenv_is_where_the_pack_says() -> None:
    pack = REPO_ROOT / "policy" / "PulumiPolicy.yaml"
    if not pack.exists():
        pytest.skip("policy/PulumiPolicy.yaml comes with the policy pack")
    runtime = yaml.safe_load(pack.read_text())["runtime"]
    assert runtime["name"] == "python"
    assert runtime["options"]["virtualenv"] == ".venv"  # policy/.venv, where the workflow installs it
    assert (REPO_ROOT / "policy" / "requirements.txt").exists()
    for stack in ("dev", "prod"):
        assert (REPO_ROOT / "policy" / "config" / f"{stack}.json").exists(), stack


# --- provenance of the deployed image (issue 17) --------------------------------------------------


@pytest.mark.parametrize(("job_name", "stack"), DEPLOYS.items())
def test_each_deploy_runs_preflight_as_the_deployer_after_signing_in_and_before_up(
    job_name: str, stack: str
) -> None:
    job = pulumi_jobs()[job_name]
    runs = [step.get("run", "") for step in job["steps"]]
    (preflight,) = [i for i, run in enumerate(runs) if "-m preflight" in run]
    assert runs[preflight] == f".venv/bin/python -m preflight --stack {stack} --deployer"
    installed = next(i for i, run in enumerate(runs) if "pip install" in run and "requirements.txt" in run)
    # The first sign-in is the deployer's (the access token); prod's second mints the release's ID token.
    signed_in = next(
        i for i, step in enumerate(job["steps"]) if "google-github-actions/auth@" in step.get("uses", "")
    )
    assert job["steps"][signed_in]["with"]["service_account"].startswith(
        "${{ vars.GCP_DEPLOYER_SERVICE_ACCOUNT_"
    )
    assert installed < signed_in < preflight < step_index(job, "pulumi/actions")


@pytest.mark.parametrize(("job_name", "stack"), DEPLOYS.items())
def test_each_deploy_attests_the_digest_it_deployed_in_the_registry(job_name: str, stack: str) -> None:
    job = pulumi_jobs()[job_name]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "attestations": "write"}
    steps = job["steps"]
    (up,) = steps_using(job, "pulumi/actions")
    (subject,) = [step for step in steps if step.get("id") == "image"]
    assert subject["env"] == {"IMAGE": f"${{{{ steps.{up['id']}.outputs.image }}}}"}
    assert subject["run"] == (
        f'.venv/bin/python .ci/image_subject.py "$IMAGE" Pulumi.{stack}.yaml >> "$GITHUB_OUTPUT"'
    )
    (login,) = [step for step in steps if "docker login" in step.get("run", "")]
    assert login["env"]["REGISTRY"] == "${{ steps.image.outputs.registry }}"
    assert "--password-stdin" in login["run"]  # the token never appears on a command line
    (attest,) = steps_using(job, "actions/attest")
    assert attest["with"] == {
        "subject-name": "${{ steps.image.outputs.name }}",
        "subject-digest": "${{ steps.image.outputs.digest }}",
        "push-to-registry": True,
        "create-storage-record": False,
    }
    # Only an image this run built is attested: a prebuilt `image` from config came from elsewhere. And only
    # where attestations exist: ATTEST_IMAGES=false skips both steps, and nothing else (the release runs).
    assert (
        login["if"]
        == attest["if"]
        == ("steps.image.outputs.built == 'true' && vars.ATTEST_IMAGES != 'false'")
    )
    skippable = [step.get("name", step.get("id")) for step in steps if "ATTEST_IMAGES" in str(step)]
    assert skippable == [login["name"], attest["name"]]
    index = steps.index
    assert index(up) < index(subject) < index(login) < index(attest)


def test_the_docs_say_how_to_skip_attestations_without_dropping_the_release() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "last three steps" not in text  # in both jobs those included the release
    assert "`gh variable set ATTEST_IMAGES --body false`" in text
    jobs = pulumi_jobs()
    for job in DEPLOYS:
        for step in jobs[job]["steps"]:
            if "ATTEST_IMAGES" in str(step):
                assert f"`{step['name']}`" in text, step["name"]


def image_subject(image: str, stack_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(IMAGE_SUBJECT), image, str(stack_file)],
        capture_output=True,
        text=True,
        check=False,
    )


def outputs(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_subject_of_a_built_image_is_its_name_without_tag_and_its_digest(stack: str) -> None:
    registry = "us-central1-docker.pkg.dev"
    image = f"{registry}/my-project/catalog-grpc/catalog-grpc:abc123@{DIGEST}"
    assert outputs(image_subject(image, REPO_ROOT / f"Pulumi.{stack}.yaml")) == {
        "built": "true",
        "registry": registry,
        "name": f"{registry}/my-project/catalog-grpc/catalog-grpc",
        "digest": DIGEST,
    }


def test_a_registry_port_is_not_taken_for_a_tag() -> None:
    result = image_subject(f"registry.local:5000/team/app@{DIGEST}", REPO_ROOT / "Pulumi.dev.yaml")
    assert outputs(result)["name"] == "registry.local:5000/team/app"


def test_a_stack_that_deploys_a_prebuilt_image_is_not_attested(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text(f"config:\n  catalog-grpc:image: europe-docker.pkg.dev/p/r/app@{DIGEST}\n")
    result = image_subject(f"europe-docker.pkg.dev/p/r/app@{DIGEST}", stack_file)
    assert outputs(result)["built"] == "false"


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("", "expected REGISTRY/PATH@sha256"),
        ("us-docker.pkg.dev/p/r/app:latest", "expected REGISTRY/PATH@sha256"),
        ("us-docker.pkg.dev/p/r/app@sha256:abc", "expected REGISTRY/PATH@sha256"),
        (f"app@{DIGEST}", "does not start with a registry host"),
    ],
)
def test_an_image_output_that_is_not_a_pushed_digest_fails_the_step(image: str, reason: str) -> None:
    result = image_subject(image, REPO_ROOT / "Pulumi.dev.yaml")
    assert result.returncode == 1
    assert reason in result.stderr
    assert repr(image) in result.stderr
    assert result.stdout == ""


# --- supply chain: pins, permissions, credentials (issue 17) --------------------------------------


def uses_lines() -> list[tuple[str, str]]:
    return [
        (path.name, line.strip().removeprefix("- "))
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for line in path.read_text().splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]


def test_every_third_party_action_is_pinned_to_a_commit_with_its_version_beside_it() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    lines = uses_lines()
    assert len(lines) > 10
    for name, line in lines:
        if line.startswith("uses: ./"):
            continue  # this repository's own reusable workflow, at the caller's commit
        match = PINNED.fullmatch(line)
        assert match, f"{name}: {line!r} is not `uses: owner/repo@<40-hex sha> # vX.Y.Z`"
        pins.setdefault(match["action"], set()).add((match["sha"], match["version"]))
    # One version of each action everywhere: a bump cannot leave a stale copy behind.
    assert {action: len(versions) for action, versions in pins.items()} == dict.fromkeys(pins, 1)


def test_every_workflow_grants_nothing_by_default_and_each_job_only_what_it_uses() -> None:
    expected = {
        ("test.yml", "test"): {"contents": "read"},
        ("test.yml", "image"): {"contents": "read"},
        ("pulumi.yml", "preview"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        ("pulumi.yml", "test"): {"contents": "read"},
        ("pulumi.yml", "up-dev"): {"contents": "read", "id-token": "write", "attestations": "write"},
        ("pulumi.yml", "up-prod"): {"contents": "read", "id-token": "write", "attestations": "write"},
        ("pr-revision.yml", "build"): {"contents": "read", "id-token": "write"},
        ("pr-revision.yml", "deploy"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
        ("pr-revision.yml", "remove"): {"contents": "read", "id-token": "write"},
        ("mutation.yml", "areas"): {"contents": "read"},
        ("mutation.yml", "mutation"): {"contents": "read"},
    }
    granted = {}
    for name, document in all_workflows().items():
        assert document["permissions"] == {}, name
        for job_name, job in document["jobs"].items():
            granted[name, job_name] = job["permissions"]
    assert granted == expected


def test_no_checkout_leaves_the_token_in_the_workspace() -> None:
    for name, document in all_workflows().items():
        for job_name, job in document["jobs"].items():
            for step in steps_using(job, "actions/checkout") if "steps" in job else []:
                assert step["with"]["persist-credentials"] is False, f"{name}: {job_name}"


# --- scanner configuration ------------------------------------------------------------------------


def commented(path: Path, item: re.Pattern[str]) -> list[tuple[str, bool]]:
    """Each list item matching `item`, and whether a comment line directly precedes it."""
    lines = path.read_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        if item.fullmatch(line.strip()):
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found.append((line.strip(), previous.startswith("#")))
    return found


def test_every_skipped_checkov_check_says_why() -> None:
    config = REPO_ROOT / ".checkov.yaml"
    skips = commented(config, re.compile(r"- CKV2?_\w+"))
    assert skips  # the pattern matches the file's entries
    assert [entry for entry, justified in skips if not justified] == []
    loaded = yaml.safe_load(config.read_text())
    assert [f"- {check}" for check in loaded["skip-check"]] == [entry for entry, _ in skips]
    assert set(loaded["framework"]) == {"dockerfile", "github_actions"}
    assert loaded["skip-download"] is True  # offline: no Prisma Cloud


def test_every_zizmor_ignore_says_why() -> None:
    config = yaml.safe_load((REPO_ROOT / ".github" / "zizmor.yml").read_text())
    text = (REPO_ROOT / ".github" / "zizmor.yml").read_text()
    for rule in config["rules"]:
        block = text.split(f"  {rule}:", 1)[1].split("ignore:", 1)[0]
        assert "#" in block, rule


def test_make_lint_runs_both_scanners_beside_actionlint() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip() for line in lint.splitlines()[1:]]
    assert "$(VENV)/bin/actionlint" in commands
    assert "$(SCAN_VENV)/bin/zizmor --offline --quiet ." in commands
    assert "$(SCAN_VENV)/bin/python .ci/checkov_scan.py" in commands
    assert "$(SCAN_VENV)/.installed" in lint.splitlines()[0]


# --- docs/ci-cd-notes.md says what the workflows need ---------------------------------------------------


DOCS = REPO_ROOT / "docs" / "ci-cd-notes.md"


def test_the_docs_list_every_repository_variable_the_workflows_read_and_no_other() -> None:
    used = {
        match
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for match in re.findall(r"vars\.(\w+)", path.read_text())
    }
    rows = re.findall(r"^\| `(\w+)`(?:, `(_\w+)`)? \|", DOCS.read_text(), re.MULTILINE)
    documented = {name for name, _ in rows} | {
        name[: name.rfind("_")] + suffix for name, suffix in rows if suffix
    }
    assert used == documented
    secrets = {
        match
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for match in re.findall(r"secrets\.(\w+)", path.read_text())
    }
    assert secrets == {"GITHUB_TOKEN", "PULUMI_ACCESS_TOKEN"}


def test_the_docs_table_of_pins_matches_the_workflows() -> None:
    pinned = {
        (match["action"], match["version"], match["sha"])
        for _, line in uses_lines()
        if (match := PINNED.fullmatch(line))
    }
    table = set(
        re.findall(r"^\| `([\w./-]+)` \| (v[\d.]+) \| `([0-9a-f]{40})` \|$", DOCS.read_text(), re.MULTILINE)
    )
    assert table == pinned


def test_the_weekly_mutation_run_is_a_job_per_area_of_its_config() -> None:
    """The areas are listed once, in tools/mutation.toml: the workflow asks for them, one job each."""
    document = all_workflows()["mutation.yml"]
    areas, mutation = document["jobs"]["areas"], document["jobs"]["mutation"]
    (listing,) = [step for step in areas["steps"] if step.get("id") == "list"]
    assert "python -m tools.mutation --list-areas" in listing["run"]
    assert mutation["needs"] == "areas"
    assert mutation["strategy"] == {
        "fail-fast": False,
        "matrix": {"area": "${{ fromJSON(needs.areas.outputs.areas) }}"},
    }
    assert mutation["steps"][-1]["env"] == {"AREA": "${{ matrix.area }}"}
    assert mutation["steps"][-1]["run"] == 'MUTATION_JOBS="$(nproc)" make mutation MODULE="$AREA"'
    listed = subprocess.run(
        [sys.executable, "-m", "tools.mutation", "--list-areas"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    with (REPO_ROOT / "tools" / "mutation.toml").open("rb") as config:
        assert json.loads(listed.stdout) == list(tomllib.load(config)["areas"])
