"""``--sockhygiene-html``: the session as one self-contained page, and the per-test sample behind it."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile
from typing import Any

import pytest

from pytest_sockhygiene.reporting.html import MAX_COLUMNS, in_flight, in_flight_by_run, render

from conftest import ONE_BACKEND, dedent, errors_of

pytestmark = ONE_BACKEND

SUITE = dedent("""
    import socket, httpx, pytest

    KEEP = []

    def test_clean(server):
        with httpx.Client() as c:
            c.get(server.url)

    def test_leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    def test_burst(server):
        for _ in range(7):
            with httpx.Client() as c:
                c.get(server.url)

    def test_nothing():
        pass

    @pytest.mark.parametrize("tag", ["<b>&"])
    def test_odd_name(tag):
        KEEP.append(socket.socket())
        KEEP[-1].bind(("127.0.0.1", 0))
        KEEP[-1].listen()
""")


def _session(**kw: Any) -> dict[str, Any]:
    base = {"tests_checked": 0, "tests_with_violations": 0, "violations_by_kind": {}, "connections_opened": 0,
            "peak_time_wait": 0, "ephemeral_ports": 28232, "peak_open_fds": 30, "fd_limit": 1024,
            "session_leaks": [], "plugin_problems": 0, "notices": []}
    base.update(kw)
    return base


def _test(nodeid: str, t: float, tw: int = 0, conns: int = 0, fds: int = 20, clean: bool = True) -> dict[str, Any]:
    counts = {"established": 0, "close_wait": 0, "listen": 0, "time_wait": tw, "clients": 0, "connections": conns}
    violations = [] if clean else [{"kind": "time_wait", "count": tw, "limit": 5, "items": [
        {"state": "TIME_WAIT", "local": None, "remote": "127.0.0.1:80", "fd": None, "origin": "t.py:3 in f",
         "count": tw, "note": None}]}]
    return {"nodeid": nodeid, "clean": clean, "counts": counts, "violations": violations,
            "sample": {"time": t, "fds": fds}}


def test_time_wait_in_flight_counts_the_last_60_seconds():
    times = [100.0, 110.0, 150.0, 165.0, None, 230.0]
    counts = [5, 3, 2, 1, 9, 4]
    # at 165: the entries of 110, 150, 165 (100's expired at 160); at 230: 4 alone (65 s after 165)
    assert in_flight(times, counts) == [5, 8, 10, 6, None, 4]


def test_time_wait_in_flight_of_several_runs_is_each_runs_own():
    """Shards run on other machines or in other processes: their entries never hold one another's ports."""
    times = [100.0, 101.0, 102.0, 103.0, 170.0]
    counts = [5, 7, 1, 2, 4]
    runs = [0, 1, 0, 1, 0]
    assert in_flight(times, counts) == [5, 12, 13, 15, 4]
    assert in_flight_by_run(times, counts, runs) == [5, 7, 6, 9, 4]
    assert in_flight_by_run(times, counts, [3] * 5) == in_flight_by_run(times, counts) == in_flight(times, counts)


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    tests = [_test("t.py::a", 1000.0), _test("t.py::b[<i>&\"]", 1001.0, tw=9, conns=9, clean=False),
             _test("t.py::c", 1002.0, conns=1)]
    doc = {"version": 1, "tests": tests, "session": _session(tests_checked=3, tests_with_violations=1,
                                                             violations_by_kind={"time_wait": 1})}
    page = render(doc)
    for forbidden in ("<script", "<link", "@import", "url(", "src=", "href=\"http", "<img"):
        assert forbidden not in page, forbidden
    assert page.count("<svg") == 1
    assert "t.py::b[&lt;i&gt;&amp;&quot;]" in page and "<i>" not in page
    anchors = re.findall(r'<a class="mark" href="#(t\d+)">', page)
    assert anchors == ["t2"]
    section = re.search(r'<section id="t2"><h3>(.*?)</h3><pre>(.*?)</pre></section>', page, re.S)
    assert section is not None
    assert section.group(2).startswith("sockhygiene: t.py::b[&lt;i&gt;&amp;&quot;] broke its socket limits\n"
                                       "  time_wait: 9 &gt; limit 5 - TIME_WAIT entries from connections this test")


