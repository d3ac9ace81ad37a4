"""Client tracking for httpx and httpx2: unclosed clients, pool ownership, pooled CLOSE_WAIT. Real server."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from pytest_sockhygiene.verdict import MADE_INSIDE_ADVICE

from conftest import ANYIO_BACKEND, dedent, errors_of, failure_block, installed_library, lingered

pytest.importorskip("httpx")


def test_unclosed_clients_of_every_kind(pytester, run):
    """Used and never closed (kept, or dropped and collected), async, a subclass: ``clients``. Never used, or
    behind a mock transport: ``unused_clients``, counted but within the default (unlimited) limit."""
    pytester.makepyfile(test_c=ANYIO_BACKEND + "\n" + dedent("""
        import gc, json
        import httpx
        KEEP = []

        def test_sync_used_never_closed(server):
            client = httpx.Client()
            client.get(server.url)
            KEEP.append(client)

        @pytest.mark.anyio
        async def test_async_used_never_closed(server):
            client = httpx.AsyncClient()
            await client.get(server.url)
            KEEP.append(client)

        @pytest.mark.anyio
        async def test_async_never_used(server):
            KEEP.append(httpx.AsyncClient())

        def test_dropped_and_collected(server):
            client = httpx.Client()
            client.get(server.url)
            del client
            gc.collect()

        def test_mock_transport_is_not_counted():
            client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
            client.get("http://example.invalid/")
            KEEP.append(client)

        class MyClient(httpx.Client):
            pass

        def test_subclass_never_closed(server):
            client = MyClient()
            client.get(server.url)
            KEEP.append(client)

        def test_last(server):
            pass
    """))
    result = run("-W", "ignore::ResourceWarning", "-p", "no:unraisableexception", "--sockhygiene-report=r.json")
    assert errors_of(result) == [
        "test_c.py::test_async_used_never_closed",
        "test_c.py::test_dropped_and_collected",
        "test_c.py::test_subclass_never_closed",
        "test_c.py::test_sync_used_never_closed",
    ]
    result.stdout.fnmatch_lines([
        "*test_c.py::test_sync_used_never_closed broke its socket limits*",
        "*established: 1 > limit 0*",
        "*ESTABLISHED 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_c.py:13 in test_sync_used_never_closed "
        "(in the pool of httpx.Client created at test_c.py:12*",
        "*clients: 1 > limit 0 - client(s) created and never closed*",
        "*httpx.Client, created at test_c.py:12 in test_sync_used_never_closed (still open)*",
    ])
    result.stdout.fnmatch_lines(["*test_dropped_and_collected broke*", "*clients: 1 > limit 0*",
                                 "*httpx.Client, created at test_c.py:27*(garbage-collected without being closed)*"])
    result.stdout.fnmatch_lines(["*test_c.MyClient (httpx.Client), created at test_c.py:41*"])
    out = result.stdout.str()
    async_block = out[out.index("test_async_used_never_closed broke"):]
    assert "clients: 1 > limit 0" in async_block.split("broke")[1]
    counts = {t["nodeid"].split("::")[1]: (t["counts"]["clients"], t["counts"]["unused_clients"])
              for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    assert counts == {"test_sync_used_never_closed": (1, 0), "test_async_used_never_closed": (1, 0),
                      "test_async_never_used": (0, 1), "test_dropped_and_collected": (1, 0),
                      "test_mock_transport_is_not_counted": (0, 1), "test_subclass_never_closed": (1, 0),
                      "test_last": (0, 0)}


CLIENT_FIXTURES = dedent("""
    import httpx, pytest

    @pytest.fixture(scope="session")
    def session_client(server):
        with httpx.Client() as client:
            yield client

    @pytest.fixture(scope="module")
    def module_client(server):
        with httpx.Client() as client:
            yield client

    @pytest.fixture
    def function_client(server):
        client = httpx.Client()
        yield client
        client.close()

    @pytest.mark.parametrize("i", range(10))
    def test_session_client_reused(session_client, server, i):
        assert session_client.get(server.url).status_code == 200

    @pytest.mark.parametrize("i", range(3))
    def test_module_client_reused(module_client, server, i):
        module_client.get(server.url)

    def test_function_fixture_closes_in_teardown(function_client, server):
        function_client.get(server.url)
