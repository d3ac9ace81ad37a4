"""End to end: TIME_WAIT and connections advice that fits the cause (issue 11 §5), against the real loopback server.

A new client per request, a reused client whose server ends every connection, an API without a pool, raw
sockets, a function-scoped fixture's readiness probe: each gets its own explanation and fix, and every
violation ends with the marker that would allow what was seen.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from pytest_sockhygiene.verdict import CAUSE_ADVICE, NEW_OBJECT_EACH, ONE_OBJECT_AGAIN

from conftest import dedent, errors_of, failure_block, installed_library, lingered

SUITE = dedent("""
    import http.client, socket, urllib.request
    import httpx, pytest, requests


    def test_client_per_request(server):
        for i in range(12):
            httpx.get(server.url)


    def test_server_ends_each_connection(server):
        with requests.Session() as s:
            for i in range(12):
                s.get(server.url + "/close")


    def test_urlopen(server):
        for i in range(12):
            urllib.request.urlopen(server.url).read()


    def test_raw_sockets(server):
        for i in range(12):
            socket.create_connection((server.host, server.port)).close()


    @pytest.fixture
    def ready(server):
        for i in range(12):
            socket.create_connection((server.host, server.port)).close()
        yield server


    def test_fixture_probes(ready):
        pass


    @pytest.mark.sockhygiene(connections=2, time_wait=None)
    def test_http_client(server):
        for i in range(4):
            conn = http.client.HTTPConnection(server.host, server.port)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()


    @pytest.mark.sockhygiene(connections=2)
    def test_two_kinds(server):
        for i in range(6):
            httpx.get(server.url)


    @pytest.fixture(scope="module")
    def refusing():
        # a server that ends every connection it accepts at once (a refused handshake, a redirect's close)
        listener = socket.create_server(("127.0.0.1", 0))

        def refuse():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.close()

        import threading
        threading.Thread(target=refuse, daemon=True).start()
        yield listener.getsockname()
        listener.shutdown(socket.SHUT_RDWR); listener.close()  # wakes the accept() (a close alone leaves it blocked)


    def test_server_refuses_each_connection(refusing):
        for i in range(12):
            conn = socket.create_connection(refusing)
            assert conn.recv(1) == b""  # the server ended it first
            conn.close()


    def test_clients_per_request_server_closes(server):
        # responses with no length: the server ends each connection (Django's development server does)
        for i in range(12):
            with httpx.Client() as client:
                assert client.get(server.url + "/unsized").text == "ok\\n"


    def test_reused_client_is_clean(server):
        with httpx.Client() as client:
            for i in range(12):
                client.get(server.url)


    def test_last(server):
        pass
""")


def test_advice_fits_the_cause(pytester, run, tmp_path):
    pytester.makepyfile(test_a=SUITE)
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}")
    assert errors_of(result) == sorted(f"test_a.py::{name}" for name in [
        "test_client_per_request", "test_server_ends_each_connection", "test_urlopen", "test_raw_sockets",
        "test_fixture_probes", "test_http_client", "test_two_kinds", "test_server_refuses_each_connection",
        "test_clients_per_request_server_closes"])
    per_request = failure_block(result, "test_a.py::test_client_per_request")
    n = lingered(per_request, 12, result)
    result.stdout.fnmatch_lines([
        # N clients of one request each: a new client per request (the default fix)
        f"*time_wait: {n} > limit 5 - TIME_WAIT entries from connections this test closed",
        f"*{n} connection(s) to 127.0.0.1:* were opened and closed by this test, at test_a.py:7 in "
        "test_client_per_request",
        # the clients named are those of the lingering connections: one each, so as many as the count
        f"*{n} httpx.Client created inside httpx.get(), called at test_a.py:7 in test_client_per_request (1 request "
        "each): a new client per request? Create one client and reuse it.",
        "*fix: each closed connection leaves a TIME_WAIT entry for about 60 seconds: reuse connections*",
        f"*to allow it: @pytest.mark.sockhygiene(time_wait={n})",
    ])
    assert "one after another" not in per_request
    server_closes = failure_block(result, "test_a.py::test_server_ends_each_connection")
    n = lingered(server_closes, 12, result)  # the connections counted are the ones whose entry the kernel kept
    assert "1 requests.Session created at test_a.py:11 in test_server_ends_each_connection (12 requests each; " \
           f"its pool opened {n} connections to 127.0.0.1:" in server_closes
    assert "one after another): the server, or a proxy or middleware between, ended each connection " \
           "(`Connection: close`, an HTTP/1.0 server, a limit on requests per connection, or an idle timeout " \
           "shorter than the pauses between requests)" in server_closes
    assert "fix: the client is reused, but the other side ended every connection of its pool: turn " \
           "keep-alive on where that happens" in server_closes
    assert "give it a keep-alive timeout longer than the pauses between requests." in server_closes
    assert "new client per request" not in server_closes
    assert server_closes.rstrip().endswith(f"to allow it: @pytest.mark.sockhygiene(time_wait={n})")
    urlopen = failure_block(result, "test_a.py::test_urlopen")
    n = n_urlopen = lingered(urlopen, 12, result)
    assert f"{n} connection(s) opened by urllib.request.urlopen(), at test_a.py:18 in test_urlopen (no tracked " \
           "client: each call opened a connection of its own)" in urlopen
    assert "fix: an API without a connection pool opens a new connection per call" in urlopen
    raw = failure_block(result, "test_a.py::test_raw_sockets")
    n = lingered(raw, 12, result)
    assert f"{n} connection(s) opened by socket.create_connection(), at test_a.py:23 in test_raw_sockets" in raw
    # the server ended each one first: a refusal or redirect test means them, the fix says so too
    refused = failure_block(result, "test_a.py::test_server_refuses_each_connection")
    n = lingered(refused, 12, result)
    assert f"{n} connection(s) opened by socket.create_connection(), at test_a.py:" in refused
    assert "each entry is the in-process server's side: the server closed each connection first" in refused
    assert "fix: an API without a connection pool opens a new connection per call: keep one connection open " \
           "for many calls" in refused
    assert "fix: " + CAUSE_ADVICE["api_server_first"] in refused, refused
    assert "A test of redirects, refused handshakes or reconnects opens them on purpose: allow it for that test. The " \
           "server ended each connection first, as a redirect or a refused handshake does" in refused
    # whichever side closed first, the API's fix names redirect and reconnect tests (a websocket client's redirect
    # loop over TLS closes each connection itself)
    assert "A test of redirects, refused handshakes or reconnects opens them on purpose: allow it for that " \
           "test." in raw
    assert "The server ended each connection first" not in raw
    # new clients per request, and the server ended every connection first: one reused client would not be
    # enough, and the fix says so after the usual advice (found with Django's development server)
    unsized = failure_block(result, "test_a.py::test_clients_per_request_server_closes")
    n = lingered(unsized, 12, result)
    assert "each entry is the in-process server's side: the server closed each connection first" in unsized
    # (each connection ended with its response: "a new client per request? Create one client and reuse it." would
    # change nothing, and is not said)
    assert f"{n} httpx.Client created at test_a.py:81 in test_clients_per_request_server_closes (1 request each; " \
           "each connection ended with its response)" in unsized, unsized
    assert "a new client per request?" not in unsized
    assert "fix: each closed connection leaves a TIME_WAIT entry for about 60 seconds: reuse connections - one " \
           "client, with keep-alive, for many requests - instead of a new connection per request. The server " \
           "ended each connection first, so it keeps none alive (`Connection: close`, an HTTP/1.0 server, a " \
           "response with no length): one reused client would still open a connection per request, until the " \
           "server keeps them alive." in unsized
    fixture = failure_block(result, "test_a.py::test_fixture_probes")
    n = lingered(fixture, 12, result)
    assert f"{n} connection(s) opened by function-scoped fixture 'ready', at test_a.py:29 in ready (while it was " \
           "set up for this test: plumbing, not the code under test)" in fixture
    assert "fix: these connections come from a function-scoped fixture, not from the code under test" in fixture
    http_client = failure_block(result, "test_a.py::test_http_client")
    assert "connections: 4 > limit 2 - connections opened" in http_client
    assert "4 connection(s) opened by http.client." in http_client and ", at test_a.py:41 in test_http_client" \
        in http_client
    assert http_client.rstrip().endswith("to allow it: @pytest.mark.sockhygiene(connections=4)")
    two = failure_block(result, "test_a.py::test_two_kinds")
    n = lingered(two, 6, result)
    assert f"to allow it: @pytest.mark.sockhygiene(time_wait={n})" in two
    assert "to allow it: @pytest.mark.sockhygiene(connections=6)" in two
    assert two.rstrip().endswith(f"to allow all of it: @pytest.mark.sockhygiene(time_wait={n}, connections=6)")
    # the JSON report keeps what the text is made from (the command line's `show` prints it back)
    tests = {t["nodeid"]: t for t in json.loads(path.read_text())["tests"]}
    (tw,) = [v for v in tests["test_a.py::test_urlopen"]["violations"] if v["kind"] == "time_wait"]
    assert tw["context"][0]["state"] == "opened by urllib.request.urlopen()"
    assert tw["context"][0]["count"] == n_urlopen


def test_a_reused_aiohttp_session_whose_server_ends_each_connection(pytester, run):
    """aiohttp's socket of an ended connection closes a turn of the loop after the next connect began: the reused
    session was taken for concurrent requests and told to stop making a new client per request, where
    requests.Session and httpx got the server's diagnosis (found running aiohttp beside the plugin)."""
    pytest.importorskip("aiohttp")
    pytester.makepyfile(test_aio=dedent("""
        import asyncio
        import aiohttp

        def test_one_session(server):
            async def main():
                async with aiohttp.ClientSession() as session:
                    for _ in range(8):
                        async with session.get(server.url + "/close") as response:
                            await response.read()
            asyncio.run(main())
    """))
    result = run("-p", "no:asyncio")
    assert errors_of(result) == ["test_aio.py::test_one_session"]
    block = failure_block(result, "test_aio.py::test_one_session")
    n = lingered(block, 8, result)
    assert "1 aiohttp.ClientSession created at test_aio.py:" in block
    # (n: on a loaded machine a connection can end in a reset, leaving no TIME_WAIT entry: not counted here)
    assert f"(8 requests each; its pool opened {n} connections to 127.0.0.1:" in block and " one after another): " \
        "the server, or a proxy or middleware between, ended each connection" in block, (n, block)
    assert "fix: the client is reused, but the other side ended every connection of its pool" in block
    assert "a new client per request" not in block


