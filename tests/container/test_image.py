"""The image run as Cloud Run runs it: PORT from the environment, h2c health, non-root, JSON logs, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from catalog import SERVICE_NAME, catalog_pb2, catalog_pb2_grpc

from .images import QUICK_TIMEOUT, REPO, SBOM_PATH, SUMMARY
from .runner import Container, free_port, image_command, image_config

# Cloud Run sends SIGKILL this long after SIGTERM.
CLOUD_RUN_KILL_AFTER = 10.0
STARTUP_TIMEOUT = 30.0
CALL_TIMEOUT = 5.0


def start_like_cloud_run(image: str, log_dir: Path) -> Container:
    """Start the image's own command with the variables Cloud Run sets; the caller must `remove()` it."""
    port = free_port()
    container = Container(
        image,
        env={
            "PORT": str(port),
            "K_SERVICE": "catalog",
            "K_REVISION": "catalog-00001-abc",
            "K_CONFIGURATION": "catalog",
        },
        log_dir=log_dir,
    )
    try:
        container.start(image_command(image))
        wait_until_serving(container, port)
    except BaseException:
        container.remove()
        raise
    return container


def health_stub(channel: grpc.Channel) -> Any:
    """A health stub (its type stubs declare no methods)."""
    return health_pb2_grpc.HealthStub(channel)


