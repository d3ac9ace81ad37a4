"""End to end, with the real uvloop: the listeners and connections its ``Loop`` makes in C are recorded
(``c_loops.py``).

Found running uvicorn's suite, whose users run it in a thread with ``loop="auto"`` (uvloop wherever
uvicorn[standard] is installed): a session fixture's server whose listener came up during the first test was
that test's LISTEN leak, "origin unknown"; and eight connections the uvloop server ended first left eight
TIME_WAIT entries on its side that no test counted (the same server on asyncio: 8 > 5). The server here is a few
lines of uvloop, as uvicorn's is underneath.
"""

from __future__ import annotations

import json

import pytest

from conftest import dedent

pytest.importorskip("uvloop")

SERVER = dedent("""
    import socket
    import threading
    import time

    import pytest
    import uvloop


    class Answer:
        # answers each connection once and closes it: the server ends every connection first
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
            self.transport.close()

        def connection_lost(self, exc):
            pass

        def eof_received(self):
            return False


    class UvloopServer:
        # a server on uvloop in a thread of its own, as uvicorn.Server.run with loop="auto" is

        def __init__(self, port=0, wait=True):
            self.port = port
            self.loop = None
            self.stop = None
            self.started = threading.Event()
            self.thread = threading.Thread(target=uvloop.run, args=(self.serve(),), daemon=True)
            self.thread.start()
            if wait:
                assert self.started.wait(10)

        async def serve(self):
            import asyncio
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            server = await self.loop.create_server(Answer, "127.0.0.1", self.port)  # libuv opens it, in C
            self.port = server.sockets[0].getsockname()[1]
            self.started.set()
            await self.stop.wait()
            server.close()
            await server.wait_closed()

        def close(self):
            assert self.started.wait(10)
            self.loop.call_soon_threadsafe(self.stop.set)
            self.thread.join(10)


    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


    def get(port):
        for _ in range(500):  # the server may not be up yet: retry, as a suite's first request does
            try:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                    data = b""
                    while chunk := sock.recv(4096):  # read to the server's close: it closes first
                        data += chunk
                    return data
            except ConnectionRefusedError:
                time.sleep(0.01)
        raise RuntimeError("the server never came up")
""")


LAZY = dedent("""
    import pytest
    from uvserver import UvloopServer, free_port, get


    @pytest.fixture(scope="session")
    def port():
        server = UvloopServer(free_port(), wait=False)  # returns before the server is up: the first test waits
        yield server.port
        server.close()


    def test_first(port):
        assert get(port).endswith(b"ok")


    def test_second(port):
        assert get(port).endswith(b"ok")
""")


def test_a_session_fixtures_uvloop_server_that_comes_up_during_a_test_is_the_fixtures(pytester, run):
    """The fixture started the thread, so whatever the thread opens later is the fixture's (docs/ownership.md):
    also a listener libuv opens in C, recorded by the ``uvloop.Loop.create_server`` wrapper on that thread."""
    pytester.makepyfile(uvserver=SERVER, test_lazy=LAZY)
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=unlimited")
    result.assert_outcomes(passed=2)
    assert "2 tests checked, all clean" in result.stdout.str()
    assert "session-level leaks" not in result.stdout.str()


SERVER_ENDS_EACH = dedent("""
    import pytest
    from uvserver import UvloopServer, get


    @pytest.fixture
    def port():
        server = UvloopServer()
        yield server.port
        server.close()


    def test_eight_connections_the_server_ended(port):
        for _ in range(8):
            assert get(port).endswith(b"ok")
""")


def test_time_wait_entries_a_uvloop_server_left_are_found(pytester, run):
    """A uvloop server that ends each connection first holds the TIME_WAIT entries on its side: found from the
    test's connects to a listener this process holds - once that listener is known (it was not: ``time_wait: 0``
    beside ``connections: 8``)."""
    pytester.makepyfile(uvserver=SERVER, test_ends=SERVER_ENDS_EACH)
    path = pytester.path / "r.json"
    result = run(f"--sockhygiene-report={path}", "-o", "sockhygiene_time_wait=unlimited")
    result.assert_outcomes(passed=1)
    counts = json.loads(path.read_text())["tests"][0]["counts"]
    assert counts["connections"] == 8
    assert 8 - min(8, result.resets) <= counts["time_wait"] <= 8, (result.resets, counts)  # (see conftest.lingered)