def test_marker_from_the_message_allows_what_was_seen(pytester, run):
    """The marker a message ends with is exactly enough: pasted on the test, the test passes."""
    pytester.makepyfile(test_b=dedent("""
        import requests, pytest

        @pytest.mark.sockhygiene(time_wait=12)
        def test_server_ends_each_connection(server):
            with requests.Session() as s:
                for i in range(12):
                    s.get(server.url + "/close")

        def test_last(server):
            pass
    """))
    result = run()
    assert errors_of(result) == []
    result.assert_outcomes(passed=2)


CLIENTS_WITHOUT_A_LOOP = dedent("""
    from concurrent.futures import ThreadPoolExecutor

    import requests


    def test_six_lines(server):
        requests.get(server.url)
        requests.get(server.url)
        requests.get(server.url)
        requests.get(server.url)
        requests.get(server.url)
        requests.get(server.url)


    def test_through_a_pool(server):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(requests.get, [server.url] * 6))  # map
""")


def test_a_new_client_per_request_is_named_however_the_calls_are_written(pytester, run):
    """The hint is given when the clients of one request each come from one line (a loop) and when they come from
    lines of their own; clients created by library code in a pool's job name the line that submitted it, in the
    words for a client (found on pytest-httpserver's suite: "created at origin unknown (opened by ...)")."""
    pytester.makepyfile(test_n=CLIENTS_WITHOUT_A_LOOP)
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_n.py::test_six_lines", "test_n.py::test_through_a_pool"]
    six = failure_block(result, "test_n.py::test_six_lines")
    assert "6 clients of 1 request each: a new client per request? Create one client and reuse it." in six, six
    pool = failure_block(result, "test_n.py::test_through_a_pool")
    line = next(i for i, text in enumerate(CLIENTS_WITHOUT_A_LOOP.splitlines(), 1) if text.endswith("# map"))
    assert (f"6 requests.Session created by library code in a thread pool's job submitted at test_n.py:{line} in "
            "test_through_a_pool (1 request each): a new client per request?") in pool, pool
    assert "origin unknown" not in result.stdout.str()


AWAITABLE_LIBRARY = dedent('''
    import asyncio


    class Connect:
        """An awaitable that is not a coroutine (websockets' legacy ``connect`` is one): ``__await__`` only."""

        def __init__(self, host, port):
            self.host, self.port = host, port

        def __await__(self):
            return self._open().__await__()

        async def _open(self):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return writer
''')


def test_an_awaitable_run_until_complete_is_named_not_asyncios_wrapper_of_it(pytester, run):
    """``loop.run_until_complete(awaitable)`` on an object with ``__await__`` makes asyncio wrap it in a coroutine of
    its own (``asyncio.tasks._wrap_awaitable``), the outermost frame of the task: the API named is the library's
    awaitable, never that wrapper (found running websockets' legacy tests)."""
    installed_library(pytester, "awaitlib", AWAITABLE_LIBRARY)
    pytester.makepyfile(test_w=dedent('''
        import asyncio

        import awaitlib


        def test_connects_again_and_again(server):
            loop = asyncio.new_event_loop()
            try:
                for i in range(7):
                    writer = loop.run_until_complete(awaitlib.Connect(server.host, server.port))  # awaited
                    writer.close()
                    loop.run_until_complete(writer.wait_closed())
            finally:
                loop.close()
    '''))
    result = run()
    assert errors_of(result) == ["test_w.py::test_connects_again_and_again"]
    block = failure_block(result, "test_w.py::test_connects_again_and_again")
    # (Connect._open from Python 3.11, which knows a code object's qualified name; _open before)
    assert re.search(r"connection\(s\) opened by awaitlib\.Connect\._open\(\), opened in a task started at "
                     r"test_w\.py:", block), block
    assert "_wrap_awaitable" not in block


def test_connections_all_open_at_once_are_a_pool_not_a_connection_per_call(pytester, run):
    """Seven connections no tracked client made, all open before the first was closed - a pool that grew for
    concurrent calls (redis-py's, a driver's) and was closed at the end: not "each call opened a connection of its
    own", and the fix is the pool's (found running redis-py's suite)."""
    pytester.makepyfile(test_c=dedent("""
        import socket

        def test_pool_closed_at_the_end(server):
            pool = []
            while len(pool) < 7:
                pool.append(socket.create_connection((server.host, server.port)))
            for conn in pool:
                conn.close()
    """))
    result = run()
    block = failure_block(result, "test_c.py::test_pool_closed_at_the_end")
    n = lingered(block, 7, result)
    assert "7 connection(s) opened by socket.create_connection(), at test_c.py:6 in test_pool_closed_at_the_end " \
           "(no tracked client; all open at once, a pool filled for concurrent calls (at its start or as they came) " \
           "and closed together)" in block, (n, block)
    assert "fix: these connections were all open at once: concurrent calls through a pool filled to hold them" \
        in block


