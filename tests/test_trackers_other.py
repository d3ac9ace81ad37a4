"""The requests, urllib3 and aiohttp trackers end to end: real clients, a real loopback server, real kernel rows.

For each library: a client created in a test and never closed fails it (``clients``, plus its pooled connection
as an ``established`` leak labelled with the pool it sits in); the same with ``with`` / ``async with`` is clean;
a client of a module-scoped fixture reused by several tests is clean (its pooled connection is the fixture's).
"""

from __future__ import annotations

import json

import pytest

from pytest_sockhygiene.verdict import CLEAR_ADVICE

from conftest import dedent, errors_of, failure_block, lingered


def _requires(name: str) -> None:
    pytest.importorskip(name)


# -- requests ----------------------------------------------------------------------------------------------------

REQUESTS_SUITE = dedent('''
    import pytest
    import requests
    from requests.adapters import HTTPAdapter
    KEEP = []

    @pytest.fixture(scope="module")
    def shared():
        with requests.Session() as s:
            yield s

    def test_leak(server):
        s = requests.Session()
        assert s.get(server.url).text == "ok\\n"
        KEEP.append(s)

    def test_with(server):
        with requests.Session() as s:
            assert s.get(server.url).text == "ok\\n"
            assert s.get(server.url).status_code == 200

    def test_with_mounted_adapter_and_proxy(server):
        with requests.Session() as s:
            s.mount("http://", HTTPAdapter(max_retries=2))
            assert s.get(server.url, proxies={"http": server.url}).status_code == 200

    def test_shared_one(shared, server):
        assert shared.get(server.url).text == "ok\\n"

    def test_shared_two(shared, server):
        before = server.accepted
        assert shared.get(server.url).status_code == 200
        assert server.accepted == before  # the fixture's pooled connection was reused

    def test_shared_three(shared, server):
        before = server.accepted
        assert shared.get(server.url).status_code == 200
        assert server.accepted == before

    def test_shared_through_a_proxy(shared, server):
        # the ProxyManager the adapter builds now, and its connection, are the fixture's session's
        assert shared.get(server.url + "/p", proxies={"http": server.url}).text == "ok\\n"

    def test_leak_with_mounted_adapter(server):
        s = requests.Session()
        s.mount("http://", HTTPAdapter(pool_maxsize=2))
        assert s.get(server.url).status_code == 200
        KEEP.append(s)

    def test_get_loop(server):
        for _ in range(20):
            assert requests.get(server.url).status_code == 200

    def test_last(server):
        pass
''')


def test_requests_session(pytester, run):
    _requires("requests")
    pytester.makepyfile(test_req=REQUESTS_SUITE)
    result = run()
    result.assert_outcomes(passed=10, errors=3)
    assert errors_of(result) == ["test_req.py::test_get_loop", "test_req.py::test_leak",
                                 "test_req.py::test_leak_with_mounted_adapter"]
    result.stdout.fnmatch_lines([
        "*sockhygiene: test_req.py::test_leak broke its socket limits*",
        "*established: 1 > limit 0*",
        "*ESTABLISHED 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_req.py:13 in test_leak"
        " (in the pool of requests.Session created at test_req.py:12 in test_leak)*",
        "*clients: 1 > limit 0*",
        "*requests.Session, created at test_req.py:12 in test_leak (still open)*",
    ])
    get_loop = failure_block(result, "test_req.py::test_get_loop")
    n = lingered(get_loop, 20, result)  # exact unless the kernel reset a TIME_WAIT entry meanwhile
    # the sessions named are those of the lingering connections: one each, so as many as the count
    assert f"{n} requests.Session created inside requests.get(), called at test_req.py:51 in test_get_loop" in get_loop
    result.stdout.fnmatch_lines([
        "*sockhygiene: test_req.py::test_leak_with_mounted_adapter broke its socket limits*",
        "*established: 1 > limit 0*",
        "*(in the pool of requests.Session created at test_req.py:44 in test_leak_with_mounted_adapter)*",
        "*clients: 1 > limit 0*",
        "*requests.Session, created at test_req.py:44 in test_leak_with_mounted_adapter (still open)*",
    ])
    out = result.stdout.str()
    # requests.get creates and closes a Session per call: no unclosed client; and the PoolManager inside each
    # Session (or inside a mounted adapter, or the ProxyManager built for a proxy) is never a client of its own
    assert "clients: 20" not in out
    assert "urllib3.PoolManager" not in out
    assert "urllib3.ProxyManager" not in out
    assert "tests checked, 3 with violations" in out


