"""The command line: `python -m preflight --stack STACK [--deployer]`.

Exit 0 when every check passes, 1 with problems, 2 on a usage error (an unknown stack, a missing stack file,
no credentials).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google.auth
import pulumi
from google.auth.exceptions import DefaultCredentialsError

from preflight.checks import Clients, Finding, connect, run_checks
from preflight.program import REPO_ROOT
from preflight.stack import StackFileError, load_stack

OK, PROBLEMS, USAGE = 0, 1, 2
# A stack name as `pulumi stack init` takes it, without an organization (the file is Pulumi.<name>.yaml).
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


@dataclass(frozen=True)
class Arguments:
    """What the command line asked for."""

    stack: str
    deployer: bool


def parse(argv: Sequence[str]) -> Arguments:
    """The arguments; argparse exits with 2 and its usage on anything else."""
    parser = argparse.ArgumentParser(
        prog="python -m preflight",
        description="Check, with your application default credentials, what the stack's project and its "
        "organization would refuse on `pulumi up`: billing, organization policies, your permissions.",
    )
    parser.add_argument("--stack", required=True, help="the stack to check: reads Pulumi.<stack>.yaml")
    parser.add_argument(
        "--deployer",
        action="store_true",
        help="check the permissions of CI's deployer (what a CI `up` changes), not those of a first `up`",
    )
    args = parser.parse_args(list(argv))
    if not _STACK_NAME.fullmatch(args.stack):
        parser.error(f"unknown stack {args.stack!r}: a stack name is letters, digits, '_', '.' or '-'")
    return Arguments(stack=args.stack, deployer=args.deployer)


def _default_clients() -> Clients:
    credentials, _ = google.auth.default(scopes=_SCOPES)
    return connect(credentials)


def main(argv: Sequence[str], *, root: Path = REPO_ROOT, clients: Clients | None = None) -> int:
    """Run every check for the stack and print one line each; `clients` replaces Google's endpoints."""
    args = parse(argv)
    try:
        stack = load_stack(args.stack, root)
    except StackFileError as error:
        print(f"preflight: {error}", file=sys.stderr)
        return USAGE
    except pulumi.RunError as error:
        # The program's own ConfigError: the value `pulumi up` would stop at, in the program's words.
        print(Finding("config", False, str(error)).line())
        return PROBLEMS
    if clients is None:
        try:
            clients = _default_clients()
        except DefaultCredentialsError:
            print(
                "preflight: no Google credentials: run `gcloud auth application-default login` "
                "(in CI, google-github-actions/auth provides them)",
                file=sys.stderr,
            )
            return USAGE
    findings = run_checks(clients, stack, deployer=args.deployer)
    for finding in findings:
        print(finding.line())
    problems = sum(not finding.ok for finding in findings)
    project = stack.config.project
    if problems:
        print(f"preflight {args.stack} ({project}): {problems} problem(s); `pulumi up` would fail on each")
        return PROBLEMS
    print(f"preflight {args.stack} ({project}): every check passed")
    return OK
