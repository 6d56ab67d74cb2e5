"""Which calls spend the error budget and stop a canary, and the Monitoring filters that count them."""

from __future__ import annotations

import grpc
import pytest

from contract.telemetry import SERVER_FAULT_CODES, calls_filter, error_ratio_filters, latency_filter

CALLS = "workload.googleapis.com/catalog.server.calls"
DURATIONS = "workload.googleapis.com/grpc.server.call.duration"
SCOPE = 'resource.type="generic_task" AND resource.label.job="catalog-grpc"'
FAULTS = '"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"'
# The codes that are the caller's doing, or no failure at all: they never count against the server.
NOT_OURS = {
    "OK",
    "CANCELLED",  # the caller left
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "OUT_OF_RANGE",
    "FAILED_PRECONDITION",
    "ABORTED",
    "UNIMPLEMENTED",  # a method the API does not have: the caller's stub is wrong
    "PERMISSION_DENIED",  # Cloud Run's IAM answers these before the server sees the call
    "UNAUTHENTICATED",
}


@pytest.mark.parametrize("code", [code.name for code in grpc.StatusCode])
def test_every_status_code_is_decided_one_way(code: str) -> None:
    # A code gRPC adds fails here until someone decides whose fault it is.
    assert (code in SERVER_FAULT_CODES) != (code in NOT_OURS)


def test_fault_codes_are_status_code_names_once_each() -> None:
    assert len(set(SERVER_FAULT_CODES)) == len(SERVER_FAULT_CODES)
    assert set(SERVER_FAULT_CODES) <= {code.name for code in grpc.StatusCode}


def test_all_calls_and_server_faults_of_every_revision() -> None:
    scope = f'metric.type="{CALLS}" AND {SCOPE}'
    assert calls_filter("catalog-grpc") == scope
    assert (
        calls_filter("catalog-grpc", faults_only=True)
        == f"{scope} AND metric.label.grpc_status = one_of({FAULTS})"
    )


def test_the_gates_filters_narrow_to_one_revision_of_one_service() -> None:
    total, bad = error_ratio_filters(CALLS, "catalog-grpc", "catalog-grpc-00042-xyz")
    revision = 'metric.label.revision = "catalog-grpc-00042-xyz"'
    assert total == f'metric.type="{CALLS}" AND {SCOPE} AND {revision}'
    assert (
        bad
        == f'metric.type="{CALLS}" AND {SCOPE} AND metric.label.grpc_status = one_of({FAULTS}) AND {revision}'
    )


@pytest.mark.parametrize("region", [None, ""])
def test_no_region_reads_every_region(region: str | None) -> None:
    for filter_ in error_ratio_filters(CALLS, "catalog-grpc", "catalog-grpc-00042-xyz", region):
        assert "location" not in filter_


def test_a_region_narrows_both_filters_to_its_revisions() -> None:
    # A revision has the same name in every region (same image and settings): the location tells them apart.
    everywhere = error_ratio_filters(CALLS, "catalog-grpc", "catalog-grpc-00042-xyz")
    there = error_ratio_filters(CALLS, "catalog-grpc", "catalog-grpc-00042-xyz", "europe-west1")
    clause = ' AND resource.label.location="europe-west1"'
    assert there == (everywhere[0] + clause, everywhere[1] + clause)


def test_the_latency_filter_selects_the_methods_as_the_server_labels_them() -> None:
    methods = ("/catalog.ProductCatalog/GetProduct", "/catalog.ProductCatalog/ListProducts")
    assert latency_filter("catalog-grpc", methods, revision="r-1", region="us-east1") == (
        f'metric.type="{DURATIONS}" AND {SCOPE} AND metric.label.grpc_method = '
        'one_of("catalog.ProductCatalog/GetProduct", "catalog.ProductCatalog/ListProducts") AND '
        'metric.label.revision = "r-1" AND resource.label.location="us-east1"'
    )
