"""How the hostile cases measure; their descriptions and targets are in bench.cases.CASES.

    reset-attack  h2load's GetProduct throughput while `python -m bench.hostile PORT SECONDS` sends
                  HEADERS + RST_STREAM pairs as fast as it can on connections of its own, as a ratio to the
                  same load alone on the same server, measured just before and just after (their mean)
    overload      our server at its MAX_CONCURRENT_RPCS (every slot held by a search whose client never
                  reads): h2load's GetProduct calls are all refused RESOURCE_EXHAUSTED; their p50 and p99
                  are what a refusal costs

The attacker runs as a process of its own, so its Python work is not the server's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message
from hyperframe.frame import RstStreamFrame, SettingsFrame

from bench import h2load
from bench.rawh2 import CANCEL, RawConnection, grpc_message, request_headers
from bench.servers import ROOT
from catalog import GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD, catalog_pb2


@dataclass(frozen=True)
class Load:
    """h2load's load: concurrent streams over connections, for a duration after a warm-up."""

    streams: int
    clients: int
    duration_seconds: float
    warmup_seconds: float

    def run(self, port: int, method: str, request: Message, workdir: Path) -> h2load.LoadResult:
        """Load `method` on `port` with `request`."""
        return h2load.run(
            port,
            method,
            request,
            workdir,
            streams=self.streams,
            clients=self.clients,
            duration_seconds=self.duration_seconds,
            warmup_seconds=self.warmup_seconds,
        )


@dataclass(frozen=True)
class ResetResult:
    """GetProduct alone, beside the attacker, alone again, and how many pairs the attacker sent."""

    alone: h2load.LoadResult
    attacked: h2load.LoadResult
    alone_after: h2load.LoadResult
    pairs: int

    @property
    def alone_rps(self) -> float:
        """Throughput alone: the mean of the runs before and after, so neither's place in time decides."""
        return (self.alone.requests_per_second + self.alone_after.requests_per_second) / 2

    @property
    def ratio(self) -> float:
        """Throughput beside the attacker as a share of throughput alone."""
        return self.attacked.requests_per_second / self.alone_rps


def reset_attack(port: int, request: Message, workdir: Path, load: Load) -> ResetResult:
    """Load GetProduct alone, then beside a rapid-reset attacker, then alone again."""
    alone = load.run(port, GET_PRODUCT_METHOD, request, workdir)
    seconds = load.duration_seconds + load.warmup_seconds + 1
    attacker = subprocess.Popen(
        [sys.executable, "-m", "bench.hostile", str(port), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # under way before the load starts
        attacked = load.run(port, GET_PRODUCT_METHOD, request, workdir)
        output, _ = attacker.communicate(timeout=seconds + 30)
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait()
    pairs = int(output.split()[0]) if output.strip() else 0
    return ResetResult(alone, attacked, load.run(port, GET_PRODUCT_METHOD, request, workdir), pairs)


def overload(port: int, request: Message, slots: int, workdir: Path, load: Load) -> h2load.LoadResult:
    """Hold all `slots` with stalled searches on one connection, then load GetProduct (every call refused).

    The load must end within the server's STALLED_STREAM_SECONDS (30 s by default), which would free them.
    """
    holder = RawConnection(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    search = grpc_message(catalog_pb2.SearchRequest(query="wireless", max_results=1000).SerializeToString())
    ids = []
    for _ in range(slots):
        frames = holder.call_frames(SEARCH_PRODUCTS_METHOD, search)
        holder.send(*frames)
        ids.append(frames[0].stream_id)
    if not holder.read_until(lambda: all(i in holder.streams for i in ids), 30):
        raise RuntimeError(f"only {len(holder.streams)} of {slots} stalled searches were admitted")
    try:
        return load.run(port, GET_PRODUCT_METHOD, request, workdir)
    finally:
        holder.send(*(RstStreamFrame(i, error_code=CANCEL) for i in ids))
        holder.close()


def _attack(port: int, seconds: float) -> int:
    """Send HEADERS + RST_STREAM pairs for `seconds`, reconnecting whenever the server closes; count them."""
    deadline = time.monotonic() + seconds
    pairs = 0
    connection = RawConnection(port)
    headers = request_headers(GET_PRODUCT_METHOD)
    while time.monotonic() < deadline:
        frames = []
        for _ in range(100):
            stream_id = connection.new_stream_id()
            frames += [
                connection.headers_frame(stream_id, headers),
                RstStreamFrame(stream_id, error_code=CANCEL),
            ]
        connection.send(*frames)
        pairs += 100
        connection.read(0)
        if connection.closed or connection.goaway is not None or stream_id > (1 << 30):
            connection.close()
            connection = RawConnection(port)
    connection.close()
    return pairs


if __name__ == "__main__":
    print(_attack(int(sys.argv[1]), float(sys.argv[2])), flush=True)
