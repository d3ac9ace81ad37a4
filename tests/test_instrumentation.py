"""Beside wrapt-based instrumentation (OpenTelemetry's, ddtrace's), which wraps the client methods the trackers
wrap: real wrapt, real urllib3 and aiohttp, a real loopback server, in subprocess runs (the wrappers live on the
libraries' classes)."""

from __future__ import annotations

import pytest

from conftest import ONE_BACKEND, dedent, installed_library

pytestmark = ONE_BACKEND

pytest.importorskip("wrapt")

INSTRUMENTATION = dedent('''
    # an app's telemetry, set up as conftest.py is imported: before the plugin's trackers patch
    import aiohttp
    import urllib3.connectionpool
    import wrapt

    SPANS = []


    def _span(wrapped, instance, args, kwargs):
        SPANS.append(wrapped.__name__)
        return wrapped(*args, **kwargs)


    def instrument():
        wrapt.wrap_function_wrapper(urllib3.connectionpool.HTTPConnectionPool, "urlopen", _span)
        wrapt.wrap_function_wrapper(aiohttp.ClientSession, "__init__", _span)


    def uninstrument():
        """OpenTelemetry's ``unwrap``: undoes only a wrapt proxy it finds in place."""
        proxy = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)  # (wrapt 2: the base of every proxy)
        for cls, name in ((urllib3.connectionpool.HTTPConnectionPool, "urlopen"), (aiohttp.ClientSession, "__init__")):
            found = cls.__dict__.get(name)
            if isinstance(found, proxy):
                setattr(cls, name, found.__wrapped__)
''')

SUITE = dedent('''
    import asyncio
    import gc

    import aiohttp
    import urllib3

    import telemetry

    KEEP = []


    def test_instrumented(server):
        before = len(telemetry.SPANS)
        with urllib3.PoolManager() as pool:
            pool.request("GET", server.url)
        assert len(telemetry.SPANS) > before


    def test_a_session_made_under_instrumentation(server):
        async def main():
            session = aiohttp.ClientSession()  # never closed
            KEEP.append(session)
            (await session.get(server.url)).release()
        asyncio.run(main())


    def test_uninstrumented_then_a_leak(server):
        telemetry.uninstrument()
        before = len(telemetry.SPANS)
        pool = urllib3.PoolManager()  # never closed
        pool.request("GET", server.url)
        KEEP.append(pool)
        assert len(telemetry.SPANS) == before  # the instrumentation's undoing undid it
''')


@pytest.mark.parametrize("first", ["instrumentation", "plugin"])
def test_instrumentation_and_the_trackers_each_keep_their_own_wrapping(pytester, run, first):
    """Instrumented before the trackers patch (an app's telemetry set up as conftest.py is imported), the trackers
    wrapped the instrumentation's wrapt proxies from outside: its ``uninstrument()`` found no proxy to undo, spans
    went on, and the suite's own assertions failed in warn mode (found with OpenTelemetry's instrumentations). The
    trackers' wrappers go beneath such a proxy now: both undo and keep what is theirs. Whichever came first, a
    client made through the instrumentation's wrapper of its constructor is "created at" the test's line, not
    inside the instrumentation's wrapper."""
    installed_library(pytester, "telemetry", INSTRUMENTATION)  # (site-packages' code, as OpenTelemetry's is)
    pytester.makepyfile(test_i=SUITE)
    conftest = (pytester.path / "conftest.py").read_text()
    if first == "instrumentation":
        conftest = "import telemetry\ntelemetry.instrument()\n" + conftest
    else:
        conftest += "\n\n" + dedent('''
            @pytest.fixture(scope="session", autouse=True)
            def _instrumented():
                import telemetry
                telemetry.instrument()
        ''')
    (pytester.path / "conftest.py").write_text(conftest)
    result = run("-p", "no:randomly", mode="warn", subprocess=True)
    result.assert_outcomes(passed=3, warnings=2)
    out = result.stdout.str()
    lines = SUITE.splitlines()
    session_line = next(i for i, text in enumerate(lines, 1) if "aiohttp.ClientSession()" in text)
    pool_line = next(i for i, text in enumerate(lines, 1) if "pool = urllib3.PoolManager()" in text)
    assert f"aiohttp.ClientSession, created at test_i.py:{session_line} in main (still open)" in out, out
    assert "created inside" not in out and "_span" not in out, out
    # the instrumentation's undoing left the tracker's wrapping in place: the pool is still tracked
    assert f"urllib3.PoolManager, created at test_i.py:{pool_line} in test_uninstrumented_then_a_leak" in out, out