""")


def test_reused_clients_are_the_good_pattern(pytester, run):
    pytester.makepyfile(test_good=CLIENT_FIXTURES)
    result = run()
    result.assert_outcomes(passed=14)
    result.stdout.fnmatch_lines(["*14 tests checked, all clean*"])


def test_lazy_session_client_pool_is_the_fixtures_even_after_reconnect(pytester, run):
    """The session client's pool opens (and, after the server dropped it, re-opens) a connection inside
    whichever test uses it: that connection is the client's, never the test's."""
    pytester.makeconftest(dedent("""
        import httpx, pytest
        from pytest_sockhygiene.testing import serve_http

        @pytest.fixture(scope="session")
        def server():
            with serve_http(keep_alive=0.05) as s:
                yield s

        @pytest.fixture(scope="session")
        def client():
            client = httpx.Client()
            yield client
            client.close()
    """))
    pytester.makepyfile(test_lazy=dedent("""
        import pytest
        from pytest_sockhygiene.testing import wait_for

        @pytest.mark.parametrize("i", range(4))
        def test_uses_client(client, server, i):
            client.get(server.url)
            assert wait_for(lambda: server.open_connections == 0, 5)  # server drops the idle connection
    """))
    result = run()
    result.assert_outcomes(passed=4)


LAZY_APP = dedent("""
    # application code: one client for the process's life, made as the module is imported (a Django views.py)
    import requests

    def _make():
        return requests.Session()

    SESSION = _make()

    def fetch(url):
        return SESSION.get(url, timeout=5).status_code
