"""A stack's settings as `pulumi up` hands them to the program, validated by the program's own `load()`.

The CLI merges Pulumi.yaml's config (defaults of the project's keys, values of provider keys) under the stack
file's and passes every value as a string (JSON for arrays and objects); the program then reads them with
`pulumi.Config` and `catalog_infra.config.load()`. This module does the merge the CLI does and nothing more:
the validation is the program's, so a value the program refuses is refused here with the program's words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings

from preflight.program import REPO_ROOT
from preflight.program import config as program_config


class StackFileError(Exception):
    """The stack's file is missing or is not a Pulumi stack file; the message says which and what to do."""


def wire_value(value: object) -> str:
    """A YAML config value as the Pulumi CLI hands it to the program.

    Strings, integers and booleans as their text (Go's %v), anything else as JSON (pulumi/pulumi
    pkg/workspace/config.go, createConfigValue).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def project_file(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Pulumi.yaml, parsed."""
    # With libyaml's parser: the pure-Python one took a fifth of each run of the program in the tests.
    document: dict[str, Any] = yaml.load((root / "Pulumi.yaml").read_text(), Loader=yaml.CSafeLoader)
    return document


def project_defaults(root: Path = REPO_ROOT) -> dict[str, object]:
    """What Pulumi.yaml gives a stack that sets nothing: namespaced keys, each with its default or value."""
    document = project_file(root)
    name = document["name"]
    defaults: dict[str, object] = {}
    for key, declaration in (document.get("config") or {}).items():
        full_key = key if ":" in key else f"{name}:{key}"
        if not isinstance(declaration, dict):
            defaults[full_key] = declaration  # the short form: a bare value
        elif "value" in declaration:
            defaults[full_key] = declaration["value"]
        elif "default" in declaration:
            defaults[full_key] = declaration["default"]
    return defaults


def with_project_config(config: Mapping[str, object], root: Path = REPO_ROOT) -> dict[str, object]:
    """The stack's config with Pulumi.yaml's defaults and values under it, as the CLI merges them."""
    return {**project_defaults(root), **config}


def stack_file(stack: str, root: Path = REPO_ROOT) -> dict[str, object]:
    """The config section of Pulumi.<stack>.yaml; StackFileError when there is no such file."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        found = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml")
        )
        raise StackFileError(
            f"no stack file {path.name} in {root}: stacks here are {', '.join(found) or 'none'} "
            f"(`pulumi stack init {stack}` and commit its Pulumi.{stack}.yaml first)"
        )
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: `config:` must be a mapping of keys to values")
    return config


@dataclass(frozen=True)
class Stack:
    """A stack's validated settings: the program's StackConfig and ObservabilityConfig."""

    name: str
    config: program_config.StackConfig
    observability: program_config.ObservabilityConfig


def load_stack(stack: str, root: Path = REPO_ROOT) -> Stack:
    """Read and validate the stack as `pulumi up` would; the program's ConfigError on a value it refuses.

    `root` holds Pulumi.yaml and the stack files; the rules are always this checkout's program's.
    """
    return validate(stack, with_project_config(stack_file(stack, root), root), project_file(root)["name"])


def validate(stack: str, config: Mapping[str, object], project: str) -> Stack:
    """The program's own validation of a merged config (Pulumi.yaml's under the stack's), as `up` runs it."""
    settings._set_project(project)
    settings._set_stack(stack)
    pulumi.runtime.set_all_config({key: wire_value(value) for key, value in config.items()})
    try:
        stack_config = program_config.load()
        return Stack(stack, stack_config, program_config.load_observability(stack_config))
    finally:
        pulumi.runtime.set_all_config({})


# The project's own config keys as the program names them in its errors ("catalog-grpc:ingress").
KEY = f"{project_file()['name']}:"
