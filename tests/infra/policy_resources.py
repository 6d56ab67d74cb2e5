"""Print as JSON what the program declares for each committed stack, as the engine hands it to a pack.

The policy pack's tests (policy/tests) run in the pack's own virtualenv, whose protobuf cannot load the
program's SDKs; they run this module with the program's venv (`python -m tests.infra.policy_resources`) and
read its output. For each stack, "update" is `pulumi up` (every value known) and "preview" is a first
`pulumi preview`: the mocks return no computed outputs, so whatever depends on one arrives as the engine's
unknown sentinel, exactly as a pack sees it then.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pulumi
from google.protobuf import json_format

from tests.infra.harness import STACKS, Mocks, RecordingMonitor, reset_pulumi, run_program, stack_config


class PreviewMocks(Mocks):
    """A provider's preview of a create: the inputs come back, computed outputs stay unknown."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return "", dict(args.inputs)


class WireRecordingMonitor(RecordingMonitor):
    """Also keep each custom resource's inputs as sent: the protobuf Struct, camelCase, unknowns and all."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.wire: list[dict[str, Any]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.custom and request.type != "pulumi:pulumi:Stack":
            self.wire.append(
                {
                    "type": request.type,
                    "name": request.name,
                    "urn": self.make_urn(request.parent, request.type, request.name),
                    "props": json_format.MessageToDict(request.object),
                }
            )
        return response


def declared(stack: str, preview: bool) -> list[dict[str, Any]]:
    """The resources one run of the program for `stack` sends to the engine."""
    monitor = WireRecordingMonitor(PreviewMocks() if preview else Mocks())
    try:
        run_program(stack_config(stack), stack=stack, monitor=monitor, preview=preview)
    finally:
        reset_pulumi()
    return monitor.wire


def main() -> None:
    """Write {stack: {"update": [...], "preview": [...]}} to stdout."""
    document = {
        stack: {mode: declared(stack, preview=mode == "preview") for mode in ("update", "preview")}
        for stack in STACKS
    }
    json.dump(document, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
