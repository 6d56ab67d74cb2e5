"""An HTTP CONNECT proxy on loopback that sends every host to one local port.

gRPC honours $grpc_proxy: with it a child process dials Cloud Run's names (`candidate---svc.region.run.app`)
as it would in the cloud, and reaches a local TLS server whose certificate carries those names.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextmanager
def connect_proxy(upstream_port: int) -> Iterator[tuple[str, list[str]]]:
    """Serve the proxy; yield its `http://127.0.0.1:PORT` and the list of hosts asked for, in order."""
    asked: list[str] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            asked.append(head.split(b" ", 2)[1].decode())
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
