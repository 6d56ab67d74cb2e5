"""Observability: gRPC-aware metrics from the server's access lines, a dashboard, SLOs and alerts.

Cloud Run's own request metrics classify calls by HTTP status, and a gRPC call that fails still ends in HTTP
200 (its status travels in a trailer). The server writes one JSON access line per call to stdout; Cloud Run
turns each into a log entry whose `jsonPayload` holds `logger`, `method`, `code` and `duration_ms` (and whose
`severity` is the line's). Two log-based metrics count those calls and their durations; everything else here
is built on them and on the metrics Cloud Run provides.

The filters, label extractors and queries are plain functions of names. Which codes are the server's fault
and the filter that counts them are contract.telemetry's, which the release gate reads too: its error ratio
is the one the dashboard shows (`candidate_error_ratio` gives it as a query).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import pulumi
import pulumi_gcp as gcp

from catalog import CATALOG_METHOD_PREFIX
from contract.telemetry import (
    CLOUD_RUN_RESOURCE,
    SERVER_FAULT_CODES,
    calls_filter,
    error_ratio_filters,
    one_of,
)

REQUIRED_APIS = ("monitoring.googleapis.com", "logging.googleapis.com")

# What the server writes (service/call_guard.py, service/logs.py): the access logger's name. Health checks
# are access lines too (at DEBUG): CATALOG_METHOD_PREFIX leaves them out.
ACCESS_LOGGER = "service.access"

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

# The latency buckets, in ms: Renard's R10 series (10 steps a decade, each about 26% wider) from 0.1 ms
# to 1 hour (the longest request Cloud Run allows). The latency SLO's threshold is added as a boundary:
# Monitoring estimates a cut between two boundaries, so a threshold on one is counted exactly.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
LATENCY_BOUNDS_MS = tuple(round(step * 10.0**decade, 4) for decade in range(-1, 7) for step in _R10)


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
    depends_on: Sequence[pulumi.Resource] = ()


# ---- Log filters and extractors: what the server writes, as Cloud Logging stores it ----


def access_log_filter(service_name: str) -> str:
    """The log entries of this service's catalog calls: one per call, health checks left out."""
    return " AND ".join(
        [
            f'resource.type="{CLOUD_RUN_RESOURCE}"',
            f'resource.labels.service_name="{service_name}"',
            f'jsonPayload.logger="{ACCESS_LOGGER}"',
            f'jsonPayload.method=~"^{CATALOG_METHOD_PREFIX.replace(".", "[.]")}"',
        ]
    )


CALL_LABELS = {
    "method": "EXTRACT(jsonPayload.method)",
    "code": "EXTRACT(jsonPayload.code)",
    "revision": "EXTRACT(resource.labels.revision_name)",
}
LATENCY_LABELS = {key: CALL_LABELS[key] for key in ("method", "revision")}
DURATION_EXTRACTOR = "EXTRACT(jsonPayload.duration_ms)"


def metric_names(service_name: str) -> tuple[str, str]:
    """The log-based metrics' names: letters, digits and underscores, so PromQL can name them as they are."""
    prefix = service_name.replace("-", "_")
    return f"{prefix}_calls", f"{prefix}_call_latency"


def user_metric_type(name: str) -> str:
    """The Monitoring metric type of a user-defined log-based metric."""
    return f"logging.googleapis.com/user/{name}"


def latency_bounds(threshold_ms: int) -> list[float]:
    """The distribution's bucket boundaries, with the latency SLO's threshold among them."""
    return sorted({*LATENCY_BOUNDS_MS, float(threshold_ms)})


# ---- Monitoring filters ----


def unary_latency_filter(latency_type: str, unary_methods: Sequence[str]) -> str:
    """Time series of the duration distribution for unary methods only."""
    return " AND ".join(
        [
            f'metric.type="{latency_type}"',
            f'resource.type="{CLOUD_RUN_RESOURCE}"',
            f"metric.label.method = {one_of(unary_methods)}",
        ]
    )


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


