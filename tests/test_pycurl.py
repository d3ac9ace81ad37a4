"""End to end, with the real pycurl: a handle a broader fixture made owns the connection libcurl keeps for it
(``holders._curl_socket``), and a handle the test left open is still the test's.

Found with pycurl 7.49 beside issue 12's gRPC case: a session-scoped ``pycurl.Curl`` connects on its first
``perform()``, in whichever test makes it, outside Python's socket module, and keeps the connection for the next
transfer - the first test failed with an ``established`` leak of ``origin unknown``. A handle of a subclass of
``pycurl.Curl`` is one too.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import dedent, established_by_test

# looked for, not imported: the inner runs import it themselves
HAS_PYCURL = importlib.util.find_spec("pycurl") is not None

SUITE = dedent("""
    import io

    import pycurl
    import pytest

    KEEP = []


    @pytest.fixture(scope="session")
    def curl():
        handle = pycurl.Curl()
        yield handle
        handle.close()


    class Session(pycurl.Curl):  # an SDK's own handle class
        pass


    @pytest.fixture(scope="session")
    def own_class_curl():
        handle = Session()
        yield handle
        handle.close()


    def fetch(handle, url):
        body = io.BytesIO()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.perform()
        return body.getvalue()


    def test_a_session_handle_first_used(curl, server):
        assert fetch(curl, server.url + "/a")


    def test_b_session_handle_again(curl, server):
        assert fetch(curl, server.url + "/b")


    def test_b2_session_handle_of_a_subclass_first_used(own_class_curl, server):
        assert fetch(own_class_curl, server.url + "/b2")


    def test_c_own_handle_left_open(server):
        handle = pycurl.Curl()
        KEEP.append(handle)  # never closed: libcurl keeps its connection
        assert fetch(handle, server.url + "/c")


    def test_d_own_handle_closed(server):
        handle = pycurl.Curl()
        try:
            assert fetch(handle, server.url + "/d")
        finally:
            handle.close()
""")


@pytest.mark.skipif(not HAS_PYCURL, reason="pycurl is not installed")
def test_a_broader_fixtures_curl_handle_owns_its_kept_connection(pytester, run):
    pytester.makepyfile(test_curl=SUITE)
    result, established = established_by_test(pytester, run)
    assert established == {"test_a_session_handle_first_used": 0, "test_b_session_handle_again": 0,
                           "test_b2_session_handle_of_a_subclass_first_used": 0,
                           "test_c_own_handle_left_open": 1, "test_d_own_handle_closed": 0}, result.stdout.str()
    result.assert_outcomes(passed=5, errors=1)
