"""The command line: `python -m release COMMAND [options]` (promote, rollback, status, pr-deploy, pr-remove).

Which service comes from options or, simplest, from the stack: `pulumi stack output release --json` is a
JSON object with project, region (the home one), regions (each region's url and candidateUrl), service, steps,
pauseSeconds, callsMetric, maxErrorRatio, minCalls, private, audience and frontDoor (with a domain: the checks
go through it, with the header that routes to each region's candidate), which `--plan FILE` (or `-` for
stdin) reads; options given as well win over it. promote, rollback and status act on every region;
pull-request revisions live in the home region.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.auth.exceptions import GoogleAuthError

from catalog import UNARY_METHODS
from client.auth import AuthError, bearer_token_credentials, id_token_credentials
from client.channel import Transport, open_channel
from client.target import TargetError, parse_target
from contract.release import DECISION, DECISION_HISTORY, check_steps
from release import monitoring, pr, rollout
from release.cloudrun import CloudRun, CloudRunError, ServiceRef, connect
from release.gates import (
    ChannelFactory,
    ErrorRatioGate,
    Gate,
    LatencyBounds,
    LatencyGate,
    ReadyGate,
    SmokeGate,
)
from release.monitoring import MonitoringCallCounts, MonitoringLatencies
from release.traffic import TrafficError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # a check failed: traffic is back on the stable revision (or the PR revision is bad)
EXIT_USAGE = 2
EXIT_CLOUD_RUN = 3  # the service could not be read or changed, or its tags do not allow a release

_EPILOG = f"""\
commands:
  promote     check the revision tagged candidate in every region, move traffic to it in --steps in
              every region, each step gated by the checks in each region after --pause-seconds (ready,
              smoke, and from the first step on the region's error ratio: at most --max-error-ratio of
              at least --min-calls calls); on the first failed check put all traffic back on the
              revision tagged stable in every region and exit 1 with one line naming region and check
  rollback    every request back on the revision tagged previous (after a completed release), in
              every region
  status      print each region's recorded release decisions (the service's annotations), the last
              first; changes nothing
  pr-deploy   deploy --image as a no-traffic revision tagged pr-N (--pr N), check it, print its URL
  pr-remove   remove the tag pr-N (--pr N)