# -- urllib3 -----------------------------------------------------------------------------------------------------

URLLIB3_SUITE = dedent('''
    import pytest
    import urllib3
    KEEP = []

    @pytest.fixture(scope="module")
    def shared():
        with urllib3.PoolManager() as pm:
            yield pm

    def test_leak(server):
        pm = urllib3.PoolManager()
        assert pm.request("GET", server.url).data == b"ok\\n"
        KEEP.append(pm)

    def test_proxy_leak(server):
        proxy = urllib3.ProxyManager(server.url)
        assert proxy.request("GET", server.url + "/via-proxy").status == 200
        KEEP.append(proxy)

    def test_with(server):
        with urllib3.PoolManager() as pm:
            assert pm.request("GET", server.url).data == b"ok\\n"
            assert pm.request("GET", server.url).status == 200

    def test_cleared(server):
        pm = urllib3.PoolManager()
        try:
            assert pm.request("GET", server.url).status == 200
        finally:
            pm.clear()

    def test_shared_one(shared, server):
        assert shared.request("GET", server.url).data == b"ok\\n"

    def test_shared_two(shared, server):
        before = server.accepted
        assert shared.request("GET", server.url).status == 200
        assert server.accepted == before  # the fixture's pooled connection was reused

    def test_shared_three(shared, server):
        before = server.accepted
        assert shared.request("GET", server.url).status == 200
        assert server.accepted == before

    def test_last(server):
        pass
''')


UNPICKLED = dedent('''
    import pickle

    import requests

    KEEP = []


    def test_unpickled_session_left_open(server):
        s = pickle.loads(pickle.dumps(requests.Session()))  # requests' own test_session_pickling does this
        assert s.get(server.url).status_code == 200
        KEEP.append(s)


    def test_unpickled_session_closed(server):
        with pickle.loads(pickle.dumps(requests.Session())) as s:
            assert s.get(server.url).status_code == 200
''')


def test_an_unpickled_requests_session_is_a_client(pytester, run):
    """An unpickled Session is built by ``__setstate__``, not ``__init__``: it is tracked all the same (its pool
    named on the leaked connection, a ``clients`` violation if never closed, clean once closed), and the pickled
    original, which never connected, is one unused client, not a leak (found on requests' suite)."""
    pytester.makepyfile(test_p=UNPICKLED)
    result = run("-p", "no:randomly", "--sockhygiene-report=r.json")
    assert errors_of(result) == ["test_p.py::test_unpickled_session_left_open"]
    block = failure_block(result, "test_p.py::test_unpickled_session_left_open")
    assert "(in the pool of requests.Session created at test_p.py:9 in test_unpickled_session_left_open" in block
    assert "clients: 1 > limit 0" in block
    report = json.loads((pytester.path / "r.json").read_text())
    counts = {t["nodeid"].split("::")[1]: t["counts"] for t in report["tests"]}
    assert counts["test_unpickled_session_closed"]["clients"] == 0
    assert counts["test_unpickled_session_closed"]["unused_clients"] == 1  # the original, pickled and dropped


LAZY_POOL = dedent('''
    import pytest
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter

    class LazyAdapter(HTTPAdapter):
        """Makes its own pool on its first send, as httpx-aiohttp's transport (vendored by the openai and anthropic
        SDKs) makes its aiohttp.ClientSession on its first request."""

        def __init__(self):
            super().__init__()
            self.lazy = None

        def send(self, request, **kwargs):
            if self.lazy is None:
                self.lazy = urllib3.PoolManager()
            answer = self.lazy.request(request.method, request.url)
            response = requests.Response()
            response.status_code, response._content, response.request = answer.status, answer.data, request
            return response

        def close(self):
            if self.lazy is not None:
                self.lazy.clear()
            super().close()

    @pytest.fixture(scope="session")
    def api(server):
        with requests.Session() as session:
            session.mount("http://", LazyAdapter())
            yield session  # closed, with the adapter's pool, at the session's end

    def test_first_use(api, server):
        assert api.get(server.url).status_code == 200

    def test_second_use(api, server):
        assert api.get(server.url).status_code == 200

    def test_own_lazy_session_leaks(server):
        session = requests.Session()
        session.mount("http://", LazyAdapter())
        assert session.get(server.url).status_code == 200
        test_own_lazy_session_leaks.kept = session  # never closed: the test's, with the pool its adapter made
''')