""")

LAZY_SUITE = dedent("""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest
    import requests

    KEEP = []

    @pytest.fixture(scope="session")
    def app_server(server):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                import lazyapp_{which}  # imported by the first request, in the server's thread
                body = str(lazyapp_{which}.fetch(server.url)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{{httpd.server_port}}"
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    def test_imports_the_app(server):
        import lazyapp_{which}  # imported here, by the test
        assert lazyapp_{which}.fetch(server.url) == 200

    def test_through_the_app_server(app_server):
        with requests.Session() as session:
            assert session.get(app_server).text == "200"

    def test_keeps_its_own_session(server):
        session = requests.Session()
        session.get(server.url)
        KEEP.append(session)
""")


@pytest.mark.parametrize("first", ["test", "server thread"])
def test_a_module_level_client_imported_at_run_time_is_the_modules(pytester, run, first):
    """A client made by module-level code as its module is imported at run time (an app's views, imported by
    the first request) is the module's, as one imported at collection is: not the importing test's leak, nor a
    session-level leak of the server fixture whose thread imported it - the verdict depended on which test ran
    first (pytest-django's live_server: every test passed and the run failed). A test's own client is still its."""
    which = "a" if first == "test" else "b"
    pytester.makepyfile(**{f"lazyapp_{which}": LAZY_APP, "test_lazy": LAZY_SUITE.format(which=which)})
    order = ["test_imports_the_app", "test_through_the_app_server"]
    if first == "server thread":
        order.reverse()
    result = run("-p", "no:randomly", *(f"test_lazy.py::{name}" for name in order),
                 "test_lazy.py::test_keeps_its_own_session")
    assert errors_of(result) == ["test_lazy.py::test_keeps_its_own_session"]
    result.assert_outcomes(passed=3, errors=1)
    out = result.stdout.str()
    assert "session-level leaks" not in out
    assert f"lazyapp_{which}.py" not in out  # neither a leak nor an unused client of any test
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the one error, not a session-level leak


def test_pooled_close_wait_gets_the_precise_diagnosis(pytester, run):
    """A pooled connection the server's keep-alive timeout ended while the client kept it: the note names the
    client's idle limit under its library's name - httpx's ``keepalive_expiry``, aiohttp's connector
    ``keepalive_timeout`` (the note called aiohttp's httpx's; found running aiohttp beside the plugin)."""
    with_aiohttp = importlib.util.find_spec("aiohttp") is not None
    pytester.makepyfile(test_cw=dedent("""
        import asyncio
        import httpx, pytest
        from pytest_sockhygiene.testing import serve_http, wait_for
        KEEP = []

        @pytest.fixture(scope="module")
        def impatient():
            with serve_http(keep_alive=0.05) as s:
                yield s

        def test_pool_outlives_server_keepalive(impatient):
            client = httpx.Client()  # keepalive_expiry defaults to 5 s: longer than the server's 0.05 s
            client.get(impatient.url)
            KEEP.append(client)
            assert wait_for(lambda: impatient.accepted == 1 and impatient.open_connections == 0, 5)
    """) + (dedent("""
        def test_aiohttp_pool_outlives_server_keepalive(impatient):
            import aiohttp
            loop = asyncio.new_event_loop()
            KEEP.append(loop)

            async def main():
                session = aiohttp.ClientSession()  # keepalive_timeout 15 s
                KEEP.append(session)
                async with session.get(impatient.url) as response:
                    await response.read()

            loop.run_until_complete(main())
            assert wait_for(lambda: impatient.accepted == 2 and impatient.open_connections == 0, 5)
    """) if with_aiohttp else ""))
    # (a subprocess: the aiohttp session and loop it keeps would be collected in a later test of this process)
    result = run("-p", "no:asyncio", "-W", "ignore::ResourceWarning", subprocess=True)
    assert errors_of(result) == ["test_cw.py::test_aiohttp_pool_outlives_server_keepalive"] * with_aiohttp + [
        "test_cw.py::test_pool_outlives_server_keepalive"]
    result.stdout.fnmatch_lines([
        "*close_wait: 1 > limit 0*",
        "*CLOSE_WAIT 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_cw.py:13 in test_pool_outlives_server_keepalive"
        " (in the pool of httpx.Client created at test_cw.py:12 in test_pool_outlives_server_keepalive,"
        " keepalive_expiry=5s; the server closed this idle pooled connection first (its keep-alive timeout ran"
        " out before the client's own idle limit, or it shut down), and the pool only notices on its next"
        " request)*",
        "*clients: 1 > limit 0*",
    ])
    if with_aiohttp:
        block = failure_block(result, "test_cw.py::test_aiohttp_pool_outlives_server_keepalive")
        assert "(in the pool of aiohttp.ClientSession created at test_cw.py:" in block
        assert ", keepalive_timeout=15s; the server closed this idle pooled connection first" in block, block
        assert "keepalive_expiry=" not in block


def test_a_response_left_unread_is_told_from_an_idle_pooled_connection(pytester, run):
    """The server answered and closed, and the test never read the response to the end nor closed it: the
    client's side sits in CLOSE_WAIT, but no keep-alive ran out - the connection is not idle. httpx's pool says
    the connection is busy (httpcore's ``is_idle()``); where no pool holds it, the bytes still waiting in the
    socket say it. Both get the response's fix, not ``keepalive_expiry`` (found on a pytest-django project,
    whose server closes after a streamed response)."""
    pytester.makepyfile(test_unread=dedent("""
        import http.client
        import httpx
        from pytest_sockhygiene.testing import wait_for
        KEEP = []
        # a 32 KiB body with Connection: close: more than http.client reads with the headers (8 KiB), less than
        # a receive window, so the server's close follows it at once
        PATH = "/close?size=32768"

        def test_httpx_stream_never_read(server):
            client = httpx.Client()
            response = client.send(client.build_request("GET", server.url + PATH), stream=True)
            KEEP.extend([client, response])
            assert wait_for(lambda: server.open_connections == 0, 5)  # the server has closed its side

        def test_aiohttp_response_never_read(server):
            import asyncio
            import aiohttp

            async def main():
                session = aiohttp.ClientSession()
                # aiohttp reads a body as it comes, up to its buffer: 1 MiB with the server's close stays in flight
                KEEP.extend([session, await session.get(server.url + "/close?size=1048576")])
            loop = asyncio.new_event_loop()
            loop.run_until_complete(main())
            KEEP.append(loop)

        def test_http_client_response_never_read(server):
            conn = http.client.HTTPConnection(server.host, server.port)
            conn.request("GET", PATH)
            KEEP.extend([conn, conn.getresponse()])  # headers read, body left in the socket
            assert wait_for(lambda: server.open_connections == 0, 5)
    """))
    result = run("-p", "no:randomly", "-W", "ignore::ResourceWarning", subprocess=True)  # (aiohttp kept: see above)
    assert errors_of(result) == ["test_unread.py::test_aiohttp_response_never_read",
                                 "test_unread.py::test_http_client_response_never_read",
                                 "test_unread.py::test_httpx_stream_never_read"]
    fix = ("fix: the server answered and closed, and the response was never read to the end nor closed: read it "
           "to the end, or close it (`with client.stream(...)`, `response.close()`; requests: `with "
           "requests.get(url, stream=True) as r`).")
    streamed = failure_block(result, "test_unread.py::test_httpx_stream_never_read")
    assert "keepalive_expiry=5s; held by a request, a response not yet read to the end or closed, or an open " \
        "websocket)" in streamed
    assert "idle pooled connection" not in streamed
    assert fix in streamed
    aio = failure_block(result, "test_unread.py::test_aiohttp_response_never_read")  # (its connector's _acquired)
    assert "keepalive_timeout=15s; held by a request, a response not yet read to the end or closed, or an open " \
        "websocket)" in aio, aio
    unread = failure_block(result, "test_unread.py::test_http_client_response_never_read")
    assert "a response never read to the end: " in unread and " byte(s) the server sent before it closed still " \
        "wait unread" in unread
    assert fix in unread


def test_a_connection_a_response_still_holds_gets_the_responses_fix(pytester, run):
    """``requests.get(url, stream=True)`` whose response is kept and never read nor closed: its session is closed,
    the connection is checked out of the pool by the response (urllib3 lists only idle ones), so the test holds
    an ESTABLISHED connection no client's pool explains. The fix said "close the client or socket" - there is no
    client left to close (found as an S3 body never read, with boto3). The note says a response holds it, and the
    fix is the response's."""
    pytester.makepyfile(test_held=dedent("""
        import requests
        KEEP = []

        def test_streamed_response_kept(server):
            KEEP.append(requests.get(server.url, stream=True))  # never read, never closed

        def test_streamed_response_closed(server):
            with requests.get(server.url, stream=True) as response:
                assert response.status_code == 200

        def test_read_response_kept_after_its_session_closed(server):
            with requests.Session() as session:
                response = session.get(server.url)  # read to the end: its connection went back to the pool
            KEEP.append(response)  # the closed session dropped the pool unclosed; the response references it
    """))
    result = run("-p", "no:randomly")
    assert errors_of(result) == ["test_held.py::test_read_response_kept_after_its_session_closed",
                                 "test_held.py::test_streamed_response_kept"]
    kept_pool = failure_block(result, "test_held.py::test_read_response_kept_after_its_session_closed")
    assert "and in none of its pools now" in kept_pool and "do not keep responses once their client is closed" \
        in kept_pool
    block = failure_block(result, "test_held.py::test_streamed_response_kept")
    assert "(opened by a request of a requests.Session, and in none of its pools now: held by a response not yet " \
           "read to the end or closed, or idle in a pool the client dropped (closed or evicted) that a kept " \
           "response still references)" in block
    assert "fix: a response, or the connection pool a kept response references, holds the connection: read each " \
           "response to the end and close it" in block
    assert "close the client or socket when done" not in block


def test_requests_sent_through_a_pool_a_poolmanager_handed_out_are_its_own(pytester, run):
    """botocore asks its urllib3 PoolManager for ``connection_from_url`` and sends through the pool's own
    ``urlopen``: no request of the manager was seen, so a dropped boto3 client read as an unused client ("never
    opened a connection") and a reused one as "an API without a connection pool" (found with boto3 against moto's
    server). Such a request is the manager's now, counted once - also when the manager's own ``urlopen`` runs."""
    pytester.makepyfile(test_pools=dedent("""
        import pytest
        import urllib3
        KEEP = []

        def test_kept(server):
            manager = urllib3.PoolManager()
            pool = manager.connection_from_url(server.url)
            assert pool.urlopen("GET", "/").status == 200
            KEEP.append(manager)

        def test_dropped(server):
            manager = urllib3.PoolManager()
            assert manager.connection_from_url(server.url).urlopen("GET", "/").status == 200

        def test_cleared(server):
            manager = urllib3.PoolManager()
            assert manager.connection_from_url(server.url).urlopen("GET", "/").status == 200
            manager.clear()

        @pytest.mark.sockhygiene(connections=1)
        def test_requests_counted_once(server):
            with urllib3.PoolManager() as manager:
                pool = manager.connection_from_url(server.url + "/close")
                for _ in range(2):
                    assert pool.urlopen("GET", "/close").status == 200
                    assert manager.request("GET", server.url + "/close").status == 200
    """))
    result = run("--sockhygiene-report=r.json", "-o", "sockhygiene_time_wait=unlimited", "-p", "no:randomly")
    assert errors_of(result) == ["test_pools.py::test_dropped", "test_pools.py::test_kept",
                                 "test_pools.py::test_requests_counted_once"]
    kept = failure_block(result, "test_pools.py::test_kept")
    assert "(in the pool of urllib3.PoolManager created at test_pools.py:" in kept
    assert "clients: 1 > limit 0" in kept
    dropped = failure_block(result, "test_pools.py::test_dropped")
    assert "urllib3.PoolManager, created at test_pools.py:" in dropped and "(garbage-collected without being " \
        "closed)" in dropped
    counted = failure_block(result, "test_pools.py::test_requests_counted_once")
    assert "connections: 4 > limit 1" in counted
    assert "1 urllib3.PoolManager created at test_pools.py:" in counted and "(4 requests each; its pool opened 4 " \
        "connections to 127.0.0.1:" in counted, counted


def test_httpx2_tracked_for_real(pytester, run):
    pytest.importorskip("httpx2")
    pytester.makepyfile(test_h2=dedent("""
        import httpx2
        KEEP = []

        def test_unclosed(server):
            c = httpx2.Client()
            c.get(server.url)
            KEEP.append(c)

        def test_closed(server):
            with httpx2.Client() as c:
                c.get(server.url)

        def test_burst(server):
            for _ in range(8):
                httpx2.get(server.url)

        def test_last(server):
            pass
    """))
    result = run()
    assert errors_of(result) == ["test_h2.py::test_burst", "test_h2.py::test_unclosed"]
    result.stdout.fnmatch_lines(["*httpx2.Client, created at test_h2.py:5 in test_unclosed (still open)*"])
    burst = failure_block(result, "test_h2.py::test_burst")
    n = lingered(burst, 8, result)  # exact unless the kernel reset a TIME_WAIT entry meanwhile
    # the clients of the lingering connections, made inside httpx2.get (a client per call)
    assert f"{n} httpx2.Client created inside httpx2.get(), called at test_h2.py:15" in burst


def test_client_is_not_kept_alive_by_the_plugin(pytester, run):
    pytester.makepyfile(test_weak=dedent("""
        import gc, weakref, httpx, pytest

        @pytest.mark.sockhygiene(clients=None)
        def test_weak(server):
            client = httpx.Client()
            ref = weakref.ref(client)
            client.close()
            del client
            gc.collect()
            assert ref() is None
    """))
    run().assert_outcomes(passed=1)


WRAPPING_TRANSPORT = dedent('''
    import httpx
    import pytest

    class Retrying(httpx.BaseTransport):
        """Wraps httpx's own transport (to retry, to log): its pool is inside, in an attribute that is a
        transport (as hishel's CacheTransport keeps httpx's in ``next_transport``)."""

        def __init__(self):
            self._inner = httpx.HTTPTransport()

        def handle_request(self, request):
            return self._inner.handle_request(request)

        def close(self):
            self._inner.close()

    class AsyncRetrying(httpx.AsyncBaseTransport):
        def __init__(self):
            self.next_transport = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request):
            return await self.next_transport.handle_async_request(request)

        async def aclose(self):
            await self.next_transport.aclose()

    class Sharded(httpx.BaseTransport):
        """Keeps httpx's transports in a list: no attribute of its is a transport, so its pool stays hidden."""

        def __init__(self):
            self._shards = [httpx.HTTPTransport()]

        def handle_request(self, request):
            return self._shards[0].handle_request(request)

        def close(self):
            for shard in self._shards:
                shard.close()

    class ShardedPool:
        @pytest.hookimpl(tryfirst=True)
        def pytest_sockhygiene_client_sockets(self, client):
            transport = getattr(client, "_transport", None)
            if not isinstance(transport, Sharded):
                return None
            return [c._connection._network_stream.get_extra_info("socket")
                    for c in transport._shards[0]._pool.connections if c._connection is not None]
''')


WRAPPED_CONFTEST = dedent('''
    import pytest
    from pytest_sockhygiene.testing import serve_http
    from retrying import ShardedPool

    def pytest_configure(config):
        if WITH_HOOK and config.pluginmanager.has_plugin("sockhygiene"):
            config.pluginmanager.register(ShardedPool(), "sharded-pool")

    @pytest.fixture(scope="session")
    def server():
        with serve_http(keep_alive=120.0) as s:
            yield s
''')

WRAPPED_TESTS = dedent('''
    import asyncio
    import gc

    import httpx
    import pytest
    from retrying import AsyncRetrying, Retrying, Sharded
    KEEP = []

    @pytest.fixture(scope="session")
    def api(server):
        with httpx.Client(base_url=server.url, transport=TRANSPORT()) as client:
            yield client

    def test_session_client(api):
        assert api.get("/").status_code == 200

    def test_own_client_left_open(server):
        client = httpx.Client(base_url=server.url, transport=TRANSPORT())
        KEEP.append(client)
        assert client.get("/").status_code == 200
''')
"""A session client and a test's own client left open, both with the transport ``TRANSPORT`` (the test's own client
is created at line 18); a test adds its own after them."""


def wrapped_suite(pytester: pytest.Pytester, transport: str, with_hook: bool = False, more: str = "") -> None:
    pytester.makepyfile(retrying=WRAPPING_TRANSPORT)
    pytester.makeconftest(WRAPPED_CONFTEST.replace("WITH_HOOK", str(with_hook)))
    pytester.makepyfile(test_w=WRAPPED_TESTS.replace("TRANSPORT", transport) + dedent(more))


def test_a_transport_wrapping_httpx_own_has_its_pool(pytester, run):
    """A client whose transport wraps httpx's own (hishel's ``CacheClient`` builds one for every user; a retrying
    transport) has that transport's pool: left open, it counts under ``clients`` with its connection in its pool;
    dropped unclosed after a request, it is "garbage-collected without being closed", as a plain client is. It was
    an unused client, its connection nobody's, and dropped it passed (found running hishel's suite). A session
    client with such a transport stays the fixture's."""
    pytest.importorskip("httpcore")
    wrapped_suite(pytester, "Retrying", more='''

        def test_own_client_dropped(server):
            client = httpx.Client(base_url=server.url, transport=Retrying())
            assert client.get("/").status_code == 200
            del client
            gc.collect()

        def test_async_client_left_open(server):
            async def main():
                client = httpx.AsyncClient(base_url=server.url, transport=AsyncRetrying())
                KEEP.append(client)
                assert (await client.get("/")).status_code == 200

            loop = asyncio.new_event_loop()
            KEEP.append(loop)  # (kept open with the client: its connection stays open)
            loop.run_until_complete(main())

        def test_closed_client(server):
            with httpx.Client(base_url=server.url, transport=Retrying()) as client:
                assert client.get("/").status_code == 200
    ''')
    result = run("--sockhygiene-report=r.json")
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t["counts"] for t in report["tests"]}
    assert sorted(errors_of(result)) == ["test_w.py::test_async_client_left_open", "test_w.py::test_own_client_dropped",
                                         "test_w.py::test_own_client_left_open"]
    assert tests["test_session_client"]["established"] == 0
    for name in ("test_own_client_left_open", "test_own_client_dropped", "test_async_client_left_open"):
        assert (tests[name]["clients"], tests[name]["unused_clients"]) == (1, 0), (name, tests[name])
    assert tests["test_own_client_left_open"]["established"] == 1
    result.stdout.fnmatch_lines(["*ESTABLISHED * (in the pool of httpx.Client created at test_w.py:18 in "
                                 "test_own_client_left_open*"])
    result.stdout.fnmatch_lines(["*httpx.Client, created at test_w.py:22 in test_own_client_dropped "
                                 "(garbage-collected without being closed)*"])
    result.stdout.fnmatch_lines(["*ESTABLISHED * (in the pool of httpx.AsyncClient created at test_w.py:29 in main*"])
    assert tests["test_closed_client"]["connections"] == 1


@pytest.mark.parametrize("with_hook", [True, False], ids=["hook", "no-hook"])
def test_a_client_sockets_hook_shows_the_pool_a_transport_hides(pytester, run, with_hook):
    """docs/clients.md: a transport that keeps httpx's own where no attribute of its is a transport (in a list)
    hides its pool. With a ``client_sockets`` hook, a session client's connection is that client's (clean), and a
    test's own client left open counts under ``clients`` with its connection in its pool. Without it, the test's
    own client counts as unused; the session client's connection is the fixture's all the same (its value holds
    the pool: ``holders.py``)."""
    pytest.importorskip("httpcore")
    wrapped_suite(pytester, "Sharded", with_hook)
    result = run("--sockhygiene-report=r.json")
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t["counts"] for t in report["tests"]}
    own = tests["test_own_client_left_open"]
    assert own["established"] == 1
    assert errors_of(result) == ["test_w.py::test_own_client_left_open"]
    # the session client's connection is the fixture's either way: its value holds the pool (holders.py)
    assert tests["test_session_client"]["established"] == 0
    if with_hook:
        assert (own["clients"], own["unused_clients"]) == (1, 0)
        result.stdout.fnmatch_lines(["*ESTABLISHED * (in the pool of httpx.Client created at test_w.py:18 in "
                                     "test_own_client_left_open*"])
    else:
        assert (own["clients"], own["unused_clients"]) == (0, 1)


