"""The ``sockhygiene`` fixture, and what happens when the plugin itself fails or cannot see the table."""

from __future__ import annotations

import json
import re

import pytest

from conftest import INNER_CONFTEST, dedent, errors_of, failure_block


def test_measure_snapshot_and_runtime_limits(pytester, run):
    pytester.makepyfile(test_f=dedent("""
        import socket
        KEEP = []

        def test_measure_counts_a_block(server, sockhygiene):
            with sockhygiene.measure() as clean:
                with socket.create_connection((server.host, server.port)):
                    pass
            assert clean.established == 0 and clean.connections == 1
            with sockhygiene.measure(established=None) as dirty:
                KEEP.append(socket.create_connection((server.host, server.port)))
            assert dirty.established == 1 and dirty.connections == 1
            assert any(e.remote == (server.host, server.port) for e in sockhygiene.snapshot())
            sockhygiene.set_limits(established=1)  # this test may keep the one it leaked

        def test_set_limits_bad_key(sockhygiene):
            import pytest
            expected = "sockhygiene fixture in test_f.py::test_set_limits_bad_key: unknown limit 'listn'"
            with pytest.raises(ValueError, match=expected):
                sockhygiene.set_limits(listn=1)

        def test_last(server):
            pass
    """))
    run().assert_outcomes(passed=3)


def test_fixture_works_when_mode_is_off(pytester, run):
    pytester.makepyfile(test_f=dedent("""
        import socket

        def test_measure_off(server, sockhygiene):
            with sockhygiene.measure(established=None) as m:
                s = socket.create_connection((server.host, server.port))
            s.close()
            assert m.established == 1 and m.connections == 1
    """))
    run(mode="off").assert_outcomes(passed=1)
    import socket

    # the private controller removed its hooks (pytest-socket may have written the C method into the dict)
    assert not [n for n, f in vars(socket.socket).items()
                if getattr(f, "__module__", "") == "pytest_sockhygiene.events"]


def test_plugin_crash_is_a_plugin_problem_not_a_test_failure(pytester, run):
    # A fault we cannot cause for real: the table backend raising. Injected from the inner conftest, in a
    # subprocess so that the patch dies with it.
    pytester.makeconftest(dedent("""
        import pytest
        from pytest_sockhygiene.table import linux, portable
        from pytest_sockhygiene.testing import serve_http

        def boom(self, ids):
            raise RuntimeError("simulated backend fault")

        linux.LinuxTable.describe = boom
        portable.PsutilTable.describe = boom

        @pytest.fixture(scope="session")
        def server():
            with serve_http() as s:
                yield s
    """))
    pytester.makepyfile(test_p=dedent("""
        import socket
        KEEP = []
        def test_user_passes(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
        def test_user_fails():
            assert False, "the user's own failure"
    """))
    result = run(subprocess=True)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*plugin problem* - a fault of pytest-sockhygiene (or of a tracker plugin), "
                                 "not of your tests*",
                                 "*simulated backend fault*"])
    assert errors_of(result) == []


def test_a_look_failing_at_a_fixtures_setup_leaves_no_owner_behind(pytester, run):
    """A fault we cannot cause for real: the table's look raising once, as a broader fixture's setup begins. The
    fixture's ownership was pushed before that look and never popped: every later socket of the run was that
    fixture's, and the tests' leaks passed. Now the fault is a plugin problem, the fixture's setup is still its
    own (its server is not the leak of the test that set it up), and a test's leak is its own. In a subprocess,
    so that the patch dies with it."""
    pytester.makeconftest(INNER_CONFTEST + dedent("""
        import sys
        from pytest_sockhygiene.table import linux, portable

        FAILED = []

        def failing_once(real):
            def ids(self):
                caller = sys._getframe(1)
                if not FAILED and caller.f_code.co_name == "fixture_setup_begin" \
                        and "'server'" in caller.f_locals["label"]:
                    FAILED.append(1)
                    raise PermissionError(13, "simulated: the look failed once")
                return real(self)
            return ids

        linux.LinuxTable.ids = failing_once(linux.LinuxTable.ids)
        portable.PsutilTable.ids = failing_once(portable.PsutilTable.ids)
    """))
    pytester.makepyfile(test_p=dedent("""
        import socket
        KEEP = []
        def test_first(server):
            pass
        def test_leaks(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
    """))
    result = run(subprocess=True)
    assert errors_of(result) == ["test_p.py::test_leaks"]
    result.stdout.fnmatch_lines(["*plugin problem*", "*fixture 'server' setup*simulated: the look failed once*"])
    assert "session-level leaks" not in result.stdout.str()


