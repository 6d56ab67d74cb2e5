"""Markers every test directory shares: `slow` (see pyproject.toml) for what `make test-fast` skips."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that builds the container image (through the `image` fixture) as slow."""
    for item in items:
        if "image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