WEBSOCKET_LEFT_OPEN = dedent("""
    import asyncio
    import threading

    import aiohttp
    import pytest
    from aiohttp import web

    KEEP = []


    @pytest.fixture(scope="session")
    def ws_url():
        opened = set()

        async def handler(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            opened.add(ws)
            async for _ in ws:  # until the client goes
                pass
            opened.discard(ws)
            return ws

        async def stop(runner):
            for ws in list(opened):  # (the one a test left open: else the runner waits for it to end)
                await ws.close()
            await runner.cleanup()

        loop = asyncio.new_event_loop()
        ready = threading.Event()
        box = {}

        async def serve():
            app = web.Application()
            app.router.add_get("/ws", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = site._server.sockets[0].getsockname()[1]
            box["runner"] = runner
            ready.set()

        thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
        thread.start()
        assert ready.wait(10)
        yield f"http://127.0.0.1:{box['port']}/ws"
        asyncio.run_coroutine_threadsafe(stop(box["runner"]), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


    def test_a_session_per_websocket(ws_url):
        async def main():
            for _ in range(6):
                async with aiohttp.ClientSession() as session:
                    ws = await session.ws_connect(ws_url)
                    await ws.close()

        asyncio.run(main())


    def test_leaves_a_websocket_open(ws_url):
        async def main():
            session = aiohttp.ClientSession()
            KEEP.append((session, await session.ws_connect(ws_url)))

        loop = asyncio.new_event_loop()
        KEEP.append(loop)  # (kept open with the session: the websocket stays connected)
        loop.run_until_complete(main())
""")


