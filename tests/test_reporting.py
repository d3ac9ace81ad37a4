"""CI-grade reporting: summary, JSON report against its schema, junitxml properties, xdist merge, baseline."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from conftest import ONE_BACKEND, agree_but_for_resets, dedent, errors_of, within_resets

pytestmark = ONE_BACKEND

SCHEMA = json.loads((pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())

SUITE = dedent("""
    import socket, httpx, pytest
    KEEP = []

    def test_clean(server):
        with httpx.Client() as c:
            c.get(server.url)

    def test_leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    def test_burst(server):
        for _ in range(9):
            with httpx.Client() as c:
                c.get(server.url)

    @pytest.mark.sockhygiene(connections=2)
    def test_budget(server):
        for _ in range(3):
            with socket.create_connection((server.host, server.port)):
                pass

    def test_no_socket():
        pass
""")


def _report(path: pathlib.Path) -> dict:
    import jsonschema

    doc = json.loads(path.read_text())
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_summary_quiet_when_clean(pytester, run, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): pass\n")
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}")
    result.stdout.fnmatch_lines(["*= socket hygiene =*", "2 tests checked, all clean"])
    assert "session health" not in result.stdout.str()
    # no test changed the process's fds (the peak is taken when one does): the count every look saw, not unknown
    session = json.loads(path.read_text())["session"]
    assert isinstance(session["peak_open_fds"], int) and session["peak_open_fds"] > 2, session
    assert session["fd_limit"] is None or session["fd_limit"] >= session["peak_open_fds"]


def test_summary_details_when_dirty(pytester, run):
    pytester.makepyfile(test_s=SUITE)
    result = run()
    result.stdout.fnmatch_lines([
        "*= socket hygiene =*",
        "5 tests checked, 3 with violations (connections: 1, established: 1, time_wait: 1)",
        "most TIME_WAIT:",
        "      9  test_s.py::test_burst  [over limit 5]  (test_s.py:14 in test_burst)",
        "      3  test_s.py::test_budget",
        "      1  test_s.py::test_clean",
        "most connections:",
        "      9  test_s.py::test_burst",
        "      3  test_s.py::test_budget  [over limit 2]  (test_s.py:19 in test_budget)",
        "session health: 14 connections opened; peak TIME_WAIT caused * of * ephemeral ports; "
        "peak open file descriptors * of *",
    ])



def test_a_most_list_cut_among_tied_tests_says_how_many_more_share_its_last_count(pytester, run):
    """Eight tests with one TIME_WAIT entry each and one with three: the list shows the worst and four of the
    tied ones, picked by name, and then says that four more have the same count, so the five lines do not read as
    the five worst of the suite."""
    pytester.makepyfile(test_tie=dedent("""
        import httpx, pytest

        @pytest.mark.parametrize("n", range(8))
        def test_one(server, n):
            with httpx.Client() as c:
                c.get(server.url)

        def test_three(server):
            for _ in range(3):
                with httpx.Client() as c:
                    c.get(server.url)
    """))
    result = run("-v")
    result.stdout.fnmatch_lines([
        "most TIME_WAIT:",
        "      3  test_tie.py::test_three",
        "      1  test_tie.py::test_one[[]0]",
        "      1  test_tie.py::test_one[[]1]",
        "      1  test_tie.py::test_one[[]2]",
        "      1  test_tie.py::test_one[[]3]",
        "  ... and 4 more tests with 1",
        "most connections:",
        "      3  test_tie.py::test_three",
    ], consecutive=True)

AT_THE_LIMIT = dedent("""
    import httpx, pytest

    def burst(server, n):
        for _ in range(n):
            with httpx.Client() as c:
                c.get(server.url)

    def test_at_the_limit(server):
        burst(server, 5)

    def test_over_the_limit(server):
        burst(server, 6)

    @pytest.mark.sockhygiene(time_wait=10)
    def test_more_but_allowed(server):
        burst(server, 7)
