"""Every infra test starts and ends with a clean Pulumi runtime: its state is global to the process.

The tests that only read what a committed stack declares share one run of the program per stack (`stack`,
`deployment`); the session fails if one of them changed it.
"""

from collections.abc import Iterator

import pytest

from tests.infra.harness import STACKS, Deployment, changed_recordings, recorded, reset_pulumi


@pytest.fixture(autouse=True)
def _clean_pulumi_runtime() -> Iterator[None]:
    reset_pulumi()
    yield
    reset_pulumi()


@pytest.fixture(scope="session", autouse=True)
def _recordings_stay_as_recorded() -> Iterator[None]:
    yield
    assert not changed_recordings(), f"tests changed the shared deployments of {changed_recordings()}"


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def deployment(stack: str) -> Deployment:
    """What the committed stack declares, shared: read it, do not change it."""
    return recorded(stack)
