"""Every infra test starts and ends with a clean Pulumi runtime: its state is global to the process."""

from collections.abc import Iterator

import pytest

from tests.infra.harness import reset_pulumi


@pytest.fixture(autouse=True)
def _clean_pulumi_runtime() -> Iterator[None]:
    reset_pulumi()
    yield
    reset_pulumi()
