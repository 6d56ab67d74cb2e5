"""The probe timings the pages state are the ones infra/catalog_infra/grpc_service.py declares.

The constants are read from the module (every `<KIND>_PERIOD_SECONDS`, `_TIMEOUT_SECONDS`,
`_FAILURE_THRESHOLD`), so a probe added there must be added to the table, and a changed period shows up
wherever a page still says the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalog_infra import grpc_service

from tests.docs.markdown import Page, Table, pages

PAGES = pages()
# Cloud Run's own bound, which a page may state beside the probe's: a startup probe must succeed within 240 s.
CLOUD_RUN_FIGURES = {240}
_FIGURE = re.compile(r"(\d+(?:\.\d+)?) ?s\b")


@dataclass(frozen=True)
class Probe:
    period: int
    timeout: int
    failure_threshold: int

    @property
    def gives_up_after(self) -> int:
        return self.period * self.failure_threshold

    @property
    def figures(self) -> set[int]:
        return {self.period, self.timeout, self.gives_up_after}


def declared_probes() -> dict[str, Probe]:
    """kind ("startup", "liveness", ...) -> its timings, from grpc_service's module constants."""
    suffix = "_PERIOD_SECONDS"
    kinds = [name.removesuffix(suffix) for name in vars(grpc_service) if name.endswith(suffix)]
    return {
        kind.lower(): Probe(
            period=getattr(grpc_service, f"{kind}_PERIOD_SECONDS"),
            timeout=getattr(grpc_service, f"{kind}_TIMEOUT_SECONDS"),
            failure_threshold=getattr(grpc_service, f"{kind}_FAILURE_THRESHOLD"),
        )
        for kind in kinds
    }


def probe_tables(page: Page) -> list[Table]:
    return [table for table in page.tables() if table.header[0].lower() == "probe"]


def _number(cell: str) -> int:
    match = re.search(r"\d+", cell)
    assert match, f"no figure in {cell!r}"
    return int(match[0])


def _table_mismatches(table: Table) -> list[str]:
    probes = declared_probes()
    columns = {
        "period": table.column("period"),
        "timeout": table.column("timeout"),
        "failure threshold": table.column("failure threshold"),
        "gives up after": table.column("gives up after"),
    }
    problems: list[str] = []
    for row in table.rows:
        kind = row[0].strip("`* ").split()[0].lower()
        probe = probes.get(kind)
        if probe is None:
            problems.append(f"{kind}: grpc_service declares no such probe")
            continue
        expected = {
            "period": probe.period,
            "timeout": probe.timeout,
            "failure threshold": probe.failure_threshold,
            "gives up after": probe.gives_up_after,
        }
        for name, column in columns.items():
            if column is not None and _number(row[column]) != expected[name]:
                problems.append(f"{kind} {name}: the table says {row[column]!r}, the code {expected[name]}")
    return problems


def stated_figures(page: Page) -> list[str]:
    """Each figure in seconds a sentence gives a kind of probe that is not among that probe's timings.

    A figure belongs to the probe named last before it in the sentence (or, before any, to the first named),
    so "the startup probe waits up to 10 s, the liveness probe every 10 s" is caught for the startup probe.
    """
    probes = declared_probes()
    mention = re.compile(rf"\b({'|'.join(probes)}) probe", re.IGNORECASE)
    wrong: list[str] = []
    for sentence in page.sentences():
        mentions = [(match.start(), match[1].lower()) for match in mention.finditer(sentence)]
        if not mentions:
            continue
        for figure in _FIGURE.finditer(sentence):
            before = [kind for start, kind in mentions if start < figure.start()]
            kind = before[-1] if before else mentions[0][1]
            allowed = CLOUD_RUN_FIGURES | probes[kind].figures
            if float(figure[1]) not in allowed:
                wrong.append(f"{sentence!r}: {figure[0]} for the {kind} probe, which has {sorted(allowed)} s")
    return wrong


def test_a_probe_table_gives_every_probe_its_timings() -> None:
    tables = [table for page in PAGES for table in probe_tables(page)]
    assert tables, "no page has a probe table"
    documented = {row[0].strip("`* ").split()[0].lower() for table in tables for row in table.rows}
    assert sorted(documented) == sorted(declared_probes())
    assert [problem for table in tables for problem in _table_mismatches(table)] == []


def test_every_probe_timing_a_page_states_is_the_codes() -> None:
    assert [problem for page in PAGES for problem in stated_figures(page)] == []


@pytest.mark.parametrize(
    ("sentence", "wrong"),
    [
        ("The startup probe asks every 1 s, for up to 30 s (Cloud Run allows 240 s).", 0),
        ("The startup probe asks every 1 s, for up to 35 s.", 1),
        # 10 s is the liveness probe's period, not a figure of the startup probe it follows
        ("A startup probe waits (every second, up to 10 s), a liveness probe asks every 10 s.", 1),
        ("Every 10 s the liveness probe asks, with a 2 s timeout; 3 failures take 30 s.", 0),
    ],
)
def test_figures_are_given_to_the_probe_they_follow(
    sentence: str, wrong: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "STARTUP_PERIOD_SECONDS": 1,
        "STARTUP_TIMEOUT_SECONDS": 1,
        "STARTUP_FAILURE_THRESHOLD": 30,
        "LIVENESS_PERIOD_SECONDS": 10,
        "LIVENESS_TIMEOUT_SECONDS": 2,
        "LIVENESS_FAILURE_THRESHOLD": 3,
    }.items():
        monkeypatch.setattr(grpc_service, name, value)
    path = tmp_path / "page.md"
    path.write_text(f"# Probes\n\n{sentence}\n", encoding="utf-8")
    assert len(stated_figures(Page.read(path))) == wrong
