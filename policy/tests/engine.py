"""Run the pack's policies on resources the way the engine and the SDK's analyzer server do, without the CLI.

`analyze` mirrors `pulumi_policy.policy._PolicyAnalyzerServicer.Analyze`: the props are deserialized and
wrapped in the unknown-checking proxy, each enabled policy's validate is called with `ResourceValidationArgs`
and its config, violations are collected through `report_violation`, and an `UnknownValueError` becomes an
advisory "can't run during preview" note rather than a violation.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from catalog_policy import POLICIES
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

PACK_DIR = Path(__file__).resolve().parents[1]
REPO = PACK_DIR.parent
STACKS = ("dev", "prod")
MODES = ("update", "preview")
# The program's virtualenv, which can run it under mocks (make policy-test passes it; not resolved: a venv's
# python is a symlink to the base interpreter).
MAIN_PYTHON = os.path.abspath(os.environ.get("MAIN_PYTHON", REPO / ".venv" / "bin" / "python"))
BY_NAME = {policy.name: policy for policy in POLICIES}


@dataclass(frozen=True)
class Diagnostic:
    """One thing the pack said about one resource."""

    policy: str
    level: EnforcementLevel
    message: str
    urn: str
    unknown: bool = False  # "can't run during preview": a value it needed was unknown


Resource = dict[str, Any]  # {"type", "name", "urn", "props"} with props as on the wire
Config = Mapping[str, Any]  # a --policy-pack-config document


@cache
def _dumped() -> dict[str, dict[str, list[Resource]]]:
    # `make mutation` runs these tests once per mutant of the pack, whose rules do not change what the
    # program declares: it names a file to keep the declarations in between (POLICY_RESOURCES_CACHE).
    saved = Path(os.environ.get("POLICY_RESOURCES_CACHE", "") or os.devnull)
    if saved.is_file() and saved.stat().st_size:
        cached: dict[str, dict[str, list[Resource]]] = json.loads(saved.read_text())
        return cached
    result = subprocess.run(
        [MAIN_PYTHON, "-m", "tests.infra.policy_resources"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"dumping the program's resources failed:\n{result.stderr[-4000:]}")
    document: dict[str, dict[str, list[Resource]]] = json.loads(result.stdout)
    if os.environ.get("POLICY_RESOURCES_CACHE"):
        saved.write_text(result.stdout)
    return document


def resources(stack: str, mode: str = "update") -> list[Resource]:
    """A fresh copy of what the program declares for a committed stack (tests may change it)."""
    return copy.deepcopy(_dumped()[stack][mode])


def pack_config(stack: str) -> dict[str, Any]:
    """A stack's committed policy config, as `--policy-pack-config policy/config/<stack>.json` passes it."""
    document: dict[str, Any] = json.loads((PACK_DIR / "config" / f"{stack}.json").read_text())
    return document


def _level_and_config(
    policy: ResourceValidationPolicy, config: Config
) -> tuple[EnforcementLevel, dict[str, Any]]:
    """A policy's effective level and properties: its own entry, over `all`, over its declared level."""
    level = policy.enforcement_level or EnforcementLevel.MANDATORY  # the pack's default (__main__.py)
    if "all" in config:
        level = EnforcementLevel(config["all"])
    entry = config.get(policy.name, {})
    if isinstance(entry, str):
        return EnforcementLevel(entry), {}
    properties = dict(entry)
    if "enforcementLevel" in properties:
        level = EnforcementLevel(properties.pop("enforcementLevel"))
    return level, properties


def evaluate(policy: ResourceValidationPolicy, resource: Resource, config: Config) -> list[Diagnostic]:
    """What one policy says about one resource."""
    level, properties = _level_and_config(policy, config)
    if level == EnforcementLevel.DISABLED:
        return []
    found: list[Diagnostic] = []

    def report_violation(message: str, urn: str | None = None) -> None:
        found.append(
            Diagnostic(policy.name, level, f"{policy.description}\n{message}", urn or resource["urn"])
        )

    props = unknown_checking_proxy(deserialize_properties(resource["props"]))
    args = ResourceValidationArgs(
        resource["type"],
        props,
        resource["urn"],
        resource["name"],
        PolicyResourceOptions(
            protect=False,
            ignore_changes=[],
            delete_before_replace=None,
            aliases=[],
            additional_secret_outputs=[],
            custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
            parent=None,
        ),
        None,
        properties,
    )
    try:
        result = policy.validate(args, report_violation)
        assert result is None, "the pack's policies are synchronous"
    except UnknownValueError as error:
        found.append(
            Diagnostic(policy.name, EnforcementLevel.ADVISORY, error.message, resource["urn"], unknown=True)
        )
    return found


def analyze(resources: Iterable[Resource], config: Config) -> list[Diagnostic]:
    """What the whole pack says about these resources."""
    return [d for resource in resources for policy in POLICIES for d in evaluate(policy, resource, config)]


def violations(diagnostics: Iterable[Diagnostic], level: EnforcementLevel | None = None) -> list[Diagnostic]:
    """The real violations (not "can't run during preview"), of one enforcement level if given."""
    return [d for d in diagnostics if not d.unknown and (level is None or d.level == level)]


def first(found: list[Resource], type_: str) -> Resource:
    """The first resource of a type, to change in a test (a program may declare several, one per region)."""
    return next(r for r in found if r["type"] == type_)
