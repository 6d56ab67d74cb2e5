"""Rules written as generators of messages, adapted to the SDK's validate(args, report_violation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pulumi_policy import ReportViolation, ResourceValidation, ResourceValidationArgs

Check = Callable[[ResourceValidationArgs], Iterator[str]]


def rule(check: Check) -> ResourceValidation:
    """A validate function that reports each message `check` yields as a violation of the resource."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args):
            report_violation(message, None)

    validate.__doc__ = check.__doc__
    return validate