def test_websockets_are_told_apart_from_responses_and_from_servers_that_keep_nothing_alive(pytester, run):
    """An aiohttp websocket left open holds its connection as an acquired one, as a request or an unreleased
    response does: the item says so, and the fix names the websocket too (python-socketio's ``AsyncClient`` left
    connected was told only to read a response to the end). A session per websocket: the server ends each
    websocket's connection first by the protocol, which says nothing of keep-alive (socket.io clients per message
    were told the server keeps none alive)."""
    pytest.importorskip("aiohttp")
    pytester.makepyfile(test_ws=WEBSOCKET_LEFT_OPEN)
    # (a subprocess: the websocket the inner test keeps open must not outlive its run in this process)
    result = run("-W", "ignore::ResourceWarning", "-W", "ignore::DeprecationWarning", subprocess=True)
    burst = failure_block(result, "test_ws.py::test_a_session_per_websocket")
    assert "time_wait: " in burst, burst
    # the server ends a websocket's connection first, by the protocol: nothing to say of keep-alive
    assert "6 aiohttp.ClientSession created at test_ws.py:" in burst and "(1 request each; websockets among them, " \
        "whose connection the server ends first)" in burst, burst
    assert "keeps none alive" not in burst, burst
    block = failure_block(result, "test_ws.py::test_leaves_a_websocket_open")
    assert "established: 1 > limit 0" in block, block
    assert "or an open websocket)" in block, block
    assert "A websocket open on it (aiohttp's `ws_connect`, a socket.io client never disconnected): close it " \
           "(`await ws.close()`, or disconnect the client built on it)." in block, block