def test_a_long_run_shares_columns_and_stays_small():
    tests = [_test(f"t.py::test_{i}", 1000.0 + i, tw=i % 3, conns=i % 5, fds=20 + i % 7, clean=i % 997 != 0)
             for i in range(20000)]
    page = render({"version": 1, "tests": tests, "session": _session(tests_checked=len(tests))})
    assert len(re.findall(r"<rect ", page)) <= MAX_COLUMNS
    assert page.count('<a class="mark"') == len([t for t in tests if not t["clean"]])
    assert len(page) < 1_500_000


def _report(path: pathlib.Path) -> dict[str, Any]:
    import jsonschema

    doc = json.loads(path.read_text())
    schema = pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))
    return doc


def _teardown_texts(result: Any) -> dict[str, str]:
    """Failure texts as the terminal showed them, by node id."""
    text = "\n".join(result.outlines)
    out = {}
    for block in re.split(r"\n_{3,} ERROR at teardown of .*? _{3,}\n", text)[1:]:
        lines: list[str] = []
        for line in block.splitlines():
            if line.startswith("[gw") and not lines:  # xdist names the worker first
                continue
            if line.startswith(("=====", "____")):
                break
            lines.append(line)
        nodeid = lines[0].split()[1]
        out[nodeid] = "\n".join(lines)
    return out


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_the_page_of_a_run(pytester, run, tmp_path, xdist, backend):
    pytester.makepyfile(test_a=SUITE)
    page_path, report_path = tmp_path / "page.html", tmp_path / "r.json"
    args = [f"--sockhygiene-html={page_path}", f"--sockhygiene-report={report_path}"]
    if xdist:
        args += ["-n", "2"]
    result = run(*args)
    assert errors_of(result) == ["test_a.py::test_burst", "test_a.py::test_leak", "test_a.py::test_odd_name[<b>&]"]
    result.stdout.fnmatch_lines([f"html: {page_path}"])
    page = page_path.read_text()
    doc = _report(report_path)
    # every test has its sample: when its check ended, and its process's open fds then
    assert all(t["sample"]["time"] > 0 for t in doc["tests"]), doc["tests"]
    assert all(isinstance(t["sample"]["fds"], int) and t["sample"]["fds"] > 3 for t in doc["tests"]), doc["tests"]
    if not xdist:
        times = [t["sample"]["time"] for t in doc["tests"]]
        assert times == sorted(times)
    # the violating tests are marked on the timeline and link to the terminal's text
    texts = _teardown_texts(result)
    assert sorted(texts) == errors_of(result)
    import html as html_mod

    sections = dict(re.findall(r'<section id="(t\d+)"><h3>.*?</h3><pre>(.*?)</pre></section>', page, re.S))
    marks = re.findall(r'<a class="mark" href="#(t\d+)"><title>(.*?): [a-z_, ]+</title>', page)
    assert sorted(html_mod.unescape(n) for _, n in marks) == errors_of(result)
    for anchor, nodeid in marks:
        assert html_mod.unescape(sections[anchor]) == texts[html_mod.unescape(nodeid)]
    # the health at the top is the terminal summary's
    assert "5 tests checked, 3 with violations (established: 1, listen: 1, time_wait: 1)" in page