def test_unreadable_table_gives_one_notice_and_the_run_goes_on(pytester, run):
    # Faults we cannot cause for real as root: no /proc/self/fd (pointed at a missing directory) and psutil
    # refused (AccessDenied). In a subprocess so that the patches die with it.
    pytester.makeconftest(dedent("""
        import psutil
        from pytest_sockhygiene.table import linux

        linux._FD_DIR = "/nonexistent/proc/self/fd"

        def denied(self, kind="inet"):
            raise psutil.AccessDenied(pid=1)

        psutil.Process.net_connections = denied
    """))
    pytester.makepyfile(test_n=dedent("""
        def test_a(): pass
        def test_b(): pass
    """))
    result = run(subprocess=True)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("notice: socket checks are off for this session") == 1


def test_a_table_that_becomes_unreadable_switches_the_checks_off_with_one_notice(pytester, run):
    """Faults we cannot cause for real as root: ``/proc/self/fd`` refused, and psutil denying the process, from the
    fourth look on. Each later use of the table was a plugin problem with a traceback (sixteen in a run of
    thirteen tests), and nothing said the checks were off. Now: one notice saying so and where, no plugin problem,
    the run's results the tests' own. In a subprocess so that the patches die with it."""
    pytester.makeconftest(INNER_CONFTEST + dedent("""
        import os
        import psutil
        from pytest_sockhygiene.table import linux, portable

        LOOKS = [0]

        def refused_after_three(real, fault):
            def read(*args, **kwargs):
                LOOKS[0] += 1
                if LOOKS[0] > 3:
                    raise fault()
                return real(*args, **kwargs)
            return read

        linux.os = type(os)("os")  # the backend's own view of os, so that only its listings fail
        linux.os.__dict__.update(os.__dict__)
        linux.os.listdir = refused_after_three(os.listdir, lambda: PermissionError(13, "Permission denied"))
        portable.PsutilTable._connections = refused_after_three(portable.PsutilTable._connections,
                                                                lambda: psutil.AccessDenied(pid=os.getpid()))
    """))
    pytester.makepyfile(test_n=dedent("""
        import socket
        KEEP = []
        def test_a(): pass
        def test_b(): pass
        def test_c(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
        def test_d(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
    """))
    result = run("-p", "no:randomly", "-p", "no:asyncio", subprocess=True)
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert out.count("notice: socket checks were switched off during the session (") == 1, out
    assert "the socket table could not be read any more (" in out
    assert "plugin problem" not in out and "Traceback" not in out


def test_set_limits_enabled_false_switches_the_check_off(pytester, run):
    pytester.makepyfile(test_off=dedent("""
        import socket
        KEEP = []

        def test_switched_off_at_run_time(server, sockhygiene):
            sockhygiene.set_limits(enabled=False)
            KEEP.append(socket.create_connection((server.host, server.port)))

        def test_last(server):
            pass
    """))
    run().assert_outcomes(passed=2)


def test_warn_mode_warning_points_at_the_test(pytester, run):
    pytester.makepyfile(test_loc=dedent("""
        import socket
        KEEP = []

        def test_leaks(server):
            KEEP.append(socket.create_connection((server.host, server.port)))

        def test_last(server):
            pass
    """))
    result = run(mode="warn")
    result.stdout.fnmatch_lines(["*test_loc.py:4: SockHygieneWarning: sockhygiene: test_loc.py::test_leaks broke*"])


def test_client_created_at_import_time_owns_its_pool(pytester, run):
    """A module-level client (created while the test module is imported, during collection) is tracked:
    its pooled connection belongs to it, not to the first test that uses it."""
    pytester.makepyfile(test_mod=dedent("""
        import httpx
        CLIENT = httpx.Client()

        def test_one(server):
            CLIENT.get(server.url)

        def test_two(server):
            CLIENT.get(server.url)
    """))
    result = run()
    result.assert_outcomes(passed=2)


