"""`make deploy STACK=...` end to end: a fake pulumi on PATH, the Cloud Run and Monitoring fakes, real checks.

The release and smoke steps run as they would against the cloud: their child processes dial Cloud Run's
names over TLS, which a CONNECT proxy ($grpc_proxy) hands to a local catalog server holding a certificate
for those names.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.release import CANDIDATE, STABLE
from release.traffic import Route
from tests.client.servers import make_self_signed_cert, serve
from tests.docs.markdown import Page
from tests.release import fake_monitoring
from tests.release.conftest import CALLS_METRIC, NEW, OLD, REF, template
from tests.release.fake_monitoring import FakeMonitoring
from tests.release.fake_run import FakeCloudRun, service_uri
from tests.release.fake_run import serve as serve_run
from tests.tools.connect_proxy import connect_proxy

ROOT = Path(__file__).resolve().parents[2]
FAKE_PULUMI = Path(__file__).with_name("fake_pulumi.py")
SERVICE_URL = service_uri(REF.path)
# The preflight make deploy runs: the fake, which records `preflight --stack NAME` beside pulumi's calls.
PREFLIGHT_COMMAND = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_PULUMI))} preflight"
PREFLIGHT = f"PREFLIGHT={PREFLIGHT_COMMAND}"
UP = ["up", "--stack", "dev", "--policy-pack", "policy", "--policy-pack-config", "policy/config/dev.json"]


@dataclass
class World:
    """What a deploy runs against, and where to read what it did."""

    state: Path
    env: dict[str, str]
    release_args: str
    run: FakeCloudRun
    monitoring: FakeMonitoring
    asked: list[str]

    def calls(self) -> list[list[str]]:
        lines = (self.state / "calls.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["make", "--no-print-directory", *args, f"RELEASE_ARGS={self.release_args}", PREFLIGHT]
        return subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_PULUMI))} "$@"\n')
    pulumi.chmod(0o755)
    release_plan = {
        "project": REF.project,
        "region": REF.region,
        "service": REF.service,
        "steps": [100],
        "pauseSeconds": 0,
        "callsMetric": CALLS_METRIC,
        "maxErrorRatio": 0.01,
        "minCalls": 20,
        "private": False,
        "url": SERVICE_URL,
    }
    host = SERVICE_URL.removeprefix("https://")
    outputs = {"target": f"{host}:443", "url": SERVICE_URL, "release": release_plan}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    run = FakeCloudRun()
    # `pulumi up` (the fake's) has just deployed NEW as the candidate beside OLD, which serves everything.
    run.deploy(REF.path, template(OLD), [Route(OLD, 100, STABLE), Route(OLD, 0, CANDIDATE)])
    run.deploy(REF.path, template(NEW), [Route(OLD, 100, STABLE), Route(NEW, 0, CANDIDATE)])
    monitoring = FakeMonitoring(project=REF.project, metric_type=CALLS_METRIC, service=REF.service)
    monitoring.record(time.time() - 1, NEW, "OK", 50)
    cert = make_self_signed_cert(dns_names=[f"*.{REF.region}.run.app"])
    (tmp_path / "ca.pem").write_bytes(cert.cert_pem)
    with (
        serve(tls=cert) as server,
        serve_run(run) as api,
        fake_monitoring.serve(monitoring) as monitoring_api,
        connect_proxy(server.port) as (proxy, asked),
    ):
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_PULUMI_DIR": str(tmp_path),
            "grpc_proxy": proxy,
            "no_grpc_proxy": "localhost,127.0.0.1",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(tmp_path / "ca.pem"),
        }
        # No wait for Monitoring's ingestion: the fake has its points at once.
        release_args = (
            f"--api-endpoint {api} --monitoring-endpoint {monitoring_api} --insecure-api --ingestion-delay 0"
        )
        yield World(tmp_path, env, release_args, run, monitoring, asked)


def test_deploy_runs_up_with_the_policy_pack_then_releases_and_smoke_checks(world: World) -> None:
    result = world.make("deploy", "STACK=dev")
    assert result.returncode == 0, result.stderr
    assert world.calls() == [
        ["preflight", "--stack", "dev"],
        [*UP, "--yes"],
        ["stack", "output", "release", "--json", "--stack", "dev"],
        ["stack", "output", "--json", "--stack", "dev"],  # the smoke check's target
    ]
    assert world.run.revision_of(REF.path, STABLE) == NEW  # the release moved the traffic
    host = SERVICE_URL.removeprefix("https://")
    assert f"candidate---{host}:443" in world.asked  # the release's checks called the candidate
    assert world.asked[-1] == f"{host}:443"  # the smoke check, last, called the service
    assert "==> smoke:" in result.stderr
    assert result.stdout.splitlines()[-1] == (
        "deployed dev (preflight, up, release, smoke): the new revision serves all of the traffic"
    )


@pytest.mark.parametrize(("verb", "step"), [("preflight", "preflight"), ("up", "up"), ("stack", "release")])
def test_deploy_stops_at_the_failed_step_and_names_it(world: World, verb: str, step: str) -> None:
    (world.state / "fail").write_text(verb)
    result = world.make("deploy", "STACK=dev")
    assert result.returncode != 0
    assert f"deploy of dev failed at step {step}: `" in result.stderr
    assert world.run.revision_of(REF.path, STABLE) == OLD  # nothing released
    assert "==> smoke:" not in result.stderr


def test_a_failed_release_check_fails_the_deploy_at_release(world: World) -> None:
    # The candidate failed many of its calls: the error-ratio gate refuses it and the release rolls back.
    world.monitoring.record(time.time() - 1, NEW, "INTERNAL", 50)
    result = world.make("deploy", "STACK=dev")
    assert result.returncode != 0
    assert "deploy of dev failed at step release: `" in result.stderr
    assert world.run.revision_of(REF.path, STABLE) == OLD
    assert "==> smoke:" not in result.stderr


def test_preview_runs_the_policy_pack_with_the_stacks_config(world: World) -> None:
    result = world.make("preview", "STACK=dev")
    assert result.returncode == 0, result.stderr
    assert world.calls() == [["preview", *UP[1:]]]


def test_a_stack_without_a_policy_config_is_refused_before_pulumi_runs(world: World) -> None:
    result = world.make("deploy", "STACK=staging")
    assert result.returncode != 0
    assert "no policy config for stack 'staging': create policy/config/staging.json" in result.stderr
    assert not (world.state / "calls.jsonl").exists()


def test_deploy_without_a_stack_is_a_usage_error(world: World) -> None:
    result = world.make("deploy")
    assert result.returncode == 2
    assert "usage: make deploy STACK=dev" in result.stderr


def test_the_readmes_deploy_block_runs_as_written(world: World) -> None:
    (block,) = [
        block.lines
        for block in Page.read(ROOT / "README.md").code_blocks
        if any(line.startswith("pulumi login") for line in block.lines)
    ]
    assert block[-1].startswith("make deploy STACK=dev")  # the Deploy section ends with it
    env = {**world.env, "RELEASE_ARGS": world.release_args, "PREFLIGHT": PREFLIGHT_COMMAND}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(block)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    assert calls[:2] == [["login"], ["stack", "select", "--create", "dev"]]
    assert ["preflight", "--stack", "dev"] in calls
    assert [*UP, "--yes"] in calls
    assert world.run.revision_of(REF.path, STABLE) == NEW
