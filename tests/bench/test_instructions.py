"""bench/instructions.py: instructions per GetProduct under callgrind; the bare server with our options."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import grpc
import pytest

from bench import instructions
from bench.servers import (
    BARE_AIO,
    BARE_AIO_OPTIONS,
    CLOUD_RUN_TELEMETRY,
    CLOUD_RUN_TRACE_HEADERS,
    ServerKind,
    bench_server,
)
from catalog import catalog_pb2, catalog_pb2_grpc
from service.limits import MAX_REQUEST_BYTES

# A callgrind dump's head and tail as valgrind 3.19 writes them: its summary line may say 0.
_DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 0

fn=(1) main
1 5
totals: 74466443
"""


def _args(**given: int) -> argparse.Namespace:
    return instructions.build_parser().parse_args(
        [f"--{name.replace('_', '-')}={value}" for name, value in given.items()]
    )


def test_a_dump_is_read_by_its_totals_line(tmp_path: Path) -> None:
    dump = tmp_path / "ours.callgrind.1.1"
    dump.write_text(_DUMP)
    assert instructions._instructions(dump) == 74_466_443


def test_a_file_without_totals_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "ours.callgrind.1.1"
    dump.write_text(_DUMP.replace("totals: 74466443\n", ""))
    with pytest.raises(instructions.CountError, match="no totals line: not a callgrind dump"):
        instructions._instructions(dump)


def test_the_report_splits_ours_extra_between_core_our_own_work_and_telemetry() -> None:
    per_call = {
        "ours": 270_000,
        "bare-aio": 250_000,
        "bare-aio-options": 254_000,
        "ours-without-telemetry": 263_000,
    }
    assert list(per_call) == [server.name for server in instructions.servers()]
    counts = [instructions.Count(name, value * 3000, 3000) for name, value in per_call.items()]
    report = instructions.render(counts, _args(calls=3000)).splitlines()
    assert report[0].startswith("Instructions per GetProduct under callgrind: 100,000 products, 3,000 calls")
    assert report[0].endswith("Cloud Run's trace headers on each")
    assert report[1].split() == ["ours", "270,000"]
    assert report[2].split() == ["bare-aio", "250,000", "ours", "is", "1.080x", "this"]
    assert report[3].split() == ["bare-aio-options", "254,000", "ours", "is", "1.063x", "this"]
    assert report[4].split() == ["ours-without-telemetry", "263,000", "ours", "is", "1.027x", "this"]
    assert report[5] == (
        "  ours over bare-aio, +20,000: gRPC core's work for our options +4,000, our own work +9,000, "
        "telemetry +7,000"
    )


def test_ours_runs_as_on_cloud_run_and_only_its_twin_without_telemetry() -> None:
    by_name = {server.name: server for server in instructions.servers()}
    assert by_name["ours"].env.items() >= CLOUD_RUN_TELEMETRY.items()
    assert not CLOUD_RUN_TELEMETRY.keys() & by_name["ours-without-telemetry"].env.keys()  # "auto": off here
    assert (
        by_name["ours"].env["OK_LOG_SAMPLE_RATE"]
        == by_name["ours-without-telemetry"].env["OK_LOG_SAMPLE_RATE"]
    )
    assert [header.split(":")[0] for header in CLOUD_RUN_TRACE_HEADERS] == [
        "traceparent",
        "x-cloud-trace-context",
    ]
    # Unsampled, as all but a few of Cloud Run's requests are: a sampled call is traced, which few are.
    assert CLOUD_RUN_TRACE_HEADERS[0].endswith("-00")
    assert CLOUD_RUN_TRACE_HEADERS[1].endswith(";o=0")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--calls", "0"], "argument --calls: 0 counts nothing: give 1 or more"),
        (["--warm-up-calls", "-1"], "argument --warm-up-calls: -1 counts nothing: give 1 or more"),
        (["--products", "many"], "argument --products: 'many' is not a whole number"),
        (["--streams", "10", "--clients", "3"], "--streams 10 do not split evenly over --clients 3"),
    ],
)
def test_arguments_that_count_nothing_are_refused(
    given: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        instructions.main(given)
    assert refused.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "refused"), [(BARE_AIO, False), (BARE_AIO_OPTIONS, True)], ids=["bare-aio", "bare-aio-options"]
)
def test_only_the_bare_server_with_our_options_refuses_a_request_over_our_limit(
    kind: ServerKind, refused: bool, tmp_path: Path
) -> None:
    # gRPC ignores options it does not know, so only a limit acting shows that ours are set.
    with bench_server(kind, None, tmp_path / "bare.log") as server:
        server.wait_serving()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            request = catalog_pb2.GetProductRequest(id="x" * MAX_REQUEST_BYTES)
            if refused:
                with pytest.raises(grpc.RpcError) as error:
                    stub.GetProduct(request, timeout=10)
                assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            else:
                assert stub.GetProduct(request, timeout=10).id == "p050000"


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("h2load") is None,
    reason="valgrind and h2load (nghttp2-client) are not installed",
)
def test_each_server_is_counted_and_ours_costs_more_than_either_bare_one_and_more_with_telemetry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = instructions.main(
        ["--products", "2000", "--calls", "300", "--warm-up-calls", "100", "--workdir", str(tmp_path)]
    )
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    per_call = {line.split()[0]: float(line.split()[1].replace(",", "")) for line in lines[1:5]}
    assert list(per_call) == [server.name for server in instructions.servers()]
    # Tens of thousands of instructions a call at the least (gRPC core's HTTP/2 alone), and ours does more
    # than either bare server: the guard, the servicer and the store, and telemetry on top.
    assert min(per_call.values()) > 50_000
    assert per_call["ours-without-telemetry"] > max(per_call["bare-aio"], per_call["bare-aio-options"])
    assert per_call["ours"] > per_call["ours-without-telemetry"]
    assert lines[5].startswith("  ours over bare-aio, +")