def test_fixture_first_set_up_by_a_disabled_test_still_owns_its_sockets(pytester, run):
    pytester.makepyfile(test_dis=dedent("""
        import socket, threading, time, pytest
        KEEP = []

        @pytest.fixture(scope="module")
        def poller(server):
            stop = threading.Event()
            def loop():
                while not stop.is_set():
                    KEEP.append(socket.create_connection((server.host, server.port)))
                    time.sleep(0.01)
            t = threading.Thread(target=loop, daemon=True)
            t.start()
            yield
            stop.set(); t.join()
            for s in KEEP:
                s.close()

        @pytest.mark.sockhygiene(enabled=False)
        def test_first(poller):
            pass

        @pytest.mark.parametrize("i", range(3))
        def test_later(poller, i):
            time.sleep(0.03)
    """))
    run().assert_outcomes(passed=4)


def test_tests_skipped_before_setup_are_checked_without_a_plugin_problem(pytester, run):
    """skip and skipif markers and xfail(run=False) stop the setup before pytest sets the test up (the item is
    not on pytest's setup stack, so no finalizer can be registered): the window closes right there, the skip
    stands, nothing is reported as a plugin problem, and the next test is still checked."""
    pytester.makepyfile(test_s=dedent("""
        import socket, pytest
        HELD = []

        @pytest.mark.skip(reason="marker")
        def test_skip():
            pass

        @pytest.mark.skipif(True, reason="condition")
        def test_skipif():
            pass

        @pytest.mark.xfail(run=False)
        def test_not_run():
            pass

        @pytest.fixture
        def unavailable():
            pytest.skip("from a fixture")

        def test_skipped_by_fixture(unavailable):
            pass

        def test_leaks(server):
            HELD.append(socket.create_connection((server.host, server.port)))
    """))
    result = run("-rsE")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1, errors=1)
    assert errors_of(result) == ["test_s.py::test_leaks"]
    assert "plugin problem" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*5 tests checked*"])


def test_interrupted_run_reports_no_session_level_leak_for_fixtures_torn_down_at_its_end(pytester, run):
    """Ctrl-C in a test: pytest tears the session's fixtures down in its own session-end hook. The health check
    runs after that teardown, so the session server that is about to close is not called a session-level leak,
    and the interrupted test's own leak is still recorded (without raising from inside that teardown)."""
    pytester.makepyfile(test_k=dedent("""
        import socket
        HELD = []

        def test_leak_then_interrupt(server):
            HELD.append(socket.create_connection((server.host, server.port)))
            raise KeyboardInterrupt
    """))
    result = run(subprocess=True)  # in-process, pytester would re-raise the KeyboardInterrupt into this run
    assert result.ret == 2  # pytest's INTERRUPTED
    out = result.stdout.str()
    assert "session-level leaks" not in out
    assert "INTERNALERROR" not in out
    result.stdout.fnmatch_lines([
        "1 test checked, 1 with violations (established: 1)",
        "interrupted in test_k.py::test_leak_then_interrupt: its sockets were checked when the run stopped, "
        "without failing it",
    ])


def test_a_fixtures_ended_threads_do_not_own_a_tests_new_threads(pytester, run):
    """A session fixture's server handled readiness probes on short-lived threads, alive when its setup ended, so
    owned by the fixture by thread ident. They end at once; the first test's thread pool is then given their
    idents, and its connections were the fixture's: 0-3 of 8 counted, the identical second test 8 (found with
    boto3's multipart upload against moto's server). An owned ident counts only for the thread it was given for."""
    pytester.makeconftest(dedent("""
        import threading, time, urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import pytest

        HANDLING = []  # one entry per handler thread still running

        class Handler(BaseHTTPRequestHandler):
            def handle(self):
                HANDLING.append(1)
                try:
                    super().handle()
                finally:
                    HANDLING.pop()

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"ok")
                self.wfile.flush()
                time.sleep(0.02)  # the handler's thread outlives its response a little

            def log_message(self, *args):
                pass

        @pytest.fixture(scope="session")
        def probed():
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_port}"
            for _ in range(4):  # readiness probes while the fixture is set up: a handler thread each
                urllib.request.urlopen(url).read()
            yield url, HANDLING
            server.shutdown()
            server.server_close()
    """))
    pytester.makepyfile(test_pool=dedent("""
        import time, urllib.request
        from concurrent.futures import ThreadPoolExecutor

        def fetch(url):
            with urllib.request.urlopen(url) as response:
                return response.read()

        def handlers_ended(handling):
            deadline = time.monotonic() + 5
            while handling and time.monotonic() < deadline:
                time.sleep(0.005)
            assert not handling

        def test_first(probed):
            url, handling = probed
            handlers_ended(handling)  # the probes' handler threads have ended: their idents are free again
            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(fetch, [url] * 8)) == [b"ok"] * 8

        def test_second(probed):
            url, handling = probed
            handlers_ended(handling)
            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(fetch, [url] * 8)) == [b"ok"] * 8
    """))
    result = run("-p", "no:randomly", "--sockhygiene-report=r.json", "-o", "sockhygiene_time_wait=unlimited",
                 mode="warn")
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "r.json").read_text())
    counts = {t["nodeid"]: t["counts"]["connections"] for t in report["tests"]}
    assert counts == {"test_pool.py::test_first": 8, "test_pool.py::test_second": 8}


