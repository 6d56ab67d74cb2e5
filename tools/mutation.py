"""Mutation score of the modules where a bug costs users most: `make mutation [MODULE=area-or-file]`.

Each area of tools/mutation.toml is one mutmut run, in the virtualenv its tests need, from a fresh mutants/
copy of the tracked files; the score per module is killed / (mutants - equivalent). The run fails when any
module is below the file's target. docs/testing.md explains the areas and how to raise a score.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutation.toml"
MUTANTS = ROOT / "mutants"
MAIN_PYTHON = ROOT / ".venv" / "bin" / "python"

# mutmut's exit codes (mutmut.stats.status_by_exit_code). A timeout is a kill: the mutant made a test hang.
KILLED = {1, 3, 24, -24, 36, 152, 255}
SURVIVED = {0}
NOT_COVERED = {5, 33}


@dataclass(frozen=True)
class Area:
    """Files mutated together and the tests that judge them."""

    name: str
    files: tuple[str, ...]
    tests: tuple[str, ...]
    venv: str = ".venv"
    cwd: str = "."

    def repo_path(self, file: str) -> str:
        """The file's path from the repository root."""
        return str(Path(self.cwd) / file) if self.cwd != "." else file


@dataclass
class Score:
    """What became of one module's mutants."""

    killed: int = 0
    survived: list[str] = field(default_factory=list)
    not_covered: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def counted(self) -> int:
        """Mutants that a test could have killed."""
        return self.killed + len(self.survived) + len(self.not_covered)

    @property
    def percent(self) -> float:
        """Killed share of the mutants that are not equivalent."""
        return 100.0 * self.killed / self.counted if self.counted else 100.0


def load_config() -> tuple[float, dict[str, Area], dict[str, str]]:
    """The target, the areas and the equivalent mutants with their reasons."""
    data = tomllib.loads(CONFIG.read_text())
    areas = {
        name: Area(
            name=name,
            files=tuple(spec["files"]),
            tests=tuple(spec["tests"]),
            venv=spec.get("venv", ".venv"),
            cwd=spec.get("cwd", "."),
        )
        for name, spec in data["areas"].items()
    }
    return float(data["target"]), areas, dict(data.get("equivalent", {}))


def select(areas: dict[str, Area], module: str) -> list[tuple[Area, tuple[str, ...]]]:
    """The areas to run and their files: every area, or those MODULE names (areas or files, by commas)."""
    if not module:
        return [(area, area.files) for area in areas.values()]
    chosen: dict[str, list[str]] = {}
    for name in module.split(","):
        if name in areas:
            chosen.setdefault(name, []).extend(areas[name].files)
            continue
        found = [(a.name, f) for a in areas.values() for f in a.files if name in (f, a.repo_path(f))]
        if not found:
            known = ", ".join([*areas, *(a.repo_path(f) for a in areas.values() for f in a.files)])
            raise SystemExit(
                f"MODULE: {name} is neither an area nor a file of tools/mutation.toml; one of: {known}"
            )
        chosen.setdefault(found[0][0], []).append(found[0][1])
    return [(areas[name], tuple(dict.fromkeys(files))) for name, files in chosen.items()]


def module_name(repo_path: str) -> str:
    """The dotted prefix mutmut gives a file's mutants."""
    return repo_path.removesuffix(".py").replace("/", ".")


def run_area(area: Area, files: tuple[str, ...]) -> None:
    """One mutmut run over `files`, in the area's virtualenv, from the repository root."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    python = ROOT / area.venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `make setup policy-setup` first")
    # The pack's tests read what the program declares once, not once per mutant (policy/tests/engine.py).
    env = {
        **os.environ,
        "MAIN_PYTHON": str(MAIN_PYTHON),
        "POLICY_RESOURCES_CACHE": str(MUTANTS / "policy-resources.json"),
    }
    argv = [str(python), str(Path(__file__)), "--mutmut", area.name, *files]
    tests = " ".join(str(Path(area.cwd) / t) for t in area.tests)
    print(f"== {area.name}: {len(files)} file(s), tests {tests}", flush=True)
    subprocess.run(argv, cwd=ROOT, env=env, check=False)


def scores(area: Area, files: tuple[str, ...], equivalent: dict[str, str]) -> dict[str, Score]:
    """Read mutmut's results for each file from mutants/<file>.meta."""
    result: dict[str, Score] = {}
    for file in files:
        path = area.repo_path(file)
        score = result[path] = Score()
        meta_path = MUTANTS / f"{path}.meta"
        if not meta_path.exists():
            continue
        exit_codes: dict[str, int | None] = json.loads(meta_path.read_text())["exit_code_by_key"]
        for mutant, code in sorted(exit_codes.items()):
            if mutant in equivalent:
                score.equivalent.append(mutant)
            elif code in KILLED:
                score.killed += 1
            elif code in SURVIVED:
                score.survived.append(mutant)
            elif code in NOT_COVERED:
                score.not_covered.append(mutant)
            else:
                score.unchecked += 1
    return result