def candidate_error_ratio(
    calls_type: str, service_name: str, revision: str, window: str = "5m"
) -> ErrorRatioQuery:
    """The release gate's query: the error ratio of `revision`'s calls over the last `window`."""
    selector = (
        f'monitored_resource="{CLOUD_RUN_RESOURCE}",service_name="{service_name}",revision="{revision}"'
    )
    # PromQL names a Monitoring metric with its dots and first slash replaced: domain_com:path.
    promql_name = calls_type.replace(".", "_").replace("/", ":", 1).replace("/", "_")
    faults = "|".join(SERVER_FAULT_CODES)
    total_filter, bad_filter = error_ratio_filters(calls_type, service_name, revision)
    return ErrorRatioQuery(
        total_filter=total_filter,
        bad_filter=bad_filter,
        promql=(
            f'sum(increase({promql_name}{{{selector},code=~"{faults}"}}[{window}]))'
            f" / sum(increase({promql_name}{{{selector}}}[{window}]))"
        ),
    )


# ---- The dashboard, as typed data ----


class Aggregation(TypedDict):
    """How one chart line is computed from raw points (Monitoring's Aggregation)."""

    alignmentPeriod: str
    perSeriesAligner: str
    crossSeriesReducer: NotRequired[str]
    groupByFields: NotRequired[list[str]]


class TimeSeriesFilter(TypedDict):
    """A monitoring filter and its aggregation."""

    filter: str
    aggregation: Aggregation


class TimeSeriesFilterRatio(TypedDict):
    """numerator / denominator, each filtered and aggregated alike."""

    numerator: TimeSeriesFilter
    denominator: TimeSeriesFilter


class TimeSeriesQuery(TypedDict, total=False):
    """One of a plain filter or a ratio."""

    timeSeriesFilter: TimeSeriesFilter
    timeSeriesFilterRatio: TimeSeriesFilterRatio


class DataSet(TypedDict):
    """One set of lines on a chart."""

    timeSeriesQuery: TimeSeriesQuery
    plotType: Literal["LINE", "STACKED_AREA", "STACKED_BAR", "HEATMAP"]
    legendTemplate: str


class Axis(TypedDict):
    """The chart's y axis."""

    label: str
    scale: Literal["LINEAR", "LOG10"]


class XyChart(TypedDict):
    """A chart of lines over time."""

    dataSets: list[DataSet]
    yAxis: Axis


class Text(TypedDict):
    """A note on the dashboard."""

    content: str
    format: Literal["MARKDOWN", "RAW"]


class Widget(TypedDict, total=False):
    """A titled chart or note."""

    title: str
    xyChart: XyChart
    text: Text


class Tile(TypedDict):
    """A widget's place on the grid (48 columns wide). A zero position is left out, as the API returns it."""

    xPos: NotRequired[int]
    yPos: NotRequired[int]
    width: int
    height: int
    widget: Widget


class MosaicLayout(TypedDict):
    """The grid."""

    columns: int
    tiles: list[Tile]


class DashboardJson(TypedDict):
    """A Monitoring dashboard (the body of projects.dashboards.create)."""

    displayName: str
    mosaicLayout: MosaicLayout


@dataclass(frozen=True)
class DashboardInputs:
    """What the dashboard is of: the service and the two log-based metrics' types."""

    service_name: str
    calls_type: str
    latency_type: str
    latency_threshold_ms: int


ALIGNMENT = "60s"


def _series(
    filter_: str, aligner: str, reducer: str | None = None, group_by: Sequence[str] = ()
) -> TimeSeriesFilter:
    aggregation: Aggregation = {"alignmentPeriod": ALIGNMENT, "perSeriesAligner": aligner}
    if reducer is not None:
        aggregation["crossSeriesReducer"] = reducer
        if group_by:
            aggregation["groupByFields"] = list(group_by)
    return {"filter": filter_, "aggregation": aggregation}


def _line(query: TimeSeriesQuery, legend: str, plot: Literal["LINE", "STACKED_AREA"] = "LINE") -> DataSet:
    return {"timeSeriesQuery": query, "plotType": plot, "legendTemplate": legend}


def _chart(title: str, axis: str, *data_sets: DataSet) -> Widget:
    return {
        "title": title,
        "xyChart": {"dataSets": list(data_sets), "yAxis": {"label": axis, "scale": "LINEAR"}},
    }


def _error_ratio(calls_type: str, group_by: Sequence[str]) -> TimeSeriesQuery:
    return {
        "timeSeriesFilterRatio": {
            "numerator": _series(
                calls_filter(calls_type, faults_only=True), "ALIGN_RATE", "REDUCE_SUM", group_by
            ),
            "denominator": _series(calls_filter(calls_type), "ALIGN_RATE", "REDUCE_SUM", group_by),
        }
    }


