"""The psutil backend's detection truth: a socket it stops listing is not gone, and a neighbour's connections to a
fixture's server are never the test's, even when the neighbour reuses its ports (issue 11 §8)."""

from __future__ import annotations

import socket
import struct

import pytest

from pytest_sockhygiene.table import TcpState
from pytest_sockhygiene.table.portable import PsutilTable

from conftest import dedent, errors_of


def test_reset_socket_still_held_keeps_its_identity():
    """Linux unhashes a connection reset by its peer: psutil stops listing it, and ``getpeername`` fails. The
    table keeps it (CLOSE, under the identity it was listed with), maps its close's identity back to it, and
    lets it go once its fd is closed."""
    table = PsutilTable()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        local, remote = ("127.0.0.1", cli.getsockname()[1]), ("127.0.0.1", srv.getsockname()[1])
        key = table.identity_of(cli.fileno(), local, remote)
        assert key in table.ids()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: a reset
        with pytest.raises(OSError):
            cli.recv(1)
        listed = [c for c in table._connections() if c.fd == cli.fileno()]
        assert listed == []  # what psutil says: the reset socket is not in the kernel's table any more
        ids = table.ids()
        assert ids.get(key) == cli.fileno()
        (entry,) = [e for e in table.describe({key: cli.fileno()})]
        assert (entry.state, entry.local, entry.remote) == (TcpState.CLOSE, local, None)
        assert table.identity_of(cli.fileno(), local, None) == key  # what the close hook computes
        assert table.ids().get(key) == cli.fileno()  # kept from look to look while held
        cli.close()
        assert key not in table.ids()
        assert table.identity_of(cli.fileno(), local, None) != key


NEIGHBOUR = dedent("""
    import socket, struct, sys

    def request(s, path):
        s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
        data = b""
        while not data.endswith(b"ok\\n"):
            chunk = s.recv(1000)
            if not chunk:
                break
            data += chunk

    held = None
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "open":  # a keep-alive connection the server keeps open, waiting for the next request
            held = socket.socket()
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # so the port can be bound again while held
            # bound explicitly, not by connect(): a port connect() picks may also carry other connections' TIME_WAIT
            # rows (ports are shared between destinations), and binding it again at "reset" then fails
            held.bind(("127.0.0.1", 0))
            held.connect((args[0], int(args[1])))
            request(held, "/")
            print(held.getsockname()[1], flush=True)
        elif cmd == "reset":  # the port is taken again *before* the reset: no other process can be given it between
            port = held.getsockname()[1]
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            held.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            held.close()
            print("reset", flush=True)
        elif cmd == "reopen":  # the same local port again: the server closes first and keeps a TIME_WAIT row
            s.connect((args[0], int(args[1])))
            request(s, "/close")
            s.recv(1)  # the server's close
            s.close()
            print("reopened", flush=True)
""")


def test_neighbour_reusing_a_port_on_a_fixture_server_is_never_blamed(pytester, run):
    """Another process holds a keep-alive connection to the suite's server, resets it during a test, and opens a
    new one from the same port, which the server closes first: a TIME_WAIT row with the 4-tuple of a connection
    the test never made. Under psutil the reset socket vanished from the table and its row was blamed on the
    test ("time_wait: 1 > limit 0 ... at origin unknown"); no test is blamed now, on either backend."""
    pytester.makepyfile(neighbour=NEIGHBOUR)
    pytester.makeconftest(dedent("""
        import subprocess, sys, pytest
        from pytest_sockhygiene.testing import serve_http, wait_for

        @pytest.fixture(scope="session")
        def server():
            with serve_http(keep_alive=30) as s:
                yield s

        @pytest.fixture(scope="session")
        def neighbour():
            p = subprocess.Popen([sys.executable, "neighbour.py"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            def cmd(*words):
                p.stdin.write(" ".join(map(str, words)) + "\\n"); p.stdin.flush()
                return p.stdout.readline().strip()
            yield cmd
            p.stdin.close(); p.wait(10)
    """))
    pytester.makepyfile(test_n=dedent("""
        import pytest
        from pytest_sockhygiene.testing import wait_for
        PORT = []

        def test_neighbour_connects(server, neighbour):
            PORT.append(int(neighbour("open", server.host, server.port)))
            assert wait_for(lambda: server.open_connections == 1)

        @pytest.mark.sockhygiene(time_wait=0)
        def test_neighbour_resets_and_reuses_its_port(server, neighbour):
            assert neighbour("reset") == "reset"
            assert wait_for(lambda: server.open_connections == 0)
            assert neighbour("reopen", server.host, server.port) == "reopened"
            assert wait_for(lambda: server.open_connections == 0)

        def test_last(server):
            pass
    """))
    result = run()
    assert errors_of(result) == []
    result.assert_outcomes(passed=3)
