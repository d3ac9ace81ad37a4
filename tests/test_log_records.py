"""A socket that only a traceback in pytest's captured log keeps open is not the test's leak (``logheld.py``): real
sockets to the real loopback server, real ``logging``, pytest's own log capture."""

from __future__ import annotations

import pytest

from conftest import dedent, errors_of, failure_block

LOGGING_CODE = '''
import logging
import socket

log = logging.getLogger("app")
kept = []

class Connection:
    def __init__(self, address):
        self.sock = socket.create_connection(address)

def handshake(address, keep=False):
    sock = socket.create_connection(address)
    if keep:
        kept.append(sock)
    raise ConnectionError("handshake refused")

def handshake_through_an_object(address):
    conn = Connection(address)
    raise ConnectionError("handshake refused")

def handshake_deep(address):
    conn = Connection(address)
    for _ in range(8):
        conn = [conn]  # eight references further from the frame than the socket of `handshake`
    raise ConnectionError("handshake refused")

def connect(address, how=handshake, **kwargs):
    try:
        how(address, **kwargs)
    except ConnectionError:
        log.exception("could not connect")  # the record holds the traceback, its frames, their locals

def address_of(server):
    host, _, port = server.url.split("//")[1].rstrip("/").rpartition(":")
    return host, int(port)
'''


@pytest.mark.parametrize("how", ["local", "attribute", "deep", "caplog"])
def test_a_socket_only_a_logged_traceback_holds_is_not_a_leak(pytester, run, how):
    """Without pytest the garbage collector would close it when the ``except`` block ended, as it closes any
    socket dropped unclosed (no limit counts that); pytest keeps the record, so it was still open at the look
    and failed the test (found running aiosmtplib's suite). A socket something else holds too stays a leak."""
    pytester.makepyfile(app=LOGGING_CODE)
    call = {"local": "connect(address_of(server))",
            "attribute": "connect(address_of(server), handshake_through_an_object)",
            "deep": "connect(address_of(server), handshake_deep)",
            "caplog": "connect(address_of(server))\n            assert 'could not connect' in caplog.text"}[how]
    pytester.makepyfile(test_log=dedent(f"""
        from app import address_of, connect, handshake, handshake_deep, handshake_through_an_object

        def test_logged(server, caplog):
            {call}

        def test_also_kept_elsewhere(server):
            connect(address_of(server), handshake, keep=True)

        def test_last(server):
            pass
    """))
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=3, errors=1)
    assert errors_of(result) == ["test_log.py::test_also_kept_elsewhere"]
    kept = failure_block(result, "test_log.py::test_also_kept_elsewhere")
    assert "established: 1 > limit 0" in kept
    assert "opened at app.py:12 in handshake" in kept
    result.stdout.fnmatch_lines(["*3 tests checked, 1 with violations (established: 1)*"])


def test_a_logged_socket_still_counts_as_the_tests_connection(pytester, run):
    """Only its being left open is not counted: the connect was the test's, for the connection budget (found with
    paho-mqtt's TLS connect, whose failed handshake leaves the socket in a local)."""
    pytester.makepyfile(app=LOGGING_CODE)
    pytester.makepyfile(test_budget=dedent("""
        import pytest
        from app import address_of, connect

        @pytest.mark.sockhygiene(connections=0)
        def test_logged(server):
            connect(address_of(server))

        def test_last(server):
            pass
    """))
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=2, errors=1)
    logged = failure_block(result, "test_budget.py::test_logged")
    assert "connections: 1 > limit 0" in logged
    assert "established" not in logged


