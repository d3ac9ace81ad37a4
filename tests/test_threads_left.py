"""Threads a test leaves running belong to that test (issue 11 §6).

A thread started by a test and still running at its end is reported there, once (what it runs and what it
holds), and whatever it does later - connections it opens and closes while other tests run - never counts against
those tests.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from conftest import dedent, errors_of, installed_library


def line_of(src: str, text: str) -> int:
    return next(i for i, line in enumerate(src.splitlines(), 1) if text in line)

SUITE = dedent('''
    import socket
    import threading
    import time

    import pytest
    from pytest_sockhygiene.testing import wait_for

    STOP = threading.Event()
    HELD = threading.Event()

    def push(host, port):
        while not STOP.is_set():
            with socket.create_connection((host, port)) as s:
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
                s.recv(1024)
            time.sleep(0.005)

    def hold(host, port):
        s = socket.create_connection((host, port))
        HELD.set()
        STOP.wait()
        s.close()

    @pytest.mark.sockhygiene(time_wait=None)
    def test_starts_a_pusher(server):
        threading.Thread(target=push, args=(server.host, server.port), name="pusher", daemon=True).start()
        n = server.requests
        assert wait_for(lambda: server.requests >= n + 2)

    def test_next(server):
        n = server.requests
        assert wait_for(lambda: server.requests >= n + 20)  # the pusher connects 20 times during this test

    def test_starts_a_holder(server):
        threading.Thread(target=hold, args=(server.host, server.port), name="holder", daemon=True).start()
        assert HELD.wait(5)

    def test_after_the_holder(server):
        n = server.requests
        assert wait_for(lambda: server.requests >= n + 5)

    def test_stop():
        STOP.set()

    def test_timer_that_ends_at_once():
        threading.Timer(0.001, lambda: None).start()  # finished by the end of the test: not reported
''')


def test_a_thread_a_test_leaves_running_is_that_tests(pytester, run):
    pytester.makepyfile(test_t=SUITE)
    path = pytester.path / "report.json"
    result = run(f"--sockhygiene-report={path}")
    result.assert_outcomes(passed=6, errors=1)
    import jsonschema

    doc = json.loads(path.read_text())
    schema = pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    # what the threads did while later tests ran is not theirs
    assert tests["test_next"]["counts"]["connections"] == 0 and tests["test_next"]["counts"]["time_wait"] == 0
    assert tests["test_after_the_holder"]["clean"], tests["test_after_the_holder"]
    assert tests["test_after_the_holder"]["counts"]["connections"] == 0
    # reported once, on the test that started them
    reported = {n: t.get("threads", []) for n, t in tests.items() if t.get("threads")}
    assert set(reported) == {"test_starts_a_pusher", "test_starts_a_holder"}, reported
    push, hold = line_of(SUITE, "def push("), line_of(SUITE, "def hold(")
    assert len(reported["test_starts_a_pusher"]) == 1
    # (the pusher may be mid-connection when the check looks: then it holds the one it is making)
    assert re.fullmatch(
        rf"thread 'pusher' \(running push at test_t.py:{push}\) started by this test is still running"
        r"( \(it opened none of the sockets still open, but may be serving one\)|, holding 1 connection\(s\)); "
        r"what it does from now on is its own, "
        r"never a later test's", reported["test_starts_a_pusher"][0]), reported["test_starts_a_pusher"][0]
    # the holder's connection is the test's leak: the failure text says which thread holds it
    result.stdout.fnmatch_lines([
        "sockhygiene: test_t.py::test_starts_a_holder broke its socket limits",
        "  established: 1 > limit 0 - open connection(s) left behind",
        f"*ESTABLISHED * opened at test_t.py:{hold + 1} in hold",
        "*",
        f"  thread 'holder' (running hold at test_t.py:{hold}) started by this test is still running, holding 1 "
        "connection(s); what it does from now on is its own, never a later test's",
    ])
    result.stdout.fnmatch_lines(["threads left running: 2, each the test's that started it*",
                                 "  test_t.py::test_starts_a_pusher: thread 'pusher'*",
                                 "  test_t.py::test_starts_a_holder: thread 'holder'*"])


DOCTEST_HOLDER = dedent('''
    import socket
    import threading

    HELD = threading.Event()
    STOP = threading.Event()
    KEEP = []


    def hold_demo():
        """A thread that holds a connection, left running.

        >>> def hold(address):
        ...     s = socket.create_connection(address)
        ...     HELD.set()
        ...     STOP.wait()
        >>> server = socket.create_server(("127.0.0.1", 0))
        >>> KEEP.append(server)
        >>> threading.Thread(target=hold, args=(server.getsockname(),), name="holder", daemon=True).start()
        >>> HELD.wait(5)
        True
        """
''')


def test_a_thread_a_doctest_leaves_running_names_the_line_of_its_function(pytester, run):
    """A function a doctest's example defines runs code compiled as ``<doctest mylib.hold_demo[0]>``: the thread
    read "running hold at <doctest mylib.hold_demo[0]>:1", a place no one can open. It names the file's line, as
    the connection's own origin does."""
    pytester.makepyfile(mylib=DOCTEST_HOLDER)
    result = run("--doctest-modules", "mylib.py", "-o", "sockhygiene_listen=unlimited", subprocess=True)
    assert errors_of(result) == ["mylib.py::mylib.hold_demo"], result.stdout.str()
    hold = line_of(DOCTEST_HOLDER, ">>> def hold(")
    result.stdout.fnmatch_lines([
        f"*ESTABLISHED * opened at mylib.py:{hold + 1} in hold",
        "*",
        f"  thread 'holder' (running hold at mylib.py:{hold}) started by this test is still running*",
    ])
    assert "<doctest" not in result.stdout.str()


