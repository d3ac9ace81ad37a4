"""End to end, beside the real pytest-forked: a test run in a forked child is checked there, and its record, its
warn-mode warning and its enforce-mode failure reach the process that reports."""

from __future__ import annotations

import json

import pytest

from conftest import dedent, errors_of

pytest.importorskip("pytest_forked")

SUITE = dedent("""
    import httpx
    import pytest

    KEEP = []

    def test_leak(server):
        client = httpx.Client()
        client.get(server.url)
        KEEP.append(client)

    def test_clean(server):
        with httpx.Client() as client:
            client.get(server.url)

    def test_nothing():
        pass
""")


@pytest.fixture
def forked_works(pytester):
    """pytest-forked 1.7 cannot send pytest 9's reports from its child (marshal refuses them), plugin or not: there
    every forked test "EXITED with status 3", and there is nothing of this plugin's to test."""
    pytester.makepyfile(test_probe="def test_probe(): pass")
    probe = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:sockhygiene", "--forked")
    (pytester.path / "test_probe.py").unlink()
    if probe.parseoutcomes().get("passed") != 1:
        pytest.skip(f"pytest-forked does not run tests under pytest {pytest.__version__} (without this plugin too)")


@pytest.mark.parametrize("mode", ["warn", "enforce"])
def test_forked_tests_are_checked_and_reported(pytester, run, tmp_path, mode, forked_works):
    pytester.makepyfile(test_f=SUITE)
    path = tmp_path / "r.json"
    result = run("--forked", f"--sockhygiene-report={path}", mode=mode, subprocess=True)
    report = json.loads(path.read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert sorted(tests) == ["test_f.py::test_clean", "test_f.py::test_leak", "test_f.py::test_nothing"]
    assert report["session"]["tests_checked"] == 3
    assert tests["test_f.py::test_leak"]["counts"]["established"] == 1
    assert tests["test_f.py::test_leak"]["counts"]["clients"] == 1
    assert tests["test_f.py::test_clean"]["clean"] and tests["test_f.py::test_clean"]["counts"]["connections"] == 1
    result.stdout.fnmatch_lines(["3 tests checked, 1 with violations (clients: 1, established: 1)"])
    if mode == "warn":
        # (Python 3.12 also warns at each fork of a process with threads - the session's server: not counted here)
        assert result.parseoutcomes()["passed"] == 3 and result.ret == 0
        assert result.stdout.str().count("SockHygieneWarning: sockhygiene: test_f.py::test_leak broke") == 1
    else:
        result.assert_outcomes(passed=3, errors=1)
        assert errors_of(result) == ["test_f.py::test_leak"]


def test_a_test_marked_forked_is_checked_and_reported_without_the_option(pytester, run, tmp_path, forked_works):
    pytester.makepyfile(test_f=SUITE.replace("def test_leak(server):", "@pytest.mark.forked\ndef test_leak(server):"))
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}", mode="warn", subprocess=True)
    assert result.parseoutcomes()["passed"] == 3 and result.ret == 0
    assert result.stdout.str().count("SockHygieneWarning: sockhygiene: test_f.py::test_leak broke") == 1
    tests = {t["nodeid"]: t for t in json.loads(path.read_text())["tests"]}
    assert tests["test_f.py::test_leak"]["counts"]["established"] == 1
    assert len(tests) == 3  # the forked one once, the others from this process