def report(all_scores: dict[str, Score], target: float) -> bool:
    """Print the table and the survivors; True when every module reaches the target."""
    width = max(len(p) for p in all_scores)
    print(f"\n{'module':<{width}}  killed  survived  no-tests  equivalent  score")
    passed = True
    for path, s in all_scores.items():
        ok = s.percent >= target and s.unchecked == 0
        passed = passed and ok
        print(
            f"{path:<{width}}  {s.killed:6}  {len(s.survived):8}  {len(s.not_covered):8}  "
            f"{len(s.equivalent):10}  {s.percent:5.1f}%{'' if ok else '  < target'}"
            f"{f'  ({s.unchecked} not checked)' if s.unchecked else ''}"
        )
    for s in all_scores.values():
        for mutant in s.survived + s.not_covered:
            print(f"  survived: {mutant}")
    print("(the change each made: .venv/bin/python -m tools.mutation --show NAME)")
    print(f"\ntarget {target:g}% per module: {'met' if passed else 'NOT met'}")
    return passed


def mutmut_cli(area: Area, files: Sequence[str]) -> Any:
    """The mutmut command line, configured to mutate `files` of `area` and run the area's tests."""
    settings: dict[str, Any] = {
        "source_paths": [area.repo_path(f) for f in files],
        "pytest_add_cli_args_test_selection": [str(Path(area.cwd) / t) for t in area.tests],
        # The alias plugin before anything imports the program or the pack; the slow tests (image build,
        # 100k catalogs) stay out, as in `make test-fast`.
        "pytest_add_cli_args": [
            *("-p", "tools.mutation_alias", "-m", "not slow", "-p", "no:cacheprovider"),
            # It imports the program from a copy of the checkout, which the alias would hide.
            *(
                "--deselect",
                "tests/infra/test_checkouts.py::test_build_inputs_do_not_depend_on_where_the_checkout_lives",
            ),
            # It checks that the editable install points into the checkout, which mutants/ is not (and no
            # mutant changes the install).
            *("--deselect", "tests/infra/test_packaging.py"),
        ],
        # grpc is not fork-safe once a test has started a server: fork each mutant from a clean server.
        "process_isolation": "forkserver",
        "use_git_change_detection": False,
        # MUTATION_DEBUG=1 shows the tests' own output (why a clean run failed).
        "debug": os.environ.get("MUTATION_DEBUG") == "1",
    }
    # mutmut reads its settings from pyproject.toml or setup.cfg when its modules are imported: give it these
    # instead, before importing its command line.
    import mutmut.configuration  # noqa: PLC0415

    mutmut.configuration._config_reader = lambda: settings.get
    from mutmut.__main__ import cli  # noqa: PLC0415

    return cli


def run_mutmut(area_name: str, files: list[str]) -> None:
    """Inside the area's virtualenv: mutate `files` in a fresh mutants/ and run their tests."""
    area = load_config()[1][area_name]
    stage_tracked_files()
    cli = mutmut_cli(area, files)
    try:
        cli.main(["run", "--max-children", os.environ.get("MUTATION_JOBS", "1")], standalone_mode=False)
    finally:
        # The change each survivor made, while mutants/ still holds it (the next run replaces it).
        for file in files:
            meta_path = MUTANTS / f"{area.repo_path(file)}.meta"
            exit_codes = json.loads(meta_path.read_text())["exit_code_by_key"] if meta_path.exists() else {}
            for mutant, code in sorted(exit_codes.items()):
                if code in SURVIVED | NOT_COVERED:
                    cli.main(["show", mutant], standalone_mode=False)


def show(mutant: str) -> None:
    """The change a mutant made (after a run that produced it)."""
    for area in load_config()[1].values():
        if any(mutant.startswith(module_name(area.repo_path(f)) + ".") for f in area.files):
            mutmut_cli(area, area.files)(["show", mutant])
            return
    raise SystemExit(f"{mutant} is not a mutant of a file in tools/mutation.toml")


def stage_tracked_files() -> None:
    """Copy the files git tracks (or would) into mutants/: tests read docs, configs and the program there."""
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        source = ROOT / name
        if not name or not source.is_file():
            continue
        target = MUTANTS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    # Tests that start the program or the pack as a process find their interpreters beside them.
    for venv in (".venv", "policy/.venv"):
        (MUTANTS / venv).symlink_to(ROOT / venv, target_is_directory=True)
    # Such a process imports mutated code too, and mutmut's switch in it reads its settings from the working
    # directory (the root; policy/ for the pack; infra/ for the program, which runs there as under
    # Pulumi): any source path will do, since it only runs mutants.
    for folder in (MUTANTS, MUTANTS / "policy", MUTANTS / "infra"):
        (folder / "setup.cfg").write_text("[mutmut]\nsource_paths = .\n")


def main(argv: list[str]) -> int:
    """Run every area (or MODULE's), print the score per module, fail below the target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--module", default="", help="an area of tools/mutation.toml or one of its files")
    parser.add_argument("--show", metavar="NAME", help="the change a surviving mutant made (after a run)")
    parser.add_argument("--mutmut", nargs="+", metavar=("AREA", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--list-areas", action="store_true", help="print the areas' names as a JSON list (the weekly jobs)"
    )
    args = parser.parse_args(argv)
    if args.list_areas:
        print(json.dumps(list(load_config()[1])))
        return 0
    if args.show:
        show(args.show)
        return 0
    if args.mutmut:
        run_mutmut(args.mutmut[0], args.mutmut[1:])
        return 0
    target, areas, equivalent = load_config()
    all_scores: dict[str, Score] = {}
    for area, files in select(areas, args.module):
        run_area(area, files)
        all_scores.update(scores(area, files, equivalent))
    return 0 if report(all_scores, target) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