def test_a_connect_under_way_in_an_earlier_tests_thread_is_not_the_current_tests(pytester, run):
    """A look taken while another thread's connect is under way sees a connected socket whose event is not
    recorded yet (the kernel has connected it; the hook has not returned). When that thread is not the test's (an
    earlier test left it running), the socket is not the test's either. A wrapper under the plugin's (installed
    by the conftest, as any library may) holds the thread right there, so the look lands in that moment."""
    from conftest import INNER_CONFTEST

    pytester.makeconftest(INNER_CONFTEST + dedent('''
        import socket as _socket, threading as _threading

        _real_connect = _socket.socket.connect
        IN_CONNECT = _threading.Event()
        GATE = _threading.Event()

        def _connect_then_wait(self, address):
            _real_connect(self, address)
            if _threading.current_thread().name == "late":
                IN_CONNECT.set()
                GATE.wait(10)

        _socket.socket.connect = _connect_then_wait
    '''))
    pytester.makepyfile(test_f=dedent('''
        import socket
        import threading

        from conftest import GATE, IN_CONNECT

        GO = threading.Event()
        HELD = []

        def test_starts_a_thread(server):
            def later():
                GO.wait(10)
                HELD.append(socket.create_connection((server.host, server.port)))
            threading.Thread(target=later, name="late", daemon=True).start()

        def test_next(server):
            GO.set()
            assert IN_CONNECT.wait(10)  # connected in the kernel; the thread waits inside the hooked call

        def test_last():
            GATE.set()
    '''))
    # in a subprocess: the test module imports the inner conftest, not this suite's of that name; without
    # pytest-socket, whose teardown writes its saved copy of connect back over the conftest's
    result = run("-p", "no:socket", subprocess=True)
    assert errors_of(result) == [], result.stdout.str()
    result.assert_outcomes(passed=3)


