"""The gRPC release the server runs on: new enough for the fixes the attack tests rely on, and coherent."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# The release the attack tests were verified on, and so the oldest the server may run: it carries the early
# receive-size check (grpc/grpc 43012: a message announced above the limit is refused from its header, a
# compressed one as soon as it inflates past it; backported to the 1.82 and 1.83 lines, not 1.81), the fixes
# for the HTTP/2 advisories of recent years (all released before 1.81), and none of the aio regression
# of 1.80 to 1.82.1 (grpc/grpc 43092). docs/hardening.md says why not 1.84 or 1.85.
GRPCIO_FLOOR = Version("1.83.2")


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            pins[match[1].lower()] = Version(match[2])
    return pins


def test_the_installed_grpcio_is_at_least_the_floor() -> None:
    assert Version(importlib.metadata.version("grpcio")) >= GRPCIO_FLOOR


def test_the_image_installs_the_grpcio_the_tests_run() -> None:
    pins = _pins(ROOT / "requirements-server.txt")
    assert pins["grpcio"] == Version(importlib.metadata.version("grpcio"))
    assert pins["grpcio"] >= GRPCIO_FLOOR


def test_the_grpc_add_ons_accept_the_grpcio_and_protobuf_installed() -> None:
    # grpcio-health-checking, -reflection and -status stay on the protobuf 6 line pulumi needs; grpcio itself
    # needs no protobuf, so it can be newer: each add-on's own requirements must still hold.
    installed = {
        name: Version(importlib.metadata.version(name))
        for name in ("grpcio", "protobuf", "googleapis-common-protos")
    }
    for add_on in ("grpcio-health-checking", "grpcio-reflection", "grpcio-status"):
        for text in importlib.metadata.requires(add_on) or []:
            requirement = Requirement(text)
            if requirement.name in installed and requirement.marker is None:
                assert installed[requirement.name] in requirement.specifier, (add_on, text)
    assert installed["protobuf"] < Version("7")  # pulumi's limit (requirements.txt)


def test_grpcio_has_no_protobuf_requirement_of_its_own() -> None:
    requirements = [Requirement(text).name for text in importlib.metadata.requires("grpcio") or []]
    assert "protobuf" not in requirements


def test_the_generated_stubs_accept_the_installed_grpcio() -> None:
    # catalog_pb2_grpc refuses to import on a grpcio older than the grpcio-tools that generated it.
    generated = re.search(
        r"GRPC_GENERATED_VERSION = '([\d.]+)'", (ROOT / "catalog" / "catalog_pb2_grpc.py").read_text()
    )
    assert generated is not None
    assert Version(importlib.metadata.version("grpcio")) >= Version(generated[1])


def test_the_grpcio_type_stubs_match_its_release_line() -> None:
    stubs = _pins(ROOT / "requirements-dev.txt")["types-grpcio"]
    grpcio = _pins(ROOT / "requirements-server.txt")["grpcio"]
    assert stubs.release[:2] == grpcio.release[:2]
