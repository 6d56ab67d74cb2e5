"""The checks: billing, organization policies and permissions, asked of Google's APIs as the caller.

Each check returns findings; a problem names the check, the setting it conflicts with and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from google.auth.credentials import Credentials

with warnings.catch_warnings():
    # Google's client libraries may warn at import about the installed grpcio line, pinned on purpose.
    warnings.simplefilter("ignore", FutureWarning)
    from google.api_core import exceptions as api_exceptions
    from google.cloud import billing_v1, orgpolicy_v2, resourcemanager_v3

from preflight import permissions
from preflight.policies import CONSTRAINTS, Constraint, Verdict, describe
from preflight.stack import Stack

# Seconds each call may take (retries included) before the check reports the API as unreachable.
TIMEOUT = 30.0
# testIamPermissions answers for at most 100 permissions per call.
PERMISSIONS_PER_CALL = 100
BILLING = "billing"
PERMISSIONS = "permissions"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check of one setting; `text` says what was found and, for a problem, the fix."""

    check: str
    ok: bool
    text: str

    def line(self) -> str:
        """One line of output: ok or PROBLEM, the check, what it found."""
        return f"{'ok' if self.ok else 'PROBLEM':7} {self.check}: {self.text}"


@dataclass(frozen=True)
class Clients:
    """The three APIs preflight reads."""

    billing: billing_v1.CloudBillingClient
    org_policy: orgpolicy_v2.OrgPolicyClient
    projects: resourcemanager_v3.ProjectsClient


def connect(credentials: Credentials) -> Clients:
    """Clients of Google's endpoints with these credentials (the caller's application default credentials)."""
    return Clients(
        billing=billing_v1.CloudBillingClient(credentials=credentials),
        org_policy=orgpolicy_v2.OrgPolicyClient(credentials=credentials),
        projects=resourcemanager_v3.ProjectsClient(credentials=credentials),
    )


def _failed(error: api_exceptions.GoogleAPICallError) -> str:
    code = error.grpc_status_code.name if error.grpc_status_code is not None else str(error.code)
    return f"{code}: {error.message}"


def check_billing(clients: Clients, project: str) -> Finding:
    """The project is linked to an open billing account: enabling any API needs one."""
    try:
        info = clients.billing.get_project_billing_info(name=f"projects/{project}", timeout=TIMEOUT)
    except api_exceptions.GoogleAPICallError as error:
        return Finding(
            BILLING,
            False,
            f"cannot read project {project}'s billing ({_failed(error)}); fix: the caller needs "
            f"resourcemanager.projects.get on {project} (roles/viewer), and the Cloud Billing API enabled in "
            "its quota project",
        )
    if info.billing_enabled:
        return Finding(BILLING, True, f"project {project} is linked to {info.billing_account_name}")
    return Finding(
        BILLING,
        False,
        f"project {project} has no open billing account, so `up` cannot enable a single API; fix: "
        f"`gcloud billing projects link {project} --billing-account ACCOUNT_ID` "
        "(accounts: `gcloud billing accounts list`)",
    )


def check_constraint(clients: Clients, stack: Stack, constraint: Constraint) -> Iterator[Finding]:
    """Each setting of the stack that the constraint governs, against the project's effective policy."""
    project = stack.config.project
    check = f"constraints/{constraint.name}"
    uses = constraint.uses(stack.config)
    if not uses:
        yield Finding(check, True, "the stack sets nothing it governs")
        return
    try:
        policy = clients.org_policy.get_effective_policy(
            name=f"projects/{project}/policies/{constraint.name}", timeout=TIMEOUT
        )
    except api_exceptions.NotFound:
        # No such constraint where the project lives: there is nothing to enforce.
        yield Finding(check, True, f"not defined for project {project}")
        return
    except api_exceptions.GoogleAPICallError as error:
        yield Finding(
            check,
            False,
            f"cannot read project {project}'s effective policy ({_failed(error)}); fix: the caller needs "
            f"orgpolicy.policy.get on {project} (roles/orgpolicy.policyViewer)",
        )
        return
    rules = list(policy.spec.rules)
    for use in uses:
        verdict = constraint.verdict(rules, use)
        if verdict is Verdict.ALLOWED:
            yield Finding(check, True, f"allows {use.setting}")
        elif verdict is Verdict.REFUSED:
            yield Finding(check, False, f"{describe(rules)}: refuses {use.setting}; fix: {constraint.fix}")
        else:
            yield Finding(
                check,
                False,
                f"{describe(rules)}: cannot tell whether it allows {use.setting} (a value group preflight "
                f"does not expand); fix: check with `gcloud org-policies describe {constraint.name} "
                f"--project {project} --effective`, then {constraint.fix}",
            )


def check_permissions(clients: Clients, stack: Stack, *, deployer: bool) -> Iterator[Finding]:
    """The caller holds, on the project, every permission `up` uses for the resources this stack declares."""
    project = stack.config.project
    needed = permissions.needed(stack, deployer=deployer)
    asked = sorted(needed)
    granted: set[str] = set()
    try:
        for start in range(0, len(asked), PERMISSIONS_PER_CALL):
            response = clients.projects.test_iam_permissions(
                request={
                    "resource": f"projects/{project}",
                    "permissions": asked[start : start + PERMISSIONS_PER_CALL],
                },
                timeout=TIMEOUT,
            )
            granted.update(response.permissions)
    except api_exceptions.GoogleAPICallError as error:
        yield Finding(
            PERMISSIONS,
            False,
            f"cannot test the caller's permissions on project {project} ({_failed(error)}); fix: check the "
            "project id (gcp:project) and that the caller can see the project",
        )
        return
    missing = [permission for permission in asked if permission not in granted]
    if not missing:
        who = "CI's deployer" if deployer else "the caller"
        yield Finding(PERMISSIONS, True, f"{who} holds all {len(asked)} permissions this stack's `up` uses")
        return
    for row in permissions.declared(stack):
        lacking = [permission for permission in missing if row in needed[permission]]
        if not lacking:
            continue
        fix = (
            f"add a role that holds them to CI's deployer on {project} (DEPLOYER_PROJECT_ROLES in "
            "infra/catalog_infra/ci_identity.py), then a person's `up`"
            if deployer
            else f"grant the caller {' and '.join(row.roles_for(lacking))} on {project} "
            "(or roles/owner: docs/deploying.md)"
        )
        yield Finding(
            PERMISSIONS, False, f"{row.type} needs {', '.join(lacking)}, which the caller lacks; fix: {fix}"
        )


def run_checks(clients: Clients, stack: Stack, *, deployer: bool = False) -> list[Finding]:
    """Every check, in order: billing, each organization policy constraint, the caller's permissions."""
    findings = [check_billing(clients, stack.config.project)]
    for constraint in CONSTRAINTS:
        findings.extend(check_constraint(clients, stack, constraint))
    findings.extend(check_permissions(clients, stack, deployer=deployer))
    return findings
