"""Every release command leaves the service's IAM policy as it found it: members it does not own included.

A service's policy says who may call it (roles/run.invoker: the stack's callers, a partner's account) and
who may change it (the pull-request deployer's roles/run.developer, an operator's run.admin). The release
moves traffic and tags only; a command that wrote the policy (to let the checks call a tag, say) would
replace it whole, and callers would be refused until the next `pulumi up`. The fake Cloud Run holds such a
policy and records every SetIamPolicy; each command runs through the command line, against the real client.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout

from google.iam.v1 import iam_policy_pb2, policy_pb2

from contract.release import STABLE
from release import cli
from release.cloudrun import connect
from release.pr import pr_revision_name
from tests.release.conftest import CALLS_METRIC, NEW, OLD, REF, Drill
from tests.release.fake_run import FakeCloudRun

IMAGE = "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc@sha256:" + "5" * 64
# Members the release does not own, in the roles a Cloud Run service's policy holds.
OTHERS = {
    "roles/run.invoker": [
        "group:catalog-clients@example.com",
        "serviceAccount:partner@other.iam.gserviceaccount.com",
    ],
    "roles/run.developer": ["serviceAccount:catalog-grpc-pr-rev@my-gcp-project-prod.iam.gserviceaccount.com"],
    "roles/run.admin": ["user:operator@example.com"],
}
PLAN = {
    "project": REF.project,
    "region": REF.region,
    "service": REF.service,
    "steps": [100],
    "pauseSeconds": 0,
    "callsMetric": CALLS_METRIC,
    "maxErrorRatio": 0.01,
    "minCalls": 0,
    "ingestionDelaySeconds": 0,
}


def others_policy() -> policy_pb2.Policy:
    return policy_pb2.Policy(
        version=1,
        etag=b"7",
        bindings=[policy_pb2.Binding(role=role, members=members) for role, members in OTHERS.items()],
    )


def run_command(drill: Drill, *argv: str) -> tuple[int, str]:
    err = io.StringIO()
    endpoints = ["--api-endpoint", drill.api, "--monitoring-endpoint", drill.monitoring_api, "--insecure-api"]
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = cli.main(
            [*argv, "--plan", "-", *endpoints], channels=drill.edge, stdin=io.StringIO(json.dumps(PLAN))
        )
    return code, err.getvalue()


def test_no_command_writes_the_services_iam_policy(drill: Drill) -> None:
    fake = drill.fake
    fake.iam_policies[REF.path] = others_policy()
    pr_revision = pr_revision_name(REF.service, 12, IMAGE)
    drill.edge.servers = {revision: drill.servers(drill.catalog) for revision in (OLD, NEW, pr_revision)}
    drill.monitoring.record(time.time() - 1, NEW, "OK", 50)
    commands = [
        ("promote",),
        ("rollback",),
        ("pr-deploy", "--pr", "12", "--image", IMAGE),
        ("pr-remove", "--pr", "12"),
    ]
    stables = []
    for command in commands:
        code, err = run_command(drill, *command)
        assert code == cli.EXIT_OK, f"{command[0]}: {err}"
        assert fake.iam_writes == [], command[0]
        assert fake.iam_policies[REF.path] == others_policy(), command[0]
        stables.append(
            (fake.revision_of(REF.path, STABLE), "pr-12" in {r.tag for r in fake.routes(REF.path)})
        )
    # Each command did its work: a release and its rollback, a pull request's tag added and removed.
    assert stables == [(NEW, False), (OLD, False), (OLD, True), (OLD, False)]


def test_the_fake_shows_a_policy_write_that_drops_others(drill: Drill) -> None:
    """What the test above would see if a command granted something: the whole policy replaced."""
    fake: FakeCloudRun = drill.fake
    fake.iam_policies[REF.path] = others_policy()
    client = connect(drill.api, insecure=True)
    current = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=REF.path))
    assert current == others_policy()
    own = policy_pb2.Policy(
        etag=current.etag, bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["allUsers"])]
    )
    client.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=REF.path, policy=own))
    assert len(fake.iam_writes) == 1
    after = fake.iam_policies[REF.path]
    assert [(b.role, list(b.members)) for b in after.bindings] == [("roles/run.invoker", ["allUsers"])]
    assert after.etag != current.etag
