"""Runs the Pulumi program (infra/) the way Pulumi does, against mocks, and records what it declares.

As `pulumi up` does: Pulumi.yaml's config (defaults of the project's keys, values of provider keys) fills in
what the stack leaves out, every value reaches the program as a string (JSON for arrays), and the program runs
with its `main` directory as the working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import importlib
import json
import os
import runpy
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import yaml
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor

# How the CLI merges Pulumi.yaml under a stack's config and hands values to the program: preflight's, the
# one definition that `python -m preflight` validates stacks with too.
from preflight.stack import project_defaults as project_defaults  # noqa: PLC0414  (re-exported)
from preflight.stack import project_file as project_file  # noqa: PLC0414
from preflight.stack import wire_value as wire_value  # noqa: PLC0414
from preflight.stack import with_project_config as with_project_config  # noqa: PLC0414

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
SLEEP = "time:index/sleep:Sleep"
CLIENT_CONFIG = "gcp:organizations/getClientConfig:getClientConfig"
LOG_METRIC = "gcp:logging/metric:Metric"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
CUSTOM_SERVICE = "gcp:monitoring/customService:CustomService"
SLO = "gcp:monitoring/slo:Slo"
ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
NOTIFICATION_CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
DASHBOARD_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
URL_MAP = "gcp:compute/uRLMap:URLMap"
CERTIFICATE = "gcp:compute/managedSslCertificate:ManagedSslCertificate"
HTTPS_PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
GLOBAL_ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
FORWARDING_RULE = "gcp:compute/globalForwardingRule:GlobalForwardingRule"
SECURITY_POLICY = "gcp:compute/securityPolicy:SecurityPolicy"
# What the mocks give a global address, as Google would reserve one.
ADDRESS = "203.0.113.7"
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
        elif args.typ == CUSTOM_SERVICE:
            state["name"] = f"projects/{POOL_NUMBER}/services/{state['serviceId']}"
        elif args.typ == SLO:
            state["name"] = (
                f"projects/{POOL_NUMBER}/services/{state['service']}/serviceLevelObjectives/{state['sloId']}"
            )
        elif args.typ == NOTIFICATION_CHANNEL:
            state["name"] = (
                f"projects/{state['project']}/notificationChannels/{zlib.crc32(args.name.encode())}"
            )
        elif args.typ == DASHBOARD:
            # The provider's id is the dashboard's name: projects/NUMBER/dashboards/ID.
            return f"projects/{POOL_NUMBER}/dashboards/{DASHBOARD_ID}", state
        elif args.typ == GLOBAL_ADDRESS:
            state["address"] = ADDRESS
        elif args.typ.startswith("gcp:compute/") and "name" not in state:
            # A compute resource declared without a name gets one generated, as Pulumi's auto-naming does.
            state["name"] = f"{args.name}-1a2b3c4"
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
    """One resource the program declared: its type, name, inputs as sent, parent and explicit dependencies.

    `id` is what the mocks gave it (what other resources' inputs refer to it by); `aliases` are the URNs it
    claims to have had before (`aliases=` in its options); `retain_on_delete` is that option's value.
    """

    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    parent: str
    dependencies: tuple[str, ...]
    id: str = ""
    aliases: tuple[str, ...] = ()
    retain_on_delete: bool = False


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's parent and dependencies, in order."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.declared: list[Declared] = []
        # What each component registered as its outputs (register_outputs), by URN: the state shows them.
        self.component_outputs: dict[str, dict[str, Any]] = {}

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
                    id=getattr(response, "id", ""),
                    aliases=self._alias_urns(request),
                    retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    def _alias_urns(self, request: Any) -> tuple[str, ...]:
        """The URNs of a registration's aliases, resolved as the engine does for an alias spec."""
        urns = []
        for alias in request.aliases:
            if alias.urn:
                urns.append(alias.urn)
                continue
            spec = alias.spec
            parent = "" if spec.noParent else (spec.parentUrn or request.parent)
            urns.append(self.make_urn(parent, spec.type or request.type, spec.name or request.name))
        return tuple(urns)


@dataclass
class Deployment:
    """What one run of the program declared and exported."""

    declared: list[Declared]
    outputs: dict[str, Any] = field(default_factory=dict)
    # The globals infra/__main__.py ended with: its config and components, and the modules that define them.
    namespace: dict[str, Any] = field(default_factory=dict)
    # Each read of the live service the program made: (project, region, service name).
    live_reads: list[tuple[str, str, str]] = field(default_factory=list)
    # The outputs each component registered, by its URN (RecordingMonitor.component_outputs).
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def all(self, type_: str) -> list[Declared]:
        return [resource for resource in self.declared if resource.type == type_]

    def one(self, type_: str) -> Declared:
        found = self.all(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]


@functools.cache
def _parsed_yaml(text: str) -> Any:
    # libyaml's loader: the pure-Python one took a fifth of every program run, which reads Pulumi.yaml.
    return yaml.load(text, Loader=yaml.CSafeLoader)


def load_yaml(path: Path) -> Any:
    """A YAML file's document, parsed once per content; a copy, which the caller may change."""
    return copy.deepcopy(_parsed_yaml(path.read_text()))


def stack_config(stack: str) -> dict[str, object]:
    """The config section of a committed Pulumi.<stack>.yaml."""
    config: dict[str, object] = load_yaml(REPO_ROOT / f"Pulumi.{stack}.yaml")["config"]
    return config


def infra_module(name: str) -> Any:
    """A module of infra/catalog_infra, as installed (pyproject.toml maps the package to that folder)."""
    return importlib.import_module(f"catalog_infra.{name}")


@contextlib.contextmanager
def live_service(
    live: Any, reads: list[tuple[str, str, str]], program_dir: Path = INFRA_DIR
) -> Iterator[None]:
    """Answer the program's reads of the live service with `live` (None: not deployed yet), recording them.

    `live` is one answer for every region, or a mapping of region to its answer (a region it leaves out
    has no service yet). Patches the catalog_infra.live of `program_dir`, the one its program will import.
    """

    def read_service(project: str, region: str, service_name: str, client: Any = None) -> Any:
        reads.append((project, region, service_name))
        return live.get(region) if isinstance(live, Mapping) else live

    sys.path.insert(0, str(program_dir))
    try:
        module = importlib.import_module("catalog_infra.live")
    finally:
        sys.path.remove(str(program_dir))
    with mock.patch.object(module, "read_service", read_service):
        yield


@contextlib.contextmanager
def _program_environment(program_dir: Path) -> Iterator[None]:
    """Work in the program's directory, and import its own catalog_infra, as a fresh `pulumi up` would."""
    saved_cwd = Path.cwd()
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "catalog_infra"}
    foreign = program_dir.resolve() != INFRA_DIR.resolve()
    if foreign:
        for name in saved:
            del sys.modules[name]
    os.chdir(program_dir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if foreign:
            for name in [n for n in sys.modules if n.split(".")[0] == "catalog_infra"]:
                del sys.modules[name]
            sys.modules.update(saved)


def _ensure_event_loop() -> None:
    """Give the main thread an event loop if an earlier test's asyncio.run() left it without one.

    Pulumi's runtime runs its coroutines on the thread's current loop (`asyncio.get_event_loop()`), and
    once asyncio.run() has ended (as in tests/service) there is none: in one pytest run after those, every
    program run would fail with "There is no current event loop".
    """
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(
    config: Mapping[str, object],
    stack: str = "dev",
    monitor: RecordingMonitor | None = None,
    program: Callable[[], object] | None = None,
    *,
    root: Path = REPO_ROOT,
    live: Any = None,
    preview: bool = False,
) -> Deployment:
    """Run the program of the project at `root` (infra/ here) as `pulumi up` (or preview) would, under mocks.

    `config` is the stack's; Pulumi.yaml's defaults fill in the rest, as the CLI does. `program` runs instead
    of the project's, if given. `live` is what Cloud Run serves (catalog_infra.revisions.LiveService), None
    for a first deploy, or a mapping of region to either, for a stack with several regions.
    """
    _ensure_event_loop()
    monitor = monitor or RecordingMonitor(Mocks())
    merged = with_project_config(config, root)
    pulumi.runtime.set_all_config({key: wire_value(value) for key, value in merged.items()})
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    deployment = Deployment(monitor.declared, component_outputs=monitor.component_outputs)
    program_dir = root / project_file(root)["main"]

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[None]:
        if program is None:
            deployment.namespace.update(runpy.run_path(str(program_dir), run_name="__main__"))
        else:
            program()
        root_resource = settings.get_root_resource()
        assert root_resource is not None
        exported: dict[str, Any] = getattr(root_resource, "outputs", {})
        return pulumi.Output.all(**exported).apply(deployment.outputs.update)

    with _program_environment(program_dir), live_service(live, deployment.live_reads, program_dir):
        run()
    return deployment


# Each deployment recorded so far, by (stack, preview, config as JSON), with its fingerprint then.
_RECORDED: dict[tuple[str, bool, str], tuple[Deployment, str]] = {}


def recorded(stack: str, *, preview: bool = False, config: Mapping[str, object] | None = None) -> Deployment:
    """The deployment of `config` (the committed stack's by default), run once per test session.

    For the tests that only read what the program declares. Read it, never change it: tests/infra/conftest.py
    fails the session if a test did (`changed_recordings`).
    """
    config = stack_config(stack) if config is None else config
    key = (stack, preview, json.dumps(config, sort_keys=True))
    if key not in _RECORDED or _crediting_each_test():
        try:
            deployment = run_program(config, stack=stack, preview=preview)
        finally:
            reset_pulumi()
        _RECORDED[key] = deployment, _fingerprint(deployment)
    return _RECORDED[key][0]


def _crediting_each_test() -> bool:
    """Whether `make mutation` is finding which tests reach each function (mutmut's "stats" run).

    It credits a function to the test during which the function ran: a recording shared from an earlier test
    would credit that test alone, and each mutant of the program would then be judged by that one test. So
    in that run every test records its own; each mutant's run shares them again (the mutant is the same
    throughout it).
    """
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def changed_recordings() -> list[str]:
    """The shared deployments a test has changed since they were recorded: stack, mode and config."""
    return [
        f"{stack} ({'preview' if preview else 'up'}) of {config}"
        for (stack, preview, config), (deployment, before) in _RECORDED.items()
        if _fingerprint(deployment) != before
    ]


def _fingerprint(deployment: Deployment) -> str:
    return repr(
        (deployment.declared, deployment.outputs, deployment.live_reads, deployment.component_outputs)
    )


def reset_pulumi() -> None:
    """Leave no mocks, root stack or config behind for the next test (or another suite in this process)."""
    pulumi.runtime.set_all_config({})
    settings.reset_options()