def test_the_fixtures_pytest_makes_for_setup_methods_are_named_for_them(pytester, run):
    """unittest's ``setUpClass`` and xunit's ``setup_module`` run as fixtures pytest generates: a socket they leave
    open was reported as a leak of ``class-scoped fixture '_unittest_setUpClass_fixture_Leaky'`` (found running
    websockets' suite); it is the ``setUpClass of Leaky`` the user wrote."""
    pytester.makepyfile(test_ut=dedent("""
        import socket
        import unittest
        KEEP = []

        def setup_module():
            KEEP.append(socket.create_server(("127.0.0.1", 0)))

        class Leaky(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.listener = socket.create_server(("127.0.0.1", 0))  # never closed

            def test_a(self):
                pass

        class TestPlain:
            @classmethod
            def setup_class(cls):
                KEEP.append(socket.create_server(("127.0.0.1", 0)))

            def test_b(self):
                pass
    """))
    result = run("-p", "no:randomly")
    out = result.stdout.str()
    assert "session-level leaks: 3 left open at session end by fixtures of broader scope" in out
    for owner in ("module-scoped fixture 'module setup of test_ut'", "class-scoped fixture 'setUpClass of Leaky'",
                  "class-scoped fixture 'setup_class of TestPlain'"):
        assert f" - {owner}" in out, out
    assert "_setUpClass_fixture_" not in out and "_setup_module_fixture_" not in out


def test_a_session_fixtures_socket_reset_by_its_peer_is_a_session_level_leak(pytester, run):
    """A session fixture's connection, never closed, that its peer reset (a listener that never accepted it, closed
    at its own teardown) is held in state CLOSE at the session's end: a leaked fd, as a test's is reported
    (``established``, "connection already reset by the peer"). It passed unseen at session level, so whether a
    fixture's forgotten connection to a server was reported depended on whether the server accepted it first."""
    pytester.makepyfile(test_r=dedent("""
        import socket
        import pytest

        KEEP = []

        @pytest.fixture(scope="session")
        def listener():
            lsock = socket.create_server(("127.0.0.1", 0))  # never accepts
            yield lsock
            lsock.close()  # the connection waiting in its backlog is reset

        @pytest.fixture(scope="session")
        def conn(listener):
            s = socket.create_connection(listener.getsockname())
            KEEP.append(s)  # never closed
            return s

        def test_uses_conn(conn):
            assert conn.fileno() > 0
    """))
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # enforce: a session-level leak fails the run
    result.stdout.fnmatch_lines([
        "session-level leaks: 1 left open at session end by fixtures of broader scope*",
        "  CLOSE 127.0.0.1:* -> 127.0.0.1:* fd=* (connection already reset by the peer; the socket is still open) "
        "- session-scoped fixture 'conn'",
    ])


