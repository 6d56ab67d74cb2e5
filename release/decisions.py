"""What a release decided, recorded on each region's service where an operator finds it afterwards.

A decision is taken after each judgement of the candidate (every gate's verdict and figures) and says what
the release did about it: advanced the candidate to its next share, released it, or rolled it back. It is
written as a compact JSON annotation (contract.release.DECISION) in the same UpdateService as the traffic it
caused, so the two are one write; the one before it moves into a short history (DECISION_HISTORY). Both stay
small: figures are cut to FIGURES_MAX_CHARS and the history keeps HISTORY_LENGTH decisions, well under the
256 KiB that Kubernetes-style annotations (which Cloud Run follows) may hold in all.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.release import DECISION, DECISION_HISTORY

ADVANCED = "advanced"  # the judgement passed: the candidate got its next share
RELEASED = "released"  # the judgement at 100% passed: the candidate is the stable revision now
ROLLED_BACK = "rolled back"  # a check failed, Cloud Run refused a write, or an operator rolled back
VERDICTS = (ADVANCED, RELEASED, ROLLED_BACK)

FIGURES_MAX_CHARS = 300  # a gate's line (and a rollback's reason) beyond this is cut
HISTORY_LENGTH = 9  # earlier decisions kept besides the last


@dataclass(frozen=True)
class Judged:
    """One gate's verdict in a judgement: its name, whether it passed, its figures or what failed."""

    gate: str
    passed: bool
    line: str = ""

    def text(self) -> str:
        """`error-ratio: ok, 0 of 200 calls failed (0.0%)`, as the command prints it."""
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.gate}: {verdict}, {self.line}" if self.line else f"{self.gate}: {verdict}"


@dataclass(frozen=True)
class Decision:
    """What the release did in one region after one judgement (or an operator's rollback).

    `step` is the candidate's share when it was decided and `to` its share after; `stable` the revision
    that served the rest; `gates` the verdicts at `step` (none for an operator's rollback, or for a
    region a failure elsewhere rolled back before its turn); `reason` why a rollback happened.
    """

    time: str  # UTC, ISO 8601 to the second
    region: str
    candidate: str
    stable: str
    step: int
    verdict: str
    to: int
    gates: tuple[Judged, ...] = ()
    reason: str = ""

    def to_json(self) -> str:
        """The annotation's value: compact JSON, figures and reason cut to FIGURES_MAX_CHARS."""
        document: dict[str, Any] = {
            "time": self.time,
            "region": self.region,
            "candidate": self.candidate,
            "stable": self.stable,
            "step": self.step,
            "verdict": self.verdict,
            "to": self.to,
            "gates": [
                {"gate": judged.gate, "passed": judged.passed, "figures": _cut(judged.line)}
                for judged in self.gates
            ],
        }
        if self.reason:
            document["reason"] = _cut(self.reason)
        return _dumps(document)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """The decision `to_json` wrote; ValueError for anything else."""
        return cls.from_document(json.loads(text))

    @classmethod
    def from_document(cls, document: object) -> Decision:
        """The decision a parsed annotation holds; ValueError for anything else."""
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        gates = document.get("gates", [])
        if not isinstance(gates, list) or not all(isinstance(judged, dict) for judged in gates):
            raise ValueError("gates: not a list of objects")
        decision = cls(
            time=_field(document, "time", str),
            region=_field(document, "region", str),
            candidate=_field(document, "candidate", str),
            stable=_field(document, "stable", str),
            step=_field(document, "step", int),
            verdict=_field(document, "verdict", str),
            to=_field(document, "to", int),
            gates=tuple(
                Judged(_field(j, "gate", str), _field(j, "passed", bool), _field(j, "figures", str))
                for j in gates
            ),
            reason=_field(document, "reason", str) if "reason" in document else "",
        )
        if decision.verdict not in VERDICTS:
            raise ValueError(f"verdict {decision.verdict!r}: not one of {list(VERDICTS)}")
        return decision

    def summary(self) -> str:
        """What was done, on one line: `... advanced R from 10% to 50% (stable S)`."""
        share = f"at {self.step}%" if self.step == self.to else f"from {self.step}% to {self.to}%"
        line = f"{self.time} {self.verdict} {self.candidate} {share} (stable {self.stable})"
        return f"{line}: {self.reason}" if self.reason else line

    def line(self) -> str:
        """The summary and every gate's verdict with its figures."""
        return "; ".join([self.summary(), *(judged.text() for judged in self.gates)])


def stamp(unix: float) -> str:
    """Unix time as a decision's time: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def annotations_after(decision: Decision, current: Mapping[str, str]) -> dict[str, str]:
    """The release's annotations after `decision`, given the service's `current` ones.

    The decision becomes the last; the last before it joins the history, which keeps the newest
    HISTORY_LENGTH. What cannot be read as a decision (an annotation edited by hand) is dropped.
    """
    history = [earlier.to_json() for earlier in _history(current)]
    if DECISION in current:
        with contextlib.suppress(ValueError):
            history.append(Decision.from_json(current[DECISION]).to_json())
    earlier = ",".join(history[-HISTORY_LENGTH:])
    return {DECISION: decision.to_json(), DECISION_HISTORY: f"[{earlier}]"}


def recorded(current: Mapping[str, str]) -> list[str]:
    """Every decision recorded on a service, newest first, each on one line; what cannot be read says so."""
    if DECISION not in current:
        return ["no decision recorded"]
    try:
        last = Decision.from_json(current[DECISION]).line()
    except ValueError as error:
        last = f"{DECISION} holds no decision this tool wrote ({error}): {current[DECISION][:80]!r}"
    return [last, *(f"  earlier: {decision.line()}" for decision in reversed(_history(current)))]


def _history(current: Mapping[str, str]) -> list[Decision]:
    """The earlier decisions recorded, oldest first; none when the annotation cannot be read."""
    try:
        documents = json.loads(current.get(DECISION_HISTORY, "[]"))
        if not isinstance(documents, list):
            return []
        return [Decision.from_document(document) for document in documents]
    except ValueError:
        return []


def _field(document: Mapping[str, object], key: str, kind: type) -> Any:
    value = document.get(key)
    # bool is an int to Python, and a step of true is no share.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key}: {value!r}, expected {kind.__name__}")
    return value


def _cut(text: str) -> str:
    return text if len(text) <= FIGURES_MAX_CHARS else text[: FIGURES_MAX_CHARS - 3] + "..."


def _dumps(document: object) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