DROPLIB = dedent('''
    """A library that makes a client of its own inside a call and drops it unclosed (engineio's ``Client``: a
    ``requests.Session`` for its handshake, set to None at disconnect)."""
    import contextlib

    import requests


    class Socket:
        def connect(self, url):
            self.http = requests.Session()
            self.http.get(url).close()

        def disconnect(self):
            self.http = None  # dropped, never closed


    @contextlib.contextmanager
    def session():
        yield requests.Session()  # never closed either


    class AsyncSocket(Socket):
        """Inherits ``connect`` (zeep's ``AsyncClient`` runs ``Client.__init__``)."""
''')


def test_a_client_a_library_made_inside_a_call_names_that_call(pytester, run):
    """A client made by library code inside the call the test's line made is "created inside that call, called at
    the line", and the fix says what closes such a client, not only "use with": the test never made a
    ``requests.Session`` and closed what it did make (python-socketio's suite). A library's context manager is
    named, not contextlib's ``__enter__``; an inherited method by the class of the object it ran for. A client the
    test's line made is named as before."""
    installed_library(pytester, "droplib", DROPLIB)
    pytester.makepyfile(test_d=dedent('''
        import gc

        import requests

        import droplib


        def test_connect_and_disconnect(server):
            s = droplib.Socket()
            s.connect(server.url)
            s.disconnect()
            gc.collect()

        def test_a_libraries_context_manager(server):
            with droplib.session() as http:
                http.get(server.url).close()

        def test_made_here(server):
            http = requests.Session()
            http.get(server.url).close()

        def test_an_inherited_method(server):
            s = droplib.AsyncSocket()
            s.connect(server.url)
            s.disconnect()
            gc.collect()
    '''))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=100")
    assert sorted(errors_of(result)) == ["test_d.py::test_a_libraries_context_manager",
                                         "test_d.py::test_an_inherited_method",
                                         "test_d.py::test_connect_and_disconnect", "test_d.py::test_made_here"]
    # a method the object's class inherits is named by that class, the one the test's line called (found with
    # zeep's AsyncClient, named "zeep.Client.__init__")
    inherited = failure_block(result, "test_d.py::test_an_inherited_method")
    assert re.search(r"requests\.Session, created inside droplib\.AsyncSocket\.connect\(\), called at test_d\.py:24 "
                     r"in test_an_inherited_method", inherited), inherited
    dropped = failure_block(result, "test_d.py::test_connect_and_disconnect")
    assert re.search(r"requests\.Session, created inside droplib\.Socket\.connect\(\), called at test_d\.py:10 in "
                     r"test_connect_and_disconnect \(garbage-collected without being closed\)", dropped), dropped
    assert MADE_INSIDE_ADVICE in dropped
    managed = failure_block(result, "test_d.py::test_a_libraries_context_manager")
    assert "requests.Session, created inside droplib.session(), called at test_d.py:15 in " in managed, managed
    assert "contextlib" not in managed
    made = failure_block(result, "test_d.py::test_made_here")
    assert "requests.Session, created at test_d.py:19 in test_made_here" in made, made
    assert MADE_INSIDE_ADVICE not in made


