"""Ship a change to a stack in one command (`make deploy STACK=dev`): check, deploy, release, smoke-check.

`pulumi up` alone leaves the new revision at 0% of the traffic, tagged candidate: callers get it only once
`python -m release promote` has moved the traffic in the stack's steps. This runs the four steps in order,
stops at the first that fails and names it:

1. preflight: `python -m preflight --stack NAME`: billing, organization policies and permissions;
2. up: `pulumi up` with the policy pack and the stack's policy config (policy/config/NAME.json);
3. release: the stack's `release` output handed to `python -m release promote --plan -`;
4. smoke: `python -m client --stack NAME smoke` (with `--id-token` for a private stack).

`make preview STACK=NAME` is the `pulumi preview` of step 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY_PACK = "policy"


class StepError(Exception):
    """A step of the deploy failed; the message says which and what to do."""


@dataclass(frozen=True)
class Step:
    """One step of the deploy: the name a failure is reported under, and what it runs."""

    name: str
    run: Callable[[], None]


def policy_config(stack: str) -> Path:
    """The stack's policy pack config, which must exist: every preview and deploy runs the pack."""
    config = ROOT / POLICY_PACK / "config" / f"{_short_name(stack)}.json"
    if not config.is_file():
        raise StepError(
            f"no policy config for stack {stack!r}: create {config.relative_to(ROOT)} "
            f"(copy policy/config/dev.json and adjust it)"
        )
    return config


def _short_name(stack: str) -> str:
    """`dev` for `dev` and for `my-org/dev` or `my-org/catalog-grpc/dev` (Pulumi Cloud's longer forms)."""
    return stack.rsplit("/", 1)[-1]


def pulumi_command(verb: str, stack: str) -> list[str]:
    """`pulumi up` or `pulumi preview` of the stack, with the policy pack and its config for that stack."""
    config = policy_config(stack).relative_to(ROOT)
    command = ["pulumi", verb, "--stack", stack, "--policy-pack", POLICY_PACK]
    command += ["--policy-pack-config", str(config)]
    return [*command, "--yes"] if verb == "up" else command


def _run(command: Sequence[str], step: str, stdin: str | None = None) -> None:
    """Run one command with its output shown, feeding it `stdin` if given."""
    if shutil.which(command[0]) is None:
        raise StepError(f"`{command[0]}` is not on PATH")
    print(f"==> {step}: {shlex.join(command)}", file=sys.stderr, flush=True)
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    result = subprocess.run(command, cwd=ROOT, env=env, input=stdin, text=True, check=False)
    if result.returncode != 0:
        raise StepError(f"`{shlex.join(command)}` exited {result.returncode}")


def _capture(command: Sequence[str], step: str) -> str:
    """Run a command whose stdout the next command reads; its stderr goes to the terminal."""
    if shutil.which(command[0]) is None:
        raise StepError(f"`{command[0]}` is not on PATH")
    print(f"==> {step}: {shlex.join(command)}", file=sys.stderr, flush=True)
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise StepError(f"`{shlex.join(command)}` exited {result.returncode}")
    return result.stdout


def steps(stack: str, release_args: Sequence[str] = (), preflight_command: Sequence[str] = ()) -> list[Step]:
    """The deploy's steps, in order. `preflight_command` replaces `python -m preflight` (tests)."""
    python = sys.executable
    plan: dict[str, object] = {}

    def preflight() -> None:
        _run([*(preflight_command or [python, "-m", "preflight"]), "--stack", stack], "preflight")

    def up() -> None:
        _run(pulumi_command("up", stack), "up")

    def release() -> None:
        text = _capture(["pulumi", "stack", "output", "release", "--json", "--stack", stack], "release")
        try:
            plan.update(json.loads(text))
        except ValueError as error:
            raise StepError(f"the stack's `release` output is not JSON ({error})") from error
        promote = [python, "-m", "release", "promote", "--plan", "-", *release_args]
        _run(promote, "release", stdin=text)

    def smoke() -> None:
        auth = ["--id-token"] if plan.get("private") else []
        _run([python, "-m", "client", "--stack", stack, *auth, "smoke"], "smoke")

    return [Step("preflight", preflight), Step("up", up), Step("release", release), Step("smoke", smoke)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deploy` (every step) or `preview`; exit 1 naming the step that failed, 2 for a usage error."""
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("deploy", "preview"))
    parser.add_argument("--stack", required=True, help="the stack, as `pulumi stack ls` names it")
    parser.add_argument(
        "--release-args", default="", help="more options for `python -m release promote` (shell words)"
    )
    parser.add_argument(
        "--preflight", default="", help="the preflight command instead of `python -m preflight` (shell words)"
    )
    args = parser.parse_args(argv)
    try:  # before any step: a stack without its policy config would fail only after preflight
        policy_config(args.stack)
    except StepError as error:
        print(f"{args.command} of {args.stack}: {error}", file=sys.stderr)
        return 1
    if args.command == "preview":
        chosen = [Step("preview", lambda: _run(pulumi_command("preview", args.stack), "preview"))]
    else:
        chosen = steps(args.stack, shlex.split(args.release_args), shlex.split(args.preflight))
    for step in chosen:
        try:
            step.run()
        except StepError as failure:
            print(f"{args.command} of {args.stack} failed at step {step.name}: {failure}", file=sys.stderr)
            return 1
    if args.command == "deploy":
        done = ", ".join(step.name for step in chosen)
        print(f"deployed {args.stack} ({done}): the new revision serves all of the traffic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
