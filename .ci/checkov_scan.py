"""Checkov over the Dockerfile and the GitHub workflows (`make lint`), with .checkov.yaml.

Checkov skips, without a word, every workflow that its bundled JSON schema rejects, and that schema is
older than three things GitHub documents and these workflows use: the `attestations` permission
(actions/attest), an expression as `cancel-in-progress` (its `oneOf` matches such a string twice, so it
fails) and a concurrency group's `queue`. This adds exactly those three, refuses to go on while any
workflow still fails the schema, so none can be skipped silently, then runs Checkov. Run it with
.venv-scan's python, from the repository root.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from checkov.common.parsers.yaml import loader
from checkov.github_actions.schemas import gha_workflow
from checkov.github_actions.utils import is_schema_valid
from checkov.main import Checkov

WORKFLOWS = Path(".github/workflows")
CONFIG = ".checkov.yaml"


def extend_schema(schema: dict[str, Any]) -> None:
    """Teach Checkov's workflow schema what GitHub accepts today (it runs checks in forks: patch first)."""
    definitions = schema["definitions"]
    level = {"$ref": "#/definitions/permissions-level"}
    definitions["permissions-event"]["properties"]["attestations"] = level
    concurrency = definitions["concurrency"]["properties"]
    cancel = concurrency["cancel-in-progress"]
    cancel["anyOf"] = cancel.pop("oneOf")
    # `queue: max` (GitHub, May 2026): more than one pending run in a group, none cancelled for the next.
    concurrency["queue"] = {"enum": ["single", "max"]}


def unscannable(workflows: Path) -> list[str]:
    """Workflows Checkov would still drop: its runner scans only those that pass the schema."""
    rejected = []
    for path in sorted(workflows.glob("*.y*ml")):
        documents = yaml.load_all(path.read_text(), Loader=loader.SafeLineLoaderGhaSchema)
        if not all(map(is_schema_valid, documents)):
            rejected.append(str(path))
    return rejected


def main() -> int:
    """Exit 1 naming any workflow Checkov cannot read, else Checkov's own exit status."""
    extend_schema(gha_workflow)
    rejected = unscannable(WORKFLOWS)
    if rejected:
        print(
            f"checkov would skip {', '.join(rejected)}: its GitHub workflow schema rejects them. Find "
            "the key with checkov.github_actions.schemas.gha_workflow and jsonschema, then fix the "
            "workflow or, if GitHub documents the syntax, extend_schema() in .ci/checkov_scan.py.",
            file=sys.stderr,
        )
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SyntaxWarning)
        return Checkov(argv=["--config-file", CONFIG]).run() or 0


if __name__ == "__main__":
    sys.exit(main())
