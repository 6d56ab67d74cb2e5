"""Observability under mocks for both stacks, its config refusals, and its agreement with the real server.

The log-based metrics are only as good as their filter and extractors: the last tests run the real server,
make real calls, turn its stdout lines into log entries the way Cloud Run does, and apply the very filter
and extractors the program declares to them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from tests.docs.markdown import REPO_ROOT, Page
from tests.infra.harness import (
    ALERT_POLICY,
    API,
    CUSTOM_SERVICE,
    DASHBOARD,
    DASHBOARD_ID,
    LOG_METRIC,
    NOTIFICATION_CHANNEL,
    POOL_NUMBER,
    PROJECT,
    SLO,
    Deployment,
    Mocks,
    RecordingMonitor,
    run_program,
    stack_config,
)

SERVICE_NAME = "catalog-grpc"
CALLS_TYPE = "workload.googleapis.com/catalog.server.calls"
LATENCY_TYPE = "workload.googleapis.com/grpc.server.call.duration"
# The server's own metrics as exported from Cloud Run (contract/server_metrics.py).
SERVER_SCOPE = 'resource.type="generic_task" AND resource.label.job="catalog-grpc"'
ALL_CALLS = f'metric.type="{CALLS_TYPE}" AND {SERVER_SCOPE}'
DURATIONS = f'metric.type="{LATENCY_TYPE}" AND {SERVER_SCOPE}'
FAULTS = '"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"'
CLOUD_RUN_METRICS = {
    "run.googleapis.com/container/instance_count",
    "run.googleapis.com/container/startup_latencies",
    "run.googleapis.com/container/completed_probe_count",
    "run.googleapis.com/request_count",
}
OBSERVABILITY_TYPES = (LOG_METRIC, DASHBOARD, CUSTOM_SERVICE, SLO, ALERT_POLICY, NOTIFICATION_CHANNEL)
BASE: dict[str, object] = {"gcp:project": "my-gcp-project-dev"}


def setting(stack: str, key: str, default: object) -> Any:
    return stack_config(stack).get(f"{PROJECT}:{key}", default)


def by_name(deployment: Deployment, type_: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in deployment.all(type_)}


def dashboard_of(deployment: Deployment) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(deployment.one(DASHBOARD).inputs["dashboardJson"])
    return board


def widgets(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {tile["widget"]["title"]: tile["widget"] for tile in board["mosaicLayout"]["tiles"]}


def filters_in(value: object) -> list[str]:
    """Every `filter` string anywhere in a JSON value."""
    if isinstance(value, dict):
        found = [value["filter"]] if isinstance(value.get("filter"), str) else []
        return found + [f for item in value.values() for f in filters_in(item)]
    if isinstance(value, list):
        return [f for item in value for f in filters_in(item)]
    return []


def series(widget: dict[str, Any]) -> list[dict[str, Any]]:
    return [data_set["timeSeriesQuery"] for data_set in widget["xyChart"]["dataSets"]]


# ---- Metrics ----


def test_no_log_based_metric_is_declared(deployment: Deployment) -> None:
    # Every chart, SLO and alert reads the server's exported metrics or Cloud Run's: a log-based metric
    # would bring back a billed log line per call.
    assert deployment.all(LOG_METRIC) == []


# ---- Dashboard ----

EXPECTED_WIDGETS = {
    "About",
    "Calls per second by method and code",
    "Error ratio (server-side codes / all calls)",
    "Latency p50 / p95 / p99 by method (s)",
    "Instances by state",
    "Startup latency p50 / p95 (ms)",
    "Failed probes (startup or liveness gave up)",
    "Calls per second by revision",
    "Error ratio by revision",
    "Latency p95 by revision (s; the unary SLO's limit is 100 ms)",
    "Calls Cloud Run could not hand to an instance (HTTP 5xx)",
}


def test_dashboard_charts_only_metrics_the_program_declares_or_cloud_run_provides(
    deployment: Deployment,
) -> None:
    board = dashboard_of(deployment)
    assert board["displayName"] == "catalog-grpc (gRPC)"
    assert set(widgets(board)) == EXPECTED_WIDGETS
    server_types = {CALLS_TYPE, LATENCY_TYPE}
    used = set()
    for filter_ in filters_in(board):
        types = re.findall(r'metric\.type="([^"]+)"', filter_)
        assert len(types) == 1, filter_
        used.add(types[0])
        if types[0] in CLOUD_RUN_METRICS:  # project-wide metrics: this service's only
            assert 'resource.type="cloud_run_revision"' in filter_
            assert 'resource.label.service_name="catalog-grpc"' in filter_
        else:
            assert SERVER_SCOPE in filter_
    assert used == server_types | CLOUD_RUN_METRICS
    assert set(deployment.namespace["observability"].CLOUD_RUN_METRICS) == CLOUD_RUN_METRICS


def test_dashboard_tiles_fit_the_grid_without_overlap(deployment: Deployment) -> None:
    tiles = dashboard_of(deployment)["mosaicLayout"]["tiles"]
    cells = set()
    for tile in tiles:
        # Zero positions are left out, as the API leaves them out of what it returns (no perpetual diff).
        assert tile.get("xPos") != 0
        assert tile.get("yPos") != 0
        x0, y0 = tile.get("xPos", 0), tile.get("yPos", 0)
        assert x0 + tile["width"] <= 48
        for x in range(x0, x0 + tile["width"]):
            for y in range(y0, y0 + tile["height"]):
                assert (x, y) not in cells, tile["widget"]["title"]
                cells.add((x, y))


def test_calls_chart_is_per_second_by_method_and_code(deployment: Deployment) -> None:
    (query,) = series(widgets(dashboard_of(deployment))["Calls per second by method and code"])
    chart = query["timeSeriesFilter"]
    assert chart["filter"] == ALL_CALLS
    assert chart["aggregation"] == {
        "alignmentPeriod": "60s",
        "perSeriesAligner": "ALIGN_RATE",
        "crossSeriesReducer": "REDUCE_SUM",
        "groupByFields": ["metric.label.grpc_method", "metric.label.grpc_status"],
    }


@pytest.mark.parametrize(
    ("title", "group_by"),
    [
        ("Error ratio (server-side codes / all calls)", None),
        ("Error ratio by revision", ["metric.label.revision"]),
    ],
)
def test_error_ratios_divide_server_faults_by_all_calls(
    deployment: Deployment, title: str, group_by: list[str] | None
) -> None:
    (query,) = series(widgets(dashboard_of(deployment))[title])
    ratio = query["timeSeriesFilterRatio"]
    assert ratio["denominator"]["filter"] == ALL_CALLS
    assert ratio["numerator"]["filter"] == f"{ALL_CALLS} AND metric.label.grpc_status = one_of({FAULTS})"
    for side in ("numerator", "denominator"):
        assert ratio[side]["aggregation"].get("groupByFields") == group_by
        assert ratio[side]["aggregation"]["perSeriesAligner"] == "ALIGN_RATE"


def test_latency_percentiles_by_method_and_by_revision(deployment: Deployment) -> None:
    charts = widgets(dashboard_of(deployment))
    by_method = [q["timeSeriesFilter"] for q in series(charts["Latency p50 / p95 / p99 by method (s)"])]
    assert [s["aggregation"]["crossSeriesReducer"] for s in by_method] == [
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_95",
        "REDUCE_PERCENTILE_99",
    ]
    assert {tuple(s["aggregation"]["groupByFields"]) for s in by_method} == {("metric.label.grpc_method",)}
    (by_revision,) = series(charts["Latency p95 by revision (s; the unary SLO's limit is 100 ms)"])
    assert by_revision["timeSeriesFilter"]["aggregation"]["groupByFields"] == ["metric.label.revision"]
    for query in [*by_method, by_revision["timeSeriesFilter"]]:
        assert query["filter"] == DURATIONS
        assert query["aggregation"]["perSeriesAligner"] == "ALIGN_DELTA"


def test_canary_and_stable_revisions_show_side_by_side(deployment: Deployment) -> None:
    charts = widgets(dashboard_of(deployment))
    (calls,) = series(charts["Calls per second by revision"])
    assert calls["timeSeriesFilter"]["aggregation"]["groupByFields"] == ["metric.label.revision"]
    (probes,) = series(charts["Failed probes (startup or liveness gave up)"])
    assert "resource.label.revision_name" in probes["timeSeriesFilter"]["aggregation"]["groupByFields"]


def test_platform_charts_read_cloud_run_metrics(deployment: Deployment) -> None:
    charts = widgets(dashboard_of(deployment))
    (instances,) = series(charts["Instances by state"])
    assert "run.googleapis.com/container/instance_count" in instances["timeSeriesFilter"]["filter"]
    assert instances["timeSeriesFilter"]["aggregation"]["groupByFields"] == ["metric.label.state"]
    startups = [q["timeSeriesFilter"] for q in series(charts["Startup latency p50 / p95 (ms)"])]
    assert {"run.googleapis.com/container/startup_latencies" in s["filter"] for s in startups} == {True}
    assert [s["aggregation"]["crossSeriesReducer"] for s in startups] == [
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_95",
    ]
    (probes,) = series(charts["Failed probes (startup or liveness gave up)"])
    assert probes["timeSeriesFilter"]["filter"].endswith("metric.label.is_healthy = false")
    (refused,) = series(charts["Calls Cloud Run could not hand to an instance (HTTP 5xx)"])
    assert refused["timeSeriesFilter"]["filter"].endswith('metric.label.response_code_class = "5xx"')


def test_dashboard_url_is_exported(deployment: Deployment) -> None:
    project = deployment.namespace["config"].project
    assert deployment.outputs["dashboardUrl"] == (
        f"https://console.cloud.google.com/monitoring/dashboards/builder/{DASHBOARD_ID}?project={project}"
    )
    assert deployment.outputs["callsMetric"] == CALLS_TYPE
    assert deployment.outputs["latencyMetric"] == LATENCY_TYPE


# ---- SLOs ----


def test_slos_belong_to_a_custom_service(deployment: Deployment) -> None:
    service = deployment.one(CUSTOM_SERVICE).inputs
    assert service["serviceId"] == SERVICE_NAME
    assert {slo.inputs["service"] for slo in deployment.all(SLO)} == {SERVICE_NAME}


def test_availability_slo_counts_server_side_codes_as_bad(stack: str, deployment: Deployment) -> None:
    slo = by_name(deployment, SLO)["observability-availability"]
    assert slo["sloId"] == "availability"
    assert slo["goal"] == float(setting(stack, "availabilityGoal", "0.995"))
    assert slo["rollingPeriodDays"] == setting(stack, "sloWindowDays", 28)
    ratio = slo["requestBasedSli"]["goodTotalRatio"]
    assert ratio == {
        "badServiceFilter": f"{ALL_CALLS} AND metric.label.grpc_status = one_of({FAULTS})",
        "totalServiceFilter": ALL_CALLS,
    }


def test_latency_slo_covers_unary_methods_under_the_threshold(stack: str, deployment: Deployment) -> None:
    slo = by_name(deployment, SLO)["observability-latency"]
    assert slo["sloId"] == "latency"
    assert slo["goal"] == float(setting(stack, "latencyGoal", "0.99"))
    assert slo["rollingPeriodDays"] == setting(stack, "sloWindowDays", 28)
    cut = slo["requestBasedSli"]["distributionCut"]
    # The server records seconds (gRFC A66); the setting is in milliseconds.
    assert cut["range"] == {"max": float(setting(stack, "latencyThresholdMs", 100)) / 1000}
    assert cut["distributionFilter"] == (
        f"{DURATIONS} AND metric.label.grpc_method = "
        'one_of("catalog.ProductCatalog/GetProduct", "catalog.ProductCatalog/ListProducts")'
    )


def test_slo_config_reaches_the_slos() -> None:
    deployment = run_program(
        {
            **BASE,
            f"{PROJECT}:availabilityGoal": "0.9995",
            f"{PROJECT}:latencyGoal": "0.95",
            f"{PROJECT}:latencyThresholdMs": 250,
            f"{PROJECT}:sloWindowDays": 7,
        }
    )
    slos = by_name(deployment, SLO)
    assert slos["observability-availability"]["goal"] == 0.9995
    assert slos["observability-latency"]["goal"] == 0.95
    assert slos["observability-latency"]["requestBasedSli"]["distributionCut"]["range"] == {"max": 0.25}
    assert {slo["rollingPeriodDays"] for slo in slos.values()} == {7}
    # 2% of a 7-day budget in an hour is a burn rate of 3.36; 5% in 6 h, 1.4.
    thresholds = {
        name: {c["conditionThreshold"]["thresholdValue"] for c in policy["conditions"]}
        for name, policy in by_name(deployment, ALERT_POLICY).items()
    }
    assert thresholds["observability-availability-fast-burn"] == {3.36}
    assert thresholds["observability-latency-slow-burn"] == {1.4}


# ---- Alerts ----


def slo_name(slo_id: str) -> str:
    return f"projects/{POOL_NUMBER}/services/{SERVICE_NAME}/serviceLevelObjectives/{slo_id}"


@pytest.mark.parametrize("slo_id", ["availability", "latency"])
@pytest.mark.parametrize(
    "case",
    [("fast-burn", 3600, 300, 0.02, "CRITICAL"), ("slow-burn", 21600, 1800, 0.05, "WARNING")],
    ids=["fast-burn", "slow-burn"],
)
def test_burn_rate_alerts_use_two_windows(
    stack: str, deployment: Deployment, slo_id: str, case: tuple[str, int, int, float, str]
) -> None:
    alert, long_s, short_s, share, severity = case
    policy = by_name(deployment, ALERT_POLICY)[f"observability-{slo_id}-{alert}"]
    days = setting(stack, "sloWindowDays", 28)
    rate = round(share * days * 24 * 3600 / long_s, 4)  # 14.4 and 6 for 30 days, per the SRE workbook
    assert policy["combiner"] == "AND"
    assert policy["severity"] == severity
    assert [c["conditionThreshold"] for c in policy["conditions"]] == [
        {
            "filter": f'select_slo_burn_rate("{slo_name(slo_id)}", "{window}s")',
            "comparison": "COMPARISON_GT",
            "thresholdValue": rate,
            "duration": "0s",
        }
        for window in (long_s, short_s)
    ]
    assert policy["notificationChannels"] == []
    assert "docs/observability.md" in policy["documentation"]["content"]


def test_burn_rates_match_the_sre_workbook_for_30_days() -> None:
    deployment = run_program({**BASE, f"{PROJECT}:sloWindowDays": 30})
    rates = {
        name: policy["conditions"][0]["conditionThreshold"]["thresholdValue"]
        for name, policy in by_name(deployment, ALERT_POLICY).items()
        if "burn" in name
    }
    assert rates == {
        "observability-availability-fast-burn": 14.4,
        "observability-availability-slow-burn": 6.0,
        "observability-latency-fast-burn": 14.4,
        "observability-latency-slow-burn": 6.0,
    }


def test_every_alert_names_a_runbook_section_that_exists(deployment: Deployment) -> None:
    headings = {text for _level, text in Page.read(REPO_ROOT / "docs" / "observability.md").headings}
    for name, policy in by_name(deployment, ALERT_POLICY).items():
        sections = re.findall(r'See docs/observability\.md, "([^"]+)"', policy["documentation"]["content"])
        assert sections, f"{name} sends no one to the runbook"
        assert set(sections) <= headings, name


def test_no_ready_instance_alert(stack: str, deployment: Deployment) -> None:
    policy = by_name(deployment, ALERT_POLICY)["observability-no-ready-instance"]
    assert policy["combiner"] == "OR"
    assert policy["severity"] == "CRITICAL"
    conditions = {c["displayName"]: c["conditionThreshold"] for c in policy["conditions"]}
    refused = conditions.pop("Cloud Run answers calls with HTTP 5xx")
    assert refused["filter"] == (
        'metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" AND '
        'resource.label.service_name="catalog-grpc" AND metric.label.response_code_class = "5xx"'
    )
    assert (refused["comparison"], refused["thresholdValue"], refused["duration"]) == (
        "COMPARISON_GT",
        0,
        "300s",
    )
    if setting(stack, "minInstances", 0) >= 1:
        none = conditions.pop("No instance of the service")
        assert none["filter"] == (
            'metric.type="run.googleapis.com/container/instance_count" AND '
            'resource.type="cloud_run_revision" AND resource.label.service_name="catalog-grpc"'
        )
        assert (none["comparison"], none["thresholdValue"], none["duration"]) == ("COMPARISON_LT", 1, "300s")
        assert none["evaluationMissingData"] == "EVALUATION_MISSING_DATA_ACTIVE"
        assert none["aggregations"] == [
            {"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MAX", "crossSeriesReducer": "REDUCE_SUM"}
        ]
    # A stack that scales to zero has no instance whenever it is idle: that alone is no alert.
    assert conditions == {}


def test_startups_failing_alert(deployment: Deployment) -> None:
    policy = by_name(deployment, ALERT_POLICY)["observability-startups-failing"]
    (condition,) = policy["conditions"]
    threshold = condition["conditionThreshold"]
    assert threshold["filter"] == (
        'metric.type="run.googleapis.com/container/completed_probe_count" AND '
        'resource.type="cloud_run_revision" AND resource.label.service_name="catalog-grpc" AND '
        "metric.label.is_healthy = false AND "
        # Readiness fails on every drain (NOT_SERVING from the start of a shutdown): only the probes that
        # stop an instance count.
        'metric.label.probe_type = monitoring.regex.full_match("(?i).*(startup|liveness).*")'
    )
    pattern = re.compile(threshold["filter"].rsplit('full_match("', 1)[1].removesuffix('")'))
    # No source settles the label's spelling: every plausible one of the two fatal kinds matches, and no
    # spelling of readiness does.
    startup = [
        "Startup",
        "STARTUP",
        "startup",
        "StartupProbe",
        "startup_probe",
        "STARTUP_PROBE",
        "startup-probe",
    ]
    liveness = ["Liveness", "LIVENESS", "liveness", "LivenessProbe", "liveness_probe", "LIVENESS_PROBE"]
    fatal = startup + liveness
    assert all(pattern.fullmatch(value) for value in fatal)
    other = ("Readiness", "READINESS", "readiness_probe", "ReadinessProbe", "READINESS_PROBE", "")
    assert not any(pattern.fullmatch(value) for value in other)
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0)
    assert threshold["aggregations"][0]["groupByFields"] == [
        "resource.label.revision_name",
        "metric.label.probe_type",
    ]
    assert policy["severity"] == "ERROR"


def test_alerts_go_to_emails_and_existing_channels() -> None:
    existing = "projects/my-gcp-project-dev/notificationChannels/42"
    deployment = run_program(
        {
            **BASE,
            f"{PROJECT}:alertEmails": ["oncall@example.com", "team.lead+catalog@example.org"],
            f"{PROJECT}:alertChannels": [existing],
        }
    )
    # Resources register concurrently, so their order in the mock is not the program's: key them by address.
    channels = {c.inputs["labels"]["email_address"]: c for c in deployment.all(NOTIFICATION_CHANNEL)}
    assert sorted(channels) == ["oncall@example.com", "team.lead+catalog@example.org"]
    assert {c.inputs["type"] for c in channels.values()} == {"email"}
    # The mocks' state: inputs and computed outputs; policies list the channels in config order.
    names = [
        channels[email].inputs["name"] for email in ("oncall@example.com", "team.lead+catalog@example.org")
    ]
    policies = deployment.all(ALERT_POLICY)
    assert len(policies) == 6
    for policy in policies:
        assert policy.inputs["notificationChannels"] == [*names, existing]


def test_no_channels_by_default_is_not_an_error(deployment: Deployment) -> None:
    assert deployment.all(NOTIFICATION_CHANNEL) == []
    assert {tuple(p.inputs["notificationChannels"]) for p in deployment.all(ALERT_POLICY)} == {()}


def test_everything_waits_for_the_monitoring_and_logging_apis(deployment: Deployment) -> None:
    apis = {api.inputs["service"]: api.urn for api in deployment.all(API)}
    needed = {apis["monitoring.googleapis.com"], apis["logging.googleapis.com"]}
    component = next(r for r in deployment.declared if r.type == "catalog:index:Observability")
    for type_ in OBSERVABILITY_TYPES:
        for resource in deployment.all(type_):
            assert resource.parent == component.urn, resource.name
            assert needed <= set(resource.dependencies), resource.name
            assert resource.name.startswith("observability-")


# ---- Config the program refuses before declaring anything ----

INVALID: list[tuple[str, object, str]] = [
    ("availabilityGoal", "1", "strictly between 0 and 1"),
    ("availabilityGoal", "1.0", "strictly between 0 and 1"),
    ("availabilityGoal", "0", "strictly between 0 and 1"),
    ("availabilityGoal", "0.0", "strictly between 0 and 1"),
    ("availabilityGoal", "99.9", "strictly between 0 and 1"),
    ("availabilityGoal", "-0.5", "strictly between 0 and 1"),
    ("latencyGoal", "high", "strictly between 0 and 1"),
    ("sloWindowDays", 10, "one of 7, 14, 28, 30"),
    ("sloWindowDays", 31, "from 7 to 30"),
    ("sloWindowDays", "month", "integer"),
    ("latencyThresholdMs", 0, "from 1 to 300000"),
    ("alertEmails", ["oncall"], "email address"),
    ("alertEmails", ["on call@example.com"], "email address"),
    ("alertEmails", "oncall@example.com", "list of strings"),
    ("alertEmails", ["a@example.com", "a@example.com"], "must not repeat"),
    ("alertChannels", ["1234"], "projects/PROJECT_ID/notificationChannels/NUMBER"),
    (
        "alertChannels",
        ["projects/my-gcp-project-dev/notificationChannels/abc"],
        "notificationChannels/NUMBER",
    ),
    ("logLevel", "WARNING", "use DEBUG or INFO"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), INVALID, ids=[f"{k}={v}" for k, v, _ in INVALID])
def test_invalid_observability_config_fails_before_any_resource(
    key: str, value: object, allowed: str
) -> None:
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError) as failure:
        run_program({**BASE, f"{PROJECT}:{key}": value}, monitor=monitor)
    message = str(failure.value)
    assert f"{PROJECT}:{key}" in message
    assert str(value[0] if isinstance(value, list) else value) in message
    assert allowed in message
    assert monitor.declared == []


def test_latency_threshold_is_bounded_by_the_request_timeout() -> None:
    with pytest.raises(pulumi.RunError, match=r"from 1 to 60000 \(no call lasts longer"):
        run_program({**BASE, f"{PROJECT}:requestTimeoutSeconds": 60, f"{PROJECT}:latencyThresholdMs": 60001})


# ---- The release gate's query ----


def test_candidate_error_ratio_query(deployment: Deployment) -> None:
    observability = deployment.namespace["observability"]
    query = observability.candidate_error_ratio(SERVICE_NAME, "catalog-grpc-00042-xyz", "10m")
    scope = f'{ALL_CALLS}{{}} AND metric.label.revision = "catalog-grpc-00042-xyz"'
    assert query.total_filter == scope.format("")
    assert query.bad_filter == scope.format(f" AND metric.label.grpc_status = one_of({FAULTS})")
    selector = 'monitored_resource="generic_task",job="catalog-grpc",revision="catalog-grpc-00042-xyz"'
    metric = "workload_googleapis_com:catalog_server_calls"
    assert query.promql == (
        f'sum(increase({metric}{{{selector},grpc_status=~"INTERNAL|UNKNOWN|DATA_LOSS|UNAVAILABLE|'
        f'RESOURCE_EXHAUSTED|DEADLINE_EXCEEDED"}}[10m])) / sum(increase({metric}{{{selector}}}[10m]))'
    )


def test_dashboard_slots_are_all_filled_and_an_unknown_one_is_named() -> None:
    inputs = observability_module().DashboardInputs(SERVICE_NAME, 250)
    text = json.dumps(observability_module().dashboard(inputs))
    assert "{{" not in text
    assert "250 ms" in text
    with pytest.raises(ValueError, match=r"\{\{revision\}\}"):
        observability_module().dashboard(inputs, '{"displayName": "{{revision}}"}')


def observability_module() -> Any:
    return run_program(stack_config("dev")).namespace["observability"]


def test_every_legend_names_labels_its_lines_are_grouped_by(deployment: Deployment) -> None:
    for title, widget in widgets(dashboard_of(deployment)).items():
        for data_set in widget.get("xyChart", {}).get("dataSets", []):
            query = data_set["timeSeriesQuery"]
            grouped = query.get("timeSeriesFilter") or query["timeSeriesFilterRatio"]["numerator"]
            group_by = grouped["aggregation"].get("groupByFields", [])
            fields = {f.replace(".label.", ".labels.") for f in group_by}
            assert set(re.findall(r"\$\{([a-z_.]+)\}", data_set["legendTemplate"])) == fields, title