def test_a_socket_a_broader_fixtures_teardown_opens_and_keeps_is_its_session_level_leak(pytester, run):
    """A module or session fixture's teardown runs after its last test's check, outside any window: a connection it
    opens there and never closes was nobody's, and passed unseen. It is that fixture's now; one its teardown
    opens and closes is nothing; and a test's leak stays the test's."""
    pytester.makepyfile(test_t=dedent("""
        import socket
        import pytest

        KEEP = []

        @pytest.fixture(scope="module")
        def notifier(server):
            yield
            KEEP.append(socket.create_connection((server.host, server.port)))  # its teardown's, never closed

        @pytest.fixture(scope="module")
        def tidy(server):
            yield
            socket.create_connection((server.host, server.port)).close()  # its teardown's, closed

        @pytest.fixture(scope="session")
        def farewell(server):
            yield
            KEEP.append(socket.create_connection((server.host, server.port)))

        @pytest.fixture(scope="session")
        def deaf():
            lsock = socket.create_server(("127.0.0.1", 0))  # never accepts
            yield lsock.getsockname()
            lsock.close()  # what waits in its backlog is reset

        @pytest.fixture(scope="module")
        def knocker(deaf):
            yield
            KEEP.append(socket.create_connection(deaf))  # reset by its peer before the session's end

        def test_one(notifier, tidy, farewell, knocker):
            pass

        def test_leaks(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
    """))
    pytester.makepyfile(test_u="def test_later(): pass")
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_t.py::test_leaks"]
    out = result.stdout.str()
    assert "session-level leaks: 3 left open at session end by fixtures of broader scope" in out, out
    result.stdout.fnmatch_lines(["  CLOSE 127.0.0.1:* -> 127.0.0.1:* fd=* (connection already reset by the peer; the "
                                 "socket is still open) - module-scoped fixture 'knocker'"])
    result.stdout.fnmatch_lines(["  * 127.0.0.1:* -> 127.0.0.1:* fd=* - module-scoped fixture 'notifier'"])
    result.stdout.fnmatch_lines(["  * 127.0.0.1:* -> 127.0.0.1:* fd=* - session-scoped fixture 'farewell'"])
    assert "'tidy'" not in out


LAZY_POOL = dedent("""
    import socket
    import pytest

    KEEP = []

    class LazyPool:
        # connects on first use and keeps the connection for the next caller, as redis-py's pool does
        def __init__(self, address):
            self.address = address
            self._available = []

        def request(self):
            conn = self._available.pop() if self._available else socket.create_connection(self.address)
            conn.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            data = b""
            while not data.endswith(b"ok\\n"):  # (serve_http answers "ok\\n")
                data += conn.recv(4096)
            self._available.append(conn)
            return data

        def close(self):
            for conn in self._available:
                conn.close()
            self._available.clear()

    class Client:
        def __init__(self, pool):
            self.connection_pool = pool

    @pytest.fixture(scope="session")
    def client(server):
        pool = LazyPool((server.host, server.port))
        yield Client(pool)
        pool.close()

    @pytest.fixture
    def own_pool(server):
        return LazyPool((server.host, server.port))  # never closed: the test's

    def test_first(client):
        assert b"HTTP/1." in client.connection_pool.request()

    def test_second(client):
        assert b"HTTP/1." in client.connection_pool.request()

    def test_function_fixture_pool_left_open(own_pool):
        assert b"HTTP/1." in own_pool.request()

    def test_kept_by_the_test(client, server):
        KEEP.append(socket.create_connection((server.host, server.port)))
""")


LAZY_CLIENT = dedent("""
    import pytest
    import requests

    KEEP = []

    class Transport:
        http = None

    class Endpoint:
        def __init__(self):
            self.transport = Transport()

    class Api:
        # builds its HTTP client on its first call, a few objects down, as aiobotocore's client builds its
        # aiohttp session (client._endpoint.http_session._session)
        def __init__(self, url):
            self.url = url
            self._endpoint = Endpoint()

        def get(self):
            transport = self._endpoint.transport
            if transport.http is None:
                transport.http = requests.Session()
            return transport.http.get(self.url).status_code

        def close(self):
            if self._endpoint.transport.http is not None:
                self._endpoint.transport.http.close()

    class Row:
        def __init__(self, i):
            self.i, self.cells = i, [i]

    @pytest.fixture(scope="session")
    def table():
        return [Row(i) for i in range(9_000)]  # a large value, set up before the client's: walked beside it

    @pytest.fixture(scope="session")
    def api(server):
        client = Api(server.url)
        yield client
        client.close()

    @pytest.fixture
    def own_api(server):
        return Api(server.url)  # never closed: the test's

    def test_first(table, api):
        assert api.get() == 200

    def test_second(api):
        assert api.get() == 200

    def test_function_fixture_client_left_open(own_api):
        assert own_api.get() == 200

    def test_kept_by_the_test(api, server):
        session = requests.Session()
        assert session.get(server.url).status_code == 200
        KEEP.append(session)
""")


@pytest.mark.parametrize("suite, left_open", [(LAZY_POOL, "test_function_fixture_pool_left_open"),
                                               (LAZY_CLIENT, "test_function_fixture_client_left_open")],
                         ids=["socket", "client"])
