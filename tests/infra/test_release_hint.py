"""`pulumi up` alone says that the new revision waits at 0% of the traffic, and how to release it."""

from __future__ import annotations

import pulumi
import pytest

from tests.infra.harness import run_program, stack_config


def test_up_says_the_new_revision_waits_and_how_to_release_it(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *args, **kwargs: said.append(message))
    run_program(stack_config("prod"), stack="prod")
    hints = [line for line in said if "0% of the traffic" in line]
    assert len(hints) == 1
    assert "pulumi stack output release --json --stack prod | python -m release promote --plan -" in hints[0]
    assert "make deploy STACK=prod" in hints[0]
