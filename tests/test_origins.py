"""Origins that tell the truth (issue 11 §4): a socket that Python code opened names the line that started it.

anyio's ``connect_tcp`` races its connection attempts in child tasks, whose stacks never reach the test's code:
the line that started the task is reported instead. An accepted socket names its listener and the line that
opened it. Only a socket no Python call made keeps "opened by library or C code outside Python's socket module".
"""

from __future__ import annotations

import json
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from conftest import ANYIO_BACKEND, INNER_CONFTEST, dedent, errors_of, failure_block, installed_library

PYARGS_SEE_THE_ROOT_CONFTEST = pytest.mark.skipif(
    tuple(pytest.version_tuple[:2]) == (9, 1),
    reason="pytest 9.1 hides the rootdir conftest's fixtures from --pyargs items, without this plugin too "
           "(pytest-dev/pytest#14683, fixed in 9.2)")
"""The two ``--pyargs`` suites below take their server from the rootdir's conftest."""

HEAD_LINES = ANYIO_BACKEND.count("\n")


def line_of(src: str, marker: str) -> int:
    """The line number (1-based) in the inner file of the line that ends with ``# <marker>``."""
    for i, line in enumerate((ANYIO_BACKEND + src).splitlines(), 1):
        if line.rstrip().endswith(f"# {marker}"):
            return i
    raise AssertionError(marker)


TASKS = dedent('''
    import asyncio
    import socket

    import anyio

    KEEP = []

    @pytest.mark.anyio
    async def test_connect_tcp(server):
        KEEP.append(await anyio.connect_tcp(server.host, server.port))  # connect_tcp

    @pytest.mark.anyio
    @pytest.mark.sockhygiene(time_wait=0)
    async def test_task_group_child(server):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.connect_tcp, server.host, server.port)  # start_soon
        await anyio.sleep(0)

    def test_task_under_asyncio_run(server):
        async def main():
            task = asyncio.ensure_future(asyncio.open_connection(server.host, server.port))  # ensure_future
            return await task

        reader, writer = asyncio.run(main())
        KEEP.append(writer)
''')