def _percentiles(latency_type: str, group_by: str, label: str, which: Sequence[int]) -> list[DataSet]:
    filter_ = f'metric.type="{latency_type}" AND resource.type="{CLOUD_RUN_RESOURCE}"'
    return [
        _line(
            {"timeSeriesFilter": _series(filter_, "ALIGN_DELTA", f"REDUCE_PERCENTILE_{p:02d}", [group_by])},
            f"p{p} ${{{label}}}",
        )
        for p in which
    ]


def dashboard(inputs: DashboardInputs) -> DashboardJson:
    """The on-call dashboard: traffic, errors, latency, instances, startups, each revision side by side."""
    calls, latency, service = inputs.calls_type, inputs.latency_type, inputs.service_name
    method, code, revision = "metric.label.method", "metric.label.code", "metric.label.revision"
    widgets: list[tuple[int, Widget]] = [
        (
            48,
            {
                "title": "About",
                "text": {
                    "format": "MARKDOWN",
                    "content": (
                        f"gRPC calls of **{service}**, from its access log lines (Cloud Run's own request "
                        "charts count HTTP status, which is 200 for a failed gRPC call). Errors are the "
                        f"codes that are the server's fault: {', '.join(SERVER_FAULT_CODES)}. "
                        "What each chart means and what to do: docs/observability.md."
                    ),
                },
            },
        ),
        (
            24,
            _chart(
                "Calls per second by method and code",
                "calls/s",
                _line(
                    {
                        "timeSeriesFilter": _series(
                            calls_filter(calls), "ALIGN_RATE", "REDUCE_SUM", [method, code]
                        )
                    },
                    "${metric.labels.method} ${metric.labels.code}",
                    "STACKED_AREA",
                ),
            ),
        ),
        (
            24,
            _chart(
                "Error ratio (server-side codes / all calls)",
                "ratio",
                _line(_error_ratio(calls, []), "errors"),
            ),
        ),
        (
            24,
            _chart(
                "Latency p50 / p95 / p99 by method (ms)",
                "ms",
                *_percentiles(latency, method, "metric.labels.method", (50, 95, 99)),
            ),
        ),
        (
            24,
            _chart(
                "Instances by state",
                "instances",
                _line(
                    {
                        "timeSeriesFilter": _series(
                            cloud_run_filter(INSTANCE_COUNT, service),
                            "ALIGN_MAX",
                            "REDUCE_SUM",
                            ["metric.label.state"],
                        )
                    },
                    "${metric.labels.state}",
                    "STACKED_AREA",
                ),
            ),
        ),
        (
            24,
            _chart(
                "Startup latency p50 / p95 (ms)",
                "ms",
                *[
                    _line(
                        {
                            "timeSeriesFilter": _series(
                                cloud_run_filter(STARTUP_LATENCIES, service),
                                "ALIGN_DELTA",
                                f"REDUCE_PERCENTILE_{p}",
                            )
                        },
                        f"p{p}",
                    )
                    for p in (50, 95)
                ],
            ),
        ),
        (
            24,
            _chart(
                "Failed probes (startup or liveness gave up)",
                "probes/s",
                _line(
                    {
                        "timeSeriesFilter": _series(
                            cloud_run_filter(COMPLETED_PROBES, service, "metric.label.is_healthy = false"),
                            "ALIGN_RATE",
                            "REDUCE_SUM",
                            ["metric.label.probe_type", "resource.label.revision_name"],
                        )
                    },
                    "${metric.labels.probe_type} ${resource.labels.revision_name}",
                ),
            ),
        ),
        (
            24,
            _chart(
                "Calls per second by revision",
                "calls/s",
                _line(
                    {
                        "timeSeriesFilter": _series(
                            calls_filter(calls), "ALIGN_RATE", "REDUCE_SUM", [revision]
                        )
                    },
                    "${metric.labels.revision}",
                ),
            ),
        ),
        (
            24,
            _chart(
                "Error ratio by revision",
                "ratio",
                _line(_error_ratio(calls, [revision]), "${metric.labels.revision}"),
            ),
        ),
        (
            24,
            _chart(
                f"Latency p95 by revision (ms; the unary SLO's limit is {inputs.latency_threshold_ms} ms)",
                "ms",
                *_percentiles(latency, revision, "metric.labels.revision", (95,)),
            ),
        ),
        (
            24,
            _chart(
                "Calls Cloud Run could not hand to an instance (HTTP 5xx)",
                "requests/s",
                _line(
                    {
                        "timeSeriesFilter": _series(
                            cloud_run_filter(
                                REQUEST_COUNT, service, 'metric.label.response_code_class = "5xx"'
                            ),
                            "ALIGN_RATE",
                            "REDUCE_SUM",
                            ["metric.label.response_code"],
                        )
                    },
                    "${metric.labels.response_code}",
                ),
            ),
        ),
    ]
    return {"displayName": f"{service} (gRPC)", "mosaicLayout": {"columns": 48, "tiles": _place(widgets)}}


