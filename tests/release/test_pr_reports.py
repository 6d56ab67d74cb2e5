"""What a pull request's deploy tells its checks and its reader: the candidate each check judges, every line.

The drills in test_pr run real servers behind the tag; these use checks that record what they are given, so
a candidate missing its revision or region, or a failure reported as success, shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.release import pr_tag
from release import pr
from release.cloudrun import CloudRun
from release.gates import Candidate, Verdict
from release.rollout import Outcome
from tests.release.conftest import REF

IMAGE = "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:" + "6" * 64
URI = "https://pr-42---catalog-grpc-123456789012.us-central1.run.app"


@dataclass
class Recording:
    """A check that keeps each candidate it is asked about and fails with `reason` (None: it passes)."""

    name: str
    reason: str | None = None
    seen: list[Candidate] = field(default_factory=list)

    def check(self, candidate: Candidate) -> Verdict:
        self.seen.append(candidate)
        return Verdict(passed=False, line=self.reason) if self.reason is not None else Verdict(passed=True)


def test_each_check_judges_the_pull_requests_revision_in_the_home_region(run: CloudRun) -> None:
    ready, smoke = Recording("ready"), Recording("smoke")
    lines: list[str] = []
    outcome = pr.deploy(run, 42, IMAGE, [ready, smoke], log=lines.append)
    revision = pr.pr_revision_name(REF.service, 42, IMAGE)
    expected = Candidate(service=REF.service, revision=revision, uri=URI, region=REF.region)
    assert ready.seen == [expected]
    assert smoke.seen == [expected]
    assert outcome == Outcome(True, URI)
    assert lines == [
        f"deploying {IMAGE} as {revision}, tag {pr_tag(42)}, no traffic",
        "  ready: ok",
        "  smoke: ok",
    ]


def test_a_failed_check_is_a_failure_naming_it_and_the_later_checks_do_not_run(run: CloudRun) -> None:
    ready, smoke = Recording("ready", reason="NOT_SERVING after 120 s"), Recording("smoke")
    lines: list[str] = []
    outcome = pr.deploy(run, 42, IMAGE, [ready, smoke], log=lines.append)
    assert outcome.ok is False
    assert outcome.line == f"pull request 42: check ready failed on {URI}: NOT_SERVING after 120 s"
    assert smoke.seen == []
    assert lines == [lines[0]]  # no "ok" for a check that failed


def test_removing_a_tag_says_which_and_from_where(run: CloudRun) -> None:
    assert pr.deploy(run, 42, IMAGE, [], log=lambda _: None).ok
    assert pr.remove(run, 42) == Outcome(True, f"removed tag pr-42 from {REF.service}")
    assert pr.remove(run, 42) == Outcome(True, f"no tag pr-42 on {REF.service}: nothing to remove")