def test_bad_path_stops_the_run_and_off_mode_ignores_it(pytester, run, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass")
    result = run(f"--sockhygiene-html={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-html: * names a directory; give a file path *"])
    (tmp_path / "file").write_text("")
    result = run(f"--sockhygiene-html={tmp_path / 'file' / 'p.html'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-html: cannot write *p.html*: * is not a directory"])
    # a missing folder where none can be made: refused at the start, also for root (whom os.access answers yes)
    result = run("--sockhygiene-html=/proc/no-such-folder/p.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-html: cannot write '/proc/no-such-folder/p.html': "
                                 "no folder can be made in '/proc' (*)"])
    # missing folders are made at the end, as for the JSON report and --junitxml (the start's probe leaves none)
    run(f"--sockhygiene-html={tmp_path / 'out' / 'ci' / 'p.html'}").assert_outcomes(passed=1)
    assert (tmp_path / "out" / "ci" / "p.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]
    result = run(f"--sockhygiene-html={tmp_path / 'p.html'}", mode="off")
    assert result.ret == 0 and not (tmp_path / "p.html").exists()


def test_two_outputs_on_one_file_stop_the_run(pytester, run, tmp_path):
    """Each output needs its own file: the one written last replaced the other without a word (a report over the
    committed baseline, the page over the report, the report over the JUnit XML). Off mode writes none of them."""
    pytester.makepyfile(test_ok="def test_a(): pass")
    one = tmp_path / "one.json"
    for first, second in ((f"--sockhygiene-report={one}", f"--sockhygiene-html={one}"),
                          (f"--sockhygiene-report={one}", f"--junitxml={one}"),
                          (f"--sockhygiene-baseline={one}", f"--sockhygiene-report={tmp_path / '.' / 'one.json'}")):
        result = run(first, second, *(["--sockhygiene-baseline-update"] if "baseline" in first else []))
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (first, second)
        options = sorted(a.split("=")[0] for a in (first, second))
        line = [ln for ln in result.stderr.lines if "name the same file" in ln]
        assert len(line) == 1 and sorted(re.findall(r"(--[\w-]+) (?:and|name)", line[0])) == options, line
        assert line[0].startswith("ERROR: sockhygiene: --") and line[0].endswith(
            "one.json': one would overwrite the other; give each its own path")
        assert not one.exists()
    run(f"--sockhygiene-report={one}", f"--sockhygiene-html={one}", mode="off").assert_outcomes(passed=1)


def test_pytest_html_with_unmeasured_counts_keeps_the_run(pytester, run, tmp_path):
    """A test run while other code had replaced the socket hooks has null event counts: pytest-html's row of it
    is written (an INTERNALERROR stopped the run, and under xdist the worker's tests were lost with exit status 0)."""
    pytest.importorskip("pytest_html")
    from test_cli import UNMEASURED

    pytester.makepyfile(test_u=UNMEASURED)
    for extra in ([], ["-n", "2"]):
        page = tmp_path / f"report{len(extra)}.html"
        result = run(f"--html={page}", "--self-contained-html", *extra)
        result.assert_outcomes(passed=2)
        output = result.stdout.str() + result.stderr.str()
        assert "INTERNALERROR" not in output and "plugin problem" not in output
        rows = _pytest_html_rows(page)
        assert set(rows) == {"test_u.py::test_patches", "test_u.py::test_after"}
        cells = [c for r in rows["test_u.py::test_patches"] for c in r["resultsTableRow"] if "col-sockhygiene" in c]
        assert cells and all(re.sub(r"<[^>]+>", "", c) == "time_wait unmeasured, connections unmeasured"
                             for c in cells), cells


PROBE = dedent("""
    import pytest

    def pytest_sessionfinish(session):
        reporter = session.config.pluginmanager.get_plugin("sockhygiene-session-reporter")
        stored = reporter.results._stored
        kinds = sorted({type(r).__name__ + (str(len(r)) if isinstance(r, tuple) else "") for r in stored})
        with open("stored.txt", "w") as f:
            f.write(",".join(kinds))
""")


def test_the_clean_path_takes_no_sample_unless_a_report_or_page_is_asked_for(pytester, run, tmp_path):
    """docs/performance.md: a clean test's record is the test item itself, no time taken, no fd count. A sample
    (a clock read; the fd count of the look already made) is taken only for a report or the page."""
    pytester.makeconftest(PROBE)
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): pass\n")
    run().assert_outcomes(passed=2)
    assert (pytester.path / "stored.txt").read_text() == "Function"
    run(f"--sockhygiene-html={tmp_path / 'p.html'}").assert_outcomes(passed=2)
    assert (pytester.path / "stored.txt").read_text() == "tuple4"
    run(f"--sockhygiene-report={tmp_path / 'r.json'}").assert_outcomes(passed=2)
    assert (pytester.path / "stored.txt").read_text() == "tuple4"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--no-first-run", f"--user-data-dir={profile}", *args],
                              capture_output=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(pytester, tmp_path):
    pytester.makeconftest(dedent("""
        import pytest
        from pytest_sockhygiene.testing import serve_http

        @pytest.fixture(scope="session")
        def server():
            with serve_http() as s:
                yield s
    """))
    pytester.makepyfile(test_a=SUITE)
    page = tmp_path / "page.html"
    pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene=warn", f"--sockhygiene-html={page}")
    # the DOM chromium built: the SVG parsed, with its three bands and the three violating tests' marks
    dom = chromium("--dump-dom", page.as_uri())
    text = dom.stdout.decode()
    assert "<svg" in text and text.count('class="mark"') == 3, dom.stderr.decode()[-2000:]
    assert text.count("<polygon") >= 1 and text.count("<polyline") >= 1 and "<rect" in text
    shot = tmp_path / "page.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1400,900", page.as_uri())
    assert shot.exists(), done.stderr.decode()[-2000:]
    data = shot.read_bytes()
    assert _png_size(data) == (1400, 900)
    assert len(data) > 30_000  # a blank or error page compresses to a few kilobytes


