"""The release reads the same error ratio the dashboard and SLOs define (infra's observability component)."""

from __future__ import annotations

import pytest

from contract.server_metrics import CALLS_TYPE
from release import monitoring
from tests.infra.harness import infra_module


@pytest.mark.parametrize(
    ("service", "revision"),
    [("catalog-grpc", "catalog-grpc-4e74e74e74"), ("shop", "shop-prn7-0123456789")],
)
def test_the_filters_are_candidate_error_ratios(service: str, revision: str) -> None:
    query = infra_module("observability").candidate_error_ratio(service, revision)
    assert monitoring.error_ratio_filters(CALLS_TYPE, service, revision) == (
        query.total_filter,
        query.bad_filter,
    )


def test_the_failure_codes_are_the_slos() -> None:
    assert infra_module("observability").SERVER_FAULT_CODES == monitoring.SERVER_FAULT_CODES


def test_a_region_narrows_both_filters_to_its_revisions() -> None:
    # A revision has the same name in every region (same image and settings): the location tells them apart.
    query = infra_module("observability").candidate_error_ratio("catalog-grpc", "catalog-grpc-4e74e74e74")
    total, bad = monitoring.error_ratio_filters(
        CALLS_TYPE, "catalog-grpc", "catalog-grpc-4e74e74e74", "europe-west1"
    )
    clause = ' AND resource.label.location="europe-west1"'
    assert (total, bad) == (query.total_filter + clause, query.bad_filter + clause)


@pytest.mark.parametrize(
    ("counts", "share", "expected"),
    [
        ([10, 0, 0], 0.5, 0.5),  # half way into the first bucket, [0, 1]
        ([0, 10, 0], 0.95, 1.95),  # 95% of the way through [1, 2]
        ([90, 10, 0], 0.95, 1.5),  # the 95th of 100 values is the 5th of the second bucket's 10
        ([0, 0, 10], 0.99, 2.0),  # in the overflow bucket: the last bound is all an estimate can say
    ],
)
def test_percentiles_read_from_buckets(counts: list[int], share: float, expected: float) -> None:
    assert monitoring.percentile([1.0, 2.0], counts, share) == pytest.approx(expected)


def test_a_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        monitoring.percentile([1.0], [0, 0], 0.95)
