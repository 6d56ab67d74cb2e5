"""The release reads the same error ratio the dashboard and SLOs define (infra's observability component)."""

from __future__ import annotations

import pytest

from release import monitoring
from tests.infra.harness import infra_module


@pytest.mark.parametrize(
    ("calls_metric", "service", "revision"),
    [
        ("logging.googleapis.com/user/catalog_grpc_calls", "catalog-grpc", "catalog-grpc-4e74e74e74"),
        ("logging.googleapis.com/user/shop_calls", "shop", "shop-prn7-0123456789"),
    ],
)
def test_the_filters_are_candidate_error_ratios(calls_metric: str, service: str, revision: str) -> None:
    query = infra_module("observability").candidate_error_ratio(calls_metric, service, revision)
    assert monitoring.error_ratio_filters(calls_metric, service, revision) == (
        query.total_filter,
        query.bad_filter,
    )


def test_the_failure_codes_are_the_slos() -> None:
    assert infra_module("observability").SERVER_FAULT_CODES == monitoring.SERVER_FAULT_CODES


def test_a_region_narrows_both_filters_to_its_revisions() -> None:
    # A revision has the same name in every region (same image and settings): the location tells them apart.
    query = infra_module("observability").candidate_error_ratio(
        "m", "catalog-grpc", "catalog-grpc-4e74e74e74"
    )
    total, bad = monitoring.error_ratio_filters(
        "m", "catalog-grpc", "catalog-grpc-4e74e74e74", "europe-west1"
    )
    clause = ' AND resource.label.location="europe-west1"'
    assert (total, bad) == (query.total_filter + clause, query.bad_filter + clause)
