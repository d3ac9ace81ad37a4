"""An xfail test's expected failure: what only its traceback holds is not the test's leak (``logheld.py``).

pytest keeps the exception of a test's call and its traceback (``sys.last_value``, ``sys.last_traceback``) until
the next test's call, and with them the test's locals. A test written to fail leaves there what its failure
skipped - found running paho-mqtt's suite, whose xfail test accepts a connection into a local and never closes it:
``enforce`` turned its ``XFAIL`` into an error over a socket the collector closes as soon as pytest lets go, as it
does in the same test once it passes. Real sockets on loopback, pytest's own xfail handling.
"""

from __future__ import annotations

import pytest

from conftest import dedent, errors_of, failure_block

SUITE = dedent('''
    import socket

    import pytest

    KEEP = []


    @pytest.fixture
    def listener():
        srv = socket.create_server(("127.0.0.1", 0))
        yield srv
        srv.close()


    def accepted_after_the_peer_closed(listener):
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        client.close()  # the peer closes first: `conn` is in CLOSE_WAIT until it is closed
        return conn


    def test_passes(listener):
        conn = accepted_after_the_peer_closed(listener)


    @pytest.mark.xfail(reason="known bug", strict=True)
    def test_expected(listener):
        conn = accepted_after_the_peer_closed(listener)
        assert False, "known bug"


    @pytest.mark.xfail(reason="known bug", raises=KeyError)
    def test_not_the_expected_failure(listener):
        conn = accepted_after_the_peer_closed(listener)
        assert False, "not the KeyError the marker expects"


    def test_unexpected(listener):
        conn = accepted_after_the_peer_closed(listener)
        assert False, "a real failure"


    MATCHED

    @pytest.mark.xfail(reason="known bug")
    def test_expected_but_kept(listener):
        conn = accepted_after_the_peer_closed(listener)
        KEEP.append(conn)
        assert False, "known bug"
''')

MATCHED = dedent('''
    @pytest.mark.xfail(reason="known bug", raises=pytest.RaisesExc(AssertionError, match="known"))
    def test_expected_by_a_matcher(listener):
        conn = accepted_after_the_peer_closed(listener)
        assert False, "known bug"
''')

HAS_MATCHERS = hasattr(pytest, "RaisesExc")  # pytest 8.4+: xfail(raises=...) takes a matcher


def suite() -> str:
    return SUITE.replace("MATCHED\n", MATCHED if HAS_MATCHERS else "")


def test_a_socket_only_the_expected_failures_traceback_holds_is_not_a_leak(pytester, run):
    """The expected failure's socket is let go; a failure the marker does not expect (another exception), a test
    that fails unexpectedly and a socket something else holds too are judged as before. The note of an xfail test
    that still breaks its limits does not tell it to fix its failure first."""
    pytester.makepyfile(test_x=suite())
    result = run("-p", "no:randomly", "-W", "ignore::ResourceWarning")
    matched = 1 if HAS_MATCHERS else 0
    result.assert_outcomes(passed=1, failed=2, xfailed=2 + matched, errors=3)
    assert errors_of(result) == ["test_x.py::test_expected_but_kept", "test_x.py::test_not_the_expected_failure",
                                 "test_x.py::test_unexpected"]
    for name in ("test_not_the_expected_failure", "test_unexpected"):
        block = failure_block(result, f"test_x.py::{name}")
        assert "close_wait: 1 > limit 0" in block
        assert "If this goes away once the test passes, fix the failure first." in block
    kept = failure_block(result, "test_x.py::test_expected_but_kept")
    assert "close_wait: 1 > limit 0" in kept
    assert "note: this test failed as its xfail marker expects" in kept
    assert "fix the failure first" not in kept
    result.stdout.fnmatch_lines([f"*{5 + matched} tests checked, 3 with violations (close_wait: 3)*"])


def test_under_runxfail_an_xfail_tests_failure_is_judged_as_any_failure(pytester, run):
    """``--runxfail`` reports an xfail test as if it had no marker: its failure is a failure, and what the
    traceback holds is judged as any failed test's is."""
    pytester.makepyfile(test_x=suite())
    result = run("-p", "no:randomly", "-W", "ignore::ResourceWarning", "--runxfail", "-k", "test_expected")
    matched = 1 if HAS_MATCHERS else 0
    result.assert_outcomes(failed=2 + matched, errors=2 + matched)
    block = failure_block(result, "test_x.py::test_expected")
    assert "close_wait: 1 > limit 0" in block
    assert "fix the failure first" in block


def test_an_earlier_tests_failure_is_not_taken_for_a_failed_setups(pytester, run):
    """A test whose setup fails is never called, so pytest leaves the last failed call's exception in
    ``sys.last_value``: an earlier xfail test's expected failure must not let go of what this test's fixture
    left open, nor give it a note about a failure of its own call."""
    pytester.makepyfile(test_y=dedent('''
        import socket

        import pytest

        KEEP = []


        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_expected():
            assert False, "known bug"


        @pytest.fixture
        def broken():
            srv = socket.create_server(("127.0.0.1", 0))
            KEEP.append(srv)
            raise RuntimeError("the fixture broke")


        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_setup_fails(broken):
            pass
    '''))
    result = run("-p", "no:randomly")
    result.assert_outcomes(xfailed=2, errors=1)
    block = failure_block(result, "test_y.py::test_setup_fails")
    assert "listen: 1 > limit 0" in block
    assert "note: this test failed" not in block
