"""How the server reads a switch from its environment: the policy pack reads a service's env vars alike."""

from __future__ import annotations

# The words a boolean variable takes, in any case and with spaces around; the server refuses anything else.
BOOLEAN_WORDS = {"true": True, "1": True, "false": False, "0": False}


def read_bool(raw: str) -> bool | None:
    """What the server makes of a boolean variable's value; None for a value it refuses or leaves unset."""
    return BOOLEAN_WORDS.get(raw.strip().lower())