def test_a_thread_that_reuses_an_ended_fixture_threads_ident_is_not_that_fixtures(pytester, run):
    """A module-scoped fixture's thread owns what it does while it runs; once it has ended, its ident may be given
    to a new thread (Linux reuses a joined thread's stack, and the ident with it), and that thread - here one a
    later test starts, which leaves a connection open - is not the fixture's."""
    pytester.makepyfile(test_a=dedent('''
        import threading

        import pytest

        ENDED = []

        @pytest.fixture(scope="module")
        def worker():
            stop = threading.Event()
            t = threading.Thread(target=stop.wait, name="fixture-worker")
            t.start()
            yield
            stop.set()
            t.join()
            ENDED.append(t.ident)

        def test_uses_the_worker(server, worker):  # (the session's server is set up first: its thread is older)
            pass
    '''), test_b=dedent('''
        import socket
        import threading

        import pytest

        from test_a import ENDED

        KEPT = []

        def test_a_new_thread_leaves_a_connection(server):
            """Threads are started (and joined) until one has the ended fixture thread's ident; that one connects
            and keeps the socket."""
            assert ENDED
            wanted = ENDED[0]
            other_ended = threading.Event()
            others = []

            def work():
                if threading.get_ident() == wanted:
                    KEPT.append(socket.create_connection((server.host, server.port)))
                else:
                    other_ended.wait()  # keeps its stack: the next thread is given another one

            for _ in range(50):
                t = threading.Thread(target=work)
                t.start()
                if t.ident == wanted:
                    t.join()
                    break
                others.append(t)
            other_ended.set()
            for t in others:
                t.join()
            if not KEPT:
                pytest.skip("no new thread got the ended thread's ident on this platform")
    '''))
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)  # the leak: an error at test_b's teardown
    result.stdout.fnmatch_lines([
        "sockhygiene: test_b.py::test_a_new_thread_leaves_a_connection broke its socket limits",
        "  established: 1 > limit 0 - open connection(s) left behind",
    ])



def test_a_thread_given_the_ident_of_one_that_ended_in_the_test_holds_only_its_own(pytester, run):
    """Within one test, a thread that ended (leaving its connection open) may hand its ident to the next thread
    the test starts (Linux reuses a joined thread's stack); that thread, still running at the end, opened nothing
    and is not said to hold the first one's connection (seen in paramiko's suite)."""
    pytester.makepyfile(test_r=dedent('''
        import socket
        import threading

        import pytest
        from pytest_sockhygiene.testing import wait_for

        KEPT = []
        STOP = threading.Event()

        def test_a_thread_ends_and_the_next_takes_its_ident(server):
            accepted = server.accepted

            def opener():
                KEPT.append(socket.create_connection((server.host, server.port)))
                # the server's thread for this connection starts while this one runs: else it may take this
                # thread's stack, and its ident, before the waiter does
                assert wait_for(lambda: server.accepted > accepted)

            first = threading.Thread(target=opener, name="opener")
            first.start()
            first.join()
            for _ in range(50):
                # a thread whose ident is not the opener's keeps waiting, and its stack: else, once another thread
                # of the process has ended since, every try would be given that thread's stack back, never the
                # opener's (the threads' stacks are reused last-freed first)
                t = threading.Thread(target=STOP.wait, name="waiter", daemon=True)
                t.start()
                if t.ident == first.ident:
                    break
            else:
                pytest.skip("no new thread got the ended thread's ident on this platform")

        def test_stop():
            STOP.set()
            KEPT[0].close()
    '''))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=100")
    if result.parseoutcomes().get("skipped"):
        pytest.skip("no new thread got the ended thread's ident here")
    result.assert_outcomes(passed=2, errors=1)  # the opener's connection: test_r's leak
    result.stdout.fnmatch_lines([
        "sockhygiene: test_r.py::test_a_thread_ends_and_the_next_takes_its_ident broke its socket limits",
        "  established: 1 > limit 0 - open connection(s) left behind",
        "*opened at test_r.py:14 in opener",
        "*",
        "*thread 'waiter' (running * started by this test is still running (it opened none of the sockets still "
        "open, but may be serving one)*",
    ])
    result.stdout.no_fnmatch_line("*thread 'waiter'*holding 1 connection*")

