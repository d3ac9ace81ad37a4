"""End to end, with the real curl_cffi (libcurl): a session a broader fixture made owns the connection libcurl
opens for it in a later test (``curl_cffi_sessions.py``, ``far_ends.py``), sync and async, by URL, by base URL
and by ``localhost``, and every connection of its pool when requests ran at once; a session the test made and left
open is still the test's.

Found with curl_cffi 0.17 for issue 12, after pycurl: a session-scoped ``curl_cffi.requests.Session`` connected in
the first test that used it, which failed with an ``established`` leak of ``origin unknown``. libcurl's
``ACTIVESOCKET`` cannot tell that connection (the session resets its handle after each transfer, and an async
session's connections are in its multi handle), so the origins the session was asked for place it.
"""

from __future__ import annotations

import importlib.util

import pytest

from pytest_sockhygiene.curl_cffi_sessions import url_address

from conftest import dedent, established_by_test

# looked for, not imported: the inner runs import it themselves
HAS_CURL_CFFI = importlib.util.find_spec("curl_cffi") is not None

SUITE = dedent("""
    import asyncio

    import pytest
    from curl_cffi import requests

    KEEP = []


    @pytest.fixture(scope="session")
    def session():
        with requests.Session() as s:
            yield s


    @pytest.fixture(scope="session")
    def based(server):
        with requests.Session(base_url=server.url.replace("127.0.0.1", "{host}")) as s:
            yield s


    @pytest.fixture(scope="session")
    def loop():
        loop = asyncio.new_event_loop()
        yield loop
        loop.close()


    @pytest.fixture(scope="session")
    def async_session(loop):
        async def make():
            return requests.AsyncSession()

        s = loop.run_until_complete(make())
        yield s
        loop.run_until_complete(s.close())


    def test_a_session_first_used(session, server):
        assert session.get(server.url.replace("127.0.0.1", "{host}") + "/a").status_code == 200


    def test_b_session_again(session, server):
        assert session.get(server.url.replace("127.0.0.1", "{host}") + "/b").status_code == 200


    def test_c_base_url_session_first_used(based):
        assert based.get("/c").status_code == 200


    def test_d_async_session_first_used(async_session, loop, server):
        async def go():
            return await async_session.get(server.url + "/d")

        assert loop.run_until_complete(go()).status_code == 200


    def test_d2_async_session_at_once(async_session, loop, server):
        # requests at once: libcurl opens a connection for each, and keeps them all in the session's pool
        async def go():
            return await asyncio.gather(*(async_session.get(server.url + f"/d2/{i}") for i in range(4)))

        assert [r.status_code for r in loop.run_until_complete(go())] == [200] * 4


    def test_e_own_session_left_open(session, server):
        own = requests.Session()
        KEEP.append(own)  # never closed: libcurl keeps its connection
        assert own.get(server.url + "/e").status_code == 200


    def test_f_own_session_closed(server):
        with requests.Session() as own:
            assert own.get(server.url + "/f").status_code == 200


    def test_z_close_the_left_one():
        for s in KEEP:
            s.close()
""")


@pytest.mark.skipif(not HAS_CURL_CFFI, reason="curl_cffi is not installed (CPython >= 3.10)")
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_broader_fixtures_curl_cffi_session_owns_the_connection_libcurl_opens_later(pytester, run, host):
    pytester.makepyfile(test_cc=SUITE.replace("{host}", host))
    result, established = established_by_test(pytester, run)
    assert established == {"test_a_session_first_used": 0, "test_b_session_again": 0,
                           "test_c_base_url_session_first_used": 0, "test_d_async_session_first_used": 0,
                           "test_d2_async_session_at_once": 0,
                           "test_e_own_session_left_open": 1, "test_f_own_session_closed": 0,
                           "test_z_close_the_left_one": 0}, result.stdout.str()
    result.assert_outcomes(passed=8, errors=1)
    # no Python socket call opened it, but the session the test left open was sent there: its line is the origin
    line = SUITE.splitlines().index('    assert own.get(server.url + "/e").status_code == 200') + 1
    result.stdout.fnmatch_lines([f"*ESTABLISHED * opened by C code (libcurl, most likely for a curl_cffi session not "
                                 f"closed) first sent here at test_cc.py:{line} in test_e_own_session_left_open"])