def test_a_connection_opened_in_a_child_task_names_the_line_that_started_it(pytester, run):
    pytester.makepyfile(test_t=ANYIO_BACKEND + TASKS)
    result = run("-p", "anyio", "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=3, errors=3)
    out = result.stdout.str()
    assert "origin unknown" not in out
    result.stdout.fnmatch_lines([
        f"*ESTABLISHED * fd=*, opened in a task started at test_t.py:{line_of(TASKS, 'connect_tcp')} in "
        "test_connect_tcp",
        f"*opened in a task started at test_t.py:{line_of(TASKS, 'start_soon')} in test_task_group_child*",
        f"*ESTABLISHED * fd=*, opened in a task started at test_t.py:{line_of(TASKS, 'ensure_future')} in main",
    ])
    assert "at opened in a task" not in out  # (the line naming the API that opened them says it once)


TRIO_TASKS = dedent('''
    import trio
    import trio.testing

    KEEP = []

    def test_open_tcp_stream_under_trio_run(server):
        async def main():
            KEEP.append(await trio.open_tcp_stream(server.host, server.port))  # open_tcp_stream

        trio.run(main)

    def test_in_a_nurserys_child(server):
        async def connect_it():
            KEEP.append(await trio.open_tcp_stream(server.host, server.port))  # child

        async def main():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect_it)

        trio.run(main)

    @trio.testing.trio_test
    async def test_run_by_trio_test(server):
        KEEP.append(await trio.open_tcp_stream(server.host, server.port))  # trio_test
''')


def test_a_connection_trio_opened_in_a_child_task_names_the_line_that_started_it(pytester, run):
    """``trio.open_tcp_stream`` connects in child tasks of a nursery of its own, whose stacks hold no line of the
    test's: the connection is named by the line that called it, as under asyncio - not by the line that called
    ``trio.run``, nor as library code in a test that trio's own ``trio_test`` runs (found with trio's suite)."""
    pytest.importorskip("trio")
    pytester.makepyfile(test_t=TRIO_TASKS)
    result = run("-W", "ignore::ResourceWarning", "-W", "ignore::trio.TrioDeprecationWarning")
    result.assert_outcomes(passed=3, errors=3)
    lines = TRIO_TASKS.splitlines()

    def line(marker: str) -> int:
        return next(i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# {marker}"))

    result.stdout.fnmatch_lines([
        f"*ESTABLISHED * fd=*, opened in a task started at test_t.py:{line('open_tcp_stream')} in main",
        f"*ESTABLISHED * fd=*, opened in a task started at test_t.py:{line('child')} in connect_it",
        f"*ESTABLISHED * fd=*, opened in a task started at test_t.py:{line('trio_test')} in test_run_by_trio_test",
    ])
    out = result.stdout.str()
    assert "library code" not in out and "in test_open_tcp_stream_under_trio_run" not in out, out

SERVERS = dedent('''
    import _socket
    import http.client
    import logging
    import logging.handlers
    import queue
    import socket
    import threading

    KEEP = []
    RECORDS = queue.Queue()
    LISTENER = logging.handlers.QueueListener(RECORDS)
    LISTENER.start()  # started at import: its thread's stack never holds a line of this file

    def test_accepted_socket_left_open():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # listen
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        client.close()
        listener.close()
        KEEP.append(conn)  # the server side, left in CLOSE_WAIT

    def test_opened_by_library_code_only(server):
        handler = logging.handlers.SocketHandler(server.host, server.port)
        LISTENER.handlers = (handler,)
        RECORDS.put(logging.makeLogRecord({"msg": "sent over a socket the handler opens"}))
        RECORDS.join()
        KEEP.append(handler)

    def test_opened_in_a_thread_it_started(server):
        conn = http.client.HTTPConnection(server.host, server.port)
        t = threading.Thread(target=conn.connect)  # the thread's stack holds no line of this file
        t.start()  # thread start
        t.join()
        KEEP.append(conn)

    def test_opened_by_c_code(server):
        s = _socket.socket()  # the C class: no Python socket call is made
        s.connect((server.host, server.port))
        KEEP.append(s)
''')


def test_accepted_sockets_and_library_code_say_what_is_known(pytester, run):
    pytester.makepyfile(test_s=ANYIO_BACKEND + SERVERS)
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=4, errors=4)
    result.stdout.fnmatch_lines([
        "*CLOSE_WAIT 127.0.0.1:* -> 127.0.0.1:* fd=*, accepted by the listener at 127.0.0.1:* opened at "
        f"test_s.py:{line_of(SERVERS, 'listen')} in test_accepted_socket_left_open*",
    ])
    result.stdout.fnmatch_lines_random([  # a thread the test started: the line that started it
        "*ESTABLISHED * fd=*, opened by library code in a thread started at "
        f"test_s.py:{line_of(SERVERS, 'thread start')} in test_opened_in_a_thread_it_started",
    ])
    lines = result.outlines
    lib = [line for line in lines if "with no line of the test's own code" in line]  # (ESTABLISHED or CLOSE_WAIT)
    assert len(lib) == 1, lines
    assert "logging/handlers.py:" in lib[0], lib  # the first stdlib frame outside socket.py (docs/ownership.md)
    c_code = [line for line in lines if "ESTABLISHED" in line
              and "origin unknown (opened by library or C code outside Python's socket module)" in line]
    assert len(c_code) == 1, lines


def test_the_server_side_of_a_trio_listener_names_the_listener_though_no_accept_was_seen(pytester, run):
    """trio's sockets call the ``accept`` trio saved at import: no accept of its listener is recorded. A server
    side the test keeps is still told by its listener - and named by it, with the line that opened the listener,
    not "origin unknown (... C code ...)" beside a note that names the listener (found running trio pools
    against hypercorn for issue 12). The test keeps the server end alone: with the client end kept too, the one
    connection is counted once, at its client end (``test_both_ends_of_one_connection_count_once``)."""
    pytest.importorskip("trio")
    pytester.makepyfile(test_trio_keep=dedent("""
        import trio

        KEEP = []

        def test_keeps_both_ends():
            async def main():
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                port = listeners[0].socket.getsockname()[1]
                client = await trio.open_tcp_stream("127.0.0.1", port)
                server_side = await listeners[0].accept()
                await listeners[0].aclose()
                await client.aclose()
                KEEP.append(server_side)
            trio.run(main)
    """))
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    block = failure_block(result, "test_trio_keep.py::test_keeps_both_ends")
    server_side = [line for line in block.splitlines() if "whose listener is already closed" in line]
    assert len(server_side) == 1, block
    assert "accepted by the listener at 127.0.0.1:" in server_side[0], block
    assert "opened at test_trio_keep.py:7 in main" in server_side[0], block


def test_a_library_package_imported_after_the_first_origin_still_counts_as_library(tmp_path, monkeypatch):
    """``add_library_packages`` does not search ``sys.path`` for a package that is not imported (~1.3 ms for the
    dozen of the built-in list a suite does not use, on its first connect): no frame of it can be on a stack. Once it
    is imported, its files are library code at the next new file seen. (A plain function: the rule, no pytester.)"""
    import importlib
    import sys

    from pytest_sockhygiene import origin

    pkg = tmp_path / "late_imported_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "pool.py").write_text("def connect():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    origin._ensure_init()
    origin.add_library_packages(["late_imported_lib"])
    assert "late_imported_lib" in origin._pending  # not looked for: not imported
    assert not origin.is_library_file(str(tmp_path / "user_test.py"))
    try:
        module = importlib.import_module("late_imported_lib.pool")
        assert origin.is_library_file(module.__file__)
        assert "late_imported_lib" not in origin._pending
        assert not origin.is_library_file(str(tmp_path / "user_test.py"))  # user code next to it is still not
    finally:
        sys.modules.pop("late_imported_lib.pool", None)
        sys.modules.pop("late_imported_lib", None)


def assert_job_failed_with_its_own_traceback(result: Any) -> None:
    """The inner ``test_a_failing_job_fails_as_before`` failed with the job's exception, no wrapper of ours in it."""
    failure = result.stdout.str().split("test_a_failing_job_fails_as_before", 1)[1]
    assert "ValueError: boom in the job" in failure
    assert "_run_job" not in failure and "pools.py" not in failure, failure


JOBS = dedent('''
    import asyncio
    import socket
    from concurrent.futures import ThreadPoolExecutor
    from multiprocessing.pool import ThreadPool

    POOL = ThreadPoolExecutor(max_workers=2)
    THREADS = ThreadPool(2)
    KEEP = []

    def test_submits_a_library_callable(server):
        KEEP.append(POOL.submit(socket.create_connection, (server.host, server.port)).result())  # submit

    def test_maps_a_library_callable(server):
        KEEP.extend(POOL.map(socket.create_connection, [(server.host, server.port)]))  # map

    def test_maps_on_multiprocessings_thread_pool(server):
        KEEP.extend(THREADS.map(socket.create_connection, [(server.host, server.port)]))  # ThreadPool.map

    def test_applies_on_multiprocessings_thread_pool(server):
        address = (server.host, server.port)
        KEEP.append(THREADS.apply_async(socket.create_connection, (address,)).get())  # ThreadPool.apply_async

    def test_hands_it_to_a_thread(server):
        async def main():
            return await asyncio.to_thread(socket.create_connection, (server.host, server.port))  # to_thread

        KEEP.append(asyncio.run(main()))

    def _connect(server):
        return socket.create_connection((server.host, server.port))  # own function

    def test_submits_its_own_function(server):
        KEEP.append(POOL.submit(_connect, server).result())

    def test_a_failing_job_fails_as_before():
        def boom():
            raise ValueError("boom in the job")

        POOL.submit(boom).result()
''')


def test_a_pool_job_with_no_line_of_the_users_names_the_line_that_submitted_it(pytester, run):
    """A library callable handed to a thread pool as it is (``submit``, ``map``, ``asyncio.to_thread``,
    ``multiprocessing.pool.ThreadPool``) opens its socket on a worker whose stack starts in the pool's code: the
    report names the line that submitted the job. A job of the user's own names its own line, as before; a job that
    raises fails the test with its own exception and traceback (the plugin's wrapper of the job is not in it)."""
    pytester.makepyfile(test_j=ANYIO_BACKEND + JOBS)
    result = run("-p", "no:randomly", "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=6, failed=1, errors=6)
    job = "opened by library code in a thread pool's job submitted at test_j.py"
    result.stdout.fnmatch_lines([
        f"*ESTABLISHED * fd=*, {job}:{line_of(JOBS, 'submit')} in test_submits_a_library_callable",
        f"*ESTABLISHED * fd=*, {job}:{line_of(JOBS, 'map')} in test_maps_a_library_callable",
        f"*ESTABLISHED * fd=*, {job}:{line_of(JOBS, 'ThreadPool.map')} in test_maps_on_multiprocessings_thread_pool",
        f"*ESTABLISHED * fd=*, {job}:{line_of(JOBS, 'ThreadPool.apply_async')} in "
        "test_applies_on_multiprocessings_thread_pool",
        f"*ESTABLISHED * fd=*, {job}:{line_of(JOBS, 'to_thread')} in main",
        f"*ESTABLISHED * fd=*, opened at test_j.py:{line_of(JOBS, 'own function')} in _connect",
    ])
    assert "with no line of the test's own code" not in result.stdout.str()
    assert_job_failed_with_its_own_traceback(result)


TO_THREAD = dedent('''
    import socket

    import anyio.to_thread
    import trio
    import trio.to_thread

    KEEP = []

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    async def test_hands_it_to_anyio(server, anyio_backend):
        KEEP.append(await anyio.to_thread.run_sync(socket.create_connection, (server.host, server.port)))  # anyio

    def test_hands_it_to_trio(server):
        async def main():
            return await trio.to_thread.run_sync(socket.create_connection, (server.host, server.port))  # trio

        KEEP.append(trio.run(main))

    @pytest.mark.anyio
    async def test_a_failing_job_fails_as_before():
        def boom():
            raise ValueError("boom in the job")

        await anyio.to_thread.run_sync(boom)
''')


def test_a_job_handed_to_anyio_or_trio_names_the_line_that_handed_it_over(pytester, run):
    """anyio's ``to_thread.run_sync`` (its own worker threads on asyncio, trio's thread cache on trio) and trio's
    take jobs from a queue, not through ``ThreadPoolExecutor.submit``: a library callable handed over as it is
    still names the user's line that handed it over, not anyio's or trio's worker; a job that raises fails the
    test with its own exception, the plugin's wrapper of the job left out of the traceback."""
    pytester.makepyfile(test_t=ANYIO_BACKEND + TO_THREAD)
    result = run("-p", "no:randomly", "-W", "ignore::ResourceWarning")
    result.assert_outcomes(failed=1, passed=3, errors=3)
    job = "opened by library code in a thread pool's job submitted at test_t.py"
    result.stdout.fnmatch_lines_random([
        f"*ESTABLISHED * fd=*, {job}:{line_of(TO_THREAD, 'anyio')} in test_hands_it_to_anyio",
        f"*ESTABLISHED * fd=*, {job}:{line_of(TO_THREAD, 'trio')} in main",
    ])
    assert result.stdout.str().count(f"{job}:{line_of(TO_THREAD, 'anyio')} in test_hands_it_to_anyio") == 2
    assert "library code at" not in result.stdout.str()
    assert_job_failed_with_its_own_traceback(result)


LIBRARY_SERVER = dedent('''
    from aiohttp import web
    from aiohttp.test_utils import AioHTTPTestCase
    from blockbuster import blockbuster_ctx


    class LeakyServerCase(AioHTTPTestCase):
        async def get_application(self):
            return web.Application()

        def setUp(self):
            self._blockbuster = blockbuster_ctx()  # (as aiohttp's own suite does around every test)
            self._blockbuster.__enter__()
            super().setUp()

        def tearDown(self):
            super().tearDown()
            self._blockbuster.__exit__(None, None, None)

        async def asyncTearDown(self):
            pass  # the test server is never closed: a LISTEN leak

        async def test_serves(self):
            pass
''')


@pytest.mark.parametrize("how", ["python -m pytest", "the pytest script", "xdist"])
def test_a_library_listener_in_a_venv_names_the_library_however_pytest_was_started(pytester, backend, how):
    """aiohttp's test server, started by ``AioHTTPTestCase``'s set-up (no line of the user's on its stack, in a task
    nobody's line started): the origin is aiohttp's frame. Found on aiohttp's own suite: in a virtual environment
    every installed package was taken for the standard library (``platstdlib`` is the venv's ``lib/python3.X``) and
    the report named asyncio's ``base_events.py``; the ``pytest`` script and xdist's exec'd bootstrap (``<string>``)
    were taken for the user's line; and with blockbuster on, looking at ``<frozen runpy>`` was a blocking call
    reported as a plugin problem."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("blockbuster")
    pytester.makepyfile(test_l=LIBRARY_SERVER)
    args = ["-p", "no:cacheprovider", "-p", "no:randomly", f"--sockhygiene-backend={backend}", "--sockhygiene=warn",
            "-W", "ignore::ResourceWarning", "-o", "sockhygiene_settle=0"]
    if how == "the pytest script":
        script = Path(sysconfig.get_path("scripts")) / ("pytest.exe" if sys.platform == "win32" else "pytest")
        if not script.exists():
            pytest.skip(f"no pytest script at {script}")
        result = pytester.run(str(script), *args)
    else:
        result = pytester.runpytest_subprocess(*args, *(["-n", "1"] if how == "xdist" else []))
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*LISTEN * fd=*, opened by library code, with no line of the test's own code on the "
                                 "stack, at aiohttp/web_runner.py:* in start*"])
    assert "plugin problem" not in result.stdout.str()


INSTALLED_TESTS = dedent('''
    import socket

    KEEP = []


    def test_leaks_a_connection(server):
        KEEP.append(socket.create_connection((server.host, server.port)))  # the test's own line
''')

INSTALLED_CONFTEST = dedent('''
    import socket

    import pytest


    @pytest.fixture
    def connected(server):
        return socket.create_connection((server.host, server.port))  # the fixture
''')


@PYARGS_SEE_THE_ROOT_CONFTEST
def test_tests_that_live_where_libraries_do_are_the_users_code(pytester, run):
    """A suite shipped inside a package and run from where it is installed (``pytest --pyargs tornado.test``): its
    test files sit where library code does, yet their lines are the origins - not "opened by library code, with
    no line of the test's own code on the stack, at leakpkg/test_installed.py:9" (found on tornado's suite). The
    package is made a library here with ``add_library_packages``, the path site-packages takes too."""
    pytester.makeconftest(INNER_CONFTEST + "\nimport pytest_sockhygiene.origin\n"
                          "pytest_sockhygiene.origin.add_library_packages(['leakpkg'])\n")
    package = pytester.mkpydir("leakpkg")
    (package / "test_installed.py").write_text(ANYIO_BACKEND + INSTALLED_TESTS)  # (line_of counts it in)
    (package / "conftest.py").write_text(ANYIO_BACKEND + INSTALLED_CONFTEST)
    (package / "test_fixture.py").write_text("def test_uses_it(connected):\n    pass\n")
    result = run("--pyargs", "leakpkg", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    out = result.stdout.str()
    assert "library code" not in out, out
    test_line = line_of(INSTALLED_TESTS, "the test's own line")
    fixture_line = line_of(INSTALLED_CONFTEST, "the fixture")
    result.stdout.fnmatch_lines_random([
        f"*ESTABLISHED * fd=*, opened at leakpkg/test_installed.py:{test_line} in "
        "test_leaks_a_connection",
        f"*ESTABLISHED * fd=*, opened at leakpkg/conftest.py:{fixture_line} in connected",
    ])


FETCHLIB = dedent("""
    import asyncio


    class Client:
        def fetch(self, host, port):  # the call the test makes: a loop of its own, and a task in it
            return asyncio.run(self._start(host, port))

        async def _start(self, host, port):
            return await asyncio.get_running_loop().create_task(self._run(host, port))

        async def _run(self, host, port):  # a private coroutine the test never called
            reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
""")


def test_a_task_a_library_started_is_named_by_the_call_the_test_made(pytester, run):
    """A library call that runs its own loop and connects in a task of its own (tornado's
    ``AsyncHTTPTestCase.fetch``): the connections were "opened by tornado.simple_httpclient._HTTPConnection.run()",
    a private coroutine, in tornado's suite. They are opened by the call the test's line made, whose loop started
    the task; a task the test starts itself through asyncio is still named by its coroutine."""
    pytester.makeconftest(INNER_CONFTEST + "\nimport pytest_sockhygiene.origin\n"
                          "pytest_sockhygiene.origin.add_library_packages(['fetchlib'])\n")
    (pytester.mkpydir("fetchlib") / "__init__.py").write_text(FETCHLIB)
    pytester.makepyfile(test_fetch=dedent("""
        import asyncio
        import pytest
        from fetchlib import Client

        @pytest.mark.sockhygiene(connections=1)
        def test_two_fetches(server):
            client = Client()
            client.fetch(server.host, server.port)
            client.fetch(server.host, server.port)

        @pytest.mark.sockhygiene(connections=1)
        def test_two_tasks_of_its_own(server):
            async def main():
                for _ in range(2):
                    await asyncio.create_task(Client()._run(server.host, server.port))
            asyncio.run(main())
    """))
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    cls = "Client."  # (a method's class is in its name on every version: co_qualname, or the class of its self)
    fetches = failure_block(result, "test_fetch.py::test_two_fetches")
    for line in (8, 9):
        assert f"1 connection(s) opened by fetchlib.{cls}fetch(), opened in a task started at " \
               f"test_fetch.py:{line} in test_two_fetches" in fetches, fetches
    own = failure_block(result, "test_fetch.py::test_two_tasks_of_its_own")
    assert f"2 connection(s) opened by fetchlib.{cls}_run(), opened in a task started at test_fetch.py:15 in " \
           "main" in own, own


@PYARGS_SEE_THE_ROOT_CONFTEST
def test_an_installed_test_modules_lines_read_one_way(pytester, run):
    """A test module installed in site-packages, outside the rootdir, run with ``--pyargs`` (tornado's suite): its
    plain lines read absolute and its tasks' lines by the path inside site-packages, side by side in one summary.
    Both read the short way now."""
    site = pytester.path.parent / f"{pytester.path.name}-venv" / "lib" / "site-packages"
    package = site / "pathdemo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_paths.py").write_text(dedent("""
        import asyncio, socket, pytest

        @pytest.mark.sockhygiene(connections=1)
        def test_plain_line(server):
            for _ in range(2):
                socket.create_connection((server.host, server.port)).close()  # a plain line

        @pytest.mark.sockhygiene(connections=1)
        def test_task_line(server):
            async def main():
                for _ in range(2):
                    _, w = await asyncio.ensure_future(asyncio.open_connection(server.host, server.port))
                    w.close()
                    await w.wait_closed()
            asyncio.run(main())
    """))
    pytester.syspathinsert(site)
    result = run("--pyargs", "pathdemo", "-p", "no:randomly", "--rootdir", str(pytester.path))
    result.assert_outcomes(passed=2, errors=2)
    out = result.stdout.str()
    assert "2 connection(s) opened by socket.create_connection(), at pathdemo/test_paths.py:6 in test_plain_line" \
        in out, out
    assert "opened in a task started at pathdemo/test_paths.py:12 in main" in out, out
    assert str(site) not in out, out


def test_a_client_subclass_is_created_where_it_is_made_not_in_its_constructor(pytester, run):
    """A project's own client class whose ``__init__`` calls ``super().__init__`` was "created at apiclient.py:5 in
    __init__" in every test (found in starlette's suite, where each TestClient read ``starlette/testclient.py in
    __init__``): the line that made the object is the caller of the class's constructors."""
    pytester.makepyfile(apiclient=dedent("""
        import httpx

        class ApiClient(httpx.Client):
            def __init__(self, url):
                super().__init__(base_url=url, timeout=5)

        class Versioned(ApiClient):
            def __init__(self, url):
                super().__init__(url + "/v1")
    """), test_made=dedent("""
        from apiclient import ApiClient, Versioned
        KEEP = []

        def test_made(server):
            client = ApiClient(server.url)
            assert client.get("/").status_code == 200
            KEEP.append(client)

        def test_two_constructors_deep(server):
            client = Versioned(server.url)
            assert client.get("/").status_code == 200
            KEEP.append(client)
    """))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_made.py::test_made", "test_made.py::test_two_constructors_deep"]
    assert "apiclient.ApiClient (httpx.Client), created at test_made.py:5 in test_made (still open)" in \
        failure_block(result, "test_made.py::test_made")
    assert "apiclient.Versioned (httpx.Client), created at test_made.py:10 in test_two_constructors_deep" in \
        failure_block(result, "test_made.py::test_two_constructors_deep")
    assert "in __init__" not in result.stdout.str()


def test_an_app_behind_a_client_with_no_pool_names_its_own_lines(pytester, run):
    """A test client with an in-process transport (WSGI here, ASGI in starlette's TestClient) runs the app inside its
    request. Its request set the line for every connect under it, so the app's own connections were "opened at"
    the test's ``client.get`` line, with no API named, and the pool-less client was listed among a burst's
    sources ("5 requests each") though it can open no connection (found with starlette's TestClient). The app's
    lines name its connections now, and the test client is no source."""
    pytester.makepyfile(test_app=dedent("""
        import urllib.request
        import httpx
        KEEP = []

        def make_app(url):
            def app(environ, start_response):
                for _ in range(6):
                    urllib.request.urlopen(url + "/close").read()
                client = httpx.Client()  # the app's leak
                KEEP.append(client)
                client.get(url)
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok"]
            return app

        def test_app_connects(server):
            with httpx.Client(transport=httpx.WSGITransport(app=make_app(server.url)), base_url="http://t") as client:
                for _ in range(5):
                    assert client.get("/").text == "ok"
    """))
    result = run("-o", "sockhygiene_time_wait=30")
    block = failure_block(result, "test_app.py::test_app_connects")
    assert "opened at test_app.py:11 in app (in the pool of httpx.Client created at test_app.py:9 in app" in block
    result = run("-o", "sockhygiene_clients=unlimited", "-o", "sockhygiene_established=unlimited")
    block = failure_block(result, "test_app.py::test_app_connects")
    assert "connection(s) opened by urllib.request.urlopen(), at test_app.py:8 in app" in block, block
    assert "5 httpx.Client created at test_app.py:9 in app (1 request each)" in block
    assert "test_app.py:17" not in block  # the test client's line: no connection of its, no source


def test_a_code_file_named_relatively_stays_as_it_is_whatever_the_current_directory(tmp_path, monkeypatch):
    """A Cython module's code names its file relatively (``uvloop/loop.pyx``): a thread's line read
    ``tests/uvloop/loop.pyx`` after a test changed the current directory (sanic's suite), a file that does not
    exist. A pure function, tested as one: the path is formatted as it is."""
    from pytest_sockhygiene import origin

    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert origin.short_path("cylib/loop_of_this_test.pyx", str(tmp_path)) == "cylib/loop_of_this_test.pyx"
    assert origin.short_path(str(tmp_path / "test_x.py"), str(tmp_path)) == "test_x.py"  # absolute: as before


CONTEXT_RUN_LIBRARY = dedent('''
    import asyncio
    import contextvars


    async def _request(client, url):
        (await client.get(url)).read()


    class Session:
        """MCP's client transport's shape: a writer task sends each request from a task it starts in the context
        the caller's message carried (``ctx.run(tg.start_soon, ...)``), which no line of the caller's started."""

        def __init__(self, client, url):
            self.client, self.url = client, url
            self.queue = asyncio.Queue()

        async def __aenter__(self):
            self.writer = asyncio.ensure_future(self._write())
            return self

        async def _write(self):
            while True:
                ctx = await self.queue.get()
                if ctx is None:
                    return
                await ctx.run(asyncio.ensure_future, _request(self.client, self.url))

        async def request(self):
            await self.queue.put(contextvars.copy_context())

        async def __aexit__(self, *exc):
            await self.queue.put(None)
            await self.writer
''')


def test_a_request_a_library_sends_from_a_task_started_in_a_copied_context_names_the_running_tasks_line(
        pytester, run):
    """A tracked client's request sent by a library from a task it starts in the context the caller's message
    carried (MCP's SDK: ``ctx.run(tg.start_soon, ...)``), a snapshot of a task no line of the test's started. Its
    connection was named by the innermost library frame of the connect - anyio's ``connect_tcp``, or a wrapper of
    ``socket.connect`` (blockbuster's, which MCP's suite turns on) - then by the library line that sent the
    request, and now by the line that started the task running when the request's task was started: the writer's,
    started by the test's ``async with ctxlib.Session(...)`` (``origin.task_origins``)."""
    installed_library(pytester, "ctxlib", CONTEXT_RUN_LIBRARY)
    pytester.makepyfile(test_c=ANYIO_BACKEND + dedent('''
        import httpx
        import ctxlib


        @pytest.mark.anyio
        @pytest.mark.sockhygiene(connections=0)
        async def test_through_the_library(server):
            # (run by anyio's plugin: the test's own task was started by no line of the test's)
            async with httpx.AsyncClient() as client:
                async with ctxlib.Session(client, server.url) as session:
                    await session.request()
    '''))
    result = run("-p", "no:randomly", subprocess=True)  # (in-process, this test's own frames start the task)
    assert errors_of(result) == ["test_c.py::test_through_the_library"]
    block = failure_block(result, "test_c.py::test_through_the_library")
    assert re.search(r"1 connection\(s\) to 127\.0\.0\.1:\d+, opened in a task started at test_c\.py:"
                     rf"{HEAD_LINES + 10} in test_through_the_library", block), block


IN_TREE_LIBRARY = dedent('''
    import httpx


    class Node:
        def __init__(self, url):
            self.client = httpx.Client(base_url=url)

        def get(self):
            return self.client.get("/")

        def close(self):
            self.client.close()
''')

IN_TREE_TEST = dedent('''
    import mylib

    KEEP = []

    def test_forgets_close(server):
        node = mylib.Node(server.url)
        node.get()
        KEEP.append(node)  # never closed
''')


@pytest.mark.parametrize("listed", [False, True])
def test_a_projects_own_library_listed_in_the_ini_is_named_as_an_installed_one(pytester, run, listed):
    """A library's own suite runs it from its source tree, where its code is the user's: a client its constructor
    made is "created at mylib/__init__.py" (elastic-transport's and asyncssh's suites). Listed in
    ``sockhygiene_library_packages``, it reads as an installed library's does: created inside the call, called at
    the test's line, which is the one missing a close."""
    pytester.makeconftest(INNER_CONFTEST)
    pytester.mkpydir("mylib").joinpath("__init__.py").write_text(IN_TREE_LIBRARY)
    pytester.makepyfile(test_lib=IN_TREE_TEST)
    if listed:
        pytester.makeini("[pytest]\nsockhygiene_library_packages =\n    mylib\n")
    result = run(subprocess=True)  # (a process of its own: the packages listed stay listed for its life)
    assert errors_of(result) == ["test_lib.py::test_forgets_close"]
    if listed:
        result.stdout.fnmatch_lines(["*httpx.Client, created inside mylib.Node.__init__(), called at test_lib.py:6 "
                                     "in test_forgets_close*"])
    else:
        result.stdout.fnmatch_lines(["*httpx.Client, created at mylib/__init__.py:6 in __init__*"])


@pytest.mark.parametrize("value", ["my-lib", "mylib/client"])
def test_a_library_package_that_is_no_import_name_stops_the_run_naming_the_key(pytester, run, value):
    pytester.makepyfile(test_ok="def test_a(): pass\n")
    pytester.makeini(f"[pytest]\nsockhygiene_library_packages = {value}\n")
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*sockhygiene: ini 'sockhygiene_library_packages': {value!r} is not a package's "
                                 "import name*"])


