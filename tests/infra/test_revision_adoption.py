"""Adopting a service deployed before releases: what is kept of its split, and what the refusal tells.

Beside test_revision_edges.py (which keeps every route the program does not own), the cases where a live
route is dropped or the split refused, each at its edge.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.harness import infra_module

revisions: Any = infra_module("revisions")
LiveRoute = revisions.LiveRoute
LiveService = revisions.LiveService

SERVING = "catalog-grpc-0ld0ld0ld0"
OLDER = "catalog-grpc-01de401de4"
# The fix a refusal names, and the step after it, as an operator would copy them.
FIX = "`gcloud run services update-traffic SERVICE --set-tags stable=REVISION`, then run `pulumi up`"


def test_adopting_drops_an_untagged_route_without_traffic() -> None:
    # An untagged revision at 0% serves nothing and has no URL: declaring it would only clutter the split.
    live = LiveService(routes=(LiveRoute(SERVING, 100), LiveRoute(OLDER, 0)), latest_ready_revision=SERVING)
    assert revisions.serving_routes(live) == (LiveRoute(SERVING, 100, "stable"),)


def test_a_refused_split_ends_with_the_command_that_fixes_it() -> None:
    live = LiveService(routes=(LiveRoute(SERVING, 50), LiveRoute(OLDER, 50)), latest_ready_revision=SERVING)
    with pytest.raises(revisions.LiveTrafficError) as refused:
        revisions.serving_routes(live)
    assert str(refused.value).endswith(f"e.g. {FIX}")
    assert str(refused.value).startswith(
        f"the service's traffic is split [('{SERVING}', 50, ''), ('{OLDER}', 50, '')] with no revision"
    )
