"""The benchmark's parts: catalog generation, gRPC framing, h2load parsing, and the cases' checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hyperframe.frame import SettingsFrame

from bench import EXIT_TARGET_MISSED, bare, cases, h2load, hostile, own_work, thread_pool
from bench import __main__ as bench_main
from bench.catalog import generate, generate_products, write_catalog
from bench.rawh2 import RawConnection, grpc_message
from bench.servers import (
    CLOUD_RUN_TELEMETRY,
    CLOUD_RUN_TRACE_HEADERS,
    OUR_WORK_MODELS,
    OURS,
    POOL_SLOTS,
    POOL_WORK,
    SEED,
    ServerKind,
    StartError,
    bench_server,
)
from catalog import SEARCH_PRODUCTS_METHOD, catalog_pb2, catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from client.channel import health_check
from service.catalog_file import load_catalog
from service.config import Settings
from service.server import SPARE_CALLS
from tests.servers import in_process

SERVING = health_pb2.HealthCheckResponse.SERVING

ROOT = Path(__file__).resolve().parents[2]
COUNT = 3000  # enough for 100 matches of the common word


def test_the_generated_catalog_is_deterministic_and_loads(tmp_path: Path) -> None:
    assert generate(50, seed=7) == generate(50, seed=7)
    assert generate(50, seed=7) != generate(50, seed=8)
    store = load_catalog(write_catalog(tmp_path / "catalog.json", 500))
    assert len(store) == 500
    assert store.get("p000499") is not None


def test_a_grpc_frame_is_a_flag_a_length_and_the_message() -> None:
    request = catalog_pb2.GetProductRequest(id="p1")
    frame = h2load.grpc_frame(request)
    assert frame[0] == 0
    assert int.from_bytes(frame[1:5], "big") == len(frame) - 5
    assert catalog_pb2.GetProductRequest.FromString(frame[5:]) == request


def test_h2load_output_and_log_are_summarised(tmp_path: Path) -> None:
    output = (
        "finished in 700.66ms, 1234.50 req/s, 1.00MB/s\n"
        "requests: 2470 total, 2470 started, 2469 done, 2469 succeeded, 1 failed, 0 errored, 0 timeout\n"
    )
    log = tmp_path / "h2load.log"
    lines = [f"1700000000{i:06d}\t200\t{(i + 1) * 1000}" for i in range(100)]
    log.write_text("\n".join([*lines, "1700000001000000\t0\t5", "1700000001000001\t503\t1000"]) + "\n")
    result = h2load.summarise(output, log)
    assert result.requests_per_second == 1234.5
    assert (result.requests, result.failed, result.non_200, result.unfinished) == (2469, 1, 1, 1)
    assert 49 <= result.p50_ms <= 52
    assert 99 <= result.p99_ms <= 100


def test_a_starved_run_is_a_figure_with_unknown_latency(tmp_path: Path) -> None:
    # A server that an attacker starves may finish one request in a short run: throughput ~0, not a crash.
    output = (
        "finished in 500.10ms, 2.00 req/s, 1.00KB/s\n"
        "requests: 1 total, 2 started, 1 done, 1 succeeded, 0 failed, 0 errored, 0 timeout\n"
    )
    log = tmp_path / "h2load.log"
    log.write_text("1700000000000000\t200\t450000\n1700000000000001\t0\t5\n")
    result = h2load.summarise(output, log)
    assert result.requests_per_second == 2.0
    assert (result.requests, result.unfinished) == (1, 1)
    assert result.p99_ms == float("inf")


@pytest.fixture(scope="module")
def products() -> list[Product]:
    return generate_products(COUNT)


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("bench") / "catalog.json", COUNT)


@pytest.fixture(scope="module")
def our_stub(catalog_file: Path) -> Iterator[cases.Stub]:
    with (
        in_process(Settings(port=0), load_catalog(catalog_file)) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        yield catalog_pb2_grpc.ProductCatalogStub(channel)


@pytest.fixture(scope="module")
def seed_stub(catalog_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[cases.Stub]:
    # The seed as the bench runs it: its own process, the catalog through CATALOG_PATH (its module state,
    # PRODUCTS, stays untouched in this process).
    log = tmp_path_factory.mktemp("seed") / "seed.log"
    with (
        bench_server(SEED, catalog_file, log) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.wait_serving()}") as channel,
    ):
        yield catalog_pb2_grpc.ProductCatalogStub(channel)


@pytest.mark.parametrize("name", cases.SEED_CASES)
def test_both_servers_pass_every_case_check(
    name: str, products: list[Product], our_stub: cases.Stub, seed_stub: cases.Stub
) -> None:
    cases.build(name, products, OURS, our_stub).check(our_stub)
    cases.build(name, products, SEED, seed_stub).check(seed_stub)


def test_a_case_check_catches_a_wrong_answer(products: list[Product], our_stub: cases.Stub) -> None:
    case = cases.build("search-100", products[::-1], OURS, our_stub)  # expects the catalog backwards
    with pytest.raises(cases.WrongAnswerError):
        case.check(our_stub)


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    # 3000 products for half a second may miss a target: the exit status must say which the report says.
    finished = _run_short_bench(tmp_path, "get,search-none")
    assert "time to SERVING" in finished.stdout
    assert "search-none" in finished.stdout
    assert "seed" in finished.stdout


def _load(requests_per_second: float) -> h2load.LoadResult:
    return h2load.LoadResult(requests_per_second, 1000, 0, 0, 0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("case", "ours", "missed"),
    [
        ("get", 160.0, []),
        ("get", 120.0, ["get throughput 1.20x < 1.3x"]),
        ("list-deep-all", 100.0, []),  # an extra case: reported apart, never missed
    ],
)
def test_the_report_lists_each_missed_target(case: str, ours: float, missed: list[str]) -> None:
    args = bench_main.build_parser().parse_args(["--compare"])
    results = {
        name: bench_main.ServerResult(
            startup_default_s=1.0,
            startup_catalog_s=2.0,
            peak_rss_mb=100,
            cases={case: bench_main.CaseResult(_load(rps), {"OK": 1000})},
        )
        for name, rps in (("ours", ours), ("seed", 100.0))
    }
    report, found = bench_main.render_report(results, [case], args)
    assert found == missed
    assert ("targets: all met" in report) == (not missed)
    assert ("below that ratio" in report) is (case == "list-deep-all")


def _report(figures: Mapping[str, tuple[float, float]], case: str) -> tuple[str, list[str]]:
    """The --compare report of one case, each server as (calls/s, CPU us per call); and what it missed."""
    args = bench_main.build_parser().parse_args(["--compare"])
    results = {
        name: bench_main.ServerResult(
            startup_default_s=1.0,
            startup_catalog_s=1.0,
            peak_rss_mb=100,
            cases={case: bench_main.CaseResult(_load(rps), {"OK": 1000}, cpu_us)},
        )
        for name, (rps, cpu_us) in figures.items()
    }
    return bench_main.render_report(results, [case], args)


@pytest.mark.parametrize(
    ("ours", "bare_aio", "bare_sync", "missed"),
    [
        # (calls/s, CPU us per call) of each; the seed does 100 calls/s.
        ((140, 105), (150, 100), (160, 90), []),  # 1.4x the seed; CPU 1.05x its model's bare server's
        ((140, 115), (150, 100), (160, 90), ["get CPU per call 1.15x bare-aio's > 1.1x"]),
        ((120, 105), (150, 100), (160, 90), ["get throughput 1.20x < 1.3x"]),  # a bare server reaches 1.3x
        # No bare server reaches 1.3x the seed: the limit is grpcio's, ours within 1.05x of the best bare one.
        ((118, 105), (110, 100), (120, 90), []),
        ((110, 105), (110, 100), (120, 90), ["get 1.09x below the best bare server (bare-sync) > 1.05x"]),
    ],
)
def test_getproduct_is_judged_against_the_bare_servers(
    ours: tuple[float, float],
    bare_aio: tuple[float, float],
    bare_sync: tuple[float, float],
    missed: list[str],
) -> None:
    figures = {"ours": ours, "seed": (100.0, 150.0), "bare-aio": bare_aio, "bare-sync": bare_sync}
    report, found = _report(figures, "get")
    assert found == missed
    assert "bare-sync" in report
    assert ("the limit is grpcio's" in report) is (bare_sync[0] < 130)


def _rounds_result(rounds: list[tuple[float, float]]) -> bench_main.ServerResult:
    """A server measured in these pinned rounds of GetProduct, each (calls/s, CPU us per call)."""
    measured = [bench_main.CaseResult(_load(rps), {"OK": 1000}, cpu_us) for rps, cpu_us in rounds]
    return bench_main.ServerResult(
        startup_default_s=1.0,
        startup_catalog_s=1.0,
        peak_rss_mb=100,
        cases={"get": bench_main.median_round(measured)},
        rounds={"get": measured},
    )


@pytest.mark.parametrize(
    ("ours", "bare_aio", "shown", "missed"),
    [
        # Ours' slow round 2 met bare-aio's fast one. Medians taken apart would pair ours' round 3 (104 us)
        # with bare-aio's round 1 (92 us): 1.13x, a miss. Round by round it is within 1.1x.
        (
            [(300, 100), (200, 130), (290, 104)],
            [(310, 92), (240, 119), (330, 96)],
            ("1.09x", "1.09x, 1.09x, 1.08x"),
            [],
        ),
        # And the other way: apart, 104 against 98 us would pass; round by round ours is 1.11x.
        (
            [(300, 100), (200, 130), (290, 104)],
            [(320, 90), (330, 95), (310, 98)],
            ("1.11x", "1.11x, 1.37x, 1.06x"),
            ["get CPU per call 1.11x bare-aio's > 1.1x"],
        ),
    ],
)
def test_ours_is_judged_against_its_bare_server_round_by_round(
    ours: list[tuple[float, float]],
    bare_aio: list[tuple[float, float]],
    shown: tuple[str, str],
    missed: list[str],
) -> None:
    results = {
        "ours": _rounds_result(ours),
        # The table's ratio: by round 3.00x, 2.50x, 2.42x; ours' median round over the seed's: 2.90x.
        "seed": _rounds_result([(100, 300), (80, 300), (120, 300)]),
        "bare-aio": _rounds_result(bare_aio),
    }
    report, found = bench_main.render_report(
        results, ["get"], bench_main.build_parser().parse_args(["--compare"])
    )
    assert found == missed
    assert "2.50x" in next(line for line in report.splitlines() if line.startswith("get "))
    median, by_round = shown
    assert (
        f"ours' CPU per call {median} its model's bare server's, round by round {by_round} (target" in report
    )


def test_search_100_on_the_bare_servers_is_shown_beside_ours_and_never_judged() -> None:
    figures = {
        "ours": (150, 3400),
        "seed": (100.0, 5000),
        "bare-aio": (140, 3700),
        "bare-sync": (145, 3600),
        "pool-work": (160, 3060),
        "pool-slots": (120, 5100),
    }
    report, found = _report(figures, "search-100")
    assert found == []  # ours 1.5x the seed: met; the bare servers add no target
    assert "bare-aio         140 rps   3700 us/call, 1.40x the seed's calls/s (ours' model)" in report
    assert "bare-sync        145 rps   3600 us/call, 1.45x the seed's calls/s" in report
    assert "ours' CPU per call 0.92x its model's bare server's" in report
    assert (
        "pool-work        160 rps   3060 us/call, 1.60x the seed's calls/s "
        "(our work on the thread-pool model, 10 shared threads: 0.90x ours' CPU per call)" in report
    )
    assert (
        "pool-slots       120 rps   5100 us/call, 1.20x the seed's calls/s "
        "(our work on the thread-pool model, a thread per call slot: 1.50x ours' CPU per call)" in report
    )


def test_our_own_work_is_timed_on_right_answers_and_costs_more_than_a_bare_handler() -> None:
    work = own_work.measure(generate_products(COUNT), calls=200)
    assert work.get_us > work.bare_get_us > 0
    assert work.search_us > work.bare_search_us > 0
    assert work.lines()[1].startswith(f"  GetProduct {work.get_us:.1f} us (a bare handler's ")
    assert f"{work.search_us / 100:.2f} us a message" in work.lines()[2]


def test_our_own_work_refuses_to_time_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    products = generate_products(COUNT)
    monkeypatch.setattr(
        own_work, "reference_search", lambda *_: cases.reference_search(products, "kettle", 100)
    )
    with pytest.raises(
        cases.WrongAnswerError,
        match="the search for 'wireless' answered other products than the seed's server",
    ):
        own_work.measure(products, calls=1)


def test_our_own_work_names_the_code_of_a_call_that_ends_non_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    products = generate_products(COUNT)
    missing = Product(id="not-in-the-catalog")
    expected = own_work._Expected
    monkeypatch.setattr(own_work, "_Expected", lambda _product, search: expected(missing, search))
    with pytest.raises(
        cases.WrongAnswerError, match="a call the bench times ended NOT_FOUND: product not-in-the-catalog"
    ):
        own_work.measure(products, calls=1)


@pytest.mark.parametrize("arguments", [["--products", "100"], ["--calls", "0"]])
def test_our_own_work_refuses_settings_that_time_nothing(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        own_work.main(arguments)
    assert exited.value.code == 2
    assert "--products must be at least 3000 (the search needs 100 matches), --calls at least 1" in (
        capsys.readouterr().err
    )


def test_the_report_says_how_much_of_the_gap_to_the_bare_server_is_our_own_work() -> None:
    args = bench_main.build_parser().parse_args(["--compare"])
    results = {
        name: bench_main.ServerResult(
            startup_default_s=1.0,
            startup_catalog_s=1.0,
            cases={case: bench_main.CaseResult(_load(100), {"OK": 1000}, cpu) for case, cpu in costs.items()},
        )
        for name, costs in (
            ("ours", {"get": 260.0, "search-100": 3600.0}),
            ("seed", {"get": 180.0, "search-100": 4900.0}),
            ("bare-aio", {"get": 210.0, "search-100": 2900.0}),
        )
    }
    results["ours"].own_work_per_call = own_work.OwnWork(
        get_us=4.5, bare_get_us=0.2, search_us=95.0, bare_search_us=9.0
    )
    report, _ = bench_main.render_report(results, ["get", "search-100"], args)
    assert "ours' CPU per call is +50 us from its bare server's; our own work, timed without gRPC" in report
    assert "(bench/own_work.py), is 4.5 us of it" in report
    assert "ours' CPU per call is +700 us from its bare server's" in report
    assert "is 95.0 us of it" in report
    results["ours"].own_work_per_call = None
    assert "our own work" not in bench_main.render_report(results, ["get", "search-100"], args)[0]


def test_our_work_on_the_other_model_is_never_the_ceiling_ours_is_judged_by() -> None:
    """Faster than every bare server, the thread-pool model with our work still does not judge GetProduct."""
    figures = {
        "ours": (110, 105),
        "seed": (100.0, 150.0),
        "bare-aio": (110, 100),
        "bare-sync": (112, 90),
        "pool-work": (125, 80),
        "pool-slots": (130, 70),
    }
    report, found = _report(figures, "get")
    assert found == []  # within 1.05x of bare-sync, the best bare server; neither model of our work is one
    assert "(best: bare-sync, 1.12x)" in report
    assert "10 shared threads: 0.76x ours' CPU per call" in report
    assert "a thread per call slot: 0.67x ours' CPU per call" in report


@pytest.mark.parametrize("kind", OUR_WORK_MODELS, ids=lambda kind: kind.name)
def test_our_work_on_the_thread_pool_model_answers_as_ours(kind: ServerKind, tmp_path: Path) -> None:
    products = generate_products(3000)  # enough for 100 matches of the common word
    catalog = write_catalog(tmp_path / "c.json", 3000)
    with bench_server(kind, catalog, tmp_path / "pool.log") as server:
        server.wait_serving()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            for name in ("get", "search-100"):
                cases.build(name, products, OURS, stub).check(stub)
            with pytest.raises(grpc.RpcError) as absent:
                stub.GetProduct(catalog_pb2.GetProductRequest(id="absent"))
    assert absent.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("kind", bench_main.BARE_KINDS, ids=lambda kind: kind.name)
def test_the_bare_servers_stream_max_results_answers(kind: ServerKind, tmp_path: Path) -> None:
    with bench_server(kind, None, tmp_path / "bare.log") as server:
        server.wait_serving()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            answers = [
                len(list(stub.SearchProducts(catalog_pb2.SearchRequest(query="q", max_results=n))))
                for n in (3, 0)
            ]
            product = stub.GetProduct(catalog_pb2.GetProductRequest(id="any"))
    assert answers == [3, 10]
    assert product.SerializeToString() == bare.ANSWER


def _attack(alone: float, attacked: float) -> hostile.ResetResult:
    return hostile.ResetResult(_load(alone), _load(attacked), _load(alone), pairs=1000)


@pytest.mark.parametrize(
    ("ours", "codes", "missed"),
    [
        (_attack(1000, 600), {"RESOURCE_EXHAUSTED": 5000, "CANCELLED": 80}, []),
        (_attack(1000, 400), {"RESOURCE_EXHAUSTED": 5000}, ["reset-attack 0.40 of alone < 0.5"]),
        # One call answered OK, or more CANCELLED than h2load can abandon: not every call was refused.
        (_attack(1000, 900), {"RESOURCE_EXHAUSTED": 999, "OK": 1}, ["overload 99.9% refused < 100%"]),
        (
            _attack(1000, 900),
            {"RESOURCE_EXHAUSTED": 900, "CANCELLED": 180},
            ["overload 90.0% refused < 100%"],
        ),
        (_attack(1000, 900), {}, ["overload 0.0% refused < 100%"]),
    ],
)
def test_the_hostile_targets_judge_ours_only(
    ours: hostile.ResetResult, codes: dict[str, int], missed: list[str]
) -> None:
    args = bench_main.build_parser().parse_args(["--compare", "--streams", "80"])
    results = {
        name: bench_main.ServerResult(startup_default_s=1.0, startup_catalog_s=1.0, peak_rss_mb=100)
        for name in ("ours", "seed")
    }
    hostile_results = {
        "ours": bench_main.HostileResult(ours, _load(5000), codes),
        "seed": bench_main.HostileResult(_attack(1000, 10)),  # the seed's collapse is reported, not judged
    }
    report, found = bench_main.render_report(results, [], args, hostile_results)
    assert found == missed
    assert report.rstrip().endswith("targets: all met" if not missed else "; ".join(missed))
    assert "0.01 of alone (no target)" in report


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed")
def test_the_hostile_cases_run_end_to_end(tmp_path: Path) -> None:
    # So short a run on a busy machine may miss a target (reset-attack, start-up): the exit status says so.
    finished = _run_short_bench(
        tmp_path, "reset-attack,overload", "--max-concurrent-rpcs", "4", "--streams", "8", "--clients", "2"
    )
    assert "overload" not in finished.stdout.rsplit("targets", 1)[1]  # every call was refused
    attacked = [line for line in finished.stdout.splitlines() if "beside a rapid-reset attacker" in line]
    assert [line.split()[1] for line in attacked] == ["ours", "seed", "bare-aio", "bare-sync", "bare-grpclib"]
    assert all(int(line.split("the attacker sent ")[1].split()[0]) > 0 for line in attacked)
    assert all(float(line.split("peak RSS ")[1].split()[0]) > 0 for line in attacked)
    assert [line for line in attacked if "(target >= 0.5)" in line] == attacked[:1]  # only ours is judged
    refused = [line for line in finished.stdout.splitlines() if "slots held by stalled searches" in line]
    assert [line.split()[:2] for line in refused] == [["overload", "ours"]]  # the seed has no limit to reach
    # Every call of the load was refused: no OK logged. CANCELLED: the 4 held searches, and up to the 8 calls
    # in flight that h2load abandons when it stops.
    logged = dict(item.rsplit(" ", 1) for item in refused[0].rsplit("codes logged: ", 1)[1].split(", "))
    assert int(logged["RESOURCE_EXHAUSTED"]) > 0
    assert set(logged) <= {"RESOURCE_EXHAUSTED", "CANCELLED"}
    assert int(logged.get("CANCELLED", 0)) <= 4 + 8


def test_the_memory_benchmark_prints_a_row_per_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import memory  # noqa: PLC0415  # only this test needs it

    assert memory.main(["--products", "2000,4000", "--workdir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("baseline (embedded catalog): peak ")
    rows = [line for line in table.splitlines() if line.startswith("| 2,000 ") or line.startswith("| 4,000 ")]
    assert len(rows) == 2
    assert all("below the peak" not in row for row in rows)
    assert not list(tmp_path.glob("catalog-*"))  # the catalogs and saved catalogs go once measured


def test_the_memory_benchmark_says_when_the_model_is_below_a_measured_peak() -> None:
    from bench.memory import Measurement, render  # noqa: PLC0415

    base = Measurement(5, 0, 0.1, 0.1, 40 * 2**20, 40 * 2**20)
    small = Measurement(1000, 200_000, 0.1, 0.1, 50 * 2**20, 50 * 2**20)
    huge = Measurement(1000, 200_000, 0.1, 0.1, 8 * 2**30, 8 * 2**30)
    assert render(base, [small])[1] is True
    table, covered = render(base, [small, huge])
    assert covered is False
    assert table.count("(below the peak!)") == 1


def _run_short_bench(workdir: Path, cases_: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench --compare` on COUNT products for two rounds of half a second per case.

    Asserts that its exit status agrees with its report: 0 when every target is met, otherwise
    EXIT_TARGET_MISSED with the report naming what was missed.
    """
    command = [
        sys.executable,
        "-m",
        "bench",
        "--products",
        str(COUNT),
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--rounds",
        "2",
    ]
    command += ["--startup-runs", "1", "--cases", cases_, "--compare", "--workdir", str(workdir), *extra]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    met = "targets: all met" in finished.stdout
    assert met or "targets missed: " in finished.stdout, finished.stdout + finished.stderr
    assert finished.returncode == (0 if met else EXIT_TARGET_MISSED), finished.stderr
    return finished