def wait_until_serving(container: Container, port: int) -> None:
    """Poll the health service the way a startup probe does, until the catalog says SERVING."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: object = None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_stub(channel)
        while time.monotonic() < deadline:
            if container.process.poll() is not None:
                raise AssertionError(f"exited with {container.process.returncode}\n{container.output()}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1)
            except grpc.RpcError as error:
                last = error.code()
            else:
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = answer.status
            time.sleep(0.2)
    raise AssertionError(f"not SERVING after {STARTUP_TIMEOUT:g} s (last: {last})\n{container.output()}")


def port_of(container: Container) -> int:
    """The port Cloud Run told the container to listen on."""
    return int(container.env["PORT"])


@pytest.fixture(scope="module")
def serving(
    image: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """One container for the checks that leave it running."""
    started = time.monotonic()
    container = start_like_cloud_run(image, tmp_path_factory.mktemp("serving"))
    request.config.stash.setdefault(SUMMARY, []).append(
        f"SERVING {time.monotonic() - started:.1f} s after buildah from (container creation included)"
    )
    try:
        yield container
    finally:
        container.remove()


def test_config_is_what_cloud_run_needs(image: str) -> None:
    config = image_config(image)
    user = str(config.get("User", ""))
    assert user, "no USER: the image would run as root"
    assert user.partition(":")[0] not in ("0", "root"), f"image runs as {user!r}"
    command = image_command(image)
    # Exec form: the server itself is the main process and gets SIGTERM, not a shell that swallows it.
    assert command[:2] != ["/bin/sh", "-c"], command
    env_list = config.get("Env") or []
    assert isinstance(env_list, list), env_list
    env = dict(str(item).partition("=")[::2] for item in env_list)
    assert env.get("PYTHONUNBUFFERED") == "1", env
    assert "PORT" not in env, "Cloud Run sets PORT; the image should not pretend to"


def test_image_carries_only_what_runs(image: str, tmp_path: Path) -> None:
    container = Container(image, env={}, log_dir=tmp_path)
    # Run from the image's WORKDIR: no installer, generator, Pulumi or test tools, no files besides the code.
    probe = (
        "import importlib.util, pathlib, sys\n"
        "unwanted = ('pip', 'grpc_tools', 'pulumi', 'pytest', 'mypy')\n"
        "present = [name for name in unwanted if importlib.util.find_spec(name)]\n"
        "shipped = ('catalog', 'contract', 'service')\n"
        "extra = sorted(p.name for p in pathlib.Path().iterdir() if p.name not in shipped)\n"
        "import catalog.catalog_pb2_grpc, service.__main__\n"
        "print('unwanted modules:', present, 'unwanted files:', extra)\n"
        "sys.exit(1 if present or extra else 0)\n"
    )
    try:
        container.start(["python", "-c", probe])
        returncode = container.process.wait(timeout=QUICK_TIMEOUT)
        assert returncode == 0, container.output()
    finally:
        container.remove()


def test_health_is_serving_over_cleartext_http2(serving: Container) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port_of(serving)}") as channel:
        health = health_stub(channel)
        for service in ("", SERVICE_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


def test_get_product(serving: Container) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port_of(serving)}") as channel:
        catalog = catalog_pb2_grpc.ProductCatalogStub(channel)
        product = catalog.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=CALL_TIMEOUT)
        assert product.name == "Laptop Pro 16"
        with pytest.raises(grpc.RpcError) as missing:
            catalog.GetProduct(catalog_pb2.GetProductRequest(id="no-such-product"), timeout=CALL_TIMEOUT)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_server_does_not_run_as_root(serving: Container) -> None:
    status = Path(f"/proc/{serving.server_pid()}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids, status
    assert "0" not in uids, f"real, effective, saved, file-system uids: {uids}"


def test_sigterm_stops_cleanly_with_json_logs(image: str, tmp_path: Path) -> None:
    container = start_like_cloud_run(image, tmp_path)
    try:
        os.kill(container.server_pid(), signal.SIGTERM)
        started = time.monotonic()
        try:
            returncode = container.process.wait(timeout=CLOUD_RUN_KILL_AFTER)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {CLOUD_RUN_KILL_AFTER:g} s after SIGTERM\n{container.output()}")
        elapsed = time.monotonic() - started
        assert returncode == 0, f"exit code {returncode} after SIGTERM\n{container.output()}"
        assert elapsed < CLOUD_RUN_KILL_AFTER

        lines = [line for line in container.stdout().splitlines() if line.strip()]
        assert lines, f"nothing logged on stdout\n{container.output()}"
        for line in lines:
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            for field in ("severity", "message", "time"):
                assert isinstance(entry.get(field), str), f"{field} missing in {line}"
    finally:
        container.remove()


def test_base_image_argument_is_pinned() -> None:
    # Not run against a registry here, so at least hold the default to a precise tag with its digest.
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    default = next(line for line in dockerfile.splitlines() if line.startswith("ARG BASE_IMAGE="))
    reference = default.partition("=")[2]
    tag, _, digest = reference.partition("@sha256:")
    assert tag.count(".") >= 2, f"{tag} is not a precise version"
    assert len(digest) == 64, f"{reference} has no digest"
    froms = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms, "no FROM"
    assert all(ref == "${BASE_IMAGE}" for ref in froms), froms


def pinned_server_requirements() -> dict[str, str]:
    """Name -> version of every `name==version` line in requirements-server.txt (what the image installs)."""
    pins: dict[str, str] = {}
    for raw in (REPO / "requirements-server.txt").read_text().splitlines():
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        assert len(exact) == 1, f"requirements-server.txt: {line!r} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def test_sbom_lists_the_pinned_runtime(image: str) -> None:
    sbom = json.loads(SBOM_PATH.read_text())
    assert sbom["bomFormat"] == "CycloneDX", sbom.get("bomFormat")
    assert sbom["metadata"]["component"]["name"] == "catalog-server", sbom["metadata"]["component"]
    installed: dict[str, set[str]] = {}
    for component in sbom.get("components", []):
        purl = str(component.get("purl", ""))
        if purl.startswith("pkg:pypi/"):
            installed.setdefault(canonicalize_name(component["name"]), set()).add(component["version"])
    pins = pinned_server_requirements()
    assert {"grpcio", "protobuf"} <= set(pins), pins
    # One copy of each, at the pinned version: the SBOM describes what runs, not a stray second install.
    for name in ("grpcio", "protobuf"):
        listed = installed.get(name)
        assert listed == {pins[name]}, f"{name}: the SBOM lists {listed}, the pin is {pins[name]}"
    missing = {name: version for name, version in pins.items() if version not in installed.get(name, set())}
    assert missing == {}, f"pinned but not in the SBOM: {missing}"