def test_a_client_made_by_a_clients_transport_during_its_request_is_part_of_it(pytester, run):
    """A session fixture's client whose transport makes its pool (a tracked client) on its first request: that
    pool is the session client's, not the test that happened to send the first request. The same shape made by a
    test's own client is the test's, and is that client's: the client the test made is the one named, with the
    connection in its pool, and the pool inside is no client of its own (the openai SDK's DefaultAioHttpClient)."""
    pytester.makepyfile(test_lazy=LAZY_POOL)
    result = run()
    assert errors_of(result) == ["test_lazy.py::test_own_lazy_session_leaks"]
    block = failure_block(result, "test_lazy.py::test_own_lazy_session_leaks")
    assert "requests.Session, created at test_lazy.py:40 in test_own_lazy_session_leaks (still open)" in block
    assert "(in the pool of requests.Session created at test_lazy.py:40 in test_own_lazy_session_leaks)" in block
    assert "urllib3.PoolManager" not in block
    result.assert_outcomes(passed=3, errors=1)


def test_urllib3_pool_manager(pytester, run):
    _requires("urllib3")
    pytester.makepyfile(test_u3=URLLIB3_SUITE)
    result = run()
    result.assert_outcomes(passed=8, errors=2)
    assert errors_of(result) == ["test_u3.py::test_leak", "test_u3.py::test_proxy_leak"]
    result.stdout.fnmatch_lines([
        "*sockhygiene: test_u3.py::test_leak broke its socket limits*",
        "*established: 1 > limit 0*",
        "*ESTABLISHED 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_u3.py:12 in test_leak"
        " (in the pool of urllib3.PoolManager created at test_u3.py:11 in test_leak)*",
        "*clients: 1 > limit 0*",
        "*urllib3.PoolManager, created at test_u3.py:11 in test_leak (still open)*",
    ])
    # a ProxyManager is one client (its PoolManager.__init__ is part of its own constructor), named as such
    result.stdout.fnmatch_lines([
        "*sockhygiene: test_u3.py::test_proxy_leak broke its socket limits*",
        "*established: 1 > limit 0*",
        "*(in the pool of urllib3.ProxyManager created at test_u3.py:16 in test_proxy_leak)*",
        "*clients: 1 > limit 0*",
        "*urllib3.ProxyManager, created at test_u3.py:16 in test_proxy_leak (still open)*",
    ])
    assert "tests checked, 2 with violations" in result.stdout.str()
    # a manager has no close(): each fix that says close() says clear() too (vcrpy's suite: a test that followed
    # the fix got an AttributeError), both for the connection its pool holds and for the manager itself
    for test in ("test_leak", "test_proxy_leak"):
        fixes = [line for line in failure_block(result, f"test_u3.py::{test}").splitlines() if "fix:" in line]
        assert len(fixes) == 2 and all(line.endswith(CLEAR_ADVICE) for line in fixes), fixes


# -- aiohttp -----------------------------------------------------------------------------------------------------

