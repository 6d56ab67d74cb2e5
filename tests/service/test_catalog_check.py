"""`python -m service.catalog check FILE`: one summary line and exit 0, or the server's message and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service import catalog as checker
from service.catalog_file import EMBEDDED_CATALOG, CatalogError, load_catalog
from tests.catalog_files import GOOD, bad_files
from tests.servers import ROOT
from tests.service.helpers import write_catalog

BAD_FILES = bad_files()


def run_checker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.catalog", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_valid_file_gets_one_summary_line_and_exit_0(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path / "c.json",
        [GOOD, {**GOOD, "id": "b"}, {**GOOD, "id": "c", "category": "toys"}, {"id": "d", "name": "D"}],
    )
    result = run_checker("check", str(path))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    store = load_catalog(path, search_index="never")
    assert line.startswith(
        f"{path}: OK, 4 products, 2 categories, {path.stat().st_size} bytes, sha256 {store.fingerprint.hex()}"
    )
    assert result.stderr == ""


def test_json_output_carries_the_same_figures_and_the_memory_estimate() -> None:
    result = run_checker("check", EMBEDDED_CATALOG, "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    size = Path(EMBEDDED_CATALOG).stat().st_size
    assert report == {
        "ok": True,
        "path": EMBEDDED_CATALOG,
        "products": 5,
        "categories": 2,
        "bytes": size,
        "sha256": load_catalog().fingerprint.hex(),
        "memory_needed": checker.memory_needed(5, size),
    }


@pytest.mark.parametrize(
    ("content", "expected"), [(c, e) for _, c, e in BAD_FILES], ids=[i for i, _, _ in BAD_FILES]
)
def test_a_bad_file_exits_1_with_the_servers_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert checker.main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{raised.value}\n"
    assert err.startswith(f"{path}: ")
    assert expected in err
    assert checker.main(["check", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"ok": False, "error": str(raised.value)}


def test_a_bad_file_fails_the_real_command_too(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "bad.json", [GOOD, {**GOOD, "id": "42", "price": "cheap"}])
    result = run_checker("check", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"{path}: products[1] (id '42'): price: expected a number, got \"cheap\"\n"


def test_a_missing_file_exits_1_naming_it(tmp_path: Path) -> None:
    result = run_checker("check", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert "absent.json: cannot read" in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_checker().returncode == 2
    assert run_checker("verify", "x.json").returncode == 2


def test_make_target_runs_the_checker() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "check-catalog", f"FILE={EMBEDDED_CATALOG}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{EMBEDDED_CATALOG}: OK, 5 products" in result.stdout
    missing = subprocess.run(
        ["make", "--no-print-directory", "check-catalog"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode != 0
    assert "FILE=" in missing.stderr


def test_the_memory_estimate_grows_with_products_and_with_bytes() -> None:
    base = checker.memory_needed(1000, 200_000)
    assert checker.memory_needed(2000, 200_000) > base
    assert checker.memory_needed(1000, 100_000_000) > base
    assert checker.memory_needed(0, 0) > 0