TASKLIB = dedent('''
    """A library whose call runs its work in a task of its own, which makes a client and drops it unclosed (gql's
    websocket transport under ``asyncio.wait_for``, which makes a task before Python 3.12)."""
    import asyncio

    import httpx

    KEEP = []


    async def _handshake(url):
        http = httpx.AsyncClient()
        await http.get(url)  # and never closed: the handshake "failed"


    async def connect(url):
        await asyncio.get_running_loop().create_task(_handshake(url))
''')


def test_a_client_made_in_a_task_a_library_call_started_names_that_call(pytester, run):
    """The task stands between the user's line and the client: the line made a library call, and the client was
    made inside it, so the label is the same as with no task (gql's suite on Python 3.11 said "created in a task
    started at" the test's ``async with Client(...)``, which starts no task, and lost the made-inside advice). A
    task the test's line starts itself keeps "created in a task started at"."""
    installed_library(pytester, "tasklib", TASKLIB)
    pytester.makepyfile(test_t=dedent('''
        import asyncio
        import gc

        import tasklib


        def test_connect(server):
            async def main():
                await tasklib.connect(server.url)
            asyncio.run(main())
            gc.collect()

        def test_own_task(server):
            async def main():
                await asyncio.get_running_loop().create_task(tasklib._handshake(server.url))
            asyncio.run(main())
            gc.collect()
    '''))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=100")
    assert sorted(errors_of(result)) == ["test_t.py::test_connect", "test_t.py::test_own_task"]
    dropped = failure_block(result, "test_t.py::test_connect")
    assert re.search(r"httpx\.AsyncClient, created inside tasklib\.connect\(\), called at test_t\.py:9 in main "
                     r"\(garbage-collected without being closed\)", dropped), dropped
    assert MADE_INSIDE_ADVICE in dropped
    own = failure_block(result, "test_t.py::test_own_task")
    assert "httpx.AsyncClient, created in a task started at test_t.py:15 in main" in own, own
    assert MADE_INSIDE_ADVICE not in own


