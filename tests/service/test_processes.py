"""Several server processes on one port: the CPU quota, the workers sharing the port, the drain, a failure."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from bench.servers import ServerProcess, process_tree
from catalog import catalog_pb2, catalog_pb2_grpc
from service.config import ConfigError, Settings
from service.processes import cpu_quota, process_count
from tests.service.test_operations import health_stub


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000", None),
        ("100000 100000", 1),
        ("200000 100000", 2),
        ("150000 100000", 1),
        ("50000 100000", 1),
    ],
)
def test_the_cgroup_v2_quota_counts_whole_cpus(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cpu_quota(str(tmp_path)) == expected


@pytest.mark.parametrize(("quota_us", "expected"), [("-1", None), ("400000", 4), ("100000", 1)])
def test_the_cgroup_v1_quota_counts_whole_cpus(tmp_path: Path, quota_us: str, expected: int | None) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota_us + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(tmp_path)) == expected


def test_without_a_quota_or_a_setting_one_process_runs(tmp_path: Path) -> None:
    assert process_count(Settings(), str(tmp_path)) == 1  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert process_count(Settings(), str(tmp_path)) == 1


def test_the_quota_sets_the_count_unless_server_processes_does(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert process_count(Settings(), str(tmp_path)) == min(2, len(os.sched_getaffinity(0)))
    assert process_count(Settings(processes=3), str(tmp_path)) == 3


@pytest.mark.parametrize("raw", ["0", "9", "two"])
def test_server_processes_out_of_range_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="SERVER_PROCESSES"):
        Settings.from_env({"SERVER_PROCESSES": raw})


def _workers(process: ServerProcess) -> list[int]:
    return [pid for pid in process_tree(process.process.pid) if pid != process.process.pid]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_two_processes_share_the_port_and_each_drains_on_sigterm() -> None:
    with ServerProcess({"SERVER_PROCESSES": "2"}, stop_grace_seconds=15) as server:
        port = server.wait_serving()
        server.wait_for_log("started 2 server processes")
        # Health answered by one process; the other may still be loading, answering UNAVAILABLE.
        server.wait_for_log("serving .* on port", count=2)
        workers = _workers(server)
        assert len(workers) == 2
        before = {pid: _cpu_ticks(pid) for pid in workers}
        # New connections are spread over the workers by the kernel: each one answers some of them.
        for _ in range(40):
            with grpc.insecure_channel(
                f"localhost:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                stub = catalog_pb2_grpc.ProductCatalogStub(ch)
                for _ in range(50):
                    assert stub.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=5).id == "1"
                check = health_stub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert all(_cpu_ticks(pid) > before[pid] for pid in workers)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        messages = [record["message"] for record in server.records()]
        assert sum(message.startswith("shutting down") for message in messages) == 2
        assert messages.count("stopped") == 2
        assert sum(message.startswith("serving ") for message in messages) == 2


def test_a_failed_worker_stops_the_others_and_the_parent_exits_non_zero() -> None:
    with ServerProcess({"SERVER_PROCESSES": "2"}) as server:
        server.wait_serving()
        server.wait_for_log("started 2 server processes")
        first, second = _workers(server)
        os.kill(first, signal.SIGKILL)
        assert server.process.wait(timeout=20) == 1
        deadline = time.monotonic() + 10
        while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{second}").exists()
        server.wait_for_log(f"server process {first} exited -9: stopping the others")
