"""The ``sockhygiene`` fixture, and what happens when the plugin itself fails or cannot see the table."""

from __future__ import annotations

from conftest import dedent, errors_of


def test_measure_snapshot_and_runtime_limits(pytester, run):
    pytester.makepyfile(test_f=dedent("""
        import socket
        KEEP = []

        def test_measure_counts_a_block(server, sockhygiene):
            with sockhygiene.measure() as clean:
                with socket.create_connection((server.host, server.port)):
                    pass
            assert clean.established == 0 and clean.connections == 1
            with sockhygiene.measure(established=None) as dirty:
                KEEP.append(socket.create_connection((server.host, server.port)))
            assert dirty.established == 1 and dirty.connections == 1
            assert any(e.remote == (server.host, server.port) for e in sockhygiene.snapshot())
            sockhygiene.set_limits(established=1)  # this test may keep the one it leaked

        def test_set_limits_bad_key(sockhygiene):
            import pytest
            with pytest.raises(ValueError, match="sockhygiene fixture in test_f.py::test_set_limits_bad_key: unknown limit 'listn'"):
                sockhygiene.set_limits(listn=1)

        def test_last(server):
            pass
    """))
    run().assert_outcomes(passed=3)


def test_fixture_works_when_mode_is_off(pytester, run):
    pytester.makepyfile(test_f=dedent("""
        import socket

        def test_measure_off(server, sockhygiene):
            with sockhygiene.measure(established=None) as m:
                s = socket.create_connection((server.host, server.port))
            s.close()
            assert m.established == 1 and m.connections == 1
    """))
    run(mode="off").assert_outcomes(passed=1)
    import socket

    assert "connect" not in socket.socket.__dict__  # the private controller removed its hooks


def test_plugin_crash_is_a_plugin_problem_not_a_test_failure(pytester, run):
    # A fault we cannot cause for real: the table backend raising. Injected from the inner conftest, in a
    # subprocess so that the patch dies with it.
    pytester.makeconftest(dedent("""
        import pytest
        from pytest_sockhygiene.table import linux, portable
        from pytest_sockhygiene.testing import serve_http

        def boom(self, ids):
            raise RuntimeError("simulated backend fault")

        linux.LinuxTable.describe = boom
        portable.PsutilTable.describe = boom

        @pytest.fixture(scope="session")
        def server():
            with serve_http() as s:
                yield s
    """))
    pytester.makepyfile(test_p=dedent("""
        import socket
        KEEP = []
        def test_user_passes(server):
            KEEP.append(socket.create_connection((server.host, server.port)))
        def test_user_fails():
            assert False, "the user's own failure"
    """))
    result = run(subprocess=True)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*plugin problem(s) - a fault of pytest-sockhygiene, not of your tests*",
                                 "*simulated backend fault*"])
    assert errors_of(result) == []


def test_unreadable_table_gives_one_notice_and_the_run_goes_on(pytester, run):
    # Faults we cannot cause for real as root: no /proc/self/fd (pointed at a missing directory) and psutil
    # refused (AccessDenied). In a subprocess so that the patches die with it.
    pytester.makeconftest(dedent("""
        import psutil
        from pytest_sockhygiene.table import linux

        linux._FD_DIR = "/nonexistent/proc/self/fd"

        def denied(self, kind="inet"):
            raise psutil.AccessDenied(pid=1)

        psutil.Process.net_connections = denied
    """))
    pytester.makepyfile(test_n=dedent("""
        def test_a(): pass
        def test_b(): pass
    """))
    result = run(subprocess=True)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("notice: socket checks are off for this session") == 1
