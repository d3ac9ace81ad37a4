"""End to end: what a violation does to a test's outcome - warn mode under the user's warning filters (never an
error unless SockHygieneWarning is named), and xfail tests (a leak is its own teardown error, never an XFAIL)."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from conftest import INNER_CONFTEST, ONE_BACKEND, dedent, errors_of, failure_block

pytestmark = ONE_BACKEND

PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())

LEAKY_SUITE = dedent("""
    import socket
    import pytest
    KEEP = []

    def test_leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    @pytest.mark.filterwarnings("error")
    def test_leak_under_error_marker(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    def test_clean(server):
        socket.create_connection((server.host, server.port)).close()

    def test_last(server):
        pass
""")

LEAKERS = ["test_w.py::test_leak", "test_w.py::test_leak_under_error_marker"]

NO_ASYNCIO = ("-p", "no:asyncio")
"""pytest-asyncio warns at configure time about an unset ini key: under ``error`` filters that is an error of its
own, before any test runs (a suite that sets ``filterwarnings = error`` sets that key too). Runs under ``error``
filters are subprocesses: in-process, sockets leaked by earlier inner runs are collected during this one, and
their ResourceWarnings would be errors too."""


@pytest.mark.parametrize("how", ["ini", "cli", "cli-pytest-warning", "ini-other-category"])
def test_warn_mode_never_fails_under_error_filters(pytester, run, tmp_path, how):
    """``filterwarnings = error`` (or ``-W error``) turns every other warning into an error, but not this one:
    the tests pass, the warning is shown, the summary and the report carry the violations."""
    pytester.makepyfile(test_w=LEAKY_SUITE)
    args = list(NO_ASYNCIO)
    if how == "ini":
        pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    elif how == "ini-other-category":  # an error filter naming another category leaves ours alone
        pytester.makeini("[pytest]\nfilterwarnings =\n    error::DeprecationWarning\n    error\n")
    elif how == "cli":
        args += ["-W", "error"]
    else:  # SockHygieneWarning is a PytestWarning, but a filter on the base class does not name it
        args += ["-W", "error::pytest.PytestWarning"]
    path = tmp_path / "r.json"
    result = run(*args, f"--sockhygiene-report={path}", mode="warn", subprocess=True)
    result.assert_outcomes(passed=4, warnings=2)
    assert result.ret == pytest.ExitCode.OK
    assert errors_of(result) == []
    result.stdout.fnmatch_lines([
        "*SockHygieneWarning: sockhygiene: test_w.py::test_leak broke its socket limits*",
        "*SockHygieneWarning: sockhygiene: test_w.py::test_leak_under_error_marker broke its socket limits*",
        "*socket hygiene*",
        "4 tests checked, 2 with violations (established: 2)",
    ])
    tests = {t["nodeid"]: t for t in json.loads(path.read_text())["tests"]}
    assert sorted(n for n, t in tests.items() if t["violations"]) == LEAKERS


@pytest.mark.parametrize("how", ["cli", "ini", "marker"])
def test_warn_mode_errors_when_the_warning_is_named(pytester, run, how):
    """Asked for by name (``-W error::pytest_sockhygiene.SockHygieneWarning``, or the same ini line, or a
    ``filterwarnings`` marker naming it), the warning is an error: the user wants these to fail."""
    named = "error::pytest_sockhygiene.SockHygieneWarning"
    suite = LEAKY_SUITE
    args = list(NO_ASYNCIO)
    if how == "cli":
        args += ["-W", named]
    elif how == "ini":
        pytester.makeini(f"[pytest]\nfilterwarnings =\n    error\n    {named}\n")
    else:
        suite = suite.replace('@pytest.mark.filterwarnings("error")',
                              f'@pytest.mark.filterwarnings("{named}")')
    pytester.makepyfile(test_w=suite)
    result = run(*args, mode="warn", subprocess=True)
    # a blanket "error" (the test's filterwarnings marker, the ini's first line) is passed over: the next
    # matching filter decides, as if the blanket one were not there
    erring = LEAKERS[1:] if how == "marker" else LEAKERS
    assert errors_of(result) == erring
    result.stdout.fnmatch_lines([f"ERROR {nodeid} - pytest_sockhygiene.warning.*" for nodeid in erring])
    if how == "marker":  # the other leak, under no filter of the user's, is shown
        result.stdout.fnmatch_lines([f"*SockHygieneWarning: sockhygiene: {LEAKERS[0]} broke its socket limits*"])
    result.assert_outcomes(passed=4, errors=len(erring), warnings=2 - len(erring))


def test_warn_mode_ignored_warning_is_still_in_the_summary(pytester, run):
    """An ``ignore`` filter hides the warning, as the user asked, also behind a test's blanket ``error`` marker;
    the summary still counts the violations."""
    pytester.makepyfile(test_w=LEAKY_SUITE)
    result = run(*NO_ASYNCIO, "-W", "ignore::pytest_sockhygiene.SockHygieneWarning", mode="warn", subprocess=True)
    result.assert_outcomes(passed=4)
    assert "SockHygieneWarning" not in result.stdout.str()
    result.stdout.fnmatch_lines(["4 tests checked, 2 with violations (established: 2)"])


@pytest.mark.parametrize("how", ["once", "always", "module", "default"])
def test_warn_mode_shows_the_warning_under_each_showing_action(pytester, run, how):
    """Every action that shows a warning shows each violation's (each text names its test, so ``once`` and
    ``module`` show both), whether the warning goes through ``warn_explicit`` (``once``) or is handed to the
    display directly (the others)."""
    pytester.makepyfile(test_w=LEAKY_SUITE.replace('@pytest.mark.filterwarnings("error")\n', ""))
    result = run(*NO_ASYNCIO, "-W", f"{how}::pytest_sockhygiene.SockHygieneWarning", mode="warn", subprocess=True)
    result.assert_outcomes(passed=4, warnings=2)
    result.stdout.fnmatch_lines([f"*SockHygieneWarning: sockhygiene: {nodeid} broke its socket limits*"
                                 for nodeid in LEAKERS])


def test_warn_mode_without_pytests_warnings_plugin_prints_the_warning(pytester, run):
    """With ``-p no:warnings`` nothing records warnings per test: Python's own display prints each one to stderr
    (``-s``: else into the test's captured output, as any warning is then), and the run still passes."""
    pytester.makepyfile(test_w=LEAKY_SUITE)
    result = run(*NO_ASYNCIO, "-p", "no:warnings", "-s", mode="warn", subprocess=True)
    result.assert_outcomes(passed=4)
    result.stderr.fnmatch_lines([f"*SockHygieneWarning: sockhygiene: {nodeid} broke its socket limits*"
                                 for nodeid in LEAKERS])


CYCLE_SUITE = dedent("""
    import gc
    import socket

    gc.disable()  # no automatic collection: the plugin's own is the one that frees the cycle (as in urllib3's case)

    class Holder:
        pass

    def test_leaves_a_socket_in_a_cycle():
        holder = Holder()
        holder.me = holder  # only the garbage collector frees it, and the socket warns as it is freed
        holder.sock = socket.socket()
        holder.sock.bind(("127.0.0.1", 0))
        holder.sock.listen()

    def test_next():
        pass
""")


@pytest.mark.parametrize("mode", ["warn", "enforce"])
def test_the_plugins_garbage_collection_never_turns_a_resource_warning_into_an_error(pytester, run, mode):
    """A socket left in a reference cycle warns (ResourceWarning) when a collection frees it. The check collects:
    under ``filterwarnings = error`` that warning was an error of the test's teardown, raised by the plugin's own
    collection, where without the plugin nothing freed it during the run (urllib3's suite,
    ``test_connect_timeout``). Where ResourceWarning is an error the check collects nothing: the outcome is the
    run's without the plugin, and the listener the test left held by garbage is its leak, as it is. (Automatic
    collections are off in the inner suite, so that only the plugin's could free it.)"""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    pytester.makepyfile(test_c=CYCLE_SUITE)
    result = run(*NO_ASYNCIO, mode=mode, subprocess=True)
    leaker = "test_c.py::test_leaves_a_socket_in_a_cycle"
    if mode == "warn":
        result.assert_outcomes(passed=2, warnings=1)
        result.stdout.fnmatch_lines([f"*SockHygieneWarning: sockhygiene: {leaker} broke its socket limits*"])
    else:
        result.assert_outcomes(passed=2, errors=1)
        assert errors_of(result) == [leaker]
        assert "listen: 1 > limit 0" in failure_block(result, leaker)
    assert "PytestUnraisableExceptionWarning" not in "\n".join(
        line for line in result.outlines if line.startswith(("FAILED", "ERROR")))
    assert "could not be put back" not in result.stdout.str()  # the hooks were re-installed throughout


LATER_COLLECTION_SUITE = dedent("""
    import gc
    import socket

    gc.disable()  # no automatic collection: the later test's is the one that frees the cycle

    SERVER = socket.create_server(("127.0.0.1", 0))  # (the module's: a kernel backlog, nothing accepts)

    class Conn:
        def __init__(self):
            self.sock = socket.create_connection(SERVER.getsockname())
            self.me = self  # a cycle: only the collector frees it

    def test_leaves_a_socket_in_a_cycle():
        Conn()

    def test_later():
        gc.collect()  # the collector runs here: the socket warns, an error under filterwarnings = error
""")


@pytest.mark.parametrize("mode", ["off", "warn"])
def test_a_suites_own_failure_on_an_unclosed_socket_is_kept(pytester, run, mode):
    """The same cycle, freed by the collector in a later test: without the plugin that test fails on the
    ResourceWarning (pytest's PytestUnraisableExceptionWarning, an error under ``filterwarnings = error``). The
    plugin's check collected first, with the warning shown and not raised: the run passed (found with litestar's
    suite). It collects nothing there now, and the failure stays where it was."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    pytester.makepyfile(test_later=LATER_COLLECTION_SUITE)
    if mode == "off":  # (the plugin's own options would be unknown)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *NO_ASYNCIO, "-p", "no:sockhygiene")
    else:
        result = run(*NO_ASYNCIO, mode=mode, subprocess=True)
    failed = [line.split()[1] for line in result.outlines if line.startswith("FAILED ")]
    assert failed == ["test_later.py::test_later"], result.outlines


SETTLE_THREAD_COLLECTION_SUITE = dedent("""
    import gc
    import socket
    import threading

    HOLD = []


    def test_a_drops_a_socket_in_a_cycle():
        gc.disable()  # kept until a thread collects, during the next test's settle
        garbage = [socket.socket()]
        garbage.append(garbage)


    def test_b_listener_closed_late():
        listener = socket.create_server(("127.0.0.1", 0))
        HOLD.append(listener)
        gc.set_threshold(1, 1, 1)
        done = threading.Event()

        def collect_then_close():
            done.wait(0.1)
            gc.enable()
            gc.collect()  # in this thread: the socket warns here
            done.wait(0.2)
            listener.close()  # the test's listener goes away: clean once settled

        threading.Thread(target=collect_then_close).start()


    def test_c_next():
        gc.set_threshold(700, 10, 10)
""")


def test_a_collection_in_another_thread_during_the_settle_is_not_the_plugins(pytester, run):
    """While the check settles, the test's other threads go on. A collection in one of them freed an unclosed
    socket, whose ResourceWarning is an error under ``filterwarnings = error`` (pytest's
    PytestUnraisableExceptionWarning): the plugin's setting aside of error filters for its own work caught it
    and showed it, and the run passed (found with anyio's suite). It is the error it is without the plugin."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    pytester.makepyfile(test_thread=SETTLE_THREAD_COLLECTION_SUITE)
    # (the thread closes the listener after it collected: a settle this long always spans the collection)
    result = run(*NO_ASYNCIO, "-rA", "-o", "sockhygiene_settle=10", mode="warn", subprocess=True)
    out = result.stdout.str()
    failed = [line.split()[1] for line in result.outlines if line.startswith(("FAILED ", "ERROR "))]
    assert failed == ["test_thread.py::test_b_listener_closed_late"], out  # (the thread collected in its settle)
    assert "PytestUnraisableExceptionWarning: Exception ignored in: <socket.socket" in out, out


PLACED_SUITE = dedent("""
    import gc
    import socket

    gc.disable()  # no automatic collection: the plugin's own is the one that frees the cycles

    class Holder:
        pass

    def hold(*socks):
        holder = Holder()
        holder.me = holder  # only the garbage collector frees it, and each socket warns as it is freed
        holder.socks = socks

    def test_connected_socket_in_a_cycle(server):
        hold(socket.create_connection((server.host, server.port)))  # CONNECTED-HERE

    def test_listener_in_a_cycle():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # LISTENING-HERE
        hold(listener, socket.socket())  # the second: never connected nor listening, no line of its own

    def test_next():
        pass
""")


def test_a_resource_warning_the_check_sets_off_points_at_the_users_line(pytester, run):
    """A ResourceWarning set off by the check's own collection carried the location of the plugin's line that
    collected (``pytest_sockhygiene/window.py``): users blamed the plugin for their socket. It points at the line
    that opened the socket when the check saw it connect, else at the test; the plugin's files appear nowhere."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    default::ResourceWarning\n")
    pytester.makepyfile(test_p=PLACED_SUITE)
    result = run(*NO_ASYNCIO, mode="warn", subprocess=True)
    result.assert_outcomes(passed=3, warnings=3)
    out = result.stdout.str()
    lines = PLACED_SUITE.splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if text in line)

    result.stdout.fnmatch_lines([
        "test_p.py::test_connected_socket_in_a_cycle",
        f"*test_p.py:{line_of('CONNECTED-HERE')}: ResourceWarning: unclosed <socket.socket*raddr=*",
    ])
    listener_warnings = [line for line in out.splitlines()
                         if "ResourceWarning: unclosed" in line and "raddr" not in line]
    assert len(listener_warnings) == 2, out
    assert any(f"test_p.py:{line_of('LISTENING-HERE')}: " in line for line in listener_warnings), out
    assert any(f"test_p.py:{line_of('def test_listener_in_a_cycle')}: " in line and "('0.0.0.0', 0)" in line
               for line in listener_warnings), out
    assert "pytest_sockhygiene" not in out


XFAIL_SUITE = dedent("""
    import socket
    import pytest
    KEEP = []

    def leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    @pytest.mark.xfail(reason="known bug")
    def test_xfail_failing(server):
        leak(server)
        assert False

    @pytest.mark.xfail(reason="fixed meanwhile")
    def test_xfail_passing(server):
        leak(server)

    @pytest.mark.xfail(strict=True, reason="strict")
    def test_xfail_strict_passing(server):
        leak(server)

    @pytest.mark.xfail(raises=ZeroDivisionError)
    def test_xfail_raises(server):
        leak(server)
        1 / 0

    @pytest.mark.xfail(reason="known bug")
    @pytest.mark.sockhygiene(enabled=False)
    def test_xfail_unchecked(server):
        leak(server)
        assert False

    @pytest.mark.xfail(reason="known bug")
    def test_xfail_clean(server):
        socket.create_connection((server.host, server.port)).close()
        assert False

    def test_last(server):
        pass
""")


def test_xfail_does_not_hide_a_leak(pytester, run):
    """Whatever the xfail test's own outcome (xfailed, xpassed, strict, ``raises=``), its leak is reported as a
    teardown error of its own; a test whose marker disables the check, or that leaks nothing, stays XFAIL."""
    pytester.makepyfile(test_x=XFAIL_SUITE)
    result = run("-rxXE", subprocess=True)  # in-process, leaks of earlier inner runs could land in these windows
    assert errors_of(result) == [
        "test_x.py::test_xfail_failing",
        "test_x.py::test_xfail_passing",
        "test_x.py::test_xfail_raises",
        "test_x.py::test_xfail_strict_passing",
    ]
    # the call phase keeps its own outcome: 3 xfailed (failing, raises, unchecked + clean = 4), 1 xpassed,
    # 1 strict XPASS failure
    result.assert_outcomes(xfailed=4, xpassed=1, failed=1, passed=1, errors=4)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_xfail_failing*",
        "*sockhygiene: test_x.py::test_xfail_failing broke its socket limits*",
        "*established: 1 > limit 0*",
    ])
    assert "XFAIL test_x.py::test_xfail_unchecked" in result.stdout.str()
    assert "XFAIL test_x.py::test_xfail_clean" in result.stdout.str()


def test_xfail_leak_under_runxfail_and_warn(pytester, run):
    """``--runxfail`` already reports the failure; warn mode only warns (the xfail outcomes stand)."""
    pytester.makepyfile(test_x=XFAIL_SUITE)
    assert "test_x.py::test_xfail_passing" in errors_of(run("--runxfail", subprocess=True))
    warned = run(mode="warn", subprocess=True)
    warned.assert_outcomes(xfailed=4, xpassed=1, failed=1, passed=1)
    out = warned.stdout.str()
    warned_tests = set(re.findall(r"SockHygieneWarning: sockhygiene: (test_x.py::\w+) broke", out))
    assert warned_tests == {"test_x.py::test_xfail_failing", "test_x.py::test_xfail_passing",
                            "test_x.py::test_xfail_strict_passing", "test_x.py::test_xfail_raises"}, out
    assert errors_of(warned) == []


FAILING_CALLS = dedent("""
    import asyncio
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import requests


    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


    def test_refused():
        with socket.socket() as s:
            s.connect(("127.0.0.1", free_port()))


    def test_httpx_refused():
        with httpx.Client() as c:
            c.get(f"http://127.0.0.1:{free_port()}/")


    def test_not_a_coroutine():
        async def main():
            asyncio.get_running_loop().create_task(42)

        asyncio.run(main())


    def test_bad_client_argument():
        httpx.Client(no_such_option=1)


    def test_failing_submit():
        with ThreadPoolExecutor(1) as pool:
            pool.submit(socket.create_connection, ("127.0.0.1", free_port())).result()


    def test_requests_refused():
        with requests.Session() as s:
            s.get(f"http://127.0.0.1:{free_port()}/", timeout=5)


    def test_requests_refused_asking_close():
        with requests.Session() as s:
            s.get(f"http://127.0.0.1:{free_port()}/", timeout=5, headers={"Connection": "close"})


    def test_thread_started_twice():
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        t.start()
""")


def test_an_error_in_a_wrapped_call_is_shown_at_the_users_line_not_the_plugins(pytester, run):
    """The plugin wraps socket methods, clients' ``__init__`` and ``send``, ``create_task`` and ``submit``, urllib3's
    requests and ``Thread.start``; an error raised by the call inside (a refused connect, a bad argument) fails the
    test as before, and its traceback ends in the user's code, not in a frame of the plugin's that a reader would
    take for the culprit (found on aiohttp's suite; urllib3's, under requests, on vcrpy's and betamax's)."""
    pytester.makepyfile(test_c=FAILING_CALLS)
    result = run("--tb=long", "-p", "no:randomly")
    result.assert_outcomes(failed=8)
    text = result.stdout.str()
    for error in ("ConnectionRefusedError", "httpx.ConnectError", "TypeError: a coroutine was expected",
                  "unexpected keyword argument 'no_such_option'", "requests.exceptions.ConnectionError",
                  "threads can only be started once"):
        assert error in text
    shown = text
    if PYTEST_VERSION < (8, 0):
        # pytest 7 filters hidden frames from the outermost exception's traceback only: a chained one's (requests'
        # ConnectionError raised from urllib3's, which passed through the plugin's hidden wrappers) is shown whole,
        # pytest's own behaviour until 8.0; and it names the innermost frame in the crash line even when hidden
        # ("events.py:611: ConnectionRefusedError")
        shown = "\n".join(_outermost_exceptions(text))
    ours = [line for line in shown.splitlines() if f"pytest_sockhygiene{os.sep}" in line]
    if PYTEST_VERSION < (8, 0):
        ours = [line for line in ours if not re.search(r":\d+: [\w.]*(Error|Exception)$", line)]
    assert not ours, text


_CHAINED = re.compile(r"^(The above exception was the direct cause of the following exception:|"
                      r"During handling of the above exception, another exception occurred:)$", re.M)


def _outermost_exceptions(text: str) -> list[str]:
    """Of each failure's report in pytest's output, the part after its last chained exception's: the traceback of the
    exception that failed the test."""
    sections = re.split(r"^_{3,} .+ _{3,}$", text, flags=re.M)
    return [_CHAINED.split(section)[-1] for section in sections]


def test_a_fixtures_error_is_shown_at_the_fixture_not_at_the_plugins_fixture_wrapper(pytester, run):
    """A fixture's setup error passes through the plugin's ``pytest_fixture_setup`` wrapper. pytest cuts a fixture in
    the test module from the traceback by its path, but not one in a conftest or a unittest class's ``setUpClass``
    inherited from a library's base class: there the wrapper's source was shown first, 30 lines of the plugin's
    code above the user's fixture, as if it were the culprit (found on asyncpg's suite)."""
    pytester.makeconftest(INNER_CONFTEST + dedent("""
        import pytest
        from helpers import start_cluster


        @pytest.fixture(scope="session")
        def cluster():
            start_cluster()


        @pytest.fixture
        def fresh_cluster():
            start_cluster()
    """))
    pytester.makepyfile(helpers=dedent("""
        import unittest


        def start_cluster():
            raise RuntimeError("pg_ctl: cannot be run as root")


        class ClusterTestCase(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                start_cluster()
    """), test_f=dedent("""
        from helpers import ClusterTestCase


        def test_session(cluster):
            pass


        def test_function(fresh_cluster):
            pass


        class TestInherited(ClusterTestCase):
            def test_it(self):
                pass
    """))
    result = run("--tb=long", "-p", "no:randomly", mode="warn")
    result.assert_outcomes(errors=3)
    text = result.stdout.str()
    assert text.count("RuntimeError: pg_ctl: cannot be run as root") >= 3, text
    assert "conftest.py:7: in cluster" in text or "def cluster():" in text, text
    ours = [line for line in text.splitlines() if f"pytest_sockhygiene{os.sep}" in line]
    assert not ours and "def pytest_fixture_setup(self" not in text, text


FAILED_WITH_A_POOL = dedent("""
    import urllib3


    def test_fails_after_a_request(server):
        with urllib3.PoolManager() as http:  # closed; its pool frees idle connections when collected
            r = http.request("GET", server.url)
            assert r.status == 500


    def test_passes(server):
        with urllib3.PoolManager() as http:
            r = http.request("GET", server.url)
            assert r.status == 200


    KEEP = []


    def test_passes_and_leaks(server):
        http = urllib3.PoolManager()
        KEEP.append(http)
        assert http.request("GET", server.url).status == 200
""")


def test_a_failed_tests_held_connection_says_pytest_keeps_its_locals(pytester, run):
    """A test whose function raised keeps its locals alive through the traceback pytest keeps for post-mortem
    debugging (``sys.last_traceback``): what they hold is open when the test is judged. Reported, with a note that
    says so (found on urllib3's suite: failing proxy tests that used ``with``); a passing test's leak has no note."""
    pytester.makepyfile(test_f=FAILED_WITH_A_POOL)
    result = run("-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=2, errors=2)
    note = "note: this test failed, and pytest keeps its failure's traceback"
    assert note in failure_block(result, "test_f.py::test_fails_after_a_request")
    assert note not in failure_block(result, "test_f.py::test_passes_and_leaks")


SESSION_TASK_SUITE = dedent("""
    import asyncio
    import socket

    import pytest

    PREAMBLE
    KEEP = []

    async def answer(reader, writer):
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    async def serve(port, ready):
        server = await asyncio.start_server(answer, "127.0.0.1", port)
        ready.set_result(server)
        async with server:
            await server.serve_forever()

    @FIXTURE
    async def port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(free, ready))  # started, not awaited: it listens during a test
        # (the port alone: a value that reached the server would make it the fixture's by what it holds)
        yield free
        task.cancel()

    async def fetch(port):
        for _ in range(500):  # the server may not listen yet: poll, as a suite's first request does
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.01)
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data

    @MARK
    async def test_first(port):
        assert await fetch(port) == b"ok"

    @MARK
    async def test_second(port):
        assert await fetch(port) == b"ok"

    @MARK
    async def test_own_task_leaves_a_listener(port):
        ready = asyncio.get_running_loop().create_future()
        KEEP.append(asyncio.create_task(serve(0, ready)))
        KEEP.append(await ready)
""")


def session_task_suite(fixture: str, mark: str, preamble: str) -> str:
    """A session fixture whose server task starts listening during the first test, two tests that use it, and a
    test whose own task leaves a listener: for anyio and for pytest-asyncio's session loop alike."""
    return SESSION_TASK_SUITE.replace("PREAMBLE\n", preamble).replace("FIXTURE", fixture).replace("MARK", mark)


def test_a_task_a_session_fixture_created_owns_what_it_opens_during_a_test(pytester, run):
    """A session-scoped async fixture that starts its server as a task (``asyncio.create_task(server.serve())``,
    not awaited) sees it listen on the loop's next turns - inside the first test, which was failed for the
    fixture's LISTEN socket (found with uvicorn's users' shape). The task carries the fixture as its owner, as a
    fixture's thread does. A listener a test's own task leaves is still that test's, and later tests are judged
    as before (anyio runs every test in one task, made while the first fixture was set up)."""
    pytester.makepyfile(test_task=session_task_suite(
        "pytest.fixture(scope=\"session\")", "pytest.mark.anyio",
        preamble='@pytest.fixture(scope="session")\ndef anyio_backend():\n    return "asyncio"\n'))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=unlimited")
    assert errors_of(result) == ["test_task.py::test_own_task_leaves_a_listener"]
    block = failure_block(result, "test_task.py::test_own_task_leaves_a_listener")
    assert "listen: 1 > limit 0" in block
    assert "session-level leaks" not in result.stdout.str()


def test_a_pool_worker_a_fixtures_task_starts_during_a_test_is_nobodys(pytester, run):
    """A session fixture's service task that runs a job on the loop's default executor during a test starts that
    executor's worker thread then; the task's owner passed on to the thread made the worker the fixture's for
    good, and every later test's connection opened through the executor was hidden (found in review). A task's
    owner is never passed on to a thread."""
    pytester.makepyfile(test_pool=dedent("""
        import asyncio
        import socket
        import pytest

        LEAKED = []

        @pytest.fixture(scope="session")
        def anyio_backend():
            return "asyncio"

        @pytest.fixture(scope="session")
        async def service():
            queue = asyncio.Queue()

            async def serve():
                loop = asyncio.get_running_loop()
                while True:
                    job = await queue.get()
                    await loop.run_in_executor(None, job)
                    queue.task_done()

            task = asyncio.create_task(serve())
            yield queue
            task.cancel()

        @pytest.mark.anyio
        async def test_uses_service(service):
            service.put_nowait(lambda: None)  # the executor's first job: its worker thread starts now
            await service.join()

        @pytest.mark.anyio
        async def test_leaks_through_executor(server):
            loop = asyncio.get_running_loop()
            LEAKED.append(await loop.run_in_executor(None, socket.create_connection, (server.host, server.port)))
    """))
    result = run("-p", "no:randomly", "-p", "no:asyncio")
    assert errors_of(result) == ["test_pool.py::test_leaks_through_executor"]
    assert "established: 1 > limit 0" in failure_block(result, "test_pool.py::test_leaks_through_executor")


def test_a_task_a_pytest_asyncio_session_fixture_created_is_the_fixtures(pytester, run):
    """The same with pytest-asyncio's session loop (``loop_scope="session"``), where each test runs in a task of its
    own: the fixture's server task owns its listener, and a test's own task's listener is still that test's."""
    pytest_asyncio = pytest.importorskip("pytest_asyncio")
    if tuple(int(p) for p in pytest_asyncio.__version__.split(".")[:2]) < (0, 24):  # (loop_scope came in 0.24)
        pytest.skip("pytest-asyncio before 0.24 has no loop_scope")
    pytester.makepyfile(test_pa=session_task_suite(
        "pytest_asyncio.fixture(scope=\"session\", loop_scope=\"session\")",
        "pytest.mark.asyncio(loop_scope=\"session\")", preamble="import pytest_asyncio\n"))
    result = run("-p", "no:randomly", "-p", "no:anyio", "-o", "sockhygiene_time_wait=unlimited")
    assert errors_of(result) == ["test_pa.py::test_own_task_leaves_a_listener"]
    assert "listen: 1 > limit 0" in failure_block(result, "test_pa.py::test_own_task_leaves_a_listener")
    assert "session-level leaks" not in result.stdout.str()


GC_DIFF = dedent('''
    import asyncio
    import gc


    def test_a_loops_run_leaves_no_new_object():
        """grpclib's test_memory: a second run of a coroutine on a loop leaves no new gc-tracked object."""
        loop = asyncio.new_event_loop()

        async def example():
            await asyncio.sleep(0)

        loop.run_until_complete(example())  # warm up
        gc.collect()
        gc.disable()
        try:
            pre = {id(o) for o in gc.get_objects()}
            loop.run_until_complete(example())
            loop.close()
            post = {id(o): o for o in gc.get_objects()}
            diff = set(post) - pre
            diff.discard(id(pre))
            diff.discard(id(asyncio.tasks._current_tasks))
            assert not diff, [repr(post[i]) for i in diff]
        finally:
            gc.enable()
''')


@pytest.mark.parametrize("mode", ["warn", "enforce"])
def test_a_task_made_in_a_window_leaves_the_callers_context_as_it_was(pytester, run, mode):
    """The plugin gives every task made in a window the line that made it, in the task's context. Set (and reset)
    in the caller's context, it left a new mapping there: two new gc-tracked objects, and grpclib's test that diffs
    ``gc.get_objects()`` around a loop's run failed with the plugin in warn mode. The task's line is still known."""
    pytester.makepyfile(test_gc=GC_DIFF)
    # the outcome without the plugin: on Python 3.12 the test itself fails (the thread state's dict is tracked
    # anew by the loop's run), with or without the plugin
    absent = pytester.runpytest_subprocess("-p", "no:sockhygiene", "-p", "no:cacheprovider").parseoutcomes()
    result = run(mode=mode, subprocess=True)
    assert result.parseoutcomes() == absent, (absent, result.stdout.str())
    assert absent == {"passed": 1} or sys.version_info[:2] == (3, 12), absent


TWO_RECORDED_ERRORS = dedent("""
    import socket
    import unittest

    import pytest

    KEEP = []


    @pytest.fixture(scope="class")
    def addr(request, server):
        request.cls.addr = (server.host, server.port)


    @pytest.mark.usefixtures("addr")
    class TwoErrors(unittest.TestCase):
        def tearDown(self):
            raise RuntimeError("tearDown failed too")

        def test_leaks(self):
            KEEP.append(socket.create_connection(self.addr))  # left open
            raise ValueError("the test failed")
""")


def test_a_violation_is_shown_when_a_test_cases_second_error_takes_the_teardown_report(pytester, run):
    """pytest's unittest plugin hands each phase's report the next error a TestCase recorded: a test and its
    ``tearDown`` that both failed (Twisted's trial records two for a dirty reactor) put the second in the
    teardown's report, in place of the violation raised there. The violation was shown nowhere but in the
    summary's counts (treq's suite); it is shown beside that error now, which stays the report's."""
    pytester.makepyfile(test_u=TWO_RECORDED_ERRORS)
    result = run("-p", "no:randomly")
    result.assert_outcomes(failed=1, errors=1)
    out = result.stdout.str()
    assert "RuntimeError: tearDown failed too" in out and "ValueError: the test failed" in out, out
    result.stdout.fnmatch_lines(["*- sockhygiene: broke its socket limits -*",
                                 "sockhygiene: test_u.py::TwoErrors::test_leaks broke its socket limits",
                                 "  established: 1 > limit 0 - open connection(s) left behind"])