POOLS = dedent('''
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import anyio
    import pytest

    POOL = ThreadPoolExecutor(max_workers=1)
    KEEP = []

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param

    def test_warms_the_pool():
        POOL.submit(lambda: None).result()

    def test_leaks_through_the_pool(server):
        KEEP.append(POOL.submit(socket.create_connection, (server.host, server.port)).result())

    @pytest.mark.anyio
    async def test_warms_the_workers():
        await anyio.to_thread.run_sync(lambda: None)

    @pytest.mark.anyio
    async def test_leaks_through_the_workers(server):
        KEEP.append(await anyio.to_thread.run_sync(socket.create_connection, (server.host, server.port)))
''')


def test_a_pool_worker_works_for_every_test_that_hands_it_a_job(pytester, run, tmp_path):
    """A pool's worker started by one test and reused by the next (a module-level ThreadPoolExecutor, trio's
    thread cache behind anyio.to_thread) is no test's: a socket a later test leaks through it is that test's leak,
    whatever ran first, and the worker is not reported as a thread left running (pools.py)."""
    pytest.importorskip("trio")
    pytester.makepyfile(test_pools=POOLS)
    path = tmp_path / "r.json"
    result = run("-p", "no:randomly", f"--sockhygiene-report={path}")
    leakers = ["test_pools.py::test_leaks_through_the_pool", "test_pools.py::test_leaks_through_the_workers[asyncio]",
               "test_pools.py::test_leaks_through_the_workers[trio]"]
    assert sorted(errors_of(result)) == leakers
    report = json.loads(path.read_text())
    for t in report["tests"]:
        assert t["counts"]["established"] == (1 if t["nodeid"] in leakers else 0), t
        assert not t.get("threads"), t  # a pool's worker is no thread left running
    assert "threads left running" not in result.stdout.str()
    # each leak is found in its own run too: the verdict no longer depends on which test warmed the pool
    alone = run("-p", "no:randomly", "-k", "leaks")
    assert sorted(errors_of(alone)) == leakers


TWISTED_POOL = dedent('''
    import socket
    import threading

    import pytest
    from twisted.python.threadpool import ThreadPool

    POOL = ThreadPool(minthreads=0, maxthreads=1, name="tw")  # reactor.getThreadPool()'s kind: deferToThread's
    POOL.start()  # no worker yet: the first job starts one
    KEEP = []

    @pytest.fixture(scope="module", autouse=True)
    def pool():
        yield
        POOL.stop()  # (joins the worker)

    def in_pool(fn, *args):
        done, out = threading.Event(), []
        POOL.callInThread(lambda: (out.append(fn(*args)), done.set()))
        assert done.wait(10)
        return out[0]

    def test_warms_the_pool():
        in_pool(lambda: None)

    def test_leaks_through_the_pool(server):
        KEEP.append(in_pool(socket.create_connection, (server.host, server.port)))

    def test_after():
        pass
''')


def test_a_worker_of_twisteds_thread_pool_works_for_every_test(pytester, run, tmp_path):
    """Twisted's ``ThreadPool`` (``reactor.getThreadPool()``, behind ``deferToThread`` and the reactor's threaded
    name resolver, which Scrapy uses at every crawl) is a pool like ``ThreadPoolExecutor``: its worker, started by
    the first test that hands it a job, is no test's. It was claimed by that test, reported as a thread left
    running, and a socket a later test leaked through it was that first test's, listed at the session's end as a
    fixture's - the later test passed in enforce mode (found with Scrapy's suite)."""
    pytest.importorskip("twisted")
    pytester.makepyfile(test_tw=TWISTED_POOL)
    path = tmp_path / "r.json"
    result = run("-p", "no:randomly", f"--sockhygiene-report={path}")
    assert errors_of(result) == ["test_tw.py::test_leaks_through_the_pool"]
    report = json.loads(path.read_text())
    for t in report["tests"]:
        leaker = t["nodeid"] == "test_tw.py::test_leaks_through_the_pool"
        assert t["counts"]["established"] == (1 if leaker else 0), t
        assert not t.get("threads"), t  # the pool's worker is no thread left running
    out = result.stdout.str()
    assert "threads left running" not in out and "session-level leaks" not in out, out

