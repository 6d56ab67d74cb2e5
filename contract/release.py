"""What a release shares between the Pulumi program and the release tool: tags, step rule, decision keys.

The program declares the tags on the revisions it deploys (infra/catalog_infra/revisions.py) and checks the
stack's canarySteps; `python -m release` moves traffic between the same tags, in steps checked by the same
rule. The release records its decisions in the service's annotations under DECISION_ANNOTATIONS, which the
program declares as it finds them live, so that its next `pulumi up` keeps them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

STABLE = "stable"  # the revision callers are served by
CANDIDATE = "candidate"  # the newest revision the program deployed, earning its traffic
PREVIOUS = "previous"  # the revision a completed release replaced: where `rollback` returns to
RELEASE_TAGS = (STABLE, CANDIDATE, PREVIOUS)

# The service annotations a release owns (the project's name as their prefix: not one of the namespaces
# Cloud Run keeps for itself). The last decision, and the ones before it, oldest first.
DECISION = "catalog-grpc/release-decision"
DECISION_HISTORY = "catalog-grpc/release-history"
DECISION_ANNOTATIONS = (DECISION, DECISION_HISTORY)

# What canary steps are, in words, for messages that refuse them.
STEPS_RULE = "increasing percentages from 1 to 100 that ends at 100, such as [10, 50, 100]"


def pr_tag(number: int) -> str:
    """The tag of a pull request's revision."""
    return f"pr-{number}"


def check_steps(steps: Sequence[object]) -> tuple[int, ...]:
    """Canary steps: increasing percentages from 1 to 100 that end at 100; ValueError says what is wrong.

    [100] releases all at once (after the same checks as any step).
    """
    percentages = [step for step in steps if isinstance(step, int) and not isinstance(step, bool)]
    if not steps or len(percentages) != len(steps) or any(not 1 <= step <= 100 for step in percentages):
        raise ValueError(f"steps {list(steps)}: each must be a percentage from 1 to 100")
    if any(later <= earlier for earlier, later in itertools.pairwise(percentages)):
        raise ValueError(f"steps {list(steps)}: must increase")
    if percentages[-1] != 100:
        raise ValueError(f"steps {list(steps)}: the last must be 100 (the candidate gets every request)")
    return tuple(percentages)