def test_connections_all_open_at_once_each_on_a_new_object_are_not_a_pool(pytester, run):
    """Seven ``http.client.HTTPConnection`` objects, all open at once, then closed (waitress's
    ``test_many_clients`` makes fifty): concurrent calls, but no pool grew - each object made its own connection.
    Not "a pool grown for concurrent calls" with "share one pool, cap its size" (found running waitress's suite),
    and not the one-after-another reading either."""
    pytester.makepyfile(test_c=dedent("""
        import http.client

        def test_many_connections_at_once(server):
            conns = []
            for _ in range(7):
                conn = http.client.HTTPConnection(server.host, server.port)
                conn.request("GET", "/")
                conns.append(conn)
            for conn in conns:
                conn.getresponse().read()
                conn.close()
    """))
    result = run()
    block = failure_block(result, "test_c.py::test_many_connections_at_once")
    n = lingered(block, 7, result)
    assert "7 connection(s) opened by http.client.HTTPConnection.request(), at test_c.py:7 in " \
           "test_many_connections_at_once (no tracked client; all open at once, each on a new object of its own)" \
        in block, (n, block)
    assert "fix: " + CAUSE_ADVICE["api_objects_at_once"] in block, block
    assert "a pool filled" not in block and CAUSE_ADVICE["api_concurrent"] not in block, block


def test_connections_mostly_open_at_once_each_on_a_new_object_are_concurrent_calls(pytester, run):
    """One call alone, then six at the same time, each through a new ``http.client.HTTPConnection`` (cherrypy's
    ``test_antistampede``: a call, then a hundred threads): not "create one and reuse it", which cannot serve
    concurrent calls - six of the seven were open at once (found running CherryPy's suite)."""
    pytester.makepyfile(test_m=dedent("""
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import pytest

        TOGETHER = threading.Barrier(6)


        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/together":
                    TOGETHER.wait(10)  # the six in flight at once
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass


        @pytest.fixture(scope="module")
        def address():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield server.server_address
            server.shutdown()
            server.server_close()
            thread.join()


        def get(address, path):
            conn = http.client.HTTPConnection(*address)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()


        def test_one_then_six_at_once(address):
            get(address, "/alone")
            threads = [threading.Thread(target=get, args=(address, "/together")) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    """))
    result = run("-p", "no:randomly")
    block = failure_block(result, "test_m.py::test_one_then_six_at_once")
    n = lingered(block, 7, result)
    assert re.search(r"\d connection\(s\) opened by http\.client\.HTTPConnection\.request\(\), at test_m\.py:\d+ "
                     r"in get \(no tracked client; [67] of them open at once, each on a new object of its own\)",
                     block), (n, block)
    assert "fix: " + CAUSE_ADVICE["api_objects_at_once"] in block, block
    assert NEW_OBJECT_EACH not in block and CAUSE_ADVICE["api_objects"] not in block, block


def test_clients_each_bound_to_a_server_of_their_own_are_not_told_to_reuse_one(pytester, run):
    """One test, six servers, a client for each (pytest-aiohttp's ``aiohttp_client(app)`` for six app
    configurations): there was no client to reuse, so no "a new client per request?" - and the fix says to start
    fewer servers or allow it. Six clients to one server are still a new client per request."""
    pytester.makepyfile(test_servers=dedent("""
        import contextlib
        import httpx
        import pytest
        from pytest_sockhygiene.testing import serve_http

        @pytest.fixture(scope="module")
        def servers():
            with contextlib.ExitStack() as stack:
                yield [stack.enter_context(serve_http()) for _ in range(6)]

        def test_a_client_per_server(servers):
            for server in servers:
                with httpx.Client(base_url=server.url) as client:
                    client.get("/")

        def test_six_clients_to_one_server(servers):
            for _ in range(6):
                with httpx.Client(base_url=servers[0].url) as client:
                    client.get("/")
    """))
    result = run("-p", "no:randomly")
    own = failure_block(result, "test_servers.py::test_a_client_per_server")
    n = lingered(own, 6, result)
    assert "6 httpx.Client created at test_servers.py:13 in test_a_client_per_server (1 request each; each to a " \
           "server of its own)" in own, own
    assert "new client per request" not in own, own
    assert "fix: each client talked to a server of its own (a test client per app), so no connection could be " \
           "reused" in own, own
    assert own.rstrip().endswith(f"to allow it: @pytest.mark.sockhygiene(time_wait={n})"), own
    one = failure_block(result, "test_servers.py::test_six_clients_to_one_server")
    lingered(one, 6, result)
    assert "(1 request each): a new client per request? Create one client and reuse it." in one, one


def test_a_new_object_per_call_is_told_from_one_object_that_reconnects(pytester, run):
    """Connections no tracked client made, all through one method (``http.client.HTTPConnection.request``): made on
    a new object each time, the fix is to reuse one (it keeps its connection alive), not "an API without a pool"
    (found running httplib2's suite: a new ``httplib2.Http`` per request). One object that reconnects for each
    call, because the server ends every connection, and one the test closes after each call, get the one-object
    fix, which names both causes: whichever side closed first (a race where the object asked the server to close,
    as urllib.request does: slack_sdk's suite got one fix in one run and the other in the next)."""
    pytester.makepyfile(test_o=dedent('''
        import http.client

        def fetch(conn, path="/"):
            conn.request("GET", path)
            conn.getresponse().read()

        def test_a_new_connection_object_per_request(server):
            for _ in range(8):
                conn = http.client.HTTPConnection(server.host, server.port)
                fetch(conn)
                conn.close()

        def test_one_object_the_server_makes_reconnect(server):
            conn = http.client.HTTPConnection(server.host, server.port)
            for _ in range(8):
                fetch(conn, "/unsized")  # no length: the server ends each connection, the object opens another
            conn.close()

        def test_one_object_closed_after_each_call(server):
            conn = http.client.HTTPConnection(server.host, server.port)
            for _ in range(8):
                fetch(conn)
                conn.close()  # the next request opens a new connection
    '''))
    result = run("-p", "no:randomly")
    assert sorted(errors_of(result)) == ["test_o.py::test_a_new_connection_object_per_request",
                                         "test_o.py::test_one_object_closed_after_each_call",
                                         "test_o.py::test_one_object_the_server_makes_reconnect"]
    new = failure_block(result, "test_o.py::test_a_new_connection_object_per_request")
    assert re.search(r"connection\(s\) opened by http\.client\.HTTPConnection\.request\(\), at test_o\.py:4 in "
                     rf"fetch \(no tracked client: {re.escape(NEW_OBJECT_EACH)}\)", new), new
    assert "fix: " + CAUSE_ADVICE["api_objects"] in new
    one = failure_block(result, "test_o.py::test_one_object_the_server_makes_reconnect")
    assert NEW_OBJECT_EACH not in one and CAUSE_ADVICE["api_objects"] not in one, one
    assert "fix: " + CAUSE_ADVICE["api_one_object"] in one, one
    # one object, closed by the test after each call (pymemcache's suite): not "an API without a pool" either
    closed = failure_block(result, "test_o.py::test_one_object_closed_after_each_call")
    assert f"(no tracked client: {ONE_OBJECT_AGAIN})" in closed, closed
    assert "fix: " + CAUSE_ADVICE["api_one_object"] in closed, closed


