"""Several server processes on one port, for an instance with more than one CPU: one per CPU of its quota.

A Python process runs Python on one CPU at a time, so on a 2-vCPU instance one server process leaves a CPU
idle. The parent (`python -m service` when SERVER_PROCESSES or the container's CPU quota says more than 1)
starts that many workers (`python -m service worker`), each a whole server with its own health service,
concurrency guard and drain, all listening on the same port: the kernel spreads new connections over them
(SO_REUSEPORT). The parent forwards SIGTERM and SIGINT to every worker, which each drain; it exits once
they all have, 0 if every one stopped cleanly. A worker that fails stops the others: an instance with
fewer servers than CPUs should be replaced, not kept.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping

from service.config import Settings

WORKER_ARGUMENT = "worker"
# Where a container's CPU quota is read: cgroup v2's cpu.max ("QUOTA PERIOD" or "max PERIOD"), else v1's.
CGROUP_ROOT = "/sys/fs/cgroup"

_log = logging.getLogger(__name__)


class PortInUseError(OSError):
    """Something else listens on the port already."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use; run with PORT=<another port>, or stop what listens on it")
        self.port = port


def process_count(settings: Settings, cgroup_root: str = CGROUP_ROOT) -> int:
    """How many server processes to run: SERVER_PROCESSES, else the CPU quota's whole CPUs, else 1.

    Without a quota (a developer's machine, `make run`), one: the machine's CPUs are shared, not given.
    """
    if settings.processes is not None:
        return settings.processes
    quota = cpu_quota(cgroup_root)
    return 1 if quota is None else min(quota, len(os.sched_getaffinity(0)))


def cpu_quota(cgroup_root: str = CGROUP_ROOT) -> int | None:
    """The container's CPU quota in whole CPUs (at least 1), or None when it has none or it cannot be read."""
    try:
        with open(os.path.join(cgroup_root, "cpu.max"), encoding="ascii") as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(cgroup_root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as file:
            quota_us = int(file.read())
        with open(os.path.join(cgroup_root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as file:
            period_us = int(file.read())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else max(1, quota_us // period_us)


def claim_port(host: str, port: int) -> int:
    """The port, checked free (PortInUseError if not), or a free one for port 0.

    A plain bind, as gRPC's own would be (SO_REUSEADDR, not SO_REUSEPORT), then closed: gRPC's failure to
    bind is a raw core error on stderr and a RuntimeError that does not say the port is busy.
    """
    address = host.strip("[]")
    family, kind, protocol, _name, where = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(port) from None
            raise
        return int(probe.getsockname()[1])


def run_workers(count: int, settings: Settings, env: Mapping[str, str]) -> int:
    """Start `count` workers on settings.port, forward SIGTERM and SIGINT to them, wait for them all.

    Returns 0 when every worker exited 0, else the first failure's exit code (1 for a worker killed).
    """
    port = claim_port("[::]", settings.port)
    worker_env = {**env, "PORT": str(port)}
    workers = {
        process.pid: process
        for process in (
            subprocess.Popen([sys.executable, "-m", "service", WORKER_ARGUMENT], env=worker_env)
            for _ in range(count)
        )
    }
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    _log.info("started %d server processes on port %d: pids %s", count, port, sorted(workers))
    failure = 0
    left = dict(workers)
    while left:
        pid, status = os.wait()  # retried after a signal's handler runs (PEP 475)
        process = left.pop(pid, None)
        if process is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        process.returncode = code
        if code != 0 and not failure:
            failure = code if code > 0 else 1
            if not stopping:
                _log.error("server process %d exited %d: stopping the others", pid, code)
                forward(signal.SIGTERM, None)
    return failure
