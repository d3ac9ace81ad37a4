"""A real HTTP/1.1 server on loopback, in a thread: for the demo suite, this project's tests, and yours.

Socket hygiene is about real kernel states, so the server is real: it keeps connections alive, and it closes
an idle keep-alive connection after ``keep_alive`` seconds, exactly like production servers whose keep-alive
timeout is shorter than a client pool's ``keepalive_expiry`` (that is how a client ends up in CLOSE_WAIT).

    with serve_http(keep_alive=0.2) as server:
        httpx.get(server.url)

Every path answers ``ok``; ``/close...`` answers with ``Connection: close`` and ends the connection; ``/unsized...``
answers with no length and ends the connection (the client reads to the server's close, so the server closes
first); ``?size=N`` makes the body N bytes.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: Nagle + delayed ACK would add ~40 ms
    server: LoopbackHTTPServer

    def setup(self) -> None:
        super().setup()
        # idle keep-alive connections are closed by the server after this many seconds
        self.connection.settimeout(self.server.keep_alive)
        self.server._track(self.connection, True)

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # a body left unread would prefix the next request on this connection
        self.server.requests += 1
        path, _, query = self.path.partition("?")
        size = query[len("size="):] if query.startswith("size=") else ""
        body = b"x" * int(size) if size.isdecimal() and size.isascii() else b"ok\n"  # ?size=N: a body of N bytes
        close = path.startswith("/close")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if path.startswith("/unsized"):
            # no length: the body ends where the server closes (what Django's development server does for a
            # response without Content-Length), so the server ends every such connection first
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logging
        pass


class LoopbackHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    """The listen backlog (socketserver's default is 5). A burst of connections that overflows the accept queue,
    while the serving thread waits for a busy CPU, has some of them reset by the kernel instead of closed: they
    leave no TIME_WAIT entry, and a burst of 7 reads as 6 (seen under load, by the netlink and /proc backends
    alike, with the kernel's ListenOverflows counter moving)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep_alive: float = 5.0) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.keep_alive = keep_alive
        self.requests = 0
        self.accepted = 0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self.accepted += 1
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def shutdown_request(self, request: Any) -> None:
        """Count a connection as gone only once its socket is closed (its FIN sent), not when the handler
        finishes: a client told "the server dropped it" must be able to see the EOF on its pooled socket, or it
        reuses the connection and gets "Server disconnected without sending a response"."""
        try:
            super().shutdown_request(request)
        finally:
            self._track(request, False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished mid-request is normal here

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def shutdown_all(self) -> None:
        """Stop serving and close every connection this server still holds."""
        self.shutdown()
        self.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        wait_for(lambda: self.open_connections == 0, timeout=5.0)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.002) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)


@contextlib.contextmanager
def serve_http(host: str = "127.0.0.1", port: int = 0, keep_alive: float = 5.0) -> Iterator[LoopbackHTTPServer]:
    """Run a :class:`LoopbackHTTPServer` in a daemon thread for the duration of the block."""
    server = LoopbackHTTPServer(host, port, keep_alive)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sockhygiene-http-{server.port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown_all()
        thread.join(5.0)


__all__ = ["LoopbackHTTPServer", "serve_http", "wait_for"]