def _place(widgets: Sequence[tuple[int, Widget]], height: int = 16) -> list[Tile]:
    """Lay widgets out left to right, wrapping at 48 columns; the note is short."""
    tiles: list[Tile] = []
    x = y = 0
    row_height = 0
    for width, widget in widgets:
        if x + width > 48:
            x, y = 0, y + row_height
        tile_height = 6 if "text" in widget else height
        tile: Tile = {"width": width, "height": tile_height, "widget": widget}
        # The API drops zero-valued fields from what it returns; writing them would show as a change forever.
        if x:
            tile["xPos"] = x
        if y:
            tile["yPos"] = y
        tiles.append(tile)
        x += width
        row_height = tile_height
    return tiles


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
    """Log-based metrics, a dashboard, availability and latency SLOs, burn-rate and platform alerts."""

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
        calls_name, latency_name = metric_names(args.service_name)
        log_filter = access_log_filter(args.service_name)

        labels = [
            gcp.logging.MetricMetricDescriptorLabelArgs(key="method", description="Full gRPC method name"),
            gcp.logging.MetricMetricDescriptorLabelArgs(key="code", description="gRPC status code name"),
            gcp.logging.MetricMetricDescriptorLabelArgs(key="revision", description="Cloud Run revision"),
        ]
        calls = gcp.logging.Metric(
            f"{name}-calls",
            project=args.project,
            name=calls_name,
            description=f"gRPC calls of {args.service_name}, by method, status code and revision",
            filter=log_filter,
            metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA", value_type="INT64", unit="1", display_name="gRPC calls", labels=labels
            ),
            label_extractors=CALL_LABELS,
            opts=child,
        )
        latency = gcp.logging.Metric(
            f"{name}-latency",
            project=args.project,
            name=latency_name,
            description=f"Server-side duration of gRPC calls of {args.service_name}, by method and revision",
            filter=log_filter,
            metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA",
                value_type="DISTRIBUTION",
                unit="ms",
                display_name="gRPC call duration",
                labels=[labels[0], labels[2]],
            ),
            label_extractors=LATENCY_LABELS,
            value_extractor=DURATION_EXTRACTOR,
            bucket_options=gcp.logging.MetricBucketOptionsArgs(
                explicit_buckets=gcp.logging.MetricBucketOptionsExplicitBucketsArgs(
                    bounds=latency_bounds(args.latency_threshold_ms)
                )
            ),
            opts=child,
        )
        # Metric types from the metrics' own outputs: whatever refers to them waits until they exist.
        calls_type = calls.name.apply(user_metric_type)
        latency_type = latency.name.apply(user_metric_type)

        board = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=args.project,
            dashboard_json=pulumi.Output.all(calls_type, latency_type).apply(
                lambda types: json.dumps(
                    dashboard(
                        DashboardInputs(args.service_name, types[0], types[1], args.latency_threshold_ms)
                    ),
                    sort_keys=True,
                )
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
                    bad_service_filter=calls_type.apply(lambda t: calls_filter(t, faults_only=True)),
                    total_service_filter=calls_type.apply(calls_filter),
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
                    distribution_filter=latency_type.apply(lambda t: unary_latency_filter(t, unary)),
                    range=gcp.monitoring.SloRequestBasedSliDistributionCutRangeArgs(
                        max=float(args.latency_threshold_ms)
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

        self.calls_metric = calls_type
        self.latency_metric = latency_type
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
            # to start, or at maxInstances). Such calls never reach the server, so no access line counts them.
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
