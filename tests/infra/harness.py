"""Runs the Pulumi program (infra/) the way Pulumi does, against mocks, and records what it declares."""

from __future__ import annotations

import importlib
import json
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import yaml
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
PROJECT = "catalog-grpc"
STACKS = ("dev", "prod")
DIGEST = "sha256:" + "d" * 64
POOL_NUMBER = "123456789012"

SERVICE = "gcp:cloudrunv2/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
IMAGE = "docker-build:index:Image"
ACCOUNT = "gcp:serviceaccount/account:Account"
ACCOUNT_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
API = "gcp:projects/service:Service"
POOL = "gcp:iam/workloadIdentityPool:WorkloadIdentityPool"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
CLIENT_CONFIG = "gcp:organizations/getClientConfig:getClientConfig"
# How a secret value arrives in a mock's inputs: {SECRET_SIG: SECRET_MARKER, "value": ...}.
SECRET_SIG = rpc._special_sig_key
SECRET_MARKER = rpc._special_secret_sig


class Mocks(pulumi.runtime.Mocks):
    """Echo inputs back as state and add the computed outputs the program reads, like the providers would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == SERVICE:
            state["uri"] = f"https://{state['name']}-abc123-uc.a.run.app"
        elif args.typ == ACCOUNT:
            email = f"{state['accountId']}@{state['project']}.iam.gserviceaccount.com"
            state["email"] = email
            state["member"] = f"serviceAccount:{email}"
            state["name"] = f"projects/{state['project']}/serviceAccounts/{email}"
        elif args.typ == REPOSITORY:
            state["registryUri"] = (
                f"{state['location']}-docker.pkg.dev/{state['project']}/{state['repositoryId']}"
            )
        elif args.typ == IMAGE:
            state["digest"] = DIGEST
            state["ref"] = f"{state['tags'][0]}@{DIGEST}"
        elif args.typ == POOL:
            pool_id = state["workloadIdentityPoolId"]
            state["name"] = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/{pool_id}"
        elif args.typ == PROVIDER:
            state["name"] = (
                f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/"
                f"{state['workloadIdentityPoolId']}/providers/{state['workloadIdentityPoolProviderId']}"
            )
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == CLIENT_CONFIG:
            return {
                "accessToken": "mock-access-token",
                "project": "mock-project",
                "region": "",
                "zone": "",
            }, []
        raise NotImplementedError(args.token)


@dataclass(frozen=True)
class Declared:
    """One resource the program declared: its type, name, inputs as sent, parent and explicit dependencies."""

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    parent: str
    dependencies: tuple[str, ...]


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's parent and dependencies, in order."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.declared: list[Declared] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            urn = self.make_urn(request.parent, request.type, request.name)
            self.declared.append(
                Declared(
                    urn=urn,
                    type=request.type,
                    name=request.name,
                    inputs=self.resources[urn].state if request.custom else {},
                    parent=request.parent,
                    dependencies=tuple(request.dependencies),
                )
            )
        return response


@dataclass
class Deployment:
    """What one run of the program declared and exported."""

    declared: list[Declared]
    outputs: dict[str, Any] = field(default_factory=dict)
    # The globals infra/__main__.py ended with: its config and components, and the modules that define them.
    namespace: dict[str, Any] = field(default_factory=dict)
    # Each read of the live service the program made: (project, region, service name).
    live_reads: list[tuple[str, str, str]] = field(default_factory=list)

    def all(self, type_: str) -> list[Declared]:
        return [resource for resource in self.declared if resource.type == type_]

    def one(self, type_: str) -> Declared:
        found = self.all(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]


def wire_value(value: object) -> str:
    """A YAML config value as the Pulumi CLI hands it to the program: strings as is, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def stack_config(stack: str) -> dict[str, object]:
    """The config section of a committed Pulumi.<stack>.yaml."""
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, object] = document["config"]
    return config


def project_file() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    return document


def infra_module(name: str) -> Any:
    """A module of infra/catalog_infra, imported as the program imports it (infra/ is its path root)."""
    if str(INFRA_DIR) not in sys.path:
        sys.path.append(str(INFRA_DIR))
    return importlib.import_module(f"catalog_infra.{name}")


@contextmanager
def live_service(live: Any, reads: list[tuple[str, str, str]]) -> Iterator[None]:
    """Answer the program's read of the live service with `live` (None: not deployed yet), recording it."""

    def read_service(project: str, region: str, service_name: str) -> Any:
        reads.append((project, region, service_name))
        return live

    with mock.patch.object(infra_module("live"), "read_service", read_service):
        yield


def run_program(
    config: Mapping[str, object],
    stack: str = "dev",
    monitor: RecordingMonitor | None = None,
    program: Callable[[], object] | None = None,
    live: Any = None,
) -> Deployment:
    """Run infra/ as `pulumi up` would (runpy of the directory), or `program` instead, under mocks.

    `live` is what Cloud Run serves (catalog_infra.revisions.LiveService), None for a first deploy.
    """
    monitor = monitor or RecordingMonitor(Mocks())
    pulumi.runtime.set_all_config({key: wire_value(value) for key, value in config.items()})
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    deployment = Deployment(monitor.declared)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        if program is None:
            deployment.namespace.update(runpy.run_path(str(INFRA_DIR), run_name="__main__"))
        else:
            program()
        root = settings.get_root_resource()
        assert root is not None
        exported: dict[str, Any] = getattr(root, "outputs", {})
        return pulumi.Output.all(**exported).apply(deployment.outputs.update)

    with live_service(live, deployment.live_reads):
        run()
    return deployment


def reset_pulumi() -> None:
    """Leave no mocks, root stack or config behind for the next test (or another suite in this process)."""
    pulumi.runtime.set_all_config({})
    settings.reset_options()
