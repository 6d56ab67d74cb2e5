"""The event loop's thread first: gRPC's own threads (and any other) run at a lower priority beside it.

On one CPU, as a 1-vCPU instance runs the server, the event loop's thread shares its core with grpc.aio's
poller thread and gRPC core's event-engine threads. At the same priority, each completion core reports wakes
the poller, which preempts the loop to hand the event over: about 6 thread switches per GetProduct and 200
per 100-result search, measured pinned. With those threads at niceness HELPER_NICENESS they wait until the
loop has nothing left to run, then hand over every event queued meanwhile at once: under 5 switches per
GetProduct and 15 per search, and a quarter to a third less CPU per call (docs/performance.md). When the
loop is idle they run at once, so a call waits no longer to start; with CPUs to spare nothing changes.

Only niceness is raised, which needs no privilege, and a thread started later inherits its parent's: gRPC
core's thread pool grows from its own (already lowered) threads.
"""

from __future__ import annotations

import contextlib
import os
import threading

# Measured pinned, GetProduct and search-100 (docs/performance.md): 10 did best. Below it the poller still
# preempts the loop; above it the loop, woken by the poller's first event, takes the CPU back before the
# rest are handed over. SCHED_BATCH at 10 measured as 10; SCHED_IDLE worst.
HELPER_NICENESS = 10
_TASKS = "/proc/self/task"


def lower_other_threads(niceness: int = HELPER_NICENESS) -> int:
    """Give every thread of this process but the calling one `niceness`; return how many changed.

    0 where threads cannot be listed (no /proc: not Linux). A thread that ends meanwhile is skipped.
    """
    try:
        tasks = os.listdir(_TASKS)
    except OSError:
        return 0
    this_thread = threading.get_native_id()
    changed = 0
    for task in tasks:
        thread_id = int(task)
        if thread_id == this_thread:
            continue
        with contextlib.suppress(ProcessLookupError):
            if os.getpriority(os.PRIO_PROCESS, thread_id) < niceness:
                os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
                changed += 1
    return changed
