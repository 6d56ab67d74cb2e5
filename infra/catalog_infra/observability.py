"""Observability: a dashboard, SLOs and alerts on the server's own gRPC metrics and Cloud Run's.

Cloud Run's own request metrics classify calls by HTTP status, and a gRPC call that fails still ends in HTTP
200 (its status travels in a trailer). The server records its calls as OpenTelemetry metrics and exports them
to Cloud Monitoring once a minute (service/telemetry.py; names in contract/server_metrics.py): a count of
calls and gRFC A66's duration histogram, by `grpc.method`, `grpc.status` and revision. They cost per series
and minute, where the log-based metrics they replace cost a log line per call.

The filters are contract.telemetry's, which the release gate reads too: its error ratio is the one the
dashboard shows (`candidate_error_ratio` gives it as a query). The dashboard is a JSON document with slots
(dashboard.json).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_gcp as gcp

from contract.server_metrics import CALLS_TYPE, DURATION_TYPE, MONITORED_RESOURCE, STATUS_LABEL
from contract.telemetry import (
    SERVER_FAULT_CODES,
    calls_filter,
    latency_filter,
)

REQUIRED_APIS = ("monitoring.googleapis.com", "logging.googleapis.com", "cloudtrace.googleapis.com")
# What the server's account needs to export its own metrics and traces (service/telemetry.py): writing
# time series and spans, nothing to read (cloud.google.com/monitoring/access-control, .../trace/docs/iam).
TELEMETRY_WRITER_ROLES = ("roles/monitoring.metricWriter", "roles/cloudtrace.agent")

# The monitored resource of Cloud Run's own metrics (cloud.google.com/monitoring/api/resources).
CLOUD_RUN_RESOURCE = "cloud_run_revision"
# The Cloud Run metrics the dashboard and alerts read (cloud.google.com/monitoring/api/metrics_gcp, "run").
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
STARTUP_LATENCIES = "run.googleapis.com/container/startup_latencies"
COMPLETED_PROBES = "run.googleapis.com/container/completed_probe_count"
REQUEST_COUNT = "run.googleapis.com/request_count"
CLOUD_RUN_METRICS = (INSTANCE_COUNT, STARTUP_LATENCIES, COMPLETED_PROBES, REQUEST_COUNT)
# The probes whose failure stops an instance (startup, liveness). Not readiness: the server turns its catalog
# name NOT_SERVING at every shutdown (a scale-in, a new revision), so failed readiness checks are how an
# instance drains, not a fault. No source documents the label's exact values (Startup, STARTUP,
# STARTUP_PROBE, startup_probe ... are all plausible), so the filter matches any value that contains
# "startup" or "liveness" in any case, and none that does not: whatever the spelling, readiness stays out.
FATAL_PROBE_PATTERN = "(?i).*(startup|liveness).*"
FATAL_PROBES = f'metric.label.probe_type = monitoring.regex.full_match("{FATAL_PROBE_PATTERN}")'


@dataclass(frozen=True)
class BurnAlert:
    """One multi-window, multi-burn-rate alert (Google SRE workbook, chapter "Alerting on SLOs").

    It fires when the share `budget_share` of the whole window's error budget is being spent within
    `long_window_s`, and still within `short_window_s` (so it resets soon after the burn stops).
    """

    name: str
    long_window_s: int
    short_window_s: int
    budget_share: float
    severity: Literal["CRITICAL", "ERROR", "WARNING"]

    def burn_rate(self, window_days: int) -> float:
        """The threshold: 14.4 for 2% of a 30-day budget in 1 h, 6 for 5% in 6 h."""
        return round(self.budget_share * window_days * 86400 / self.long_window_s, 4)


BURN_ALERTS = (
    BurnAlert("fast-burn", long_window_s=3600, short_window_s=300, budget_share=0.02, severity="CRITICAL"),
    BurnAlert("slow-burn", long_window_s=21600, short_window_s=1800, budget_share=0.05, severity="WARNING"),
)


@dataclass(frozen=True)
class ObservabilityArgs:
    """What to observe (one Cloud Run service), the objectives, and who is told.

    `unary_methods` are the full method names (/pkg.Service/Method) the latency SLO covers: a server stream's
    duration is the whole stream, so streams are charted but not held to the unary threshold.
    `notification_channels` are existing channel names; each of `alert_emails` gets a channel of its own.
    """

    project: str
    service_name: str
    unary_methods: Sequence[str]
    availability_goal: float
    latency_goal: float
    latency_threshold_ms: int
    slo_window_days: int
    min_instances: int
    alert_emails: Sequence[str] = ()
    notification_channels: Sequence[str] = ()
    # The server's service account ("serviceAccount:EMAIL"): granted TELEMETRY_WRITER_ROLES on the project.
    telemetry_writer: pulumi.Input[str] | None = None
    depends_on: Sequence[pulumi.Resource] = ()


# ---- Monitoring filters ----


def unary_latency_filter(service_name: str, unary_methods: Sequence[str], revision: str | None = None) -> str:
    """Time series of the duration distribution for unary methods only (full names, /pkg.Service/Method)."""
    return latency_filter(service_name, unary_methods, revision=revision)


def cloud_run_filter(metric_type: str, service_name: str, *extra: str) -> str:
    """Time series of a Cloud Run metric for this service."""
    return " AND ".join(
        [
            f'metric.type="{metric_type}"',
            f'resource.type="{CLOUD_RUN_RESOURCE}"',
            f'resource.label.service_name="{service_name}"',
            *extra,
        ]
    )


@dataclass(frozen=True)
class ErrorRatioQuery:
    """How to compute one revision's error ratio (server-side failures / all calls) over a window.

    Either list the two filters' time series (Monitoring API `projects.timeSeries.list`, aligned with
    ALIGN_DELTA over the window and reduced with REDUCE_SUM) and divide `bad` by `total`, or run `promql`
    (Monitoring's PromQL API). No calls in the window means no evidence: the gate should wait, not pass.
    """

    total_filter: str
    bad_filter: str
    promql: str


def candidate_error_ratio(service_name: str, revision: str, window: str = "5m") -> ErrorRatioQuery:
    """The release gate's query: the error ratio of `revision`'s calls over the last `window`."""
    selector = f'monitored_resource="{MONITORED_RESOURCE}",job="{service_name}",revision="{revision}"'
    # PromQL names a Monitoring metric with its dots and first slash replaced: domain_com:path.
    promql_name = CALLS_TYPE.replace(".", "_").replace("/", ":", 1).replace("/", "_")
    status = STATUS_LABEL.removeprefix("metric.label.")
    faults = "|".join(SERVER_FAULT_CODES)
    return ErrorRatioQuery(
        total_filter=calls_filter(service_name, revision=revision),
        bad_filter=calls_filter(service_name, faults_only=True, revision=revision),
        promql=(
            f'sum(increase({promql_name}{{{selector},{status}=~"{faults}"}}[{window}]))'
            f" / sum(increase({promql_name}{{{selector}}}[{window}]))"
        ),
    )


# ---- The dashboard: a JSON document with slots ----

# As the console exports a dashboard, with {{slot}} where a name or filter part goes (DASHBOARD_SLOTS).
DASHBOARD_FILE = Path(__file__).with_name("dashboard.json")
_SLOT = re.compile(r"\{\{(\w+)\}\}")
# Monitoring aligns every chart and alert over a minute: the server exports once a minute.
ALIGNMENT = "60s"


@dataclass(frozen=True)
class DashboardInputs:
    """What the dashboard is of: the service, and the unary latency limit its p95 chart names."""

    service_name: str
    latency_threshold_ms: int


def dashboard_slots(inputs: DashboardInputs) -> dict[str, str]:
    """The value of each slot of dashboard.json, as plain text (escaped for JSON when filled in)."""
    return {
        "service": inputs.service_name,
        "calls_type": CALLS_TYPE,
        "duration_type": DURATION_TYPE,
        "fault_codes": ", ".join(SERVER_FAULT_CODES),
        "fault_codes_quoted": ", ".join(f'"{code}"' for code in SERVER_FAULT_CODES),
        "latency_threshold_ms": str(inputs.latency_threshold_ms),
    }


def dashboard(inputs: DashboardInputs, template: str | None = None) -> dict[str, Any]:
    """dashboard.json (or `template`) with its slots filled: the body of projects.dashboards.create."""
    slots = dashboard_slots(inputs)
    text = DASHBOARD_FILE.read_text(encoding="utf-8") if template is None else template

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in slots:
            raise ValueError(
                f"{DASHBOARD_FILE.name} has a slot {{{{{name}}}}} with no value; known: {', '.join(slots)}"
            )
        return json.dumps(slots[name])[1:-1]  # inside a JSON string: quotes and backslashes escaped

    board: dict[str, Any] = json.loads(_SLOT.sub(fill, text))
    return board


def _slug(text: str) -> str:
    """A resource-name-safe form of an email address: a new address is a new channel, an old one stays."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def dashboard_url(dashboard_id: str, project: str) -> str:
    """The console URL of a dashboard, from its resource id (projects/P/dashboards/ID)."""
    return (
        f"https://console.cloud.google.com/monitoring/dashboards/builder/{dashboard_id.rsplit('/', 1)[-1]}"
        f"?project={project}"
    )


def burn_rate_filter(slo_name: str, window_s: int) -> str:
    """The time series of an SLO's error-budget burn rate over a lookback window."""
    return f'select_slo_burn_rate("{slo_name}", "{window_s}s")'


# ---- What an alert tells the person it wakes ----

RUNBOOK = "docs/observability.md"

_BURN_DOC = """\
The {slo} SLO of {service} ({goal:.2%} over {days} days) is burning its error budget {rate}x as fast as it
may, over both the last {long} and the last {short}: at this pace {share:.0%} of the whole budget is gone
within {long}.

1. Open the dashboard. Per revision: if only the newest revision's line is up, roll traffic back to the
   previous one (`gcloud run services update-traffic {service} --region REGION --to-revisions=PREVIOUS=100`).
2. Otherwise read the ERROR lines: `resource.labels.service_name="{service}" AND severity>=ERROR`.
3. See {runbook}, "Availability or latency burn".
"""


def _burn_doc(slo: str, service: str, goal: float, days: int, alert: BurnAlert) -> str:
    def span(seconds: int) -> str:
        return f"{seconds // 3600} h" if seconds >= 3600 else f"{seconds // 60} min"

    return _BURN_DOC.format(
        slo=slo,
        service=service,
        goal=goal,
        days=days,
        rate=alert.burn_rate(days),
        long=span(alert.long_window_s),
        short=span(alert.short_window_s),
        share=alert.budget_share,
        runbook=RUNBOOK,
    )


class Observability(pulumi.ComponentResource):
    """A dashboard, availability and latency SLOs, burn-rate and platform alerts on the server's metrics."""

    calls_metric: pulumi.Output[str]
    latency_metric: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    availability_slo: pulumi.Output[str]
    latency_slo: pulumi.Output[str]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("catalog:index:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        if args.telemetry_writer is not None:
            for role in TELEMETRY_WRITER_ROLES:
                gcp.projects.IAMMember(
                    f"{name}-{role.removeprefix('roles/').replace('.', '-')}",
                    project=args.project,
                    role=role,
                    member=args.telemetry_writer,
                    opts=child,
                )
        board = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=args.project,
            dashboard_json=json.dumps(
                dashboard(DashboardInputs(args.service_name, args.latency_threshold_ms)), sort_keys=True
            ),
            opts=child,
        )

        service = gcp.monitoring.CustomService(
            f"{name}-service",
            project=args.project,
            service_id=args.service_name,
            display_name=f"{args.service_name} (gRPC on Cloud Run)",
            opts=child,
        )
        window = args.slo_window_days
        availability = gcp.monitoring.Slo(
            f"{name}-availability",
            project=args.project,
            service=service.service_id,
            slo_id="availability",
            display_name=f"{args.availability_goal:.2%} of calls end without a server-side failure code",
            goal=args.availability_goal,
            rolling_period_days=window,
            request_based_sli=gcp.monitoring.SloRequestBasedSliArgs(
                good_total_ratio=gcp.monitoring.SloRequestBasedSliGoodTotalRatioArgs(
                    bad_service_filter=calls_filter(args.service_name, faults_only=True),
                    total_service_filter=calls_filter(args.service_name),
                )
            ),
            opts=child,
        )
        unary = list(args.unary_methods)
        latency_slo = gcp.monitoring.Slo(
            f"{name}-latency",
            project=args.project,
            service=service.service_id,
            slo_id="latency",
            display_name=(
                f"{args.latency_goal:.2%} of unary calls answered within {args.latency_threshold_ms} ms"
            ),
            goal=args.latency_goal,
            rolling_period_days=window,
            request_based_sli=gcp.monitoring.SloRequestBasedSliArgs(
                distribution_cut=gcp.monitoring.SloRequestBasedSliDistributionCutArgs(
                    distribution_filter=unary_latency_filter(args.service_name, unary),
                    # The server's durations are in seconds (gRFC A66).
                    range=gcp.monitoring.SloRequestBasedSliDistributionCutRangeArgs(
                        max=args.latency_threshold_ms / 1000
                    ),
                )
            ),
            opts=child,
        )

        channels: list[pulumi.Input[str]] = [
            gcp.monitoring.NotificationChannel(
                f"{name}-email-{_slug(email)}",
                project=args.project,
                type="email",
                display_name=f"{args.service_name} alerts: {email}",
                labels={"email_address": email},
                opts=child,
            ).name
            for email in args.alert_emails
        ]
        channels += list(args.notification_channels)

        slos = {
            "availability": (availability, args.availability_goal),
            "latency": (latency_slo, args.latency_goal),
        }
        for slo_key, (slo, goal) in slos.items():
            for alert in BURN_ALERTS:
                self._burn_alert(
                    name,
                    args,
                    slo_key=slo_key,
                    slo=slo,
                    goal=goal,
                    alert=alert,
                    channels=channels,
                    opts=child,
                )
        self._platform_alerts(name, args, channels, child)

        self.calls_metric = pulumi.Output.from_input(CALLS_TYPE)
        self.latency_metric = pulumi.Output.from_input(DURATION_TYPE)
        self.dashboard_url = board.id.apply(lambda dashboard_id: dashboard_url(dashboard_id, args.project))
        self.availability_slo = availability.name
        self.latency_slo = latency_slo.name
        self.register_outputs(
            {
                "callsMetric": self.calls_metric,
                "latencyMetric": self.latency_metric,
                "dashboardUrl": self.dashboard_url,
                "availabilitySlo": self.availability_slo,
                "latencySlo": self.latency_slo,
            }
        )

    def _burn_alert(
        self,
        name: str,
        args: ObservabilityArgs,
        *,
        slo_key: str,
        slo: gcp.monitoring.Slo,
        goal: float,
        alert: BurnAlert,
        channels: Sequence[pulumi.Input[str]],
        opts: pulumi.ResourceOptions,
    ) -> None:
        rate = alert.burn_rate(args.slo_window_days)

        def condition(window_s: int) -> gcp.monitoring.AlertPolicyConditionArgs:
            return gcp.monitoring.AlertPolicyConditionArgs(
                display_name=f"{slo_key} burn rate over {window_s}s above {rate}",
                condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=slo.name.apply(lambda slo_name: burn_rate_filter(slo_name, window_s)),
                    comparison="COMPARISON_GT",
                    threshold_value=rate,
                    duration="0s",
                ),
            )

        gcp.monitoring.AlertPolicy(
            f"{name}-{slo_key}-{alert.name}",
            project=args.project,
            display_name=f"{args.service_name}: {slo_key} SLO {alert.name} ({rate}x)",
            combiner="AND",  # both windows: the long one for significance, the short one to reset quickly
            conditions=[condition(alert.long_window_s), condition(alert.short_window_s)],
            severity=alert.severity,
            notification_channels=list(channels),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                mime_type="text/markdown",
                subject=f"{args.service_name}: {slo_key} error budget burning {rate}x",
                content=_burn_doc(slo_key, args.service_name, goal, args.slo_window_days, alert),
            ),
            opts=opts,
        )

    def _platform_alerts(
        self,
        name: str,
        args: ObservabilityArgs,
        channels: Sequence[pulumi.Input[str]],
        opts: pulumi.ResourceOptions,
    ) -> None:
        service = args.service_name
        no_instance = [
            # Cloud Run answered calls itself with 5xx: no instance could take them (none ready, all failing
            # to start, or at maxInstances). Such calls never reach the server: its metrics do not count them.
            gcp.monitoring.AlertPolicyConditionArgs(
                display_name="Cloud Run answers calls with HTTP 5xx",
                condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=cloud_run_filter(
                        REQUEST_COUNT, service, 'metric.label.response_code_class = "5xx"'
                    ),
                    aggregations=[
                        gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                            alignment_period=ALIGNMENT,
                            per_series_aligner="ALIGN_RATE",
                            cross_series_reducer="REDUCE_SUM",
                        )
                    ],
                    comparison="COMPARISON_GT",
                    threshold_value=0,
                    duration="300s",
                ),
            )
        ]
        if args.min_instances >= 1:
            # With warm instances configured, none at all is an outage even before a call arrives. (A stack
            # that scales to zero has no instance whenever it is idle: there, only the condition above holds.)
            no_instance.append(
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name="No instance of the service",
                    condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=cloud_run_filter(INSTANCE_COUNT, service),
                        aggregations=[
                            gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                                alignment_period=ALIGNMENT,
                                per_series_aligner="ALIGN_MAX",
                                cross_series_reducer="REDUCE_SUM",
                            )
                        ],
                        comparison="COMPARISON_LT",
                        threshold_value=1,
                        duration="300s",
                        # No points at all is what zero instances look like.
                        evaluation_missing_data="EVALUATION_MISSING_DATA_ACTIVE",
                    ),
                )
            )
        gcp.monitoring.AlertPolicy(
            f"{name}-no-ready-instance",
            project=args.project,
            display_name=f"{service}: no ready instance",
            combiner="OR",
            conditions=no_instance,
            severity="CRITICAL",
            notification_channels=list(channels),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                mime_type="text/markdown",
                subject=f"{service}: no ready instance",
                content=(
                    f"Calls to {service} cannot be served: Cloud Run answers them with HTTP 5xx, or no "
                    'instance exists although minInstances asks for one. Check the "Failed probes" and '
                    '"Instances" charts and the revision\'s system log '
                    '(`logName:"run.googleapis.com%2Fvarlog%2Fsystem"`). '
                    f'See {RUNBOOK}, "No ready instance".'
                ),
            ),
            opts=opts,
        )
        gcp.monitoring.AlertPolicy(
            f"{name}-startups-failing",
            project=args.project,
            display_name=f"{service}: startups failing",
            combiner="OR",
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name="A probe gave up on an instance",
                    condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=cloud_run_filter(
                            COMPLETED_PROBES, service, "metric.label.is_healthy = false", FATAL_PROBES
                        ),
                        aggregations=[
                            gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                                alignment_period="300s",
                                per_series_aligner="ALIGN_SUM",
                                cross_series_reducer="REDUCE_SUM",
                                group_by_fields=["resource.label.revision_name", "metric.label.probe_type"],
                            )
                        ],
                        comparison="COMPARISON_GT",
                        threshold_value=0,
                        duration="0s",
                    ),
                )
            ],
            severity="ERROR",
            notification_channels=list(channels),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="1800s"),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                mime_type="text/markdown",
                subject=f"{service}: startups failing",
                content=(
                    f"A startup or liveness probe of {service} gave up: an instance never reported SERVING "
                    "for catalog.ProductCatalog (or stopped answering health checks) and Cloud Run stopped "
                    "it. The incident names the revision. Read that revision's logs for the start-up error "
                    "(a bad CATALOG_PATH, an unreadable catalog); roll traffic back if it is the newest one. "
                    f'See {RUNBOOK}, "Startups failing".'
                ),
            ),
            opts=opts,
        )