AIOHTTP_SUITE = dedent('''
    import aiohttp
    import pytest
    KEEP = []

    @pytest.fixture(scope="module")
    def anyio_backend():
        return "asyncio"

    @pytest.fixture(scope="module")
    async def shared():
        async with aiohttp.ClientSession() as s:
            yield s

    @pytest.mark.anyio
    async def test_leak(server):
        s = aiohttp.ClientSession()
        async with s.get(server.url) as r:
            assert await r.text() == "ok\\n"
        KEEP.append(s)

    @pytest.mark.anyio
    async def test_with(server):
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url) as r:
                assert await r.text() == "ok\\n"
            async with s.get(server.url) as r:
                assert r.status == 200

    @pytest.mark.anyio
    async def test_closed(server):
        s = aiohttp.ClientSession()
        try:
            async with s.get(server.url) as r:
                assert r.status == 200
        finally:
            await s.close()
        assert s.closed

    @pytest.mark.anyio
    async def test_connector_closed_directly(server):
        # close() is never called, but the live session's `closed` property says the truth (kept alive: a
        # collected client is judged by its close() call alone)
        connector = aiohttp.TCPConnector()
        s = aiohttp.ClientSession(connector=connector, connector_owner=False)
        async with s.get(server.url) as r:
            assert await r.text() == "ok\\n"
        await connector.close()
        assert s.closed
        KEEP.append(s)

    @pytest.mark.anyio
    async def test_shared_one(shared, server):
        async with shared.get(server.url) as r:
            assert await r.text() == "ok\\n"

    @pytest.mark.anyio
    async def test_shared_two(shared, server):
        before = server.accepted
        async with shared.get(server.url) as r:
            assert r.status == 200
            await r.read()  # an unread body makes aiohttp drop the connection instead of pooling it
        assert server.accepted == before  # the fixture's pooled connection was reused

    @pytest.mark.anyio
    async def test_shared_three(shared, server):
        before = server.accepted
        async with shared.get(server.url) as r:
            assert await r.text() == "ok\\n"
        assert server.accepted == before

    def test_last(server):
        pass
''')


