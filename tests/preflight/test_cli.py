"""`python -m preflight`: its lines and exit codes, 0 all passed, 1 problems, 2 usage errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import google.auth
import pytest
from google.auth.exceptions import DefaultCredentialsError

from preflight import cli
from preflight.checks import Clients
from tests.infra.harness import REPO_ROOT
from tests.preflight.fake_cloud import FakeCloud


def project_root(tmp_path: Path, **stacks: str) -> Path:
    """A directory with this repository's Pulumi.yaml and the given stack files (name -> YAML text)."""
    shutil.copy(REPO_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for name, text in stacks.items():
        (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    return tmp_path


def test_a_stack_whose_checks_all_pass_exits_0(clients: Clients, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--stack", "dev"], clients=clients) == cli.OK
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("ok ") for line in out[:-1])
    assert out[-1] == "preflight dev (my-gcp-project-dev): every check passed"


def test_problems_exit_1_one_line_each(
    cloud: FakeCloud, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.billing_enabled = False
    cloud.granted = set()
    assert cli.main(["--stack", "dev"], clients=clients) == cli.PROBLEMS
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PROBLEM billing: ")
    assert any(line.startswith("PROBLEM permissions: gcp:cloudrunv2/service:Service needs ") for line in out)
    assert out[-1].startswith("preflight dev (my-gcp-project-dev): ")
    assert "problem(s)" in out[-1]


def test_the_deployer_flag_asks_only_what_a_ci_up_changes(cloud: FakeCloud, clients: Clients) -> None:
    cloud.project = "my-gcp-project-prod"
    assert cli.main(["--stack", "prod", "--deployer"], clients=clients) == cli.OK
    asked = {permission for request in cloud.permission_requests for permission in request}
    assert "iam.serviceAccounts.create" not in asked


def test_a_value_the_program_refuses_is_reported_in_the_programs_words(
    tmp_path: Path, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_root(tmp_path, bad="config:\n  gcp:project: my-gcp-project-dev\n  catalog-grpc:cpu: '3'\n")
    assert cli.main(["--stack", "bad"], root=root, clients=clients) == cli.PROBLEMS
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("PROBLEM config: invalid config catalog-grpc:cpu = '3': must be a CPU count")


def test_a_stack_without_its_file_is_a_usage_error_listing_the_stacks(
    tmp_path: Path, clients: Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_root(tmp_path, dev="config: {}\n")
    assert cli.main(["--stack", "staging"], root=root, clients=clients) == cli.USAGE
    err = capsys.readouterr().err
    assert "no stack file Pulumi.staging.yaml" in err
    assert "stacks here are dev" in err


@pytest.mark.parametrize("argv", [["--stack", "../dev"], ["--stack", ""], []])
def test_an_unknown_stack_or_none_is_a_usage_error(argv: list[str], clients: Clients) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv, clients=clients)
    assert exit_.value.code == cli.USAGE


def test_no_credentials_is_a_usage_error_saying_how_to_log_in(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_credentials(**_: object) -> None:
        raise DefaultCredentialsError("Your default credentials were not found.")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(google.auth, "default", no_credentials)
    assert cli.main(["--stack", "dev"]) == cli.USAGE
    assert "`gcloud auth application-default login`" in capsys.readouterr().err
