"""The event loop's thread first: every other thread of the server's process runs at HELPER_NICENESS."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.servers import ROOT, ServerProcess
from service.thread_priority import HELPER_NICENESS

# Run in a process of its own: niceness, once raised, cannot be lowered again without privilege, and the
# test process's threads should keep theirs.
_LOWER_IN_A_FRESH_PROCESS = """
import json, os, threading
from service.thread_priority import lower_other_threads

stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(3)]
for thread in threads:
    thread.start()
already_nicer = threads[2].native_id
os.setpriority(os.PRIO_PROCESS, already_nicer, 15)
changed = lower_other_threads()
niceness = {str(t.native_id): os.getpriority(os.PRIO_PROCESS, t.native_id) for t in threads}
print(json.dumps({
    "changed": changed,
    "others": niceness,
    "already_nicer": str(already_nicer),
    "caller": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
    "again": lower_other_threads(),
}))
stop.set()
"""


# Niceness can only be raised here: a test run already at HELPER_NICENESS or above has nothing to watch.
pytestmark = pytest.mark.skipif(
    os.getpriority(os.PRIO_PROCESS, 0) >= HELPER_NICENESS, reason="the tests already run at that niceness"
)


def _niceness(pid: int) -> dict[int, int]:
    """Each live thread's niceness, by thread id (a thread that ends meanwhile is left out)."""
    niceness = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            niceness[int(task)] = os.getpriority(os.PRIO_PROCESS, int(task))
    return niceness


def _others(niceness: dict[int, int], main_thread: int) -> set[int]:
    return {value for thread, value in niceness.items() if thread != main_thread}


def test_other_threads_are_lowered_and_the_caller_keeps_its_priority() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", _LOWER_IN_A_FRESH_PROCESS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(finished.stdout)
    caller = os.getpriority(os.PRIO_PROCESS, 0)  # the child started at the test process's niceness
    assert report["caller"] == caller
    others = report.pop("others")
    assert others.pop(report["already_nicer"]) == 15  # never raised back towards the loop's
    assert set(others.values()) == {HELPER_NICENESS}
    assert report["changed"] == 2  # the two at the caller's niceness; no other thread ran
    assert report["again"] == 0  # nothing left to lower


def test_the_servers_threads_run_behind_its_event_loop(tmp_path: Path) -> None:
    process = ServerProcess({}, log_path=tmp_path / "server.log")
    try:
        process.wait_serving()
        pid = process.process.pid
        # The catalog's loading thread, started at the loop's niceness, may take a moment to end.
        deadline = time.monotonic() + 10
        niceness = _niceness(pid)
        while _others(niceness, pid) != {HELPER_NICENESS} and time.monotonic() < deadline:
            time.sleep(0.05)
            niceness = _niceness(pid)
        assert niceness[pid] == os.getpriority(os.PRIO_PROCESS, 0)  # the loop's, the main thread
        assert len(niceness) >= 3  # grpc.aio's poller and gRPC core's event-engine threads, at least
        assert _others(niceness, pid) == {HELPER_NICENESS}
    finally:
        process.stop()