promote and rollback record each decision (step, every check's figures, verdict) on each region's service,
in the annotation {DECISION} (earlier ones in {DECISION_HISTORY}).

exit status: 0 done, 1 a check failed (rolled back), 2 bad arguments, 3 Cloud Run refused or the service's
tags do not allow it (nothing changed)

example (CI, after `pulumi up`):
  pulumi stack output release --json | python -m release promote --plan -"""


def _steps(text: str) -> tuple[int, ...]:
    try:
        return check_steps([int(part) for part in text.split(",")])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: object, low: float, high: float, what: str, note: str = "") -> float:
    """`text` as a number from `low` to `high`; errors name it as `what` (a ratio, a number of seconds)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be a {what} from {low:g} to {high:g}{note}: {text!r}")
    return value


def _seconds(text: object) -> float:
    return _number(text, 0, 86400, "number of seconds")


def _plan_steps(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(step, int) for step in value):
        raise argparse.ArgumentTypeError("must be a list of percentages")
    try:
        return check_steps(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _metric(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise argparse.ArgumentTypeError("must be a metric type such as logging.googleapis.com/user/NAME")
    return value


def _ratio(text: object) -> float:
    return _number(text, 0, 1, "ratio", note=" (0.01 is 1%)")


def _count(text: object) -> int:
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command and option."""
    parser = argparse.ArgumentParser(
        prog="python -m release",
        description="Safe releases of the catalog on Cloud Run (docs/releases.md).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("promote", "rollback", "status", "pr-deploy", "pr-remove"))
    where = parser.add_argument_group("which service")
    where.add_argument(
        "--plan", metavar="FILE", help="JSON of `pulumi stack output release --json` (- = stdin)"
    )
    where.add_argument("--project")
    where.add_argument(
        "--region",
        action="append",
        help="a region of the service, repeated for several (default: the plan's regions; pr-*: its region)",
    )
    where.add_argument("--service")
    how = parser.add_argument_group("promote")
    how.add_argument("--steps", type=_steps, help="percentages, as 10,50,100 (default: the plan's)")
    how.add_argument("--pause-seconds", type=_seconds, help="wait after each step before its checks")
    checks = parser.add_argument_group("checks")
    checks.add_argument(
        "--ready-timeout", type=_seconds, default=120.0, help="wait for SERVING (default 120)"
    )
    checks.add_argument("--timeout", type=_seconds, default=10.0, help="deadline of each check call (10)")
    checks.add_argument(
        "--id-token", action="store_true", help="send an ID token (default: the plan's private)"
    )
    checks.add_argument("--token-env", metavar="VAR", help="send the bearer token held in $VAR instead")
    checks.add_argument(
        "--audience",
        help="of the ID token (default: the plan's audience, else each region's service URL)",
    )
    ratio = parser.add_argument_group("error-ratio gate (Cloud Monitoring)")
    ratio.add_argument(
        "--calls-metric", metavar="TYPE", help="the server's call counter (default: the plan's callsMetric)"
    )
    ratio.add_argument(
        "--max-error-ratio",
        type=_ratio,
        help="highest share of server-side failures in a step, 0 to 1 (default: the plan's maxErrorRatio)",
    )
    ratio.add_argument(
        "--min-calls",
        type=_count,
        help="fewest calls that count as evidence; 0 lets a step without calls pass (default: the plan's)",
    )
    ratio.add_argument(
        "--evidence-timeout",
        type=_seconds,
        default=300.0,
        help="how long a step waits for --min-calls calls before it fails (default 300)",
    )
    ratio.add_argument(
        "--ingestion-delay",
        type=_seconds,
        help="seconds after a step begins before its metrics are judged (default: the plan's "
        "ingestionDelaySeconds, else 120: a minute's export and Monitoring's own delay)",
    )
    latency = parser.add_argument_group("latency gate (Cloud Monitoring)")
    latency.add_argument(
        "--max-latency-ratio",
        type=_latency_ratio,
        help="the candidate's p95 and p99 at most this many times the stable revision's "
        "(default: the plan's maxLatencyRatio; without one, latency is not judged)",
    )
    latency.add_argument(
        "--max-p95-ms",
        type=_milliseconds,
        help="absolute p95 bound in ms, 0 for none (default: the plan's maxP95Ms)",
    )
    latency.add_argument(
        "--max-p99-ms",
        type=_milliseconds,
        help="absolute p99 bound in ms, 0 for none (default: the plan's maxP99Ms)",
    )
    prs = parser.add_argument_group("pull requests")
    prs.add_argument("--pr", type=int, metavar="N", help="the pull request's number")
    prs.add_argument("--image", help="the pull request's image, by digest")
    api = parser.add_argument_group("Cloud Run Admin API")
    api.add_argument("--api-endpoint", metavar="HOST:PORT", help="another endpoint (an emulator)")
    api.add_argument("--monitoring-endpoint", metavar="HOST:PORT", help="Cloud Monitoring elsewhere (tests)")
    api.add_argument(
        "--insecure-api", action="store_true", help="cleartext to the endpoints above (localhost only)"
    )
    return parser


def _latency_ratio(text: object) -> float:
    return _number(text, 1.0, 100.0, "latency ratio", "1 allows no slowdown at all")


def _milliseconds(text: object) -> float:
    return _number(text, 0.0, 3_600_000.0, "milliseconds", "0 for no bound")


def _read_plan(source: str, stdin: TextIO) -> dict[str, Any]:
    text = stdin.read() if source == "-" else Path(source).read_text()
    plan = json.loads(text)
    if not isinstance(plan, dict):
        raise ValueError("the plan must be a JSON object (pulumi stack output release --json)")
    return plan


def _resolve(args: argparse.Namespace, plan: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    """Fill unset options from the plan; exit 2 naming whatever is still missing or wrong."""
    for option, key in (("project", "project"), ("service", "service")):
        if getattr(args, option) is None:
            setattr(args, option, plan.get(key))
        if not isinstance(getattr(args, option), str) or not getattr(args, option):
            parser.error(f"--{option} (or the plan's {key!r}) is required")
    args.region = _regions(args, plan, parser)
    # What promote needs comes from the stack (Pulumi.yaml holds the defaults), or from options that win.
    for option, key, check in (
        ("steps", "steps", _plan_steps),
        ("pause_seconds", "pauseSeconds", _seconds),
        ("calls_metric", "callsMetric", _metric),
        ("max_error_ratio", "maxErrorRatio", _ratio),
        ("min_calls", "minCalls", _count),
    ):
        if getattr(args, option) is not None or args.command != "promote":
            continue
        if key not in plan:
            parser.error(f"promote needs --{option.replace('_', '-')} (or the plan's {key!r})")
        try:
            setattr(args, option, check(plan[key]))
        except argparse.ArgumentTypeError as error:
            parser.error(f"the plan's {key} {plan[key]!r}: {error}")
    _resolve_optional(args, plan, parser)
    if not args.id_token and args.token_env is None:
        args.id_token = bool(plan.get("private", False))
    if args.audience is None:
        audience = plan.get("audience")
        if audience is not None and (not isinstance(audience, str) or not audience):
            parser.error(f"the plan's audience {audience!r}: must be an https URL or null")
        args.audience = audience
    args.front_door = _front_door(plan.get("frontDoor"), parser)
    _check_command(args, parser)


def _resolve_optional(
    args: argparse.Namespace, plan: dict[str, Any], parser: argparse.ArgumentParser
) -> None:
    """The plan's optional keys: a stack without latency bounds releases on errors alone."""
    for option, key, check, default in (
        ("ingestion_delay", "ingestionDelaySeconds", _seconds, 120.0),
        ("max_latency_ratio", "maxLatencyRatio", _latency_ratio, None),
        ("max_p95_ms", "maxP95Ms", _milliseconds, 0.0),
        ("max_p99_ms", "maxP99Ms", _milliseconds, 0.0),
    ):
        if getattr(args, option) is not None:
            continue
        try:
            setattr(args, option, check(plan[key]) if plan.get(key) is not None else default)
        except argparse.ArgumentTypeError as error:
            parser.error(f"the plan's {key} {plan[key]!r}: {error}")


def _front_door(value: object, parser: argparse.ArgumentParser) -> rollout.FrontDoorRoute | None:
    """The plan's frontDoor ({url, candidateHeader}, or null: no front door)."""
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("url"), str)
        or not value["url"].startswith("https://")
        or not isinstance(value.get("candidateHeader"), str)
        or not value["candidateHeader"]
    ):
        parser.error(
            f"the plan's frontDoor {value!r}: must be null or {{url: https://DOMAIN, candidateHeader: NAME}}"
        )
    return rollout.FrontDoorRoute(url=value["url"], header=value["candidateHeader"].lower())


def _regions(args: argparse.Namespace, plan: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    """The --region options, else the plan's; each once, and only one for a pull request's revision."""
    regions: list[str] = args.region or _plan_regions(args.command, plan, parser)
    if len(set(regions)) != len(regions):
        parser.error(f"--region {regions}: a region is named twice")
    if args.command.startswith("pr-") and len(regions) != 1:
        parser.error(f"{args.command} works in one region (the home one), not {regions}")
    return regions


def _plan_regions(command: str, plan: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    """The plan's regions: every one (its `regions` keys, home first) for a release, the home one for pr-*."""
    home, regions = plan.get("region"), plan.get("regions")
    if command.startswith("pr-") or regions is None:
        if not isinstance(home, str) or not home:
            parser.error("--region (or the plan's 'region') is required")
        return [home]
    if not isinstance(regions, dict) or not regions or not all(isinstance(r, str) and r for r in regions):
        parser.error(f"the plan's regions {regions!r}: must map each region to its URLs")
    return list(regions)


def _check_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Exit 2 on options the command needs but lacks, or that cannot work together."""
    if args.command.startswith("pr-") and args.pr is None:
        parser.error(f"{args.command} needs --pr N")
    if args.command == "pr-deploy" and not args.image:
        parser.error("pr-deploy needs --image REGISTRY/PATH@sha256:...")
    if args.insecure_api and not (args.api_endpoint or args.monitoring_endpoint):
        parser.error("--insecure-api needs --api-endpoint or --monitoring-endpoint")
    if args.token_env is not None and not os.environ.get(args.token_env, "").strip():
        parser.error(f"--token-env {args.token_env}: the variable is unset or empty")
    if args.token_env is not None and len(args.region) > 1 and not args.audience:
        # Each region's service accepts tokens for its own URL, and for custom audiences it lists.
        parser.error(
            f"--token-env {args.token_env} with several regions ({', '.join(args.region)}) needs an audience "
            "every region accepts (a front door's https://DOMAIN, --audience): one token cannot fit each "
            "region's own URL; --id-token mints one per region"
        )


def service_audience(tag_url: str) -> str:
    """The URL of the service a tag URL belongs to: `https://TAG---HOST` -> `https://HOST`."""
    host = tag_url.removeprefix("https://").rstrip("/")
    return f"https://{host.split('---', 1)[-1]}"


def tls_channels(args: argparse.Namespace) -> ChannelFactory:
    """Channels to tag URLs over TLS, with an ID token (--audience) or the bearer token from --token-env."""
    # One set of credentials per audience, made on first use: google-auth refreshes them as they expire.
    by_audience: dict[str, grpc.CallCredentials] = {}

    def open_to(uri: str) -> grpc.Channel:
        target = parse_target(uri)
        credentials = None
        if args.token_env:
            credentials = bearer_token_credentials(os.environ[args.token_env].strip())
        elif args.id_token:
            # The plan's audience is the custom audience every service of the stack lists, whichever URL is
            # dialled (a tag, a region, the domain). Without it, the service's run.app URL, which Cloud Run
            # always accepts (its custom-audiences page); each region's service has its own.
            audience = args.audience or service_audience(uri)
            if audience not in by_audience:
                by_audience[audience] = id_token_credentials(audience)
            credentials = by_audience[audience]
        return open_channel(target.address, Transport(), credentials)

    return open_to


def _gates(args: argparse.Namespace, channels: ChannelFactory, log: rollout.Log) -> list[Gate]:
    gates: list[Gate] = [
        ReadyGate(channels, timeout=args.ready_timeout, call_timeout=args.timeout),
        SmokeGate(channels, call_timeout=args.timeout),
    ]
    if args.command == "promote":
        client = monitoring.connect(args.monitoring_endpoint, insecure=args.insecure_api)
        counts = MonitoringCallCounts(client, args.project, args.calls_metric)
        gates.append(
            ErrorRatioGate(
                counts,
                max_ratio=args.max_error_ratio,
                min_calls=args.min_calls,
                ingestion_delay=args.ingestion_delay,
                evidence_timeout=args.evidence_timeout,
                log=log,
            )
        )
        if args.max_latency_ratio is not None:
            gates.append(
                LatencyGate(
                    MonitoringLatencies(client, args.project, UNARY_METHODS),
                    LatencyBounds(args.max_latency_ratio, args.max_p95_ms / 1000, args.max_p99_ms / 1000),
                    min_calls=args.min_calls,
                    # The error-ratio gate has waited already: its step's points are in.
                    evidence_timeout=args.evidence_timeout,
                    log=log,
                )
            )
    return gates


def main(
    argv: Sequence[str] | None = None,
    *,
    channels: ChannelFactory | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command; returns the exit status. `channels` replaces TLS to tag URLs (tests)."""
    stdout, stderr = sys.stdout, sys.stderr
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = _read_plan(args.plan, stdin or sys.stdin) if args.plan else {}
    except (OSError, ValueError) as error:
        parser.error(f"--plan {args.plan}: {error}")
    _resolve(args, plan, parser)

    def log(line: str) -> None:
        print(line, file=stderr, flush=True)

    try:
        # Both clients find application default credentials as they are made: before any traffic moves.
        client = connect(args.api_endpoint, insecure=args.insecure_api)
        runs = [
            CloudRun(client, ServiceRef(project=args.project, region=region, service=args.service))
            for region in args.region
        ]
        gates = _gates(args, channels or tls_channels(args), log)
        if args.command == "promote":
            outcome = rollout.release(
                runs, args.steps, args.pause_seconds, gates, log=log, front_door=args.front_door
            )
        elif args.command == "rollback":
            outcome = rollout.rollback(runs, log=log)
        elif args.command == "status":
            outcome = rollout.status(runs)
        elif args.command == "pr-deploy":
            outcome = pr.deploy(runs[0], args.pr, args.image, gates, log=log)
        else:
            outcome = pr.remove(runs[0], args.pr)
    except (CloudRunError, TrafficError, TargetError, AuthError, GoogleAuthError, ValueError) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_CLOUD_RUN
    if not outcome.ok:
        print(outcome.line, file=stderr)
        return EXIT_CHECK_FAILED
    print(outcome.line, file=stdout)
    return EXIT_OK