CONTEXT_SNAPSHOT_LIBRARY = dedent('''
    """A worker that runs each job in a task started in the sender's context snapshot, as mcp's client does
    (``sender_ctx.run(task_group.start_soon, ...)``)."""
    import contextvars

    import anyio

    STREAMS = []


    class Worker:
        async def __aenter__(self):
            self._send, self._recv = anyio.create_memory_object_stream(10)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._loop)
            return self

        async def __aexit__(self, *exc):
            self._send.close()
            return await self._tg.__aexit__(*exc)

        async def connect(self, port):
            await self._send.send((contextvars.copy_context(), port))

        async def _loop(self):
            async with self._recv:
                async for ctx, port in self._recv:
                    ctx.run(self._tg.start_soon, self._do, port)

        async def _do(self, port):
            STREAMS.append(await anyio.connect_tcp("127.0.0.1", port))  # kept open: a leak
''')

CONTEXT_SNAPSHOT_TEST = dedent('''
    import socket

    import ctxlib

    @pytest.fixture(scope="module")
    def port():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            yield listener.getsockname()[1]

    @pytest.mark.anyio
    async def test_leak_via_worker(port):
        async with ctxlib.Worker() as worker:  # starts
            await worker.connect(port)
''')


def test_a_task_a_library_starts_in_a_copied_context_names_the_line_that_started_the_running_task(pytester, run):
    """mcp's client starts each request's task with ``sender_ctx.run(tg.start_soon, ...)``: a snapshot of the
    test's own task, which holds no line, so the task got none and its connection read "opened by library code
    ... at anyio/..._asyncio.py in connect_tcp". The task running when it was started is the worker, whose line is
    known: the connection is opened in a task started there (found running mcp's suite for issue 12)."""
    pytest.importorskip("anyio")
    pytester.makeconftest(INNER_CONFTEST)
    pytester.mkpydir("ctxlib").joinpath("__init__.py").write_text(CONTEXT_SNAPSHOT_LIBRARY)
    pytester.makeini("[pytest]\nsockhygiene_library_packages = ctxlib\n")
    pytester.makepyfile(test_ctx=ANYIO_BACKEND + CONTEXT_SNAPSHOT_TEST)
    result = run("-p", "no:randomly", subprocess=True)
    assert errors_of(result) == ["test_ctx.py::test_leak_via_worker"], result.stdout.str()
    result.stdout.fnmatch_lines([f"*ESTABLISHED *, opened in a task started at test_ctx.py:"
                                 f"{line_of(CONTEXT_SNAPSHOT_TEST, 'starts')} in test_leak_via_worker*"])
    assert "opened by library code" not in result.stdout.str()