def test_a_thread_that_logged_and_carries_on_still_holds_its_socket(pytester, run):
    """A running thread's frame is its own, not the record's: the socket stays the test's leak (found with
    paho-mqtt's network loop thread)."""
    pytester.makepyfile(app=LOGGING_CODE)
    pytester.makepyfile(test_thread=dedent("""
        import socket
        import threading

        import pytest
        from app import address_of, log

        STOP = threading.Event()

        @pytest.fixture(scope="module")
        def stop():
            yield
            STOP.set()

        def worker(address, ready):
            sock = socket.create_connection(address)
            try:
                raise ValueError("bad reply")
            except ValueError:
                log.exception("bad reply")
            ready.set()
            STOP.wait()  # still running, holding `sock` in this frame
            sock.close()

        def test_thread(server, stop):
            ready = threading.Event()
            threading.Thread(target=worker, args=(address_of(server), ready), daemon=True).start()
            assert ready.wait(5)

        def test_last(server):
            pass
    """))
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=2, errors=1)
    leak = failure_block(result, "test_thread.py::test_thread")
    assert "established: 1 > limit 0" in leak
    assert "opened at test_thread.py:" in leak


RETRYING_SERVER = '''
import socket
import threading

import pytest

ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 2\\r\\n\\r\\nok"


def read_request(conn):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


class Server:
    """HTTP/1.1 with a Content-Length and no `Connection: close`, yet it ends each connection: the first
    ``retries`` when the client's next request comes on them (unanswered: urllib3 retries that request on a new
    connection, and logs that it does), each later one just after its answer (the client's pooled connection is
    left in CLOSE_WAIT)."""

    def __init__(self, retries):
        self.retries = retries
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d/" % self.listener.getsockname()[1]
        self.closed = threading.Semaphore(0)
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        served = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            with conn:
                if read_request(conn):
                    conn.sendall(ANSWER)
                    if served < self.retries:
                        read_request(conn)  # the next request, on the same connection: closed unanswered
                served += 1
            self.closed.release()


@pytest.fixture(scope="module")
def server(request):
    s = Server(getattr(request.module, "RETRIES", 1))
    yield s
    s.stopping = True
    socket.create_connection(s.listener.getsockname()).close()  # (a thread in accept() is woken by a connection)
    s.thread.join(5)
    s.listener.close()
'''


@pytest.mark.parametrize(("retries", "kept"), [(1, False), (1, True), (20, False)])
def test_a_pool_only_urllib3s_logged_retry_holds_is_not_a_leak(pytester, run, retries, kept):
    """urllib3 reuses a connection the server ended without saying so (no `Connection: close`), its FIN not yet
    come: the request fails, urllib3 retries it on a new connection and logs a warning whose arguments carry the
    exception. Its traceback holds the pool, whose idle connection the server has ended meanwhile (CLOSE_WAIT):
    the ``PoolManager`` was closed (``clear()`` drops its pools; each pool's finalizer closes its connections), so
    nothing but pytest's captured records and a cycle of garbage (urllib3's ``err`` local, in the frame its
    exception's traceback holds) keeps it, and it was reported as left open, in none of the client's pools, in
    about three runs of five (found against a server answering with a Content-Length and closing after the
    response). Twenty retries in one test: twenty records, whose frames hold twenty responses that reference the
    pool. A response the test keeps holds the pool too: then it stays the test's leak."""
    pytester.makeconftest(RETRYING_SERVER)
    keep = "KEPT.append(response)" if kept else "pass"
    pytester.makepyfile(test_retry=dedent(f"""
        import pytest
        import urllib3

        RETRIES = {retries}
        KEPT = []

        @pytest.mark.sockhygiene(time_wait=RETRIES + 1)  # (the server's sides: it closed each connection first)
        def test_retried(server):
            with urllib3.PoolManager() as pm:
                for _ in range(RETRIES + 1):
                    response = pm.request("GET", server.url)
                    assert response.data == b"ok"
                {keep}
            for _ in range(RETRIES + 1):  # every connection closed by the server: the last idle in the pool
                assert server.closed.acquire(timeout=5)

        def test_last(server):
            pass
    """))
    result = run("-W", "ignore::ResourceWarning")
    if not kept:
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["*2 tests checked, all clean*"])
        return
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*Retrying*after connection broken by*"])  # (the leak's captured log)
    leak = failure_block(result, "test_retry.py::test_retried")
    assert "close_wait: 1 > limit 0" in leak
    assert "opened by a request of a urllib3.PoolManager, and in none of its pools now" in leak