def test_url_address_names_where_a_request_connects():
    assert url_address("http://127.0.0.1:8000/x") == ("127.0.0.1", 8000)
    assert url_address("https://Example.COM/x?y") == ("example.com", 443)
    assert url_address(b"ws://[::1]/socket") == ("::1", 80)
    assert url_address("wss://[::ffff:127.0.0.1]:9/") == ("127.0.0.1", 9)
    assert url_address("/path", "http://localhost:5000/api/") == ("localhost", 5000)
    assert url_address("socks5h://proxy:1", defaults={"socks5h": 1080}) == ("proxy", 1)
    for other in ("/path", "ftp://host/x", "http://", "http://host:99999/", "mailto:a@b", None, 3):
        assert url_address(other) is None, other


@pytest.mark.skipif(not HAS_CURL_CFFI, reason="curl_cffi is not installed (CPython >= 3.10)")
def test_far_ends_note_a_sessions_origins_and_proxies_and_forget_them_once_it_is_closed(pytester):
    """``FarEnds`` on its own, in a process of its own (the suite's worker never imports curl_cffi): the origin of
    each request and the session's proxies are noted as ``request()`` is called - also one that fails - and a
    closed session places nothing; both session classes are wrapped as curl_cffi is imported, and put back."""
    pytester.makepyfile(test_far=dedent("""
        import inspect
        import sys

        import pytest

        from pytest_sockhygiene.far_ends import FarEnds


        def test_far_ends():
            assert "curl_cffi" not in sys.modules  # patched as it is imported, below
            errors = []
            far = FarEnds(errors.append)
            for patch in far.curl_cffi.patches:
                patch.install()
            try:
                from curl_cffi import requests

                s = requests.Session(proxies={"https": "http://127.0.0.1:9"})
                with pytest.raises(Exception):  # nothing listens there
                    s.get("https://example.invalid:8443/x", timeout=2)
                assert far.addresses(s, type(s)) == [("example.invalid", 8443), ("127.0.0.1", 9)]
                assert type(s).__mro__[1] in far.types()
                s.close()
                assert far.addresses(s, type(s)) == []
                # both classes wrapped; the async session's request is still a coroutine function to whoever asks
                # (a mock's autospec)
                assert requests.Session.request.__wrapped__ is not None
                assert requests.AsyncSession.request.__wrapped__ is not None
                assert inspect.iscoroutinefunction(requests.AsyncSession.request)
                assert not inspect.iscoroutinefunction(requests.Session.request)
            finally:
                for patch in far.curl_cffi.patches:
                    patch.uninstall()
            assert not hasattr(requests.Session.request, "__wrapped__")
            assert errors == []
    """))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:sockhygiene").assert_outcomes(passed=1)


@pytest.mark.skipif(not HAS_CURL_CFFI, reason="curl_cffi is not installed (CPython >= 3.10)")
def test_a_session_keeps_its_latest_origins_only(pytester):
    """A crawler's session visits many origins; the connections it keeps go to the latest: 64 are kept, and one
    asked for again moves to the end."""
    pytester.makepyfile(test_kept=dedent("""
        from curl_cffi import requests

        from pytest_sockhygiene.far_ends import FarEnds


        def test_kept():
            errors = []
            far = FarEnds(errors.append)
            for patch in far.curl_cffi.patches:
                patch.install()
            try:
                s = requests.Session()
                for port in [1, *range(2, 61), 1, *range(61, 70)]:
                    try:
                        s.get(f"http://127.0.0.1:{port}/", timeout=1)  # refused: noted all the same
                    except Exception:
                        pass
                kept = far.addresses(s, type(s))
                assert len(kept) == 64
                # 2..6 dropped, oldest first; 1 asked for again, so kept
                assert kept[0] == ("127.0.0.1", 7) and kept[-1] == ("127.0.0.1", 69)
                assert kept.index(("127.0.0.1", 1)) == kept.index(("127.0.0.1", 60)) + 1
                s.close()
            finally:
                for patch in far.curl_cffi.patches:
                    patch.uninstall()
            assert errors == []
    """))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:sockhygiene").assert_outcomes(passed=1)
