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

from release import cloudrun
from release.cloudrun import CloudRun, CloudRunError
from release.traffic import Route
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


LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
SUCCEEDED = run_v2.Condition(state=run_v2.Condition.State.CONDITION_SUCCEEDED)
PATH = REF.path


def settled(generation: int = 2, **fields: Any) -> run_v2.Service:
    """The service once Cloud Run has acted on its latest change (`generation`)."""
    defaults: dict[str, Any] = {
        "name": PATH,
        "etag": f'"{generation}"',
        "generation": generation,
        "observed_generation": generation,
        "terminal_condition": SUCCEEDED,
    }
    return run_v2.Service(**{**defaults, **fields})


def test_a_latest_target_is_pinned_to_the_latest_ready_revision() -> None:
    service = run_v2.Service(
        latest_ready_revision="catalog-grpc-00007-abc",
        traffic=[
            run_v2.TrafficTarget(type_=LATEST, percent=90),
            run_v2.TrafficTarget(
                type_=BY_REVISION, revision="catalog-grpc-00005-old", percent=10, tag="stable"
            ),
        ],
    )
    assert cloudrun.routes_of(service) == [
        Route("catalog-grpc-00007-abc", 90, ""),
        Route("catalog-grpc-00005-old", 10, "stable"),
    ]


@pytest.mark.parametrize(
    "uri",
    [
        "https://catalog-grpc-123456789012.us-central1.run.app",
        "https://catalog-grpc-123456789012.us-central1.run.app/",
    ],
)
def test_a_tag_url_cloud_run_has_not_listed_yet_is_derived_from_the_services(uri: str) -> None:
    service = run_v2.Service(uri=uri, traffic_statuses=[run_v2.TrafficTargetStatus(tag="pr-7", uri="")])
    assert cloudrun.tag_uri(service, "pr-7") == "https://pr-7---catalog-grpc-123456789012.us-central1.run.app"


def test_every_call_carries_the_deadline() -> None:
    client = ScriptedClient(services=[settled()])
    run = CloudRun(client, REF, timeout=12.5)  # type: ignore[arg-type]
    run.set_traffic(run.get(), [Route("catalog-grpc-a", 100, "stable")])
    assert [timeout for _, timeout in client.gets] == [12.5, 12.5]
    assert [timeout for _, timeout in client.updates] == [12.5]


@pytest.mark.parametrize("write", ["traffic", "template"])
def test_each_write_carries_the_etag_it_was_computed_from(write: str) -> None:
    """Without it a `pulumi up` in between would be undone silently instead of failing the write."""
    current = settled(generation=4)
    client = ScriptedClient(services=[settled(generation=5)])
    run = CloudRun(client, REF)  # type: ignore[arg-type]
    if write == "traffic":
        run.set_traffic(current, [Route("catalog-grpc-a", 100, "stable")])
    else:
        run.set_template(current, run_v2.RevisionTemplate(revision="catalog-grpc-b"))
    ((request, _),) = client.updates
    assert request.service.etag == '"4"'
    assert list(request.update_mask.paths) == [write]


def write(run: CloudRun, template: str | None) -> run_v2.Service:
    """A traffic write (`template` None), or a template write naming that revision ("" for none)."""
    if template is None:
        return run.set_traffic(settled(), [Route("catalog-grpc-a", 100, "stable")])
    return run.set_template(settled(), run_v2.RevisionTemplate(revision=template))


@pytest.mark.parametrize(
    ("error", "template", "what"),
    [
        (api_exceptions.Aborted, None, "setting traffic"),
        (api_exceptions.FailedPrecondition, None, "setting traffic"),
        (api_exceptions.Aborted, "catalog-grpc-b", "deploying revision catalog-grpc-b"),
        (api_exceptions.FailedPrecondition, "", "deploying revision (unnamed)"),
    ],
)
def test_a_write_refused_because_the_service_changed_says_to_run_again(
    error: type, template: str | None, what: str
) -> None:
    client = RefusingClient(services=[settled()], refusal=error("etag mismatch"))
    run = CloudRun(client, REF)  # type: ignore[arg-type]
    with pytest.raises(CloudRunError) as raised:
        write(run, template)
    assert str(raised.value) == (
        f"{what} on {PATH}: the service changed while this ran (etag mismatch); "
        "nothing was applied, run it again"
    )


@dataclass
class RefusingClient(ScriptedClient):
    """A client whose writes are refused with `refusal`."""

    refusal: Exception | None = None

    def update_service(self, *, request: run_v2.UpdateServiceRequest, timeout: Any) -> None:
        assert self.refusal is not None
        raise self.refusal


@pytest.mark.parametrize(
    ("revision", "condition", "line"),
    [
        (
            "catalog-grpc-b",
            "Revision 'catalog-grpc-b' is not ready.",
            "Revision 'catalog-grpc-b' is not ready.",
        ),
        ("", "", "CONDITION_FAILED"),
    ],
)
def test_a_rollout_that_fails_names_the_revision_and_cloud_runs_reason(
    revision: str, condition: str, line: str
) -> None:
    failed = run_v2.Condition(state=run_v2.Condition.State.CONDITION_FAILED, message=condition)
    client = ScriptedClient(services=[settled(terminal_condition=failed)])
    run = CloudRun(client, REF)  # type: ignore[arg-type]
    with pytest.raises(CloudRunError) as raised:
        run.set_template(settled(), run_v2.RevisionTemplate(revision=revision))
    assert str(raised.value) == f"deploying revision {revision or '(unnamed)'} on {PATH}: {line}"


@pytest.mark.parametrize(
    "pending",
    [
        {"reconciling": True},  # Cloud Run still working on it
        {"observed_generation": 1},  # not yet seen the change at all
    ],
)
def test_a_write_waits_until_cloud_run_has_acted_on_it(pending: dict[str, Any]) -> None:
    done = settled(latest_ready_revision="catalog-grpc-b")
    client = ScriptedClient(services=[settled(**pending), done])
    run = CloudRun(client, REF, poll_seconds=0)  # type: ignore[arg-type]
    assert run.set_traffic(settled(), [Route("catalog-grpc-b", 100, "stable")]) == done
    assert len(client.gets) == 2


@dataclass
class Clock:
    """release.cloudrun's `time`: monotonic time that passes only in sleep."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("poll", "sleeps"),
    [
        (5.0, 2),  # the third read is at the deadline: it gives up there
        (4.9, 3),  # the third read is just before it: one more wait
        (5.1, 2),  # the second wait goes past it
    ],
)
def test_a_rollout_never_done_gives_up_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, poll: float, sleeps: int
) -> None:
    clock = Clock()
    monkeypatch.setattr(cloudrun, "time", clock)
    client = ScriptedClient(services=[settled(reconciling=True)])
    run = CloudRun(client, REF, timeout=10, poll_seconds=poll)  # type: ignore[arg-type]
    with pytest.raises(
        CloudRunError, match=f"setting traffic on {PATH}: not done after 10 s; look at its revisions"
    ):
        run.set_traffic(settled(), [Route("catalog-grpc-b", 100, "stable")])
    assert clock.slept == [poll] * sleeps