""")


def test_summary_marks_the_tests_that_broke_a_limit_and_the_report_keeps_the_4_tuples(pytester, run, tmp_path):
    """Clean tests at (or, with their own limit, above) the violator's count stand beside it unmarked; the
    violator is marked. Its TIME_WAIT group in the JSON report lists the exact rows, as the kernel has them."""
    import psutil

    pytester.makepyfile(test_lim=AT_THE_LIMIT)
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}")
    assert errors_of(result) == ["test_lim.py::test_over_the_limit"]
    result.stdout.fnmatch_lines([
        "most TIME_WAIT:",
        "      7  test_lim.py::test_more_but_allowed",
        "      6  test_lim.py::test_over_the_limit  [over limit 5]  (test_lim.py:6 in burst)",
        "      5  test_lim.py::test_at_the_limit",
        "most connections:",
    ])
    doc = _report(path)
    (over,) = [t for t in doc["tests"] if not t["clean"]]
    (group,) = over["violations"][0]["items"]
    rows = {tuple(pair) for pair in group["tuples"]}
    assert len(rows) == group["count"] == 6
    time_wait = {(f"{c.laddr.ip}:{c.laddr.port}", f"{c.raddr.ip}:{c.raddr.port}")
                 for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_TIME_WAIT and c.raddr}
    assert rows <= time_wait  # what `ss -tan state time-wait` lists, 60 s long


def test_json_report_schema_and_content(pytester, run, tmp_path):
    pytester.makepyfile(test_s=SUITE)
    path = tmp_path / "hygiene.json"
    result = run(f"--sockhygiene-report={path}")
    doc = _report(path)
    by_id = {t["nodeid"]: t for t in doc["tests"]}
    assert sorted(by_id) == sorted(f"test_s.py::{n}" for n in
                                   ("test_clean", "test_leak", "test_burst", "test_budget", "test_no_socket"))
    assert by_id["test_s.py::test_clean"]["clean"] and by_id["test_s.py::test_clean"]["counts"]["connections"] == 1
    leak = by_id["test_s.py::test_leak"]
    assert not leak["clean"] and leak["counts"]["established"] == 1
    (v,) = leak["violations"]
    assert (v["kind"], v["count"], v["limit"]) == ("established", 1, 0)
    assert v["items"][0]["state"] == "ESTABLISHED" and v["items"][0]["origin"] == "test_s.py:9 in test_leak"
    burst = by_id["test_s.py::test_burst"]
    lingering = burst["counts"]["time_wait"]  # 9, or fewer by the kernel's resets meanwhile (conftest.lingered)
    assert within_resets(lingering, 9, result), (result.resets, burst["counts"])
    assert burst["violations"][0]["context"][0]["state"] == "httpx.Client"
    (group,) = burst["violations"][0]["items"]
    assert len(group["tuples"]) == lingering == len({tuple(t) for t in group["tuples"]})
    assert all(remote == group["remote"] for _, remote in group["tuples"])
    assert all(counts["unused_clients"] == 0 for counts in (t["counts"] for t in doc["tests"]))
    assert by_id["test_s.py::test_budget"]["violations"][0]["kind"] == "connections"
    assert doc["session"]["tests_checked"] == 5 and doc["session"]["connections_opened"] == 14
    assert doc["session"]["peak_time_wait"] >= lingering


def test_junitxml_carries_counts(pytester, run, tmp_path):
    pytester.makepyfile(test_s=SUITE)
    xml = tmp_path / "junit.xml"
    result = run(f"--junitxml={xml}")
    props = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        props[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert within_resets(int(props["test_burst"]["sockhygiene_time_wait"]), 9, result), (result.resets, props)
    assert props["test_leak"]["sockhygiene_established"] == "1"
    assert props["test_no_socket"]["sockhygiene_connections"] == "0"
    assert props["test_clean"]["sockhygiene_unused_clients"] == "0"


def test_xdist_merges_into_one_report_equal_to_a_plain_run(pytester, run, tmp_path):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_s=SUITE)
    plain_path, dist_path = tmp_path / "plain.json", tmp_path / "dist.json"
    plain = run(f"--sockhygiene-report={plain_path}")
    dist = run(f"--sockhygiene-report={dist_path}", "-n", "2", "--dist", "loadscope")
    assert errors_of(plain) == errors_of(dist)

    def essence(doc: dict) -> dict:
        return {t["nodeid"]: (t["clean"], t["counts"], [v["kind"] for v in t["violations"]]) for t in doc["tests"]}

    plain_doc, dist_doc = _report(plain_path), _report(dist_path)
    diff = {k: (v, essence(dist_doc).get(k)) for k, v in essence(plain_doc).items() if v != essence(dist_doc).get(k)}
    assert agree_but_for_resets(essence(plain_doc), essence(dist_doc), plain.resets + dist.resets), json.dumps(diff)
    assert dist_doc["session"]["tests_checked"] == 5
    assert dist_doc["session"]["connections_opened"] == plain_doc["session"]["connections_opened"]
    dist.stdout.fnmatch_lines(["5 tests checked, 3 with violations*"])


BASELINE_SUITE = dedent("""
    import httpx, os

    N = int(os.environ.get("SOCKHYGIENE_TEST_N", "1"))

    def test_requests(server):
        for _ in range(N):
            with httpx.Client() as c:
                c.get(server.url)

    def test_steady(server):
        with httpx.Client() as c:
            c.get(server.url)