def test_what_a_session_fixtures_value_makes_on_first_use_is_the_fixtures(pytester, run, suite, left_open):
    """A client a session fixture made that connects on first use (redis-py, a database driver) opens its
    connection inside the first test that uses it and keeps it pooled: it was that test's ``established`` leak,
    "call close() in the fixture's teardown", which the fixture does (found running redis-py's suite beside a
    session-scoped ``redis.Redis``). The fixture's value holds the socket, so it is the fixture's. The same for a
    tracked client such an object makes on its first call (aiobotocore's client and its aiohttp session): not the
    first test's unclosed client either (found running aiobotocore's suite, where the session's large S3 client,
    set up first, used up the walk's budget before the small value beside it was looked at). A function fixture's
    pool or client left open, and what the test keeps, are still the test's."""
    pytester.makepyfile(test_lazy=suite)
    result = run("-p", "no:randomly")
    assert errors_of(result) == [f"test_lazy.py::{left_open}", "test_lazy.py::test_kept_by_the_test"]
    result.assert_outcomes(passed=4, errors=2)
    assert "session-level leaks" not in result.stdout.str()


THREADS_OF_SESSION_FIXTURES = dedent("""
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    from anyio import connect_tcp
    from anyio.from_thread import start_blocking_portal

    KEEP = []


    @pytest.fixture(scope="session")
    def pool():
        with ThreadPoolExecutor(1) as p:
            p.submit(lambda: None).result()  # its worker starts during the fixture's setup: the fixture's thread
            yield p


    @pytest.fixture(scope="session")
    def portal():
        with start_blocking_portal("asyncio") as p:
            yield p


    @pytest.fixture(scope="session")
    def raw_server():
        # a thread per connection, reading to EOF; its teardown closes the listener, not what it accepted
        listener = socket.create_server(("127.0.0.1", 0))
        accepted = threading.Event()

        def handle(c):
            with c:
                while c.recv(65536):
                    pass

        def accept_loop():
            while True:
                try:
                    c, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(c,), daemon=True).start()
                accepted.set()

        t = threading.Thread(target=accept_loop, daemon=True)
        t.start()
        yield listener.getsockname(), accepted
        listener.shutdown(socket.SHUT_RDWR)
        t.join()
        listener.close()


    @pytest.fixture(scope="session")
    def conn(raw_server):
        address, accepted = raw_server
        KEEP.append(socket.create_connection(address))  # never closed
        assert accepted.wait(10)
        yield KEEP[-1]


    def test_through_the_pool(pool, server):
        KEEP.append(pool.submit(socket.create_connection, (server.host, server.port)).result())


    def test_through_the_portal(portal, server):
        KEEP.append(portal.call(connect_tcp, server.host, server.port))


    def test_uses_conn(conn):
        conn.sendall(b"x")


    @pytest.mark.sockhygiene(established=1, clients=1)
    def test_keeps_an_allowed_client(server):
        import httpx

        client = httpx.Client()  # its connection stays open, and so does the side the server's thread accepted
        KEEP.append(client)
        assert client.get(server.url).status_code == 200
""")


def test_what_a_session_fixtures_threads_open_during_a_test_is_that_fixtures_leak(pytester, run):
    """A connection a broader fixture's thread opens during a test (a session ``ThreadPoolExecutor`` whose worker
    started at its setup, an anyio ``BlockingPortal``) is the fixture's, not the test's: still open when the
    session ends, it is that fixture's session-level leak. It was nobody's - left out of the test's verdict and
    never listed at the end (found with anyio's suite). And the side a session server's thread accepted of a
    fixture's connection is the server's, and is not listed: an in-process connection is reported through the
    side that connected, once - a fixture's at the session's end, a test's at that test (a session server's side
    of a test's allowed kept connection failed the run at its end, found with a FastAPI suite)."""
    pytester.makepyfile(test_t=THREADS_OF_SESSION_FIXTURES)
    result = run("-p", "no:randomly", settle="0.5")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    leaks = [line.strip() for line in out.splitlines() if re.match(r"\s+(ESTABLISHED|CLOSE_WAIT) .* - ", line)]
    owners = sorted(line.rsplit(" - ", 1)[1] for line in leaks)
    assert owners == ["session-scoped fixture 'conn'", "session-scoped fixture 'pool'",
                      "session-scoped fixture 'portal'"], out
    assert "fixture 'server'" not in out and "fixture 'raw_server'" not in out, out
    # alone, the test's allowed connection fails nothing, at its end or the session's
    alone = run("-p", "no:randomly", "test_t.py::test_keeps_an_allowed_client", settle="0.5")
    alone.assert_outcomes(passed=1)
    assert alone.ret == pytest.ExitCode.OK and "session-level leaks" not in alone.stdout.str(), alone.stdout.str()


