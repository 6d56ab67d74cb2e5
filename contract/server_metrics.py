"""The server's metrics as the server records them and as Cloud Monitoring stores them: names defined once.

The server (service/telemetry.py) records OpenTelemetry instruments under the OTel names; OpenTelemetry's
Cloud Monitoring exporter writes them as `workload.googleapis.com/<name>` on the `generic_task` monitored
resource (the resource detector's mapping for Cloud Run: `location` the region, `job` the service,
`task_id` the instance), with each attribute a metric label whose dots become underscores. The SLOs,
alerts and dashboard (infra/catalog_infra/observability.py) and the release gate (release/monitoring.py)
read them through the Monitoring names below.
"""

from __future__ import annotations

# gRFC A66: each call's duration in seconds, by method and status.
CALL_DURATION = "grpc.server.call.duration"
# Calls ended, by method and status: Monitoring's ratio SLOs need an INT64 or DOUBLE series, not a
# distribution's count. Counted in a dict, read once per export (an observable counter): no SDK work per call.
CALLS = "catalog.server.calls"
METHOD_ATTRIBUTE = "grpc.method"
STATUS_ATTRIBUTE = "grpc.status"
# The monitored resource has no revision label: every point carries Cloud Run's revision (K_REVISION).
REVISION_ATTRIBUTE = "revision"

METRIC_PREFIX = "workload.googleapis.com"
MONITORED_RESOURCE = "generic_task"
SERVICE_LABEL = "resource.label.job"
REGION_LABEL = "resource.label.location"
INSTANCE_LABEL = "resource.label.task_id"


def monitoring_type(name: str) -> str:
    """The Monitoring metric type the exporter writes an instrument as."""
    return f"{METRIC_PREFIX}/{name}"


def monitoring_label(attribute: str) -> str:
    """The metric label an attribute becomes: every character but letters and digits turned to `_`."""
    return "metric.label." + "".join(c if c.isalnum() else "_" for c in attribute)


DURATION_TYPE = monitoring_type(CALL_DURATION)
CALLS_TYPE = monitoring_type(CALLS)
METHOD_LABEL = monitoring_label(METHOD_ATTRIBUTE)
STATUS_LABEL = monitoring_label(STATUS_ATTRIBUTE)
REVISION_LABEL = monitoring_label(REVISION_ATTRIBUTE)