FINISHED = dedent('''
    import asyncio
    import gc
    import threading
    import time
    import weakref

    import anyio.to_thread


    class Worker(threading.Thread):
        def __init__(self, resource):
            super().__init__()
            self.resource = resource


    class Resource:
        pass


    def test_a_finished_thread_lets_go_of_what_it_held():
        resource = Resource()
        ref = weakref.ref(resource)
        worker = Worker(resource)
        worker.start()
        worker.join()
        del worker, resource
        gc.collect()
        assert ref() is None


    def test_asyncio_run_does_not_keep_its_loop_through_anyios_worker():
        # anyio's own suite (test_to_thread.py): its worker thread holds the loop until it finishes
        loops = []

        async def main():
            loops.append(weakref.ref(asyncio.get_running_loop()))
            await anyio.to_thread.run_sync(lambda: None)

        asyncio.run(main())
        # anyio's worker lets go of the loop as it finishes, a moment after asyncio.run returns (later on a busy
        # machine): polled, for up to 2 s - a log that held the worker would keep the loop until the test's end
        deadline = time.monotonic() + 2
        while True:
            gc.collect()
            if loops[0]() is None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert loops[0]() is None
''')


def test_a_thread_that_finished_in_the_test_is_not_kept_alive_by_the_plugin(pytester, run):
    """The threads a test starts are logged to find those it leaves running; the log must not keep a finished
    thread, and what it holds, alive until the test ends: anyio's ``test_asyncio_run_does_not_leak_event_loop``
    failed in warn and enforce mode because the log held anyio's worker, and the worker the loop."""
    pytester.makepyfile(test_f=FINISHED)
    without = pytester.runpytest("-p", "no:sockhygiene", "-p", "no:cacheprovider", "-rA")
    with_plugin = run("-rA", mode="enforce")
    # the same outcome as without the plugin (anyio 4.12 on Python 3.9 keeps the loop itself: fails in both)
    assert with_plugin.parseoutcomes() == without.parseoutcomes()
    for result in (without, with_plugin):
        result.stdout.fnmatch_lines(["PASSED test_f.py::test_a_finished_thread_lets_go_of_what_it_held"])


LONG_LIVED_KIND = dedent("""
    import threading

    STOP = threading.Event()
    JOINED = []  # the threads something joined (the plugin's grace is a join with a timeout)
    _join = threading.Thread.join

    def _spying_join(self, timeout=None):
        JOINED.append(self.name)
        return _join(self, timeout)

    threading.Thread.join = _spying_join

    def monitor():
        STOP.wait(60)  # a monitor every app starts: runs for the session

    def test_first_app():
        threading.Thread(target=monitor, name="monitor-1", daemon=True).start()

    def test_second_app():
        threading.Thread(target=monitor, name="monitor-2", daemon=True).start()

    def test_a_timer_still_gets_its_moment():
        threading.Timer(0.01, lambda: None).start()  # other code: waited for, ends, not reported

    def test_last():
        # (the timer's thread may be joined, or may be gone before the check: either way, not the monitors')
        assert JOINED[:1] == ["monitor-1"] and "monitor-2" not in JOINED, JOINED
""")


def test_a_thread_of_code_that_outlived_the_grace_once_is_not_waited_for_again(pytester, run):
    """A thread left running is first given up to 50 ms to end (a join with a timeout); once a thread of some code
    outlived that (a logging ``QueueListener`` every litestar app starts), threads of the same code are not waited
    for again - each such test paid 50 ms for nothing. Both are reported as left running; only the first was
    waited for (the inner suite spies on ``Thread.join``)."""
    pytester.makepyfile(test_kinds=LONG_LIVED_KIND)
    result = run("-p", "no:randomly", mode="warn")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "thread 'monitor-1' (running monitor at test_kinds.py:13) started by this test is still running" in out
    assert "thread 'monitor-2' (running monitor at test_kinds.py:13) started by this test is still running" in out
    assert "test_a_timer_still_gets_its_moment" not in out, out


