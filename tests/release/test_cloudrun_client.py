"""release.cloudrun against what the Admin API can answer: each failure a CloudRunError naming what was tried.

The drills go through the fake Cloud Run; these also use a client that answers with exactly the error or the
sequence of states a case needs (Cloud Run unavailable until the retries run out, a rollout still going on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud import run_v2

from release.cloudrun import CloudRun, CloudRunError
from tests.release.conftest import REF


@dataclass
class ScriptedClient:
    """Stands for ServicesClient: answers each get with the next of `services` (or raises `error`)."""

    services: Sequence[run_v2.Service] = ()
    error: Exception | None = None
    gets: list[tuple[str, Any]] = field(default_factory=list)
    updates: list[tuple[run_v2.UpdateServiceRequest, Any]] = field(default_factory=list)

    def get_service(self, *, name: str, timeout: Any) -> run_v2.Service:
        self.gets.append((name, timeout))
        if self.error is not None:
            raise self.error
        return self.services[min(len(self.gets), len(self.services)) - 1]

    def update_service(self, *, request: run_v2.UpdateServiceRequest, timeout: Any) -> None:
        self.updates.append((request, timeout))


def test_cloud_run_unavailable_until_the_retries_run_out_is_a_cloud_run_error() -> None:
    """The client raises RetryError then, no GoogleAPICallError: a release must still roll back, not crash."""
    unavailable = api_exceptions.ServiceUnavailable("connection reset")  # type: ignore[no-untyped-call]
    client = ScriptedClient(error=api_exceptions.RetryError("Timeout of 10.0s exceeded", unavailable))  # type: ignore[no-untyped-call]
    run = CloudRun(client, REF)  # type: ignore[arg-type]
    with pytest.raises(CloudRunError) as error:
        run.get()
    assert str(error.value) == (
        f"reading {REF.path}: Timeout of 10.0s exceeded, last exception: 503 connection reset"
    )
