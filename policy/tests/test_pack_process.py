"""The pack booted the way the CLI boots a Python pack, and asked over gRPC the way the engine asks it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from catalog_policy import PACK_NAME, POLICIES
from engine import PACK_DIR, pack_config, resources
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "disabled": analyzer_pb2.DISABLED,
}


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`.venv/bin/python -u -m pulumi.policy ENGINE .` in the pack's directory, as the CLI's shim runs it."""
    # The engine address is only dialled to log an error; nothing listens there, and nothing should need to.
    stderr_path = tmp_path_factory.mktemp("pack") / "stderr"
    stderr = stderr_path.open("w")
    process = subprocess.Popen(
        [str(PACK_DIR / ".venv" / "bin" / "python"), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=PACK_DIR,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()  # the SDK prints the port it serves on, as plugins do
        assert port.isdigit(), f"no port from the pack; stderr:\n{stderr_path.read_text()}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=CALL_TIMEOUT)
        stderr.close()


def configure(analyzer: Any, config: dict[str, Any]) -> None:
    """Send a stack's policy config the way the engine does: every policy with its effective level."""
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy in POLICIES:
        entry = config.get(policy.name, {})
        level = policy.enforcement_level.value if policy.enforcement_level else "mandatory"
        properties = dict(entry) if isinstance(entry, dict) else {}
        level = properties.pop("enforcementLevel", entry if isinstance(entry, str) else level)
        settings = request.policyConfig[policy.name]
        settings.enforcementLevel = LEVELS[level]
        settings.properties.update(properties)
    analyzer.Configure(request, timeout=CALL_TIMEOUT)


def analyze(analyzer: Any, resource: dict[str, Any]) -> list[Any]:
    properties = struct_pb2.Struct()
    properties.update(resource["props"])
    request = analyzer_pb2.AnalyzeRequest(
        type=resource["type"], urn=resource["urn"], name=resource["name"], properties=properties
    )
    return list(analyzer.Analyze(request, timeout=CALL_TIMEOUT).diagnostics)


def test_the_pack_describes_every_policy(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert info.name == PACK_NAME
    levels = {policy.name: policy.enforcementLevel for policy in info.policies}
    assert set(levels) == {policy.name for policy in POLICIES}
    assert levels["cloudrun-h2c-port"] == analyzer_pb2.MANDATORY
    assert levels["cloudrun-warm-instance"] == analyzer_pb2.ADVISORY
    schema = {
        policy.name: json_format.MessageToDict(policy.configSchema.properties) for policy in info.policies
    }
    assert schema["cloudrun-private"]["allowPublicInvoker"]["default"] is False
    assert schema["cloudrun-deletion-protection"]["production"]["default"] is True


def test_the_engine_gets_violations_and_preview_notes(analyzer: Any) -> None:
    configure(analyzer, pack_config("prod"))
    for resource in resources("prod"):
        assert analyze(analyzer, resource) == [], resource["name"]

    service = next(r for r in resources("prod", "preview") if r["type"] == "gcp:cloudrunv2/service:Service")
    service["props"]["template"]["containers"][0]["ports"]["name"] = "http1"
    found = {d.policyName: d for d in analyze(analyzer, service)}
    assert found["cloudrun-h2c-port"].enforcementLevel == analyzer_pb2.MANDATORY
    assert "its port is named 'http1'; name it 'h2c'" in found["cloudrun-h2c-port"].message
    assert found["cloudrun-h2c-port"].policyPackName == PACK_NAME
    # The image is not built at a first preview: the SDK says the rule could not run, as advice.
    note = found["cloudrun-image-digest"]
    assert note.enforcementLevel == analyzer_pb2.ADVISORY
    assert "can't run policy 'cloudrun-image-digest'" in note.message
    assert "during preview" in note.message


def test_dev_config_reaches_the_pack(analyzer: Any) -> None:
    member_type = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    invoker = {
        "type": member_type,
        "name": "catalog-invoker-allUsers",
        "urn": f"urn:pulumi:dev::catalog-grpc::{member_type}::catalog-invoker-allUsers",
        "props": {"name": "catalog-grpc", "role": "roles/run.invoker", "member": "allUsers"},
    }
    configure(analyzer, pack_config("prod"))
    assert [d.policyName for d in analyze(analyzer, invoker)] == ["cloudrun-private"]
    configure(analyzer, pack_config("dev"))
    assert analyze(analyzer, invoker) == []
