"""The image under test, built once per session, and a summary of its size at the end of the run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from .images import (
    BASE_IMAGE,
    REPO,
    SBOM_PATH,
    SUMMARY,
    build_image,
    ensure_base_image,
    image_exists,
    image_size,
    missing_prerequisites,
    remove_image,
    write_sbom,
)


@pytest.fixture(scope="session")
def image(
    request: pytest.FixtureRequest, record_testsuite_property: Callable[[str, object], None]
) -> Iterator[str]:
    """The repository's Dockerfile built on the local Debian base; removed after the session."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(f"cannot build the image here: {reason}")
    summary = request.config.stash.setdefault(SUMMARY, [])

    started = time.monotonic()
    cached = image_exists(BASE_IMAGE)
    base = ensure_base_image()
    summary.append(
        f"base {base}: {'reused' if cached else 'debootstrapped'} in {time.monotonic() - started:.0f} s"
    )

    tag = f"localhost/catalog-server:test-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    SBOM_PATH.unlink(missing_ok=True)  # what a test reads is this build's, never an older one
    try:
        build_image(tag, base)
        total, base_size = image_size(tag), image_size(base)
        summary.append(f"image built in {time.monotonic() - started:.0f} s")
        # The base here is Debian's, not python:3.12-slim, so the layers the Dockerfile adds are the
        # comparable number; the total is what this test ran.
        summary.append(
            f"image size: {_megabytes(total)} on this base, of which the Dockerfile adds "
            f"{_megabytes(total - base_size)}"
        )
        record_testsuite_property("image_size_bytes", total)  # for JUnit XML readers (--junitxml)
        record_testsuite_property("image_added_bytes", total - base_size)
        # The bill of materials of exactly this build, beside it: what shipped, for audits and scanners.
        started = time.monotonic()
        components = write_sbom(tag, SBOM_PATH).get("components", [])
        summary.append(
            f"SBOM: {SBOM_PATH.relative_to(REPO)} ({len(components)} components) in "
            f"{time.monotonic() - started:.0f} s"
        )
        yield tag
    finally:
        remove_image(tag)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print what the image fixture measured, whether or not -s is given."""
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("container image")
        for line in lines:
            terminalreporter.write_line(line)
