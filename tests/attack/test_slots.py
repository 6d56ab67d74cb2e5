"""Concurrency slots under attack: calls beyond the limit are refused at once while health stays SERVING,
the server recovers as soon as the load drops, and streams whose client stopped reading give their slots
back after STALLED_STREAM_SECONDS, while a slow but live reader is never cut off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hyperframe.frame import RstStreamFrame, SettingsFrame, WindowUpdateFrame

from bench.rawh2 import CANCEL, RawConnection, grpc_message
from catalog import GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD, catalog_pb2
from catalog.catalog_pb2 import Product
from tests.attack.harness import (
    MAX_CONCURRENT_RPCS,
    STALLED_STREAM_SECONDS,
    AttackRun,
    Probe,
    TargetServer,
    assert_unharmed,
)

GET_REQUEST = grpc_message(catalog_pb2.GetProductRequest(id="p000001").SerializeToString())
# A search with more results than any flow-control window lets through unread.
BIG_SEARCH = grpc_message(catalog_pb2.SearchRequest(query="wireless", max_results=1000).SerializeToString())
_STALLED_LOG = f"cancelled {SEARCH_PRODUCTS_METHOD}: no message sent for {STALLED_STREAM_SECONDS:g} s"


def _stalled_reader(port: int) -> RawConnection:
    """A connection whose streams the server may not send a byte of data on: a window of 0, never opened."""
    return RawConnection(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})


def _hold(connection: RawConnection, count: int) -> list[int]:
    """Start `count` searches on `connection`; return once the server has admitted every one."""
    ids = []
    for _ in range(count):
        frames = connection.call_frames(SEARCH_PRODUCTS_METHOD, BIG_SEARCH)
        connection.send(*frames)
        ids.append(frames[0].stream_id)
    # An admitted search sends its response headers, which flow control does not hold back; its data waits.
    assert connection.read_until(lambda: all(connection.streams.get(i) for i in ids), 10)
    assert not any(connection.streams[i].ended for i in ids)
    return ids


def _refused(probe: Probe) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        probe.call()
    return raised.value


def _first_answer(probe: Probe, attempts: int, pause: float) -> int:
    """How many attempts the well-behaved client needed before it got an answer again (bounded)."""
    for attempt in range(1, attempts + 1):
        try:
            probe.call()
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            time.sleep(pause)
        else:
            return attempt
    raise AssertionError(f"still refused after {attempts} attempts")


@pytest.fixture
def patient_server(catalog: Path) -> Iterator[TargetServer]:
    """A server that does not cancel stalled streams within the test, to hold its slots at will."""
    target = TargetServer(catalog, {"STALLED_STREAM_SECONDS": "45"})  # the longest allowed
    try:
        yield target
    finally:
        target.stop()


def test_overload_is_refused_at_once_health_serves_and_it_recovers(
    patient_server: TargetServer, products: list[Product]
) -> None:
    probe = Probe(patient_server.port, products)
    holder = _stalled_reader(patient_server.port)
    ids = _hold(holder, MAX_CONCURRENT_RPCS)
    for _ in range(50):
        error = _refused(probe)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"limit of {MAX_CONCURRENT_RPCS} concurrent calls" in str(error.details())
        assert probe.serving()  # probes are never starved
    # Callers that leave while being refused (their connection gone before the answer) are no server fault.
    for _ in range(20):
        leaver = RawConnection(patient_server.port)
        leaver.send(
            *(frame for _ in range(50) for frame in leaver.call_frames(GET_PRODUCT_METHOD, GET_REQUEST))
        )
        leaver.close()
    assert probe.serving()
    # The load drops: the holder cancels its calls, and the next calls are answered.
    holder.send(*(RstStreamFrame(i, error_code=CANCEL) for i in ids))
    attempts = _first_answer(probe, attempts=250, pause=0.02)
    assert attempts <= 50, f"refused {attempts - 1} times after the holder had cancelled its calls"
    for _ in range(20):
        probe.call()
    # Every slot came back: the limit can be filled exactly once more.
    second = _stalled_reader(patient_server.port)
    _hold(second, MAX_CONCURRENT_RPCS)
    assert _refused(probe).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    holder.close()
    second.close()
    probe.close()
    # No refusal was logged as the server's fault. (gRPC itself logs, at ERROR, a stream reset while its
    # write waits on flow control: the holder's; that line is gRPC's, not a failed call.)
    faults = [
        record
        for record in patient_server.process.records()
        if record.get("code") == "INTERNAL" or record["message"].startswith("unexpected error")
    ]
    assert not faults


def test_stalled_streams_are_cancelled_and_give_their_slots_back(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    holder = _stalled_reader(server.port)
    _hold(holder, MAX_CONCURRENT_RPCS)  # one connection takes every slot, and never reads
    assert _refused(probe).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert probe.serving()
    # Nothing changes on the holder's side; the server cancels the stalled streams by itself.
    _first_answer(probe, attempts=int(STALLED_STREAM_SECONDS * 1.25 / 0.05) + 40, pause=0.05)
    server.process.wait_for_log("stopped reading")
    time.sleep(STALLED_STREAM_SECONDS / 4)  # one more of the watchdog's checks: it cancels them all in one
    assert sum(_STALLED_LOG in line for line in server.process.lines) == MAX_CONCURRENT_RPCS
    latencies = [probe.call() for _ in range(100)]
    # And every slot came back: a second stalled connection can take them all again.
    again = _stalled_reader(server.port)
    _hold(again, MAX_CONCURRENT_RPCS)
    assert _refused(probe).code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    again.close()
    holder.close()
    _first_answer(probe, attempts=100, pause=0.05)
    assert_unharmed(server, probe, AttackRun({}, latencies), rss)


def test_slow_readers_below_the_limit_leave_the_rest_served(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    holder = _stalled_reader(server.port)
    _hold(holder, MAX_CONCURRENT_RPCS - 2)
    started = time.monotonic()
    latencies = []
    while time.monotonic() - started < STALLED_STREAM_SECONDS * 1.5:
        latencies.append(probe.call())
    holder.close()
    assert_unharmed(server, probe, AttackRun({}, latencies), rss)


def test_a_slow_but_live_reader_is_not_cut_off(server: TargetServer, products: list[Product]) -> None:
    request = catalog_pb2.SearchRequest(query="wireless", max_results=20)
    expected = [p for p in products if "wireless" in p.name.lower() or "wireless" in p.description.lower()]
    reader = _stalled_reader(server.port)
    frames = reader.call_frames(SEARCH_PRODUCTS_METHOD, grpc_message(request.SerializeToString()))
    stream_id = frames[0].stream_id
    reader.send(*frames)
    started = time.monotonic()
    # About one product per grant, a grant every STALLED_STREAM_SECONDS / 5: the stream takes several
    # times the bound in all, but never goes a whole bound without a message.
    while not reader.streams.get(stream_id, None) or not reader.streams[stream_id].ended:
        assert time.monotonic() - started < 60
        reader.send(WindowUpdateFrame(stream_id, window_increment=250))
        reader.read(STALLED_STREAM_SECONDS / 5)
    outcome = reader.streams[stream_id]
    assert time.monotonic() - started > 2 * STALLED_STREAM_SECONDS  # it did outlive the bound
    assert outcome.grpc_status == 0
    assert _messages(bytes(outcome.data)) == expected[:20]
    reader.close()


def _messages(data: bytes) -> list[Product]:
    products = []
    while data:
        length = int.from_bytes(data[1:5], "big")
        products.append(Product.FromString(data[5 : 5 + length]))
        data = data[5 + length :]
    return products
