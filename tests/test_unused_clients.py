"""Unused clients are not connection leaks (issue 11 section 1): connects are attributed to the client whose
request opened them, and only an unclosed client that opened a real connection counts under ``clients``; one
that never did counts under ``unused_clients`` (unlimited by default). Real server, real client libraries."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

import pytest

from conftest import ANYIO_BACKEND, dedent, errors_of

httpx = pytest.importorskip("httpx")
requests = pytest.importorskip("requests")


# -- in process: which client opened which connection ------------------------------------------------------------


def test_connects_are_attributed_to_the_client_whose_request_opened_them():
    """``SocketEvent.client`` is the record of the outermost tracked client whose request made the connect
    (also from anyio's child tasks); raw connections have none; the record counts its connects."""
    from pytest_sockhygiene.clients import ClientRegistry
    from pytest_sockhygiene.events import EventSink, Recorder
    from pytest_sockhygiene.testing import serve_http
    from pytest_sockhygiene.trackers.httpx import HttpxTracker
    from pytest_sockhygiene.trackers.requests import RequestsTracker
    from pytest_sockhygiene.trackers.urllib3 import Urllib3Tracker

    errors: list[BaseException] = []
    recorder = Recorder(lambda fd, local, remote: (fd, local, remote), errors.append)
    registry = ClientRegistry(lambda: None, lambda: recorder.sinks)
    trackers: list[Any] = [HttpxTracker("httpx"), RequestsTracker(), Urllib3Tracker()]
    for tracker in trackers:
        tracker.pytest_sockhygiene_install_tracker(registry=registry)
    with serve_http(keep_alive=5.0) as server:
        recorder.install()
        sink = EventSink()
        recorder.add_sink(sink)
        try:
            session = requests.Session()
            for _ in range(2):  # the server ends each connection: the session's pool opens two
                assert session.get(server.url + "/close").status_code == 200
            client = httpx.Client()
            for _ in range(3):  # keep-alive: one connection for three requests
                assert client.get(server.url).status_code == 200

            async def use_async() -> None:
                async with httpx.AsyncClient() as aclient:  # connects inside anyio's connect_tcp child tasks
                    assert (await aclient.get(server.url)).status_code == 200

            asyncio.run(use_async())
            raw = http.client.HTTPConnection(*server.server_address[:2])
            raw.request("GET", "/")
            raw.getresponse().read()
            raw.close()
        finally:
            recorder.remove_sink(sink)
            recorder.uninstall()
            for tracker in trackers:
                tracker.pytest_sockhygiene_uninstall_tracker(registry=registry)
        session.close()
        client.close()
    assert not errors
    records = {r.kind: r for r in registry.records() if not r.shared}
    by_client = [(ev.client.kind if ev.client is not None else None) for ev in sink.events if ev.kind == "connect"]
    assert by_client == ["requests.Session", "requests.Session", "httpx.Client", "httpx.AsyncClient", None]
    assert [records[k].connections for k in ("requests.Session", "httpx.Client", "httpx.AsyncClient")] == [2, 1, 1]
    assert records["requests.Session"].requests == 2 and records["httpx.Client"].requests == 3


# -- end to end: the unit tests real suites are full of ------------------------------------------------------------

UNIT_TEST_SHAPES = ANYIO_BACKEND + "\n" + dedent('''
    import httpx, requests, respx, urllib3
    from requests.adapters import BaseAdapter
    KEEP = []  # clients stored here stay alive after their test ("still open"); the others are collected

    def test_httpx_build_request():
        client = httpx.Client(base_url="http://api.test/v1/")
        assert str(client.build_request("GET", "users").url) == "http://api.test/v1/users"

    def test_requests_prepare_request():
        session = requests.Session()
        session.headers["X-Token"] = "t"
        KEEP.append(session)
        assert session.prepare_request(requests.Request("GET", "http://api.test/")).headers["X-Token"] == "t"

    def test_urllib3_connection_from_url():
        manager = urllib3.PoolManager()
        KEEP.append(manager)
        assert manager.connection_from_url("http://api.test:8080/x").port == 8080

    @respx.mock
    def test_respx_decorator():
        respx.get("http://api.test/users").mock(return_value=httpx.Response(200, json=[]))
        client = httpx.Client()
        KEEP.append(client)
        assert client.get("http://api.test/users").json() == []

    def test_respx_fixture(respx_mock):
        respx_mock.get("http://api.test/users").mock(return_value=httpx.Response(200, json=[1]))
        assert httpx.Client(base_url="http://api.test").get("/users").json() == [1]

    def test_pytest_httpx(httpx_mock):
        httpx_mock.add_response(url="http://api.test/users", json=[2])
        client = httpx.Client()
        KEEP.append(client)
        assert client.get("http://api.test/users").json() == [2]

    @pytest.mark.anyio
    async def test_pytest_httpx_async(httpx_mock):
        httpx_mock.add_response(url="http://api.test/users", json=[3])
        assert (await httpx.AsyncClient().get("http://api.test/users")).json() == [3]

    class Canned(BaseAdapter):
        def send(self, request, **kwargs):
            response = requests.Response()
            response.status_code, response._content, response.url = 204, b"", request.url
            return response

        def close(self):
            pass

    def test_session_with_adapters_replaced_after_init():
        session = requests.Session()  # built with real HTTPAdapters...
        session.mount("http://", Canned())  # ...then replaced by mock adapters
        session.mount("https://", Canned())
        KEEP.append(session)
        assert session.get("http://api.test/").status_code == 204
''')

REQUESTS_MOCKING = dedent('''
    import requests, requests_mock, responses
    KEEP = []

    def test_requests_mock_adapter_mounted():
        session = requests.Session()
        adapter = requests_mock.Adapter()
        session.mount("http://", adapter)
        adapter.register_uri("GET", "http://api.test/users", json=[])
        KEEP.append(session)
        assert session.get("http://api.test/users").json() == []

    def test_requests_mock_fixture(requests_mock):
        requests_mock.get("http://api.test/users", json=[1])
        assert requests.Session().get("http://api.test/users").json() == [1]

    @responses.activate
    def test_responses():
        responses.get("http://api.test/users", json=[2])
        session = requests.Session()
        KEEP.append(session)
        assert session.get("http://api.test/users").json() == [2]
''')

REAL_LEAKS = dedent('''
    import gc, httpx, requests, urllib3
    KEEP = []

    def test_server_ends_the_connection_then_dropped(server):
        session = requests.Session()
        session.get(server.url + "/close")  # nothing left in the pool: only the connect says it was used

    def test_httpx_used_kept(server):
        client = httpx.Client()
        client.get(server.url)
        KEEP.append(client)

    def test_httpx_used_dropped(server):
        httpx.Client().get(server.url)

    def test_requests_used_dropped(server):
        requests.Session().get(server.url)

    def test_urllib3_used_dropped(server):
        urllib3.PoolManager().request("GET", server.url)

    def test_last(server):
        pass
''')


def _counts(pytester, name="r.json"):
    return {t["nodeid"].split("::")[-1]: (t["counts"]["clients"], t["counts"]["unused_clients"])
            for t in json.loads((pytester.path / name).read_text())["tests"]}


def test_clients_that_never_connect_are_unused_clients_not_leaks(pytester, run):
    """The issue's unit-test shapes: build_request, prepare_request, connection_from_url, respx, pytest-httpx, a
    Session whose adapters were replaced after __init__. None is a connection leak; each is one unused client."""
    pytest.importorskip("respx")
    pytest.importorskip("pytest_httpx")  # no release of it pairs httpx 0.27 with pytest 9 (noxfile.py)
    pytester.makepyfile(test_shapes=UNIT_TEST_SHAPES)
    result = run("--sockhygiene-report=r.json", "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=8)
    assert errors_of(result) == []
    counts = _counts(pytester)
    assert counts == {name: (0, 1) for name in counts} and len(counts) == 8
    result.stdout.fnmatch_lines(["*8 tests checked, all clean*",
                                 "unused clients: 8 left unclosed by 8 tests (they never opened a connection: not"
                                 " leaks; sockhygiene_unused_clients=0 lists them)"])

    # the limit is there for who wants it: the ini key makes each of them a violation
    result = run("--sockhygiene-report=r2.json", "-W", "ignore::ResourceWarning", "-o", "sockhygiene_unused_clients=0")
    assert len(errors_of(result)) == 8
    result.stdout.fnmatch_lines([
        "*test_shapes.py::test_httpx_build_request broke its socket limits*",
        "*unused_clients: 1 > limit 0 - client(s) that never opened a connection, never closed*",
        "*httpx.Client, created at test_shapes.py:12 in test_httpx_build_request "
        "(garbage-collected without being closed)*",
        "*fix: these clients never opened a connection; close them anyway*",
    ])
    result.stdout.fnmatch_lines(["*8 tests checked, 8 with violations (unused_clients: 8)*"])
    result.stdout.fnmatch_lines(["unused clients: 8 left unclosed by 8 tests (they never opened a connection; tests"
                                 " over their unused_clients limit are violations, above)"])
    assert "clients: 1 > limit" not in result.stdout.str().replace("unused_clients: 1 > limit", "")


def test_requests_mocked_by_requests_mock_and_responses(pytester, run):
    pytest.importorskip("requests_mock")
    pytest.importorskip("responses")
    pytester.makepyfile(test_mocked=REQUESTS_MOCKING)
    result = run("--sockhygiene-report=r.json")
    result.assert_outcomes(passed=3)
    assert _counts(pytester) == {"test_requests_mock_adapter_mounted": (0, 1), "test_requests_mock_fixture": (0, 1),
                                 "test_responses": (0, 1)}


VCR_REPLAY = dedent('''
    import httpx, requests, vcr
    KEEP = []
    CASSETTE = """\\
    interactions:
    - request: {body: null, headers: {}, method: GET, uri: 'http://api.test/users'}
      response:
        body: {string: '[1]'}
        headers: {Content-Type: [application/json]}
        status: {code: 200, message: OK}
    version: 1
    """

    def replaying(tmp_path):
        (tmp_path / "c.yaml").write_text(CASSETTE)
        return vcr.use_cassette(str(tmp_path / "c.yaml"), record_mode="none")

    def test_requests_replayed_kept(tmp_path):
        with replaying(tmp_path):
            session = requests.Session()
            assert session.get("http://api.test/users").json() == [1]
        KEEP.append(session)

    def test_httpx_replayed_kept(tmp_path):
        with replaying(tmp_path):
            client = httpx.Client()
            assert client.get("http://api.test/users").json() == [1]
        KEEP.append(client)

    def test_requests_replayed_closed(tmp_path):
        with replaying(tmp_path):
            with requests.Session() as session:
                assert session.get("http://api.test/users").json() == [1]
''')


def test_clients_answered_from_a_vcrpy_cassette_are_unused_not_leaks(pytester, run):
    """vcrpy replays a cassette through a connection whose ``sock`` is a stand-in (``VCRFakeSocket``, whose
    ``fileno()`` is 0: stdin), which stays in urllib3's pool after the request: a replayed ``requests.Session`` kept
    by the test was a client leak, and a notice said C code had opened connections the counts missed (found
    trying vcrpy and pytest-recording beside the plugin). Nothing holds a socket: an unused client, no notice."""
    pytest.importorskip("vcr")
    pytester.makepyfile(test_vcr=VCR_REPLAY)
    # (a process of its own: a second pytester run in this process fails to load vcrpy's cassette, with the
    # plugin or without it - pytester's restore of sys.modules and the YAML modules, it seems)
    result = run("--sockhygiene-report=r.json", "-W", "ignore::ResourceWarning", subprocess=True)
    result.assert_outcomes(passed=3)
    assert errors_of(result) == []
    assert _counts(pytester) == {"test_requests_replayed_kept": (0, 1), "test_httpx_replayed_kept": (0, 1),
                                 "test_requests_replayed_closed": (0, 0)}
    assert "no Python socket call was seen opening" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*3 tests checked, all clean*"])


def test_real_leaks_are_still_caught(pytester, run):
    """Used and never closed, kept or collected, whatever the library; also a client whose every connection the
    server ended (nothing left in its pool): it opened a connection, so it is a client to close."""
    pytester.makepyfile(test_real=REAL_LEAKS)
    result = run("--sockhygiene-report=r.json", "-W", "ignore::ResourceWarning")
    assert errors_of(result) == [f"test_real.py::test_{name}" for name in (
        "httpx_used_dropped", "httpx_used_kept", "requests_used_dropped", "server_ends_the_connection_then_dropped",
        "urllib3_used_dropped")]
    counts = _counts(pytester)
    assert counts.pop("test_last") == (0, 0)
    assert set(counts.values()) == {(1, 0)}
    result.stdout.fnmatch_lines(["*requests.Session, created at test_real.py:17 in test_requests_used_dropped"
                                 " (garbage-collected without being closed)*"])
    result.stdout.fnmatch_lines(["*urllib3.PoolManager, created at test_real.py:20 in test_urllib3_used_dropped"
                                 " (garbage-collected without being closed)*"])


FINALIZING = dedent('''
    import gc, weakref, httpx, requests

    class Finalizing(httpx.Client):
        def __del__(self):  # an SDK-style client that closes itself when freed
            self.close()

    class FinalizingSession(requests.Session):
        def __del__(self):
            self.close()

    def test_freed_by_refcount(server):
        client = Finalizing()
        client.get(server.url)
        ref = weakref.ref(client)
        del client  # __del__ closes it, then the weak finalizer runs
        assert ref() is None

    def test_freed_in_a_cycle(server):
        client = Finalizing()
        client.get(server.url)
        client.me = client
        ref = weakref.ref(client)
        del client
        assert ref() is not None  # only the cycle collector frees it: the weak finalizer runs first, then __del__
        gc.collect()
        assert ref() is None

    def test_session_freed_by_refcount(server):
        session = FinalizingSession()
        session.get(server.url)
        del session

    def test_session_freed_in_a_cycle(server):
        session = FinalizingSession()
        session.get(server.url)
        session.me = session
        del session
        gc.collect()

    def test_closed_by_the_code(server):
        client = Finalizing()
        client.get(server.url)
        client.close()
        del client

    def test_unused_freed_in_a_cycle():
        client = Finalizing()
        client.me = client
        del client
        gc.collect()
''')


def test_a_close_run_only_by_del_is_not_a_close_whatever_freed_the_client(pytester, run):
    """Freed by reference counting or in a reference cycle, a client closed only by its own ``__del__`` gets
    the same verdict: garbage-collected without being closed."""
    pytester.makepyfile(test_fin=FINALIZING)
    result = run("--sockhygiene-report=r.json")
    assert errors_of(result) == ["test_fin.py::test_freed_by_refcount", "test_fin.py::test_freed_in_a_cycle",
                                 "test_fin.py::test_session_freed_by_refcount",
                                 "test_fin.py::test_session_freed_in_a_cycle"]
    for name, line in (("test_freed_by_refcount", 12), ("test_freed_in_a_cycle", 19)):
        result.stdout.fnmatch_lines([f"*test_fin.py::{name} broke its socket limits*", "*clients: 1 > limit 0*",
                                     f"*test_fin.Finalizing (httpx.Client), created at test_fin.py:{line} in {name}"
                                     " (garbage-collected without being closed)*"])
    for name, line in (("test_session_freed_by_refcount", 29), ("test_session_freed_in_a_cycle", 34)):
        result.stdout.fnmatch_lines([f"*test_fin.FinalizingSession (requests.Session), created at test_fin.py:{line}"
                                     f" in {name} (garbage-collected without being closed)*"])
    counts = _counts(pytester)
    assert counts["test_closed_by_the_code"] == (0, 0)
    assert counts["test_unused_freed_in_a_cycle"] == (0, 1)


LIMIT_SETTINGS = dedent('''
    import httpx, pytest, requests, urllib3
    KEEP = []

    @pytest.mark.sockhygiene(unused_clients=0)
    def test_marker():
        KEEP.append(urllib3.PoolManager())

    @pytest.mark.sockhygiene(unused_clients=2)
    def test_marker_allows_two():
        KEEP.extend([httpx.Client(), httpx.Client()])

    def test_fixture_set_limits(sockhygiene):
        sockhygiene.set_limits(unused_clients=0)
        KEEP.append(requests.Session())

    def test_fixture_measure(sockhygiene, server):
        with sockhygiene.measure() as m:
            KEEP.append(httpx.Client(base_url=server.url))
            used = httpx.Client()
            used.get(server.url)
            KEEP.append(used)
        assert (m.clients, m.unused_clients) == (1, 1)
        assert m.counts["unused_clients"] == 1
        assert [v.kind for v in m.violations] == ["established", "clients"]
        used.close()

    @pytest.mark.sockhygiene(unused_clients="none")
    def test_bad_value():
        pass
''')


def test_unused_clients_limit_from_marker_fixture_and_ini(pytester, run):
    pytester.makepyfile(test_lim=LIMIT_SETTINGS)
    result = run("--sockhygiene-report=r.json")
    assert errors_of(result) == ["test_lim.py::test_bad_value", "test_lim.py::test_fixture_set_limits",
                                 "test_lim.py::test_marker"]
    result.stdout.fnmatch_lines(["*test_lim.py::test_marker broke its socket limits*",
                                 "*unused_clients: 1 > limit 0*",
                                 "*urllib3.PoolManager, created at test_lim.py:6 in test_marker (still open)*"])
    result.stdout.fnmatch_lines(["*test_lim.py::test_fixture_set_limits broke*", "*unused_clients: 1 > limit 0*"])
    result.stdout.fnmatch_lines(["*test_bad_value*limit 'unused_clients' must be a non-negative integer or None*"])
    result.assert_outcomes(passed=4, errors=3)

    result = run("-o", "sockhygiene_unused_clients=1", "-k", "marker or measure")
    assert errors_of(result) == ["test_lim.py::test_marker"]  # the marker's 0 wins over the ini's 1
    result = run("-o", "sockhygiene_unused_clients=-1", "-k", "marker")
    result.stderr.fnmatch_lines(["*sockhygiene_unused_clients*non-negative integer or 'unlimited'*"])


def test_the_finalizer_rule_finds_a_del_a_few_frames_up():
    """``clients._in_finalizer`` (a plain function, no pytester): a ``__del__`` that closes a client through a
    method of its own is found within the frames it looks at (12, no longer the 40 of pytest's whole stack at
    every close); a close from the test's own code is not a finalizer's."""
    from pytest_sockhygiene import clients

    seen: list[bool] = []

    def closed() -> None:  # stands in for ClientRegistry.closed
        seen.append(clients._in_finalizer())

    def close_wrapper() -> None:  # stands in for the tracker's wrapper of close()
        closed()

    class Holder:
        def shutdown(self) -> None:
            close_wrapper()

        def __del__(self) -> None:
            self.shutdown()

    close_wrapper()
    Holder()  # freed at once by reference counting: __del__ -> shutdown -> close_wrapper
    assert seen == [False, True]
    assert clients._FINALIZER_DEPTH < 20  # not pytest's whole stack


def test_the_finalizer_rule_stops_at_pytests_call_of_the_test():
    """``clients._in_finalizer`` stops at a frame the plugin names as pytest's call into a test or fixture
    (``end_finalizer_walk_at``): a close from the test's own code meets it two or three frames up instead of walking
    all twelve. A ``__del__`` above that frame is still found; one below it is not looked for (a finalizer does
    not call pytest's test runner)."""
    from pytest_sockhygiene import clients

    seen: list[bool] = []

    def closed() -> None:  # stands in for ClientRegistry.closed
        seen.append(clients._in_finalizer())

    def close_wrapper() -> None:  # stands in for the tracker's wrapper of close()
        closed()

    def runner(body: Any) -> None:  # stands in for pytest's pytest_pyfunc_call
        body()

    class Holder:
        def __del__(self) -> None:
            runner(close_wrapper)

    class Inner:
        def __del__(self) -> None:
            close_wrapper()

    saved = clients._walk_ends
    clients.end_finalizer_walk_at([runner.__code__])
    try:
        runner(close_wrapper)
        runner(Inner)  # Inner() is freed inside the runner: its __del__ is above it
        Holder()  # the __del__ is below the runner's frame: the walk ends first
    finally:
        clients._walk_ends = saved
    assert seen == [False, True, False]


def test_a_subclass_whose_own_exit_never_closes_the_client_is_closed_by_its_with(pytester, run):
    """starlette's ``TestClient.__exit__`` stops its app's portal and never calls httpx's ``__exit__`` nor
    ``close()``: every ``with TestClient(app) as client:`` counted as an unused client "still open", told to use
    ``with`` (found running starlette's suite: 1,182 unused clients in 1,132 tests). A subclass's own ``__exit__``
    and ``__aexit__`` end the client as the base's do."""
    pytester.makepyfile(test_sub=dedent("""
        import asyncio
        import httpx

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        class AppClient(httpx.Client):
            def __init__(self):
                super().__init__(transport=httpx.WSGITransport(app=app), base_url="http://app")

            def __enter__(self):
                return self

            def __exit__(self, *exc):  # stops what the app runs on; the client itself is left as it is
                return None

        class AsyncAppClient(httpx.AsyncClient):
            async def __aexit__(self, *exc):
                return None

        def test_with():
            with AppClient() as client:
                assert client.get("/").text == "ok"

        def test_async_with():
            async def main():
                async with AsyncAppClient() as client:
                    assert not client.is_closed
            asyncio.run(main())

        def test_left_open():
            assert AppClient().get("/").text == "ok"
    """))
    result = run("-o", "sockhygiene_unused_clients=0", "-p", "no:randomly")
    assert errors_of(result) == ["test_sub.py::test_left_open"]
    assert "unused clients: 1 left unclosed by 1 test" in result.stdout.str()


IN_PROCESS_ADAPTER = dedent('''
    import http.client

    import requests
    from requests.adapters import BaseAdapter

    KEEP = []


    class InProcess(BaseAdapter):
        """Answers by calling the application in this process (DRF's DjangoTestAdapter): no socket of its own."""

        def __init__(self, app):
            super().__init__()
            self.app = app

        def send(self, request, **kwargs):
            response = requests.Response()
            response.status_code, response._content, response.url = 200, self.app(), request.url
            return response

        def close(self):
            pass


    class ApiClient(requests.Session):  # DRF's RequestsClient: mounts its adapter in its own __init__
        def __init__(self, app):
            super().__init__()
            self.mount("http://", InProcess(app))
            self.mount("https://", InProcess(app))


    def test_the_app_calls_a_service_and_closes_its_connection(server):
        def app():  # the application under test calls an upstream service, and closes the connection
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("GET", "/")
            body = conn.getresponse().read()
            conn.close()
            return body

        client = ApiClient(app)
        KEEP.append(client)  # never closed: its adapters opened nothing
        assert client.get("http://testserver/").status_code == 200
''')


def test_a_session_whose_in_process_adapter_was_mounted_after_init_claims_none_of_the_apps_connections(
        pytester, run):
    """A ``requests.Session`` subclass that mounts an in-process adapter in its own ``__init__`` (DRF's
    ``RequestsClient``), after ``Session.__init__`` built the default adapters: the connection the application
    behind it opened and closed was the session's, and the session an unclosed client that opened connections -
    ``clients: 1 > limit 0`` (found on django-rest-framework's suite). It is an unused client; the app's
    connection is the test's, counted as any other."""
    pytester.makepyfile(test_in_process=IN_PROCESS_ADAPTER)
    result = run("--sockhygiene-report=r.json")
    result.assert_outcomes(passed=1)
    assert _counts(pytester) == {"test_the_app_calls_a_service_and_closes_its_connection": (0, 1)}
    record = json.loads((pytester.path / "r.json").read_text())["tests"][0]
    assert record["counts"]["connections"] == 1, record