""")


def test_baseline_update_then_grow_and_shrink(pytester, run, tmp_path, monkeypatch):
    pytester.makepyfile(test_b=BASELINE_SUITE)
    path = tmp_path / "baseline.json"
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "3")
    run(f"--sockhygiene-baseline={path}", "--sockhygiene-baseline-update").assert_outcomes(passed=2)
    text = path.read_text()
    assert text.splitlines()[3:5] == [
        '    "test_b.py::test_requests": {"connections": 3, "time_wait": 3},',
        '    "test_b.py::test_steady": {"connections": 1, "time_wait": 1}',
    ]
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "2")  # shrink: fine
    run(f"--sockhygiene-baseline={path}").assert_outcomes(passed=2)
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "5")  # grow beyond 3 + max(1, 10 %): fails
    result = run(f"--sockhygiene-baseline={path}", "-o", "sockhygiene_time_wait=unlimited")
    assert errors_of(result) == ["test_b.py::test_requests"]
    result.stdout.fnmatch_lines(["*connections: 5 (baseline 3) - grew beyond the baseline's tolerance (at most 4)*",
                                 "*time_wait: 5 (baseline 3)*"])
    result.stdout.fnmatch_lines(["most TIME_WAIT:", "      5  test_b.py::test_requests  [[]over baseline, at most 4]",
                                 "      1  test_b.py::test_steady", "most connections:",
                                 "      5  test_b.py::test_requests  [[]over baseline, at most 4]"])


def test_baseline_missing_and_corrupt_are_clear_errors(pytester, run, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass")
    missing = tmp_path / "nope.json"
    result = run(f"--sockhygiene-baseline={missing}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-baseline: baseline file * does not exist; "
                                 "create it with --sockhygiene-baseline-update"])
    corrupt = tmp_path / "bad.json"
    corrupt.write_text('{"version": 1, "tests": {"x": {"connections": -1}}}')
    result = run(f"--sockhygiene-baseline={corrupt}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-baseline: baseline file *: bad entry for 'x'*"])
    corrupt.write_text("not json")
    result = run(f"--sockhygiene-baseline={corrupt}")
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-baseline: baseline file * is not valid JSON*"])


def test_tests_not_in_baseline_are_judged_by_limits_alone(pytester, run, tmp_path):
    pytester.makepyfile(test_b=BASELINE_SUITE)
    path = tmp_path / "baseline.json"
    path.write_text('{"version": 1, "tests": {}}')
    run(f"--sockhygiene-baseline={path}").assert_outcomes(passed=2)


def test_session_level_leak_fails_the_run(pytester, run, tmp_path):
    pytester.makeconftest(dedent("""
        import threading, pytest
        from pytest_sockhygiene.testing import LoopbackHTTPServer

        @pytest.fixture(scope="session")
        def forgotten():
            server = LoopbackHTTPServer()
            threading.Thread(target=server.serve_forever, daemon=True).start()
            return server  # started, never shut down: its thread keeps the listener open
    """))
    pytester.makepyfile(test_l="def test_a(forgotten): pass\ndef test_b(forgotten): pass\n")
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "session-level leaks: 1 left open at session end by fixtures of broader scope*",
        "  LISTEN 127.0.0.1:* fd=* - session-scoped fixture 'forgotten'",
    ])
    assert _report(path)["session"]["session_leaks"][0]["owner"] == "session-scoped fixture 'forgotten'"
    warned = run(mode="warn")
    assert warned.ret == pytest.ExitCode.OK