def test_aiohttp_client_session(pytester, run):
    _requires("aiohttp")
    _requires("anyio")
    pytester.makepyfile(test_aio=AIOHTTP_SUITE)
    result = run("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=8, errors=1)
    assert errors_of(result) == ["test_aio.py::test_leak"]
    result.stdout.fnmatch_lines([
        "*sockhygiene: test_aio.py::test_leak broke its socket limits*",
        "*established: 1 > limit 0*",
        "*ESTABLISHED 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_aio.py:17 in test_leak"
        " (in the pool of aiohttp.ClientSession created at test_aio.py:16 in test_leak, keepalive_timeout=15s)*",
        "*clients: 1 > limit 0*",
        "*aiohttp.ClientSession, created at test_aio.py:16 in test_leak (still open)*",
    ])
    assert "tests checked, 1 with violations" in result.stdout.str()


# -- botocore (boto3) -------------------------------------------------------------------------------------------

BOTOCORE_SUITE = dedent('''
    import boto3
    import pytest
    KEEP = []

    @pytest.fixture(autouse=True)
    def credentials(monkeypatch, tmp_path):
        # as a suite testing against a local S3 (moto's server, localstack) sets them: no machine config read
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
                            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
            monkeypatch.setenv(name, value)

    @pytest.fixture(scope="module")
    def shared(server):
        s3 = boto3.client("s3", endpoint_url=server.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        yield s3
        s3.close()

    def fetch(url, key):
        s3 = boto3.client("s3", endpoint_url=url)  # a client per call, closed
        try:
            return s3.get_object(Bucket="b", Key=key)["Body"].read()
        finally:
            s3.close()

    def test_leak(server):
        s3 = boto3.client("s3", endpoint_url=server.url)
        assert s3.get_object(Bucket="b", Key="k")["Body"].read() == b"ok\\n"
        KEEP.append(s3)

    def test_closed(server):
        s3 = boto3.client("s3", endpoint_url=server.url)
        assert s3.get_object(Bucket="b", Key="k")["Body"].read() == b"ok\\n"
        s3.close()

    def test_client_per_call(server):
        for i in range(6):
            assert fetch(server.url, f"k{i}") == b"ok\\n"

    def test_never_used(server):
        boto3.client("s3", endpoint_url=server.url)

    def test_resource_closed(server):
        s3 = boto3.resource("s3", endpoint_url=server.url)
        assert s3.Object("b", "k").get()["Body"].read() == b"ok\\n"
        s3.meta.client.close()

    def test_shared_one(shared):
        assert shared.get_object(Bucket="b", Key="k")["Body"].read() == b"ok\\n"

    def test_shared_two(shared, server):
        before = server.accepted
        assert shared.get_object(Bucket="b", Key="k")["Body"].read() == b"ok\\n"
        assert server.accepted == before  # the fixture's pooled connection was reused

    def test_a_decorated_method_unwraps_as_without_the_plugin(shared):
        # botocore decorates _make_api_call (with_current_context), and the plugin wraps it to count requests:
        # one level of __wrapped__ still reaches the method's own code (aiobotocore's suite hashes its source)
        from botocore.client import BaseClient
        if getattr(BaseClient._make_api_call, "__wrapped__", None) is not None:
            assert BaseClient._make_api_call.__wrapped__.__code__.co_name == "_make_api_call"
''')


def test_botocore_client(pytester, run):
    """A boto3 client is a client of its own, reported under its class (``botocore.client.S3``), not as the urllib3
    PoolManager inside it; and the sessions botocore's credential providers build for the metadata endpoints are
    no unused clients of the test's: a client never used is one unused client, not two or three."""
    _requires("boto3")
    pytester.makepyfile(test_boto=BOTOCORE_SUITE)
    result = run("-o", "sockhygiene_unused_clients=1")
    assert errors_of(result) == ["test_boto.py::test_client_per_call", "test_boto.py::test_leak"]
    result.assert_outcomes(passed=8, errors=2)
    leak = failure_block(result, "test_boto.py::test_leak")
    made = "botocore.client.S3{} created inside boto3.client(), called at test_boto.py:28 in test_leak"
    assert f"(in the pool of {made.format('')})" in leak, leak
    assert f"{made.format(',')} (still open)" in leak
    assert "PoolManager" not in result.stdout.str()
    burst = failure_block(result, "test_boto.py::test_client_per_call")
    assert "time_wait: 6 > limit 5" in burst
    assert ("6 botocore.client.S3 created inside boto3.client(), called at test_boto.py:21 in fetch (1 request each): "
            "a new client per request?") in burst, burst
    assert "clients:" not in burst
    # the unused client is the one test_never_used made: under a limit of 1, not a violation (two would be)
    assert "unused clients: 1 left unclosed by 1 test" in result.stdout.str()


# -- in process: inactive without the library, patches undone, clients never kept alive --------------------------

TRACKED = {  # tracker module -> (library, the classes whose attributes it patches)
    "requests": ("requests", ("requests.Session", "requests.adapters.HTTPAdapter")),
    "urllib3": ("urllib3", ("urllib3.PoolManager", "urllib3.ProxyManager")),
    "aiohttp": ("aiohttp", ("aiohttp.ClientSession",)),
    "botocore": ("botocore", ("botocore.client.BaseClient", "botocore.httpsession.URLLib3Session")),
}


def _tracker(name: str):
    from pytest_sockhygiene.trackers import aiohttp, botocore, requests, urllib3

    return {"requests": requests.RequestsTracker, "urllib3": urllib3.Urllib3Tracker,
            "aiohttp": aiohttp.AiohttpTracker, "botocore": botocore.BotocoreTracker}[name]()


def _registry():
    from pytest_sockhygiene.clients import ClientRegistry

    return ClientRegistry(lambda: None, lambda: ())


def _classes(dotted):
    import importlib

    out = []
    for name in dotted:
        module, _, attr = name.rpartition(".")
        out.append(getattr(importlib.import_module(module), attr))
    return out


@pytest.mark.parametrize("name", sorted(TRACKED))
def test_tracker_is_inactive_without_its_library(name):
    tracker = _tracker(name)
    tracker.module = "sockhygiene_no_such_library"  # what find_spec answers for a library that is not installed
    registry = _registry()
    tracker.pytest_sockhygiene_install_tracker(registry=registry)
    try:
        for hook in ("client_sockets", "client_is_closed", "client_keepalive"):
            assert getattr(tracker, f"pytest_sockhygiene_{hook}")(client=object()) is None
    finally:
        tracker.pytest_sockhygiene_uninstall_tracker(registry=registry)


@pytest.mark.parametrize("name", sorted(TRACKED))
def test_tracker_patches_are_undone_and_clients_not_kept_alive(name):
    import asyncio
    import gc
    import warnings
    import weakref

    library, dotted = TRACKED[name]
    pytest.importorskip(library)
    classes = _classes(dotted)
    before = [dict(vars(cls)) for cls in classes]
    tracker = _tracker(name)
    registry = _registry()
    tracker.pytest_sockhygiene_install_tracker(registry=registry)
    try:
        assert [dict(vars(cls)) for cls in classes] != before
        if name == "aiohttp":
            async def make():
                return classes[0]()  # never used: no connector close needed for this check

            client = asyncio.run(make())
            kind = "aiohttp.ClientSession"
        elif name == "botocore":
            import botocore.session

            client = botocore.session.get_session().create_client(
                "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
            kind = "botocore.client.S3"  # (the class botocore makes for the service; the session inside is a part)
        else:
            client = classes[0]()
            kind = f"{library}.{classes[0].__qualname__}"
        # (urllib3's module-level default pool is adopted as a shared client at install: not this client)
        assert [r.kind for r in registry.records() if not r.shared] == [kind]
        assert tracker.pytest_sockhygiene_client_sockets(client=client) == []
        assert tracker.pytest_sockhygiene_client_is_closed(client=client) is False
        assert tracker.pytest_sockhygiene_client_sockets(client=object()) is None
        ref = weakref.ref(client)
        with warnings.catch_warnings():
            # an unclosed aiohttp session warns with source=self: a recorded warning would keep it alive
            warnings.simplefilter("ignore", ResourceWarning)
            del client
            gc.collect()
        assert ref() is None
        assert next(r for r in registry.records() if not r.shared).collected
    finally:
        tracker.pytest_sockhygiene_uninstall_tracker(registry=registry)
    after = [dict(vars(cls)) for cls in classes]
    assert after == before


def test_urllib3_module_level_default_pool_is_never_a_tests_leak(pytester, run):
    """``urllib3.request()`` pools its connection in a PoolManager created at import: process-wide, not a leak."""
    urllib3 = pytest.importorskip("urllib3")
    if int(urllib3.__version__.split(".")[0]) < 2:  # urllib3 1.26 (the floor: vcrpy keeps Python 3.9 on it)
        pytest.skip("urllib3.request() and its module-level pool are urllib3 2's")
    pytester.makepyfile(test_default=dedent("""
        import urllib3

        def test_module_level_request(server):
            assert urllib3.request("GET", server.url).status == 200

        def test_again(server):
            assert urllib3.request("GET", server.url).status == 200
    """))
    result = run()
    result.assert_outcomes(passed=2)


class _Redirecting:
    """A loopback server whose ``/hop/N`` redirects to ``/hop/N-1`` down to ``/hop/0``, which answers 200."""

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                hops = int(self.path.rsplit("/", 1)[-1])
                self.send_response(302 if hops else 200)
                if hops:
                    self.send_header("Location", f"/hop/{hops - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.mark.parametrize("name", ["requests", "urllib3"])
def test_a_redirect_hop_is_not_a_concurrent_request(name):
    """requests' ``Session.send`` and urllib3's ``PoolManager.urlopen`` send each redirect hop through themselves,
    from within the request: a hop is counted as a request, but is not one more in flight at once
    (``ClientRecord.most_in_flight``), or a client sending its requests one after another would read as
    concurrent. What was in flight is ended whether the request returned or raised."""
    import socket

    library = pytest.importorskip(name)
    tracker = _tracker(name)
    registry = _registry()
    tracker.pytest_sockhygiene_install_tracker(registry=registry)
    try:
        client = library.Session() if name == "requests" else library.PoolManager()
        with _Redirecting() as url:
            for _ in range(2):
                response = client.request("GET", f"{url}/hop/3")
                assert response.status_code == 200 if name == "requests" else response.status == 200
        record = registry.record_of(client)
        assert (record.requests, record.most_in_flight, record.in_flight) == (8, 1, [])
        with socket.socket() as unused:  # a port nothing listens on: the request is refused
            unused.bind(("127.0.0.1", 0))
            refused = f"http://127.0.0.1:{unused.getsockname()[1]}/hop/0"
        with pytest.raises(Exception):  # noqa: B017 - each library's own connection error
            client.request("GET", refused, **({"retries": False} if name == "urllib3" else {}))
        assert (record.most_in_flight, record.in_flight) == (1, [])
        client.close() if name == "requests" else client.clear()
    finally:
        tracker.pytest_sockhygiene_uninstall_tracker(registry=registry)
