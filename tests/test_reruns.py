"""End to end, beside the real pytest-rerunfailures: a test run again under the same node id is one test, and its
record is its last attempt's - in the summary, the JSON report and its rankings, with and without xdist."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ONE_BACKEND, dedent, with_rerunfailures

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
        "run again after breaking their limits: 2 tests (pytest-rerunfailures); the record of each is its last "
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