WATCHER_SUITE = dedent('''
    import threading

    import httpx
    import pytest


    class WatchedTransport(httpx.HTTPTransport):
        """A pool that starts a thread watching its idle connections at its first request, as urllib3-future's
        pools do (niquests): the thread lives as long as the pool."""

        def __init__(self):
            super().__init__()
            self.stop = threading.Event()
            self.watcher = None

        def handle_request(self, request):
            if self.watcher is None:
                self.watcher = threading.Thread(target=self.stop.wait, name="idle-watch", daemon=True)
                self.watcher.start()
            return super().handle_request(request)

        def close(self):
            self.stop.set()
            super().close()


    @pytest.fixture(scope="session")
    def client():
        with httpx.Client(transport=WatchedTransport()) as client:
            yield client


    def test_first_use(client, server):
        assert client.get(server.url).status_code == 200


    def test_own_watcher_left_running(server):
        transport = WatchedTransport()
        client = httpx.Client(transport=transport)
        assert client.get(server.url).status_code == 200
        client.close = lambda: None  # (never closed: the thread is the test's to report)
        test_own_watcher_left_running.keep = (client, transport)
''')


def test_a_thread_a_fixtures_client_starts_in_its_request_is_that_fixtures(pytester, run):
    """A session fixture's client whose pool starts a thread at its first request, which falls in a test (niquests'
    urllib3-future watches idle connections so): the thread is the pool's, so the fixture's, not "started by this
    test and still running". A test's own client's thread stays the test's."""
    pytester.makepyfile(test_w=WATCHER_SUITE)
    path = pytester.path / "report.json"
    result = run("-p", "no:randomly", f"--sockhygiene-report={path}", "-o", "sockhygiene_clients=1",
                 "-o", "sockhygiene_established=1")
    result.assert_outcomes(passed=2)
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(path.read_text())["tests"]}
    reported = {n: t.get("threads", []) for n, t in tests.items() if t.get("threads")}
    assert set(reported) == {"test_own_watcher_left_running"}, reported
    assert reported["test_own_watcher_left_running"][0].startswith("thread 'idle-watch' "), reported


SINGLIB = dedent('''
    """A library's process-wide worker: one module-level manager, whose thread the first user starts (pycares'
    channel shutdown manager)."""
    import queue
    import threading


    class _Manager:
        def __init__(self):
            self.jobs = queue.SimpleQueue()
            self.thread = None

        def _loop(self):
            while True:
                self.jobs.get()()

        def submit(self, job):
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, daemon=True)
                self.thread.start()
            self.jobs.put(job)


    _manager = _Manager()


    def use():
        _manager.submit(lambda: None)
''')


def test_a_libraries_process_wide_worker_is_no_tests(pytester, run):
    """A thread a library's module-level object runs, started by whichever test first needed it and serving every
    later one (pycares' channel shutdown manager, under aiodns and aiohttp): no test left it running. A server a
    test module keeps in a global is still the test's that started it."""
    installed_library(pytester, "singlib", SINGLIB)
    pytester.makepyfile(test_s=dedent('''
        import threading

        import singlib

        STOP = threading.Event()


        class Mine:
            def serve(self):
                STOP.wait()


        MINE = Mine()


        def test_first_user():
            singlib.use()


        def test_second_user():
            singlib.use()


        def test_starts_its_own():
            threading.Thread(target=MINE.serve, daemon=True, name="mine").start()
    '''))
    path = pytester.path / "report.json"
    result = run("-p", "no:randomly", f"--sockhygiene-report={path}")
    result.assert_outcomes(passed=3)
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(path.read_text())["tests"]}
    reported = {n: t.get("threads", []) for n, t in tests.items() if t.get("threads")}
    assert set(reported) == {"test_starts_its_own"}, reported
    assert reported["test_starts_its_own"][0].startswith("thread 'mine' "), reported