def test_library_files_agrees_with_is_library_file(tmp_path):
    """``library_files`` sets most test files aside by a prefix test before asking ``is_library_file``: for files
    under site-packages, the standard library, a user's directory and relative paths, it must pick exactly the
    ones ``is_library_file`` calls library code."""
    from pytest_sockhygiene import origin

    files = [
        pytest.__file__,  # site-packages (or wherever pytest is installed)
        sysconfig.get_paths()["stdlib"] + "/socket.py",
        str(tmp_path / "test_mine.py"),
        __file__,
        "test_relative.py",
        "<string>",
        "<doctest test_x.txt[2]>",
    ]
    expected = [f for f in files if origin.is_library_file(f)]
    assert pytest.__file__ in expected and str(tmp_path / "test_mine.py") not in expected  # (both kinds are here)
    assert origin.library_files(files) == expected


DOCTEST_MODULE = dedent('''
    import socket

    KEEP = []


    def connect_demo():
        """Open a connection to a local listener.

        >>> lsock = socket.create_server(("127.0.0.1", 0))  # LISTEN
        >>> if True:
        ...     KEEP.append(socket.create_connection(lsock.getsockname()))  # CONNECT
        >>> def serve():
        ...     return socket.create_server(("127.0.0.1", 0))  # SERVE
        >>> KEEP.extend([lsock, serve()])
        """
''')