def _pytest_html_rows(path: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """The rows pytest-html (v4) stored in its page: node id -> its rows (cells, extras)."""
    import html as html_mod

    blob = re.search(r'data-jsonblob="(.*?)"', path.read_text(), re.S)
    assert blob is not None
    return json.loads(html_mod.unescape(blob.group(1)))["tests"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_pytest_html_rows_carry_counts_and_extras_the_terminal_text(pytester, run, tmp_path, xdist):
    pytest.importorskip("pytest_html")
    import base64

    pytester.makepyfile(test_a=SUITE)
    page = tmp_path / "report.html"
    result = run(f"--html={page}", "--self-contained-html", *(["-n", "2"] if xdist else []))
    assert errors_of(result) == ["test_a.py::test_burst", "test_a.py::test_leak", "test_a.py::test_odd_name[<b>&]"]
    rows = _pytest_html_rows(page)
    texts = _teardown_texts(result)

    def cell(row: dict[str, Any]) -> str:
        found = [c for c in row["resultsTableRow"] if 'class="col-sockhygiene"' in c]
        assert len(found) == 1, row["resultsTableRow"]
        return re.sub(r"<[^>]+>", "", found[0])

    assert [cell(r) for r in rows["test_a.py::test_nothing"]] == ["clean"]
    assert [cell(r) for r in rows["test_a.py::test_clean"]] == ["time_wait 1, connections 1"]
    # a violating test has its call row and its teardown error row: both carry the counts and the extra
    assert {cell(r) for r in rows["test_a.py::test_burst"]} == {"time_wait 7, connections 7"}
    assert {cell(r) for r in rows["test_a.py::test_leak"]} == {"established 1, connections 1"}
    for nodeid in errors_of(result):
        for row in rows[nodeid]:
            [extra] = [e for e in row["extras"] if e["name"] == "sockhygiene"]
            assert extra["format_type"] == "text"
            content = extra["content"].split("base64,", 1)[1]
            assert base64.b64decode(content).decode() == texts[nodeid]
    assert all(not [e for e in r["extras"] if e["name"] == "sockhygiene"] for r in rows["test_a.py::test_clean"])
    assert '<th class="sortable" data-column-type="sockhygiene">Sockets</th>' in page.read_text()


def test_pytest_html_rows_are_registered_only_with_pytest_html_and_its_option(pytester, run, tmp_path):
    pytester.makeconftest(INNER_CONFTEST_PROBE)
    pytester.makepyfile(test_ok="def test_a(): pass")
    run().assert_outcomes(passed=1)
    assert (pytester.path / "rows.txt").read_text() == "False"
    run(f"--html={tmp_path / 'r.html'}").assert_outcomes(passed=1)
    assert (pytester.path / "rows.txt").read_text() == "True"
    run("-p", "no:html").assert_outcomes(passed=1)  # pytest-html not loaded: its hooks do not exist
    assert (pytester.path / "rows.txt").read_text() == "False"


INNER_CONFTEST_PROBE = dedent("""
    def pytest_sessionfinish(session):
        with open("rows.txt", "w") as f:
            f.write(str(session.config.pluginmanager.has_plugin("sockhygiene-session-pytest-html")))
""")