def test_the_thread_pool_models_threads_are_the_seeds_or_one_per_call_slot() -> None:
    settings = Settings(max_concurrent_rpcs=80)
    assert thread_pool.threads("shared", settings) == thread_pool.SHARED_THREADS == 10
    assert thread_pool.threads("per-slot", settings) == 80 + SPARE_CALLS


def test_the_thread_pool_model_names_its_pools_when_given_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert thread_pool.main([]) == 2
    assert "usage: python -m bench.thread_pool {shared,per-slot}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "stopped"),
    [(POOL_WORK, True), (POOL_SLOTS, False), (OURS, False)],
    ids=lambda value: value.name if isinstance(value, ServerKind) else "",
)
def test_ten_unread_searches_stop_the_thread_pool_model_on_the_seeds_ten_threads(
    kind: ServerKind, stopped: bool, tmp_path: Path
) -> None:
    """Why the server is not on the thread-pool model with 10 threads (docs/performance.md).

    A stream's thread there waits for its client to read: ten stalled searches hold every thread, and a
    health check waits behind them. Should grpcio stop holding the thread, this fails, and the choice of
    model is worth measuring again.
    """
    catalog = write_catalog(tmp_path / "c.json", 3000)
    with bench_server(kind, catalog, tmp_path / "server.log") as server:
        server.wait_serving()
        holder = RawConnection(server.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        search = catalog_pb2.SearchRequest(query="wireless", max_results=1000).SerializeToString()
        stream_ids = []
        for _ in range(thread_pool.SHARED_THREADS):
            frames = holder.call_frames(SEARCH_PRODUCTS_METHOD, grpc_message(search))
            holder.send(*frames)
            stream_ids.append(frames[0].stream_id)
        assert holder.read_until(lambda: all(i in holder.streams for i in stream_ids), 10)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                check = health_check(channel)
                if stopped:
                    with pytest.raises(grpc.RpcError) as waited:
                        check(health_pb2.HealthCheckRequest(), timeout=2)
                    assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                else:
                    assert check(health_pb2.HealthCheckRequest(), timeout=2).status == SERVING
        finally:
            holder.close()


def test_the_report_shows_getproduct_on_one_and_two_server_processes() -> None:
    args = bench_main.build_parser().parse_args([])
    ours = bench_main.ServerResult(
        by_processes={
            1: bench_main.CaseResult(_load(5000), {"OK": 1000}, 210.0),
            2: bench_main.CaseResult(_load(8000), {"OK": 1000}, 230.0),
        }
    )
    report, missed = bench_main.render_report({"ours": ours}, [], args)
    assert missed == []  # shown, never judged
    assert "  1 process      5000 rps    210 us/call\n" in report
    assert "  2 processes    8000 rps    230 us/call, 1.60x the calls/s of 1\n" in report


def test_waiting_for_a_log_line_from_every_server_process(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "c.json", 100)
    env = {"SERVER_PROCESSES": "2"}
    with bench_server(OURS, catalog, tmp_path / "server.log", env) as server:
        server.wait_serving()
        second = server.wait_for_log(bench_main.INDEX_READY, count=2)
        ready = [line for line in server.lines if second.re.search(line)]
        assert len(ready) == 2  # one from each process
        assert second.string == ready[1]
        with pytest.raises(StartError, match=r"logged .* 2 of 3 times"):
            server.wait_for_log(bench_main.INDEX_READY, timeout=0.2, count=3)


def test_the_median_round_counts_with_every_rounds_status_codes() -> None:
    rounds = [
        bench_main.CaseResult(_load(900), {"OK": 10}, 300.0),  # a slow spell of the machine
        bench_main.CaseResult(_load(1200), {"OK": 10, "CANCELLED": 2}, 240.0),
        bench_main.CaseResult(_load(1100), {"OK": 10}, 250.0),
    ]
    median = bench_main.median_round(rounds)
    assert (median.load.requests_per_second, median.cpu_us_per_call) == (1100, 250.0)  # one round's, whole
    assert median.status_codes == {"OK": 30, "CANCELLED": 2}
    # Of an even number, the lower middle one: a run is not judged better than a round measured it.
    assert bench_main.median_round(rounds[:2]).load.requests_per_second == 900


def test_the_pinned_rounds_are_given_in_the_report() -> None:
    args = bench_main.build_parser().parse_args(["--rounds", "3", "--duration", "5"])
    report, _ = bench_main.render_report({"ours": bench_main.ServerResult()}, [], args)
    assert (
        "pinned 3 rounds of 5 s per case (the median round counts; a ratio, the median of the rounds')"
        in report
    )


@pytest.mark.parametrize("given", [["--rounds", "0"], ["--duration", "0"], ["--products", "9"]])
def test_the_bench_refuses_settings_that_measure_nothing(
    given: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        bench_main.main(given)
    assert refused.value.code == 2
    assert "--products must be at least 10, --startup-runs and --rounds at least 1" in capsys.readouterr().err


def test_ours_runs_as_on_cloud_run_and_traces_the_call_its_caller_sampled(tmp_path: Path) -> None:
    # The bench's settings for ours turn its telemetry on, as Cloud Run's "auto" does; a call carrying a
    # sampled trace context is traced (so the first span's one-off work falls before the measured calls),
    # and one carrying Cloud Run's unsampled headers is not.
    args = bench_main.build_parser().parse_args([])
    env = bench_main._server_env(OURS, args)
    assert env.items() >= CLOUD_RUN_TELEMETRY.items()
    assert bench_main._server_env(SEED, args) == {}  # the seed has no settings of ours
    log = tmp_path / "ours.log"
    # Only the caller's sampling decides here: at the default rate, one call in 1,000 would be traced too.
    with bench_server(OURS, None, log, {**env, "TRACE_SAMPLE_RATE": "0"}) as server:
        server.wait_serving()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            unsampled = tuple(
                (name, value) for name, value in (header.split(": ", 1) for header in CLOUD_RUN_TRACE_HEADERS)
            )
            health_check(channel)(health_pb2.HealthCheckRequest(), metadata=unsampled, timeout=10)
        server.trace_one_call()
    # The console's span exporter writes each span's JSON at the latest as the server shuts down.
    spans = log.read_text().count('"name": "grpc.health.v1.Health/Check"')
    assert spans == 1