FTP_SERVER = dedent('''
    """A small FTP server on loopback, enough for ftplib's login and listings: passive mode, a new data
    listener on a new port for every transfer, the data connection ended by the server to mark the end of the
    data (RFC 959's stream mode, as pyftpdlib does)."""
    import socket
    import threading

    import pytest


    def _serve(control):
        f = control.makefile("rb")
        control.sendall(b"220 ready\\r\\n")
        data = None
        for raw in f:
            cmd = raw.decode().split(" ", 1)[0].strip().upper()
            if cmd == "USER":
                control.sendall(b"331 password\\r\\n")
            elif cmd == "PASS":
                control.sendall(b"230 in\\r\\n")
            elif cmd == "TYPE":
                control.sendall(b"200 ok\\r\\n")
            elif cmd == "PASV":
                data = socket.create_server(("127.0.0.1", 0))
                port = data.getsockname()[1]
                control.sendall(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})\\r\\n".encode())
            elif cmd in ("LIST", "NLST"):
                control.sendall(b"150 here\\r\\n")
                conn, _ = data.accept()
                data.close()
                conn.sendall(b"a.txt\\r\\n")
                conn.close()  # the end of the data
                control.sendall(b"226 done\\r\\n")
            elif cmd == "QUIT":
                control.sendall(b"221 bye\\r\\n")
                break
            else:
                control.sendall(b"502 no\\r\\n")
        f.close()
        control.close()


    @pytest.fixture
    def ftpd():
        listener = socket.create_server(("127.0.0.1", 0))

        def accept():
            control, _ = listener.accept()
            _serve(control)

        t = threading.Thread(target=accept)
        t.start()
        yield listener.getsockname()
        t.join(10)
        listener.close()
''')


def test_ftp_transfers_are_told_as_the_protocols_data_connections(pytester, run):
    """Every FTP transfer opens a data connection, to a new port of the server, which the server ends to mark the
    end of the data (pyftpdlib's suite): the fix says so instead of "keep the object's connection open" or "use a
    pooled client", neither of which an FTP client can do, and one line of code's connections to one host are one
    line of the report, not a line per port."""
    pytester.makeconftest(FTP_SERVER)
    pytester.makepyfile(test_f=dedent('''
        import ftplib


        def test_listings(ftpd):
            with ftplib.FTP() as ftp:
                ftp.connect(*ftpd, timeout=10)
                ftp.login("u", "p")
                for cmd in ("LIST", "NLST", "LIST /", "NLST /", "LIST -a", "LIST -l"):
                    ftp.retrlines(cmd, lambda line: None)
    '''))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=5")
    assert errors_of(result) == ["test_f.py::test_listings"]
    block = failure_block(result, "test_f.py::test_listings")
    assert "fix: " + CAUSE_ADVICE["per_transfer"] in block, block
    assert CAUSE_ADVICE["api_one_object"] not in block and CAUSE_ADVICE["api"] not in block, block
    ports = re.search(r"6 connection\(s\) to 127\.0\.0\.1 \(ports ((?:\d+, ){5}\d+)\) were opened and closed by this "
                      r"test, at test_f\.py:9 in test_listings", block)
    assert ports is not None, block
    assert len(set(ports.group(1).split(", "))) == 6
    assert re.search(r"6 connection\(s\) opened by ftplib\.FTP\.retrlines\(\), at test_f\.py:9", block), block
    # the summary names the line of the most entries: the transfers', not the control connection's
    summary = result.stdout.str()
    assert re.search(r"most TIME_WAIT:\n +7 +test_f\.py::test_listings +\[over limit 5\] +"
                     r"\(test_f\.py:9 in test_listings\)", summary), summary


