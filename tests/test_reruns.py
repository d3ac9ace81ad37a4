"""End to end, beside the real pytest-rerunfailures: a test run again under the same node id is one test, and its
record is its last attempt's - in the summary, the JSON report and its rankings, with and without xdist."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ONE_BACKEND, dedent, with_flaky, with_rerunfailures

pytestmark = ONE_BACKEND

pytest.importorskip("pytest_rerunfailures")

SUITE = dedent("""
    import socket
    import httpx

    KEEP = []
    ATTEMPTS = {"flaky": 0}

    def test_always_leaks(server):
        client = httpx.Client()
        client.get(server.url)
        KEEP.append(client)

    def test_leaks_only_at_first(server):
        ATTEMPTS["flaky"] += 1
        if ATTEMPTS["flaky"] == 1:
            KEEP.append(socket.create_connection((server.host, server.port)))

    def test_clean(server):
        with httpx.Client() as client:
            client.get(server.url)
""")


@pytest.mark.parametrize("workers", [None, "1"])
def test_a_rerun_test_is_checked_once_with_its_last_attempt(pytester, run, tmp_path, workers, monkeypatch):
    with_rerunfailures(monkeypatch)
    pytester.makepyfile(test_r=SUITE)
    path = tmp_path / "r.json"
    args = ["--reruns", "2", f"--sockhygiene-report={path}"]
    if workers:
        args += ["-n", workers]
    result = run(*args, subprocess=bool(workers))
    # every attempt of test_always_leaks fails on its leak, so it is run three times; the flaky one twice (each
    # attempt's call passed: pytest-rerunfailures counts it, and the teardown error that made it run again)
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("error", outcomes.get("errors")), outcomes.get("rerun")) == (6, 1, 3)
    result.stdout.fnmatch_lines(["3 tests checked, 1 with violations (clients: 1, established: 1)"])
    # the flaky test's first attempt left a connection open: its record is the clean rerun's, and the summary
    # still says it broke its limits before it was run again (found beside the real plugin: no trace otherwise)
    result.stdout.fnmatch_lines([
        "run again after breaking their limits: 2 tests; the record of each is its last "
        "attempt's, and what an earlier attempt left open may still be open:",
        "  test_r.py::test_always_leaks",
        "  test_r.py::test_leaks_only_at_first",
    ])
    report = json.loads(path.read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert [t["nodeid"] for t in report["tests"]].count("test_r.py::test_always_leaks") == 1
    assert sorted(tests) == ["test_r.py::test_always_leaks", "test_r.py::test_clean",
                             "test_r.py::test_leaks_only_at_first"]
    assert report["session"]["tests_checked"] == 3
    assert report["session"]["tests_with_violations"] == 1
    assert tests["test_r.py::test_always_leaks"]["counts"]["established"] == 1
    # the attempt whose outcome stands (the second, which passed) is the test's record: clean
    assert tests["test_r.py::test_leaks_only_at_first"]["clean"] is True
    assert tests["test_r.py::test_leaks_only_at_first"]["counts"]["established"] == 0
    # one connection per test in the session's figure: the last attempts', not every attempt's
    assert report["session"]["connections_opened"] == 2
    # the report keeps the rerun line for CI (it was terminal-only): read back by `show`, it prints it again
    assert report["session"]["rerun_after_violations"] == ["test_r.py::test_always_leaks",
                                                           "test_r.py::test_leaks_only_at_first"]
    shown = pytester.run(sys.executable, "-m", "pytest_sockhygiene", "show", str(path))
    shown.stdout.fnmatch_lines(["run again after breaking their limits: 2 tests*", "  test_r.py::test_always_leaks",
                                "  test_r.py::test_leaks_only_at_first"])


FLAKY_SUITE = dedent("""
    import socket

    from flaky import flaky

    KEEP = []
    ATTEMPTS = {"flaky": 0}

    @flaky(max_runs=2)
    def test_leaks_and_fails_at_first(server):
        ATTEMPTS["flaky"] += 1
        if ATTEMPTS["flaky"] == 1:
            KEEP.append(socket.create_connection((server.host, server.port)))
            assert False, "the first attempt fails"

    def test_clean(server):
        pass
""")


@pytest.mark.parametrize("workers", [None, "1"])
def test_beside_flaky_a_violation_that_stands_in_the_runs_result_is_counted(pytester, run, tmp_path, workers,
                                                                             monkeypatch):
    """flaky runs a failed call again but lets that attempt's teardown error through: in enforce mode the first
    attempt's leak is an error of the run, which fails. The summary and the JSON report said "all clean" (the
    last attempt's record) and named pytest-rerunfailures as what ran it again; the attempt whose failure stands
    is now the test's record (found running the plugin beside flaky)."""
    pytest.importorskip("flaky")
    with_flaky(monkeypatch)
    pytester.makepyfile(test_f=FLAKY_SUITE)
    path = tmp_path / "r.json"
    args = ["-p", "no:randomly", f"--sockhygiene-report={path}"] + (["-n", workers] if workers else [])
    result = run(*args, subprocess=bool(workers))
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["2 tests checked, 1 with violations (established: 1)"])
    result.stdout.no_fnmatch_line("*run again after breaking their limits*")
    report = json.loads(path.read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert sorted(tests) == ["test_f.py::test_clean", "test_f.py::test_leaks_and_fails_at_first"]
    assert tests["test_f.py::test_leaks_and_fails_at_first"]["counts"]["established"] == 1
    assert report["session"]["tests_with_violations"] == 1
    assert report["session"]["rerun_after_violations"] == []


def test_beside_flaky_in_warn_mode_the_last_attempt_is_the_record(pytester, run, monkeypatch):
    """In warn mode the first attempt's leak fails nothing: the run's result is the last attempt's, as with
    pytest-rerunfailures, and the summary says which test broke its limits before it was run again (naming no
    plugin: flaky ran it)."""
    pytest.importorskip("flaky")
    with_flaky(monkeypatch)
    pytester.makepyfile(test_f=FLAKY_SUITE)
    result = run("-p", "no:randomly", mode="warn")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "2 tests checked, all clean",
        "run again after breaking their limits: 1 test; the record of each is its last attempt's, *",
        "  test_f.py::test_leaks_and_fails_at_first",
    ])


def test_a_file_given_twice_with_keep_duplicates_is_one_record_per_test(pytester, run):
    """``pytest test_k.py test_k.py --keep-duplicates`` runs each test twice under one node id, without any rerun
    plugin: each is one test in the summary, its last run's record (the session's end looks for repeats only where
    they can be, ``SessionResults.repeats``)."""
    pytester.makepyfile(test_k=dedent("""
        import socket

        KEEP = []

        def test_leaks():
            KEEP.append(socket.create_server(("127.0.0.1", 0)))

        def test_nothing():
            pass
    """))
    # (pytest-asyncio 0.23 patches a module's collect once per collection of it: a file given twice recurses)
    result = run("test_k.py", "test_k.py", "--keep-duplicates", "-p", "no:asyncio", mode="warn")
    assert result.parseoutcomes()["passed"] == 4
    result.stdout.fnmatch_lines(["2 tests checked, 1 with violations (listen: 1)"])