DOCTEST_TEXT = dedent('''
    A text file's doctest (its names are cleared after it: the socket is kept in mylib's, imported already).

        >>> import socket, mylib
        >>> mylib.KEEP.append(socket.create_server(("127.0.0.1", 0)))  # TEXT
''')


def _line_in(src: str, marker: str) -> int:
    """The 1-based line of ``src`` that ends with ``# <marker>``."""
    return next(i for i, line in enumerate(src.splitlines(), 1) if line.rstrip().endswith(f"# {marker}"))


def test_a_doctests_sockets_name_the_line_of_the_file_its_example_is_written_in(pytester, run, monkeypatch):
    """doctest compiles each example as ``<doctest mylib.connect_demo[1]>``, line 1: a socket a doctest left open
    read "opened at <doctest mylib.connect_demo[1]>:1 in <module>", a place no one can open, and the report's
    file and line, and a CI annotation, pointed there too. Each names the line of the file, as pytest's own
    doctest failures do: the example's second line, a function an earlier example defined, a text file's line."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    pytester.makepyfile(mylib=DOCTEST_MODULE)
    pytester.path.joinpath("README.txt").write_text(DOCTEST_TEXT)
    report = pytester.path / "report.json"
    result = run("--doctest-modules", "--doctest-glob=*.txt", f"--sockhygiene-report={report}", "-p", "no:randomly",
                 "mylib.py", "README.txt")
    assert errors_of(result) == ["README.txt::README.txt", "mylib.py::mylib.connect_demo"], result.stdout.str()
    out = result.stdout.str()
    assert "<doctest" not in out
    listen, connect, serve, text = (_line_in(DOCTEST_MODULE, "LISTEN"), _line_in(DOCTEST_MODULE, "CONNECT"),
                                    _line_in(DOCTEST_MODULE, "SERVE"), _line_in(DOCTEST_TEXT, "TEXT"))
    result.stdout.fnmatch_lines_random([
        f"*LISTEN 127.0.0.1:* opened at mylib.py:{listen} in doctest mylib.connect_demo",
        f"*ESTABLISHED 127.0.0.1:* opened at mylib.py:{connect} in doctest mylib.connect_demo",
        f"*LISTEN 127.0.0.1:* opened at mylib.py:{serve} in serve",
        f"*LISTEN 127.0.0.1:* opened at README.txt:{text} in doctest README.txt",
    ])
    tests = {t["nodeid"]: t for t in json.loads(report.read_text())["tests"]}
    places = {(i["file"], i["line"]) for t in tests.values() for v in t["violations"] for i in v["items"]}
    assert places == {("mylib.py", listen), ("mylib.py", connect), ("mylib.py", serve), ("README.txt", text)}
    annotations = [line for line in result.outlines if line.startswith("::error ")]
    pointed = [re.match(r"::error file=(.+?),line=(\d+),", a) for a in annotations]
    assert len(annotations) == 3 and all(m is not None and (m[1], int(m[2])) in places for m in pointed), annotations