AWAITLIB = dedent('''
    """A library with a helper that awaits what it is handed (elastic-transport's ``await_if_coro``), and a node
    whose call makes a client and drops it unclosed."""
    import inspect
    import socket

    import httpx

    KEEP = []


    async def await_if_coro(value):
        return await value if inspect.isawaitable(value) else value


    class Node:
        async def perform(self, url):
            http = httpx.AsyncClient()  # never closed
            await http.get(url)

        async def probe(self, host, port):
            KEEP.append(socket.create_connection((host, port)))
''')


def test_a_coroutine_that_only_awaits_what_it_was_handed_is_not_the_call(pytester, run):
    """``await await_if_coro(node.perform(url))``: the helper awaits a coroutine the test's line made and makes
    nothing itself, so the client is "created inside Node.perform()" and the connection "opened by Node.probe()",
    as without the helper (elastic-transport's suite read "created inside elastic_transport._compat.await_if_coro()"
    and its fix pointed at what the helper returned)."""
    installed_library(pytester, "awaitlib", AWAITLIB)
    pytester.makepyfile(test_w=dedent('''
        import asyncio
        import gc

        import awaitlib


        def test_client(server):
            async def main():
                await awaitlib.await_if_coro(awaitlib.Node().perform(server.url))
            asyncio.run(main())
            gc.collect()

        @__import__("pytest").mark.sockhygiene(connections=0)
        def test_connection(server):
            async def main():
                await awaitlib.await_if_coro(awaitlib.Node().probe(server.host, server.port))
            asyncio.run(main())
    '''))
    result = run("-p", "no:randomly", "-o", "sockhygiene_time_wait=100")
    assert sorted(errors_of(result)) == ["test_w.py::test_client", "test_w.py::test_connection"]
    dropped = failure_block(result, "test_w.py::test_client")
    assert re.search(r"httpx\.AsyncClient, created inside awaitlib\.Node\.perform\(\), called at test_w\.py:9 in "
                     r"main \(garbage-collected without being closed\)", dropped), dropped
    assert "await_if_coro" not in dropped
    opened = failure_block(result, "test_w.py::test_connection")
    assert re.search(r"opened by awaitlib\.Node\.probe\(\), at test_w\.py:16 in main", opened), opened
    assert "await_if_coro" not in opened


LAZY_TRANSPORT = dedent('''
    import asyncio

    import aiohttp
    import httpx

    KEEP = []


    class LazyAiohttpTransport(httpx.AsyncBaseTransport):
        """httpx-aiohttp's shape (vendored by the openai and anthropic SDKs): the aiohttp session is made on the
        first request, inside the client's transport."""

        def __init__(self):
            self.session = None

        async def handle_async_request(self, request):
            if self.session is None:
                self.session = aiohttp.ClientSession()
            async with self.session.request(request.method, str(request.url)) as r:
                body = await r.read()
            return httpx.Response(r.status, content=body)

        async def aclose(self):
            if self.session is not None:
                await self.session.close()


    def test_leaks_the_client(server):
        async def main():
            client = httpx.AsyncClient(transport=LazyAiohttpTransport())
            KEEP.append(client)
            assert (await client.get(server.url)).status_code == 200

        loop = asyncio.new_event_loop()
        KEEP.append(loop)  # (kept open with the client: its connection stays in the session's pool)
        loop.run_until_complete(main())


    def test_closes_the_client(server):
        async def main():
            async with httpx.AsyncClient(transport=LazyAiohttpTransport()) as client:
                assert (await client.get(server.url)).status_code == 200

        asyncio.run(main())
''')


def test_a_client_its_transport_made_answers_to_the_client_the_test_made(pytester, run):
    """A transport that makes its aiohttp session on the first request (httpx-aiohttp's, in the openai SDK's
    ``DefaultAioHttpClient``): the client the test made and leaked is the one named, at the test's line, with the
    connection in its pool; the session inside is no client of its own - neither a second leak nor the reason the
    test's client reads as unused (found running the openai SDK)."""
    pytest.importorskip("aiohttp")
    pytester.makepyfile(test_l=LAZY_TRANSPORT)
    # (a subprocess: the leaked aiohttp session would be collected in a later test of this process)
    result = run("-p", "no:randomly", "-o", "sockhygiene_unused_clients=0", subprocess=True)
    assert errors_of(result) == ["test_l.py::test_leaks_the_client"]
    block = failure_block(result, "test_l.py::test_leaks_the_client")
    assert "clients: 1 > limit 0" in block, block
    assert "httpx.AsyncClient, created at test_l.py:30 in main (still open)" in block, block
    assert "(in the pool of httpx.AsyncClient created at test_l.py:30 in main, keepalive_timeout=" in block, block
    assert "aiohttp.ClientSession" not in result.stdout.str()
    assert "unused" not in block