def test_clients_whose_responses_end_each_connection_are_not_told_to_reuse_one(pytester, run):
    """New clients of one request each, against a server that answers ``Connection: close`` (pytest-httpserver's
    werkzeug does, for every response): each client's pool closes its connection within the request, usually
    before the server does, so the server's side holds no entry to show it. "Create one client and reuse it"
    changed nothing there - a reused client reconnects for every request - and the fix says so. Against a server
    that keeps connections alive, the same loop is still a new client per request."""
    pytester.makepyfile(test_c=dedent('''
        import httpx, requests


        def test_requests_get(server):
            for _ in range(8):
                requests.get(server.url + "/close").close()


        def test_httpx_clients(server):
            for _ in range(8):
                with httpx.Client() as client:
                    client.get(server.url + "/close")


        def test_kept_alive(server):
            for _ in range(8):
                requests.get(server.url).close()
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_c.py::test_httpx_clients", "test_c.py::test_kept_alive",
                                 "test_c.py::test_requests_get"]
    for name, kind in (("test_requests_get", "requests.Session created inside requests.get(), called at test_c.py:6"),
                       ("test_httpx_clients", "httpx.Client created at test_c.py:11")):
        block = failure_block(result, f"test_c.py::{name}")
        assert re.search(rf"\d+ {re.escape(kind)} in {name} \(1 request each; each connection ended with its "
                         r"response\)", block), block
        assert "a new client per request?" not in block, block
        assert "one reused client would still open a connection per request" in block, block
    kept = failure_block(result, "test_c.py::test_kept_alive")
    assert "(1 request each): a new client per request? Create one client and reuse it." in kept, kept
    assert "ended with its response" not in kept and "one reused client would still" not in kept, kept


def test_a_client_per_call_some_following_a_redirect_is_still_a_client_per_call(pytester, run):
    """A new ``requests.Session`` per call (httpie's CLI), two of four calls following a redirect, against a server
    that ends every connection (pytest-httpbin's): 4 clients, 6 connections. The two that followed a redirect
    reconnected within their one call, and the whole group read "the client is reused, but the other side ended
    every connection", losing the client per call. There is a client for every two connections or fewer: a
    client per call, whose connections each ended with the response - the same fix as for 6 clients of 1
    request each. One client reused for many requests is still "reused"."""
    pytester.makepyfile(test_r=dedent('''
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import pytest
        import requests


        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.send_response(302 if self.path == "/redirect" else 200)
                if self.path == "/redirect":
                    self.send_header("Location", "/get")
                self.send_header("Content-Length", "2")
                self.send_header("Connection", "close")  # as pytest-httpbin's server, every response
                self.end_headers()
                self.wfile.write(b"ok")
                self.close_connection = True

            def log_message(self, *args):
                pass


        @pytest.fixture(scope="module")
        def closing():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield f"http://127.0.0.1:{server.server_address[1]}"
            server.shutdown()
            server.server_close()
            thread.join()


        def call(url):
            with requests.Session() as session:  # a client per call
                return session.get(url).status_code


        def test_per_call(closing):
            for path in ("/redirect", "/get", "/redirect", "/get"):
                assert call(closing + path) == 200


        def test_reused(closing):
            with requests.Session() as session:
                for _ in range(8):
                    assert session.get(closing + "/get").status_code == 200
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_r.py::test_per_call", "test_r.py::test_reused"]
    per_call = failure_block(result, "test_r.py::test_per_call")
    assert re.search(r"4 requests\.Session created at test_r\.py:\d+ in call \(1-2 requests each; each connection "
                     r"ended with its response\)", per_call), per_call
    assert CAUSE_ADVICE["server_closes"] not in per_call, per_call
    assert "one reused client would still open a connection per request" in per_call, per_call
    reused = failure_block(result, "test_r.py::test_reused")
    assert "(8 requests each; its pool opened 8 connections to 127.0.0.1:" in reused, reused
    assert "fix: " + CAUSE_ADVICE["server_closes"] in reused, reused


def rounds_server(size: int) -> str:
    """An inner suite's module-scoped server, ``rounds``, that answers a round of ``size`` requests once all of them
    have arrived: every request of a round in flight at once, with no sleep."""
    return dedent('''
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import pytest

        ARRIVED = threading.Barrier(SIZE)


        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                ARRIVED.wait(10)  # every request of a round in flight at once
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass


        @pytest.fixture(scope="module")
        def rounds():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield f"http://127.0.0.1:{server.server_address[1]}/"
            server.shutdown()
            server.server_close()
            thread.join()
    ''').replace("SIZE", str(size))


def test_a_reused_client_whose_requests_ran_at_the_same_time_is_not_told_to_reuse_one(pytester, run):
    """One ``requests.Session`` for 24 requests from 12 threads, all 12 in flight at once (the server answers when
    all have arrived): the pool keeps 10 connections (urllib3's default pool_maxsize) and closes the two it has no
    room for after each round, then the ten at the session's close - 12 to 14 connections for 24 requests (as the
    threads' rounds interleave), some open at the same time. It was told "reuse connections - one client, with
    keep-alive", what it does (found with cheroot's suite: one session, 1,000 requests from 50 threads)."""
    pytester.makepyfile(test_r=rounds_server(12) + dedent('''
        import requests


        def test_concurrent(rounds):
            failed = []

            def work(session):
                for _ in range(2):
                    try:
                        assert session.get(rounds, timeout=10).status_code == 200
                    except Exception as e:
                        failed.append(e)

            with requests.Session() as session:
                threads = [threading.Thread(target=work, args=(session,)) for _ in range(12)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            assert not failed
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_r.py::test_concurrent"]
    block = failure_block(result, "test_r.py::test_concurrent")
    assert re.search(r"1 requests\.Session created at test_r\.py:\d+ in test_concurrent \(24 requests each; its pool "
                     r"opened 1[2-4] connections to 127\.0\.0\.1:\d+ for 24 requests, some at the same time \(up to 12 "
                     r"in flight at once\)\)", block), block
    assert "fix: " + CAUSE_ADVICE["pool_concurrent"] in block, block
    assert "reuse connections - one client" not in block, block


AS_MANY_CONNECTIONS_AS_REQUESTS = rounds_server(8) + dedent('''
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp
    import httpx


    def test_httpx_gather(server):
        async def main():
            async with httpx.AsyncClient() as client:
                await asyncio.gather(*[client.get(server.url) for _ in range(20)])

        asyncio.run(main())


    def test_aiohttp_gather(server):
        async def main():
            async with aiohttp.ClientSession() as session:
                async def one():
                    async with session.get(server.url) as response:
                        await response.read()

                await asyncio.gather(*[one() for _ in range(20)])

        asyncio.run(main())


    def test_httpx_threads_no_keepalive_room(rounds):
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            with ThreadPoolExecutor(8) as pool:
                assert all(r.status_code == 200 for r in pool.map(lambda _: client.get(rounds, timeout=10),
                                                                   range(16)))
''')


def test_a_reused_client_with_a_connection_per_concurrent_request_is_not_told_it_made_one_per_request(pytester, run):
    """One client whose requests all ran at once, each on a connection of its own - as many connections as
    requests: one ``httpx.AsyncClient`` or ``aiohttp.ClientSession`` with twenty ``gather``-ed requests, one
    ``httpx.Client`` with no keep-alive room used from eight threads (the server answers a round once all eight
    have arrived). Only a client with more requests than connections had read as concurrent; these were told to
    stop making "a new connection per request" (found by a new user). The requests in flight at once
    (``ClientRecord.most_in_flight``) tell it."""
    pytest.importorskip("aiohttp")
    pytester.makepyfile(test_g=AS_MANY_CONNECTIONS_AS_REQUESTS)
    result = run("-p", "no:randomly")
    names = ["test_aiohttp_gather", "test_httpx_gather", "test_httpx_threads_no_keepalive_room"]
    assert errors_of(result) == [f"test_g.py::{name}" for name in names]
    for name, kind, requests, at_once in (("test_httpx_gather", r"httpx\.AsyncClient", 20, "20"),
                                          ("test_aiohttp_gather", r"aiohttp\.ClientSession", 20, "20"),
                                          ("test_httpx_threads_no_keepalive_room", r"httpx\.Client", 16, "8")):
        block = failure_block(result, f"test_g.py::{name}")
        # (as many connections as requests where all were in flight at once; fewer where some had ended first,
        # as httpx 0.23 on a loaded machine: 15 for 20)
        found = re.search(rf"1 {kind} created at test_g\.py:\d+ in (main|{name}) \({requests} requests each; its "
                          rf"pool opened (\d+) connections to 127\.0\.0\.1:\d+ for {requests} requests, some at the "
                          rf"same time \(up to (\d+) in flight at once\)\)", block)
        assert found is not None and 2 <= int(found[3]) <= int(at_once) and int(found[2]) <= requests, block
        assert "fix: " + CAUSE_ADVICE["pool_concurrent"] in block, block
        assert "reuse connections - one client" not in block, block


def test_a_pool_used_directly_that_reconnects_is_not_told_to_use_a_pool(pytester, run):
    """httpcore's ``ConnectionPool`` used directly (sentry-sdk's HTTP/2 and async transports), against a server
    that ends every connection: one pool made every call and reconnected for each. It was told to "send the
    requests through one pooled client", which it is; the fix is the server's keep-alive."""
    pytester.makepyfile(test_p=dedent('''
        import httpcore


        def test_pool(server):
            with httpcore.ConnectionPool() as pool:
                for _ in range(8):
                    pool.request("GET", server.url + "/close")
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_p.py::test_pool"]
    block = failure_block(result, "test_p.py::test_pool")
    assert f"(no tracked client: {ONE_OBJECT_AGAIN})" in block, block
    assert "fix: " + CAUSE_ADVICE["api_pool_again"] in block, block
    assert "one pooled client" not in block, block


SDKLIB = dedent('''
    """An SDK: one client object the user keeps, whose calls make an HTTP client of their own each time (slack_sdk's
    AsyncWebClient makes an aiohttp session per call; its WebClient goes through urllib.request)."""
    import urllib.request

    import httpx


    class ApiClient:
        def __init__(self, base):
            self.base = base

        def call(self):
            with httpx.Client() as http:
                return http.get(self.base).status_code

        def fetch(self):
            with urllib.request.urlopen(self.base + "/unsized") as response:
                return response.read()

        def info(self):
            with urllib.request.urlopen(self.base + "/unsized?size=4") as response:
                return response.read()

        def users(self):
            with urllib.request.urlopen(self.base + "/unsized?size=8") as response:
                return response.read()
''')


def test_an_sdk_that_makes_a_client_per_call_is_told_to_take_one(pytester, run):
    """One SDK object, reused for every call, whose method makes a new HTTP client per call: "a new client per
    request? Create one client and reuse it" was advice the test already followed (slack_sdk's AsyncWebClient).
    The line says the method made them, and to hand its object one client. A function that makes one per call
    (``requests.get``) keeps "create one client and reuse it": a client of the user's own replaces it. The same
    object's calls through urllib.request get the one-object fix, whichever side closed first; calls of several of
    its methods (slack_sdk's coverage test, a method per line) are one line of that object's, not one per method."""
    installed_library(pytester, "sdklib", SDKLIB)
    pytester.makepyfile(test_s=dedent('''
        import requests

        import sdklib


        def test_sdk_calls(server):
            api = sdklib.ApiClient(server.url)
            for _ in range(8):
                api.call()


        def test_requests_get(server):
            for _ in range(8):
                requests.get(server.url).close()


        def test_sdk_on_urllib(server):
            api = sdklib.ApiClient(server.url)
            for _ in range(8):
                api.fetch()


        def test_sdk_methods_on_urllib(server):
            api = sdklib.ApiClient(server.url)
            for _ in range(3):
                api.fetch()
                api.info()
                api.users()
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_s.py::test_requests_get", "test_s.py::test_sdk_calls",
                                 "test_s.py::test_sdk_methods_on_urllib", "test_s.py::test_sdk_on_urllib"]
    sdk = failure_block(result, "test_s.py::test_sdk_calls")
    assert ("8 httpx.Client created inside sdklib.ApiClient.call(), called at test_s.py:9 in test_sdk_calls (1 "
            "request each): sdklib.ApiClient.call() made a new one for each call: give the ApiClient one httpx.Client "
            "to reuse, if it takes one") in sdk, sdk
    assert "Create one client and reuse it" not in sdk, sdk
    get = failure_block(result, "test_s.py::test_requests_get")
    assert ("8 requests.Session created inside requests.get(), called at test_s.py:14 in test_requests_get (1 request "
            "each): a new client per request? Create one client and reuse it.") in get, get
    urllib = failure_block(result, "test_s.py::test_sdk_on_urllib")
    assert f"opened by sdklib.ApiClient.fetch(), at test_s.py:20 in test_sdk_on_urllib (no tracked client: " \
           f"{ONE_OBJECT_AGAIN})" in urllib, urllib
    assert "fix: " + CAUSE_ADVICE["api_one_object"] in urllib, urllib
    # several methods of that one object (an SDK's coverage test, a method per line): one line, the object's fix
    methods = failure_block(result, "test_s.py::test_sdk_methods_on_urllib")
    assert f"9 connection(s) opened by calls of 3 methods on one sdklib.ApiClient (fetch(), info(), users()), at " \
           f"test_s.py:26 in test_sdk_methods_on_urllib (no tracked client: {ONE_OBJECT_AGAIN})" in methods, methods
    assert "each call opened a connection of its own" not in methods, methods
    assert "fix: " + CAUSE_ADVICE["api_one_object"] in methods, methods


def test_connections_an_event_loop_made_are_not_one_objects(pytester, run):
    """``loop.create_connection`` is a method of one object, the event loop, but a factory: each call makes a new
    transport, as a function would, and the loop holds no connection to keep open (asyncssh's suite: an SSH
    connection per algorithm read "one object made every call", told to keep its connection open)."""
    pytester.makepyfile(test_l=dedent('''
        import asyncio


        def test_six_connections(server):
            async def main():
                loop = asyncio.get_running_loop()
                for _ in range(6):
                    transport, _ = await loop.create_connection(asyncio.Protocol, server.host, server.port)
                    transport.close()
                    await asyncio.sleep(0)
            asyncio.run(main())
    '''))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_l.py::test_six_connections"]
    block = failure_block(result, "test_l.py::test_six_connections")
    assert "connection(s) opened by asyncio.BaseEventLoop.create_connection(), at test_l.py:8 in main (no tracked " \
           "client: each call opened a connection of its own)" in block, block
    assert ONE_OBJECT_AGAIN not in block and CAUSE_ADVICE["api_one_object"] not in block, block


UNANSWERED = dedent('''
    import socket

    import httpx
    import pytest
    import requests


    @pytest.fixture(scope="module")
    def silent():
        # a server that never answers: the kernel completes each handshake into the backlog, nothing accepts
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        yield "http://127.0.0.1:%d/" % listener.getsockname()[1]
        listener.close()


    def test_requests_timing_out(silent):
        with requests.Session() as s:
            for _ in range(7):
                with pytest.raises(requests.exceptions.ReadTimeout):
                    s.get(silent, timeout=0.05)


    def test_httpx_timing_out(silent):
        with httpx.Client(timeout=0.05) as client:
            for _ in range(7):
                with pytest.raises(httpx.ReadTimeout):
                    client.get(silent)
''')


def test_a_reused_client_whose_requests_time_out_is_not_told_the_server_ends_connections(pytester, run):
    """A reused client whose every request times out (a server slower than the timeout) opens a connection per
    request: its pool closes each one as the timeout is handled, since its response may still come. That read "the
    server ended each connection ... turn keep-alive on", for a server that never answered (found with
    google-auth's suite, whose timeout tests hit a slow server). The timeouts are now named, with their fix."""
    pytester.makepyfile(test_t=UNANSWERED)
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_t.py::test_httpx_timing_out", "test_t.py::test_requests_timing_out"]
    for name, kind, timeout in (("test_requests_timing_out", "requests.Session", "ReadTimeoutError"),
                                ("test_httpx_timing_out", "httpx.Client", "ReadTimeout")):
        block = failure_block(result, f"test_t.py::{name}")
        assert re.search(rf"1 {re.escape(kind)} created at test_t\.py:\d+ in {name} \(7 requests each; its pool "
                         rf"opened 7 connections to 127\.0\.0\.1:\d+, each dropped as its request timed out "
                         rf"\({timeout}\)\)", block), block
        assert "fix: " + CAUSE_ADVICE["timeouts"] in block, block
        assert "ended each connection" not in block and "keep-alive on" not in block, block


STREAMS_LEFT_EARLY = dedent('''
    import asyncio
    import http.server
    import threading

    import httpx
    import pytest
    import requests


    class EventStream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the server never ends a connection first

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"10\\r\\ndata: event-one\\n\\n\\r\\n")
            self.wfile.flush()
            self.rfile.read(1)  # the stream stays open until the client goes away
            self.close_connection = True

        def log_message(self, *args):
            pass


    @pytest.fixture(scope="module")
    def events_url():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EventStream)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield "http://127.0.0.1:%d/events" % server.server_address[1]
        server.shutdown()
        server.server_close()


    def test_first_event_of_each_stream(events_url):
        with httpx.Client() as client:
            for _ in range(7):
                with client.stream("GET", events_url) as response:
                    next(response.iter_bytes())


    def test_first_event_of_each_stream_requests(events_url):
        with requests.Session() as session:
            for _ in range(7):
                with session.get(events_url, stream=True) as response:
                    next(response.iter_content(16))


    def test_first_event_of_each_stream_requests_iterator_kept(events_url):
        with requests.Session() as session:
            for _ in range(7):
                with session.get(events_url, stream=True) as response:
                    chunks = response.iter_content(16)  # still referenced as the response is closed
                    next(chunks)


    def test_first_event_of_each_stream_new_client_each(events_url):
        for _ in range(7):
            with httpx.Client() as client:
                with client.stream("GET", events_url) as response:
                    next(response.iter_bytes())


    def test_first_event_of_each_stream_async(events_url):
        async def main():
            async with httpx.AsyncClient() as client:
                for _ in range(7):
                    async with client.stream("GET", events_url) as response:
                        async for _chunk in response.aiter_bytes():
                            break

        asyncio.run(main())
''')


def test_a_reused_client_that_leaves_each_stream_early_is_not_told_the_server_ends_connections(pytester, run):
    """A reused client that closes each streamed response before its end (the first event of a server-sent-events
    stream: MCP's SDK leaves each POST's stream after its answer) makes its pool drop the connection each time, and
    the next request opens another. That read "the server ... ended each connection ... turn keep-alive on", against
    a server that keeps every connection alive and closed none first. httpx, sync and async, and requests, whose
    connection is closed by the body's iterator as it is left (``GeneratorExit``), or by the response's close where
    the iterator is still held."""
    pytester.makepyfile(test_s=STREAMS_LEFT_EARLY)
    result = run("-p", "no:randomly")
    names = ["test_first_event_of_each_stream", "test_first_event_of_each_stream_async",
             "test_first_event_of_each_stream_requests", "test_first_event_of_each_stream_requests_iterator_kept"]
    assert errors_of(result) == sorted(f"test_s.py::{name}"
                                       for name in [*names, "test_first_event_of_each_stream_new_client_each"])
    for name, kind in zip(names, ("httpx.Client", "httpx.AsyncClient", "requests.Session", "requests.Session")):
        block = failure_block(result, f"test_s.py::{name}")
        assert re.search(rf"1 {re.escape(kind)} created at test_s\.py:\d+ in \w+ \(7 requests each; its pool opened 7 "
                         r"connections to 127\.0\.0\.1:\d+, each dropped as its response was closed before its end\)",
                         block), block
        assert "fix: " + CAUSE_ADVICE["unread"] in block, block
        assert "ended each connection" not in block and "keep-alive on" not in block, block
    # a new client per stream: both causes, since either fix alone leaves a connection per request
    block = failure_block(result, "test_s.py::test_first_event_of_each_stream_new_client_each")
    assert re.search(r"7 httpx\.Client created at test_s\.py:\d+ in \w+ \(1 request each; each response closed before "
                     r"its end\): a new client per request\? Create one client and reuse it, and read each response to "
                     r"its end", block), block
    assert "fix: " + CAUSE_ADVICE["per_request_unread"] in block, block


CONNECT_EX_TWICE = dedent('''
    import select
    import socket


    def connect_nonblocking(server, again):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((server.host, server.port))  # EINPROGRESS
        select.select([], [s], [], 5)
        if again:
            # the completion check twisted's tcp.BaseClient.doConnect makes, at every Twisted (treq) connection
            assert s.connect_ex((server.host, server.port)) == 0
        return s


    def test_connect_ex_twice(server):
        for _ in range(10):
            connect_nonblocking(server, again=True).close()  # closed before the next one is opened


    def test_connect_ex_once(server):
        for _ in range(10):
            connect_nonblocking(server, again=False).close()
''')


def test_a_non_blocking_connect_asked_again_whether_it_is_done_is_one_connection(pytester, run):
    """A non-blocking connect finished by a second ``connect_ex`` (0 once connected: Twisted's ``doConnect`` does it
    for every connection) is one connection, not two: ten made one after another were counted as twenty connects
    against ten closes, and read "all open at once, a pool grown for concurrent calls" (treq's suite). They read as
    the same loop with one ``connect_ex`` each does."""
    pytester.makepyfile(test_x=CONNECT_EX_TWICE)
    result = run("-p", "no:randomly", "-o", "sockhygiene_connections=5")
    assert errors_of(result) == ["test_x.py::test_connect_ex_once", "test_x.py::test_connect_ex_twice"]
    for name in ("test_connect_ex_once", "test_connect_ex_twice"):
        block = failure_block(result, f"test_x.py::{name}")
        assert "connections: 10 > limit 5" in block, block
        assert "(no tracked client: each call opened a connection of its own)" in block, block
        assert "at once" not in block, block


SERVER_ENDS_EACH_BODY = dedent('''
    import httpx
    import requests
    import urllib3


    def test_urllib3_reads_exactly_the_body(server):
        with urllib3.PoolManager() as pool:
            for _ in range(7):
                response = pool.request("GET", server.url + "/unsized?size=64", preload_content=False)
                assert len(response.read(64)) == 64  # all of the body; the server's close not yet read
                response.close()


    def test_requests_leaves_the_iterator(server):
        with requests.Session() as session:
            for _ in range(7):
                with session.get(server.url + "/unsized?size=64", stream=True) as response:
                    next(response.iter_content(64))


    def test_httpx_leaves_the_stream(server):
        with httpx.Client() as client:
            for _ in range(7):
                with client.stream("GET", server.url + "/unsized?size=64") as response:
                    next(response.iter_bytes())
''')


def test_a_response_the_server_ends_is_not_blamed_on_the_client_that_closed_it_early(pytester, run):
    """A response with no length ends the connection (the server's close delimits its body): no connection could
    have been kept, whether the client read to the server's close or stopped at the last byte it needed
    (dulwich's pkt-line reader does). Such a burst is the server's - "turn keep-alive on" - not "each dropped as
    its response was closed before its end", which told the client to read to the end and changed nothing
    (urllib3 read exactly, requests' iterator left, httpx's stream left)."""
    pytester.makepyfile(test_e=SERVER_ENDS_EACH_BODY)
    result = run("-p", "no:randomly")
    names = ["test_httpx_leaves_the_stream", "test_requests_leaves_the_iterator", "test_urllib3_reads_exactly_the_body"]
    assert errors_of(result) == [f"test_e.py::{name}" for name in names]
    for name in names:
        block = failure_block(result, f"test_e.py::{name}")
        assert "closed before its end" not in block and CAUSE_ADVICE["unread"] not in block, block
        assert "ended each connection" in block or "ended every connection" in block, block


CLIENT_IN_A_SUBPROCESS = dedent("""
    import http.server
    import subprocess
    import sys
    import threading

    import pytest

    CLIENT = '''
    import http.client, sys
    connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))  # one connection object, reused
    for _ in range(7):
        connection.request("GET", "/")
        connection.getresponse().read()
    connection.close()
    '''


    class OnePerConnection(http.server.BaseHTTPRequestHandler):  # HTTP/1.0: ends each connection
        def do_GET(self):
            self.send_response(200)
            self.end_headers()  # no length: the client reads to the server's close, which so always comes first
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass


    @pytest.fixture
    def port():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OnePerConnection)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        yield server.server_address[1]
        server.shutdown()
        server.server_close()
        thread.join()


    def test_git_like_client(port):
        subprocess.run([sys.executable, "-c", CLIENT, str(port)], check=True)
""")


def test_server_side_entries_of_a_client_outside_the_process_get_the_servers_fix(pytester, run):
    """The test's in-process server ended every connection of a client running in a subprocess (dulwich's suite:
    ``git`` against an HTTP/1.0 server in the test): every TIME_WAIT entry is the server's side, and no connect of
    this process's made them. The fix was "reuse connections - one client, with keep-alive", which the client
    already does; it is the server's keep-alive now."""
    pytester.makepyfile(test_o=CLIENT_IN_A_SUBPROCESS)
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_o.py::test_git_like_client"]
    block = failure_block(result, "test_o.py::test_git_like_client")
    assert "the in-process server's side" in block, block
    assert "fix: " + CAUSE_ADVICE["server_side_only"] in block, block
    assert "reuse connections - one client" not in block, block


CLIENT_ASKS_CLOSE = dedent("""
    import asyncio
    import httpx


    def test_sync_client_asks_each_close(server):
        with httpx.Client() as client:
            for _ in range(7):
                client.get(server.url, headers={"Connection": "close"})


    def test_async_client_asks_each_close(server):
        async def main():
            async with httpx.AsyncClient() as client:
                for _ in range(7):
                    await client.get(server.url, headers={"Connection": "close"})

        asyncio.run(main())


    def test_server_ends_each(server):
        with httpx.Client() as client:
            for _ in range(7):
                client.get(server.url + "/close")
""")


def test_a_reused_client_whose_requests_ask_for_the_close_is_told_to_drop_the_header(pytester, run):
    """A reused httpx client whose every request carries ``Connection: close`` to a server that keeps connections
    alive: the server only honours the request, and "turn keep-alive on in the server" - what it read - changes
    nothing (found with httpx's suite). The fix is the header. The server's own ``Connection: close`` keeps the
    server's fix."""
    pytester.makepyfile(test_h=CLIENT_ASKS_CLOSE)
    result = run("-p", "no:randomly")
    names = ["test_async_client_asks_each_close", "test_server_ends_each", "test_sync_client_asks_each_close"]
    assert errors_of(result) == [f"test_h.py::{name}" for name in names]
    for name in ("test_sync_client_asks_each_close", "test_async_client_asks_each_close"):
        block = failure_block(result, f"test_h.py::{name}")
        assert lingered(block, 7, result), block
        assert "each closed as its request asked (a `Connection: close` request header)" in block, block
        assert "fix: " + CAUSE_ADVICE["asked_close"] in block, block
        assert CAUSE_ADVICE["server_closes"] not in block, block
    server = failure_block(result, "test_h.py::test_server_ends_each")
    assert "fix: " + CAUSE_ADVICE["server_closes"] in server and "asked" not in server, server


URLLIB3_CLIENTS_ASK_CLOSE = dedent("""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest
    import requests
    import urllib3

    CLOSED = threading.Semaphore(0)


    class Echoing(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        echo = True

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            if self.echo and "close" in self.headers.get("Connection", "").lower():
                self.send_header("Connection", "close")  # (what most servers answer to a request's close)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass


    class Silent(Echoing):
        echo = False  # closes as asked, its response saying nothing of it


    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def shutdown_request(self, request):
            super().shutdown_request(request)
            CLOSED.release()  # its FIN is sent: the client's next request finds the connection dropped


    def serve(handler):
        server = Server(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/"
        server.shutdown()
        server.server_close()
        thread.join()


    @pytest.fixture(scope="module")
    def echoing():
        yield from serve(Echoing)


    @pytest.fixture(scope="module")
    def silent():
        yield from serve(Silent)


    def session_asks(url):
        with requests.Session() as session:
            session.headers["Connection"] = "close"
            for _ in range(7):
                assert session.get(url).status_code == 200
                assert CLOSED.acquire(timeout=10)


    def manager_asks(url, **kw):
        with urllib3.PoolManager(headers={"Connection": "close"}) as manager:
            for _ in range(7):
                response = manager.request("GET", url, **kw)
                assert response.status == 200 and response.data == b"ok"
                response.release_conn()
                assert CLOSED.acquire(timeout=10)


    def test_session(silent):
        session_asks(silent)


    def test_session_echoed(echoing):
        session_asks(echoing)


    def test_manager(silent):
        manager_asks(silent)


    def test_manager_echoed(echoing):
        manager_asks(echoing)


    def test_manager_streamed_echoed(echoing):
        manager_asks(echoing, preload_content=False)


    def test_session_server_ends_each(server):
        with requests.Session() as session:
            for _ in range(7):
                session.get(server.url + "/close")
""")


def test_requests_and_urllib3_clients_whose_requests_ask_for_the_close_are_told_to_drop_the_header(pytester, run):
    """The same as httpx's, for a ``requests.Session`` whose ``headers`` carry ``Connection: close`` and a
    ``urllib3.PoolManager(headers=...)`` that does: against a keep-alive server they read "the server, or a proxy or
    middleware between, ended each connection", and "turn keep-alive on" (found by a new user). urllib3 closes such
    a connection elsewhere than httpcore: at the next request, which finds it dropped, where the server closed
    without saying so (``serve_http`` does; the client waits for the server's close before its next request, which
    would otherwise race it); as the body is read to the close the response announced, where it said so (most
    servers do), preloaded or streamed. The server's own ``Connection: close`` keeps the server's fix."""
    pytest.importorskip("requests")
    pytester.makepyfile(test_u=URLLIB3_CLIENTS_ASK_CLOSE)
    result = run("-p", "no:randomly")
    asked = ["test_manager", "test_manager_echoed", "test_manager_streamed_echoed", "test_session",
             "test_session_echoed"]
    assert errors_of(result) == sorted(f"test_u.py::{name}" for name in [*asked, "test_session_server_ends_each"])
    for name in asked:
        block = failure_block(result, f"test_u.py::{name}")
        assert lingered(block, 7, result), block
        assert "each closed as its request asked (a `Connection: close` request header)" in block, block
        assert "fix: " + CAUSE_ADVICE["asked_close"] in block, block
        assert CAUSE_ADVICE["server_closes"] not in block, block
    server = failure_block(result, "test_u.py::test_session_server_ends_each")
    assert "fix: " + CAUSE_ADVICE["server_closes"] in server and "asked" not in server, server


def test_connections_a_test_opened_with_connect_ex_are_named_by_it(pytester, run):
    """A line that calls ``connect_ex`` itself (a port probe, a wait-for-server loop) is named by that method in
    the report, not by ``connect``, which the code never called."""
    pytester.makepyfile(test_ex=dedent("""
        import socket, pytest

        @pytest.mark.sockhygiene(connections=1)
        def test_probe(server):
            for _ in range(3):
                s = socket.socket()
                assert s.connect_ex((server.host, server.port)) == 0
                s.close()
    """))
    result = run()
    assert errors_of(result) == ["test_ex.py::test_probe"]
    result.stdout.fnmatch_lines(["*3 connection(s) opened by socket.socket.connect_ex(), at test_ex.py:* in "
                                 "test_probe (no tracked client*"])
    assert "socket.socket.connect()" not in result.stdout.str()


DOCTEST_LEAK = dedent('''
    import socket

    KEEP = []


    def connect_demo():
        """Open a connection to a local listener.

        >>> lsock = socket.create_server(("127.0.0.1", 0))
        >>> KEEP.extend([lsock, socket.create_connection(lsock.getsockname())])
        """
''')


def test_a_doctests_advice_is_a_line_it_can_take_and_that_allows_it(pytester, run, monkeypatch, tmp_path):
    """A doctest is no function a marker can decorate: it was told "to allow it: @pytest.mark.sockhygiene(...)",
    advice it cannot take. It is told the fixture's ``set_limits`` from its first example, in the terminal, a CI
    annotation and the text made again from the JSON report; and that line, put first, allows what was seen."""
    import jsonschema

    from pytest_sockhygiene.reporting.records import text_of

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    pytester.makepyfile(mylib=DOCTEST_LEAK)
    path = tmp_path / "r.json"
    result = run("--doctest-modules", "mylib.py", f"--sockhygiene-report={path}")
    assert errors_of(result) == ["mylib.py::mylib.connect_demo"], result.stdout.str()
    allow_all = ">>> _ = getfixture('sockhygiene').set_limits(established=1, listen=1)"
    result.stdout.fnmatch_lines([
        "*to allow it: >>> _ = getfixture('sockhygiene').set_limits(established=1)  (as the doctest's first example)",
        "*to allow it: >>> _ = getfixture('sockhygiene').set_limits(listen=1)  (as the doctest's first example)",
        f"  to allow all of it: {allow_all}  (as the doctest's first example)",
    ])
    assert "pytest.mark" not in result.stdout.str()
    annotations = [line for line in result.outlines if line.startswith("::error ")]
    assert len(annotations) == 2 and all("getfixture('sockhygiene').set_limits(" in a for a in annotations)
    assert not any("pytest.mark" in a for a in annotations), annotations
    doc = json.loads(path.read_text())
    [record] = [t for t in doc["tests"] if not t["clean"]]
    assert record["doctest"] is True
    jsonschema.validate(doc, json.loads((pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json")
                                        .read_text()))
    assert f"to allow all of it: {allow_all}" in text_of(record)

    # the advice, taken: the doctest's first example
    first = "    >>> lsock"
    assert first in DOCTEST_LEAK
    pytester.makepyfile(mylib=DOCTEST_LEAK.replace(first, f"    {allow_all}\n{first}", 1))
    result = run("--doctest-modules", "mylib.py")
    result.assert_outcomes(passed=1)