SESSION_APP_CLIENT = dedent('''
    import anyio
    import httpx
    import pytest
    from anyio.from_thread import start_blocking_portal

    KEEP = []


    async def app(path, upstream):
        """The app under test: a client per request, never closed (a real leak, the request's)."""
        if path == "/warm":  # the fixture's own request: starts the worker thread sync handlers run in
            return await anyio.to_thread.run_sync(lambda: 200)
        if path == "/async":
            client = httpx.AsyncClient()  # APP-ASYNC
            KEEP.append(client)
            response = await client.get(upstream)
        else:
            def handler():
                client = httpx.Client()  # APP-SYNC
                KEEP.append(client)
                return client.get(upstream)
            response = await anyio.to_thread.run_sync(handler)
        return response.status_code


    class PortalTransport(httpx.BaseTransport):
        """starlette's TestClient's shape: no pool; each request runs the app on the portal's thread."""

        def __init__(self, portal, upstream):
            self.portal, self.upstream = portal, upstream

        def handle_request(self, request):
            return httpx.Response(200, text=str(self.portal.call(app, request.url.path, self.upstream)))


    @pytest.fixture(scope="session")
    def app_client(server):
        with start_blocking_portal() as portal:  # its thread starts here: the fixture's
            with httpx.Client(transport=PortalTransport(portal, server.url), base_url="http://app") as client:
                assert client.get("/warm").text == "200"
                yield client


    def test_async_endpoint(app_client):
        assert app_client.get("/async").text == "200"


    def test_sync_endpoint(app_client):
        assert app_client.get("/sync").text == "200"
''')


def test_what_an_app_does_for_the_tests_request_is_the_tests_whoever_entered_its_client(pytester, run):
    """``with TestClient(app)`` in a session fixture (FastAPI's common pattern) starts the thread that runs the app
    during the fixture's setup, so everything the app did - for every test's request - was the fixture's: the
    tests were clean with 0 connections, and the app's per-request clients were the fixture's session-level leak,
    told "close them in the fixture's teardown" (found with a FastAPI suite). The test's own request to the app
    makes what the app does for it the test's, on whatever thread the app runs it, as with a client the test
    entered itself."""
    pytester.makepyfile(test_app=SESSION_APP_CLIENT)
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    lines = SESSION_APP_CLIENT.splitlines()
    for name, marker, kind in (("test_async_endpoint", "APP-ASYNC", "httpx.AsyncClient"),
                               ("test_sync_endpoint", "APP-SYNC", "httpx.Client")):
        line = next(i for i, text in enumerate(lines, 1) if marker in text)
        block = failure_block(result, f"test_app.py::{name}")
        assert "established: 1 > limit 0" in block and "clients: 1 > limit 0" in block, block
        assert f"{kind}, created at test_app.py:{line} in " in block, block
    out = result.stdout.str()
    assert "session-level leaks" not in out, out
    assert "session health: 2 connections opened" in out, out


def test_a_session_fixtures_client_freed_unclosed_at_teardown_is_a_session_level_leak(pytester, run):
    """A session fixture that returns a client and has no teardown: pytest drops the value as it tears the fixture
    down, the client is freed unclosed before the session's end is checked, and the run was clean - where the same
    client kept alive by a global was listed, and a test's client freed unclosed counts either way (found with
    pytest-localserver's users' shape). Listed, noted as collected, and the run fails in enforce mode."""
    pytester.makepyfile(test_s=dedent("""
        import httpx
        import pytest

        @pytest.fixture(scope="session")
        def http():
            return httpx.Client()  # never closed

        def test_one(server, http):
            assert http.get(server.url).status_code == 200
    """))
    result = run()
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "session-level leaks: 1 left open at session end by fixtures of broader scope*",
        # (collected or not by then: the collector decides when, the listing does not depend on it)
        "  httpx.Client created at test_s.py:6 in http* - session-scoped fixture 'http'",
    ])
