"""``python -m pytest_sockhygiene merge|baseline|diff|show``, run as a subprocess on reports of real runs."""

from __future__ import annotations

import io
import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest

from conftest import agree_but_for_resets, dedent, errors_of, resets_between, tcp_resets_sent

SCHEMA = json.loads((pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())

SUITE = dedent("""
    import os, socket, threading, httpx, pytest
    from pytest_sockhygiene.testing import LoopbackHTTPServer

    KEEP = []
    N = int(os.environ.get("SOCKHYGIENE_TEST_N", "3"))

    @pytest.fixture(scope="session")
    def stub():
        s = LoopbackHTTPServer()
        threading.Thread(target=s.serve_forever, daemon=True).start()
        return s  # never shut down: a session-level leak

    def test_clean():
        pass

    def test_burst(server):
        for _ in range(N):
            with httpx.Client() as c:
                c.get(server.url)

    def test_steady(server):
        with httpx.Client() as c:
            c.get(server.url)

    def test_leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    def test_stub(stub):
        pass
""")


def cli(*args: str, cwd: Any = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest_sockhygiene", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def report(path: pathlib.Path) -> dict[str, Any]:
    import jsonschema

    doc = json.loads(path.read_text())
    jsonschema.validate(doc, SCHEMA)
    return doc


def _run(pytester: pytest.Pytester, *args: str) -> Any:
    return pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene=enforce", "-o", "sockhygiene_settle=0.25",
                              "-o", "sockhygiene_time_wait=unlimited", *args)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    from conftest import INNER_CONFTEST

    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_s=SUITE)
    return pytester


def essence(doc: dict[str, Any]) -> dict[str, Any]:
    return {t["nodeid"]: (t["clean"], t["counts"], sorted(v["kind"] for v in t["violations"])) for t in doc["tests"]}


def test_merge_of_shards_adds_up_to_the_whole_run(suite, tmp_path):
    whole, a, b = tmp_path / "whole.json", tmp_path / "a.json", tmp_path / "b.json"
    before = tcp_resets_sent()
    _run(suite, f"--sockhygiene-report={whole}")
    _run(suite, f"--sockhygiene-report={a}", "-k", "clean or burst or stub")
    _run(suite, f"--sockhygiene-report={b}", "-k", "not (clean or burst or stub)")
    merged = tmp_path / "merged.json"
    done = cli("merge", "-o", str(merged), str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"merged 2 reports (5 tests) into {merged}" in done.stdout
    doc, whole_doc, a_doc, b_doc = report(merged), report(whole), report(a), report(b)
    assert agree_but_for_resets(essence(doc), essence(whole_doc), resets_between(before)), (doc, whole_doc)
    assert [t["nodeid"] for t in doc["tests"]] == [t["nodeid"] for t in a_doc["tests"] + b_doc["tests"]]
    s, sa, sb = doc["session"], a_doc["session"], b_doc["session"]
    for key in ("tests_checked", "tests_with_violations", "connections_opened"):
        assert s[key] == whole_doc["session"][key], key
    assert s["violations_by_kind"] == whole_doc["session"]["violations_by_kind"] == {"established": 1}
    # peaks are maxima: shards run apart, so their TIME_WAIT entries never add up in one place
    assert s["peak_time_wait"] == max(sa["peak_time_wait"], sb["peak_time_wait"]) == 3
    assert s["peak_open_fds"] == max(sa["peak_open_fds"], sb["peak_open_fds"])
    # the stub server leaks in shard a only; the shards' own leaks and notices are all kept
    assert [leak["owner"] for leak in s["session_leaks"]] == ["session-scoped fixture 'stub'"]
    assert s["session_leaks"] == sa["session_leaks"] + sb["session_leaks"]


def test_merge_a_test_in_several_reports_keeps_the_last_with_a_warning(suite, tmp_path, monkeypatch):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "2")
    _run(suite, f"--sockhygiene-report={first}", "-k", "burst or clean")
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "4")
    _run(suite, f"--sockhygiene-report={second}", "-k", "burst")
    merged = tmp_path / "merged.json"
    done = cli("merge", "-o", str(merged), str(first), str(second))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"python -m pytest_sockhygiene merge: warning: test_s.py::test_burst: in {first} and {second}; keeping "
        f"{second}'s (the last given)"]
    doc = report(merged)
    assert [(t["nodeid"], t["counts"]["connections"]) for t in doc["tests"]] == [
        ("test_s.py::test_clean", 0), ("test_s.py::test_burst", 4)] or [
        (t["nodeid"], t["counts"]["connections"]) for t in doc["tests"]] == [
        ("test_s.py::test_burst", 4), ("test_s.py::test_clean", 0)]
    assert doc["session"]["tests_checked"] == 3  # checked three times in all
    assert doc["session"]["connections_opened"] == 2 + 4


def test_merge_unites_the_tests_run_again_after_breaking_their_limits(tmp_path):
    """``session.rerun_after_violations`` (pytest-rerunfailures): united across shards, each node id once; a
    report written before the key existed merges as none, and `show` of the result prints the line."""
    session = {"tests_checked": 0, "tests_with_violations": 0, "violations_by_kind": {}, "connections_opened": 0,
               "peak_time_wait": 0, "ephemeral_ports": None, "peak_open_fds": None, "fd_limit": None,
               "session_leaks": [], "plugin_problems": 0, "notices": []}
    paths = []
    for name, rerun in (("a", ["t.py::x", "t.py::y"]), ("old", None), ("b", ["t.py::y", "t.py::z"])):
        doc = {"version": 1, "tests": [], "session": dict(session)}
        if rerun is not None:
            doc["session"]["rerun_after_violations"] = rerun
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    merged = tmp_path / "merged.json"
    assert cli("merge", "-o", str(merged), *map(str, paths)).returncode == 0
    assert report(merged)["session"]["rerun_after_violations"] == ["t.py::x", "t.py::y", "t.py::z"]
    shown = cli("show", str(merged))
    assert "run again after breaking their limits: 3 tests;" in shown.stdout



def test_merge_keeps_unknown_session_counts_unknown(tmp_path):
    """A shard whose tests were all unmeasured (gevent's sockets bypass the hooks) has null connection and
    TIME_WAIT figures: merged with a measured shard they are the measured one's, merged with each other null,
    never a 0 that reads as measured."""
    session = {"tests_checked": 1, "tests_with_violations": 0, "violations_by_kind": {}, "ephemeral_ports": 28232,
               "peak_open_fds": None, "fd_limit": None, "session_leaks": [], "plugin_problems": 0, "notices": []}
    shards = {"gevent": (None, None), "gevent2": (None, None), "plain": (7, 3)}
    for name, (opened, peak) in shards.items():
        doc = {"version": 1, "tests": [], "session": {**session, "connections_opened": opened, "peak_time_wait": peak}}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    for names, want in ((["gevent", "plain"], (7, 3)), (["gevent", "gevent2"], (None, None))):
        merged = tmp_path / "merged.json"
        assert cli("merge", "-o", str(merged), *(str(tmp_path / f"{n}.json") for n in names)).returncode == 0
        s = report(merged)["session"]
        assert (s["connections_opened"], s["peak_time_wait"]) == want, (names, s)

def _bad_inputs(tmp_path: pathlib.Path) -> list[Any]:
    good = {"version": 1, "tests": [], "session": {
        "tests_checked": 0, "tests_with_violations": 0, "violations_by_kind": {}, "connections_opened": 0,
        "peak_time_wait": 0, "ephemeral_ports": None, "peak_open_fds": None, "fd_limit": None, "session_leaks": [],
        "plugin_problems": 0, "notices": []}}
    cases = {
        "not-json.json": ("{not json", "not a sockhygiene report (not valid JSON"),
        "array.json": ("[1, 2]", "not a sockhygiene report (expected a JSON object"),
        "baseline.json": ('{"version": 1, "tests": {"t.py::a": {"connections": 1}}}',
                          "is a baseline file, not a report"),
        "v2.json": (json.dumps({**good, "version": 2}), "report version 2; this pytest-sockhygiene reads version 1"),
        "bad-test.json": (json.dumps({**good, "tests": [{"nodeid": "t.py::a", "clean": True,
                                                           "counts": {"connections": -1}, "violations": []}]}),
                          "test t.py::a: 'counts' must map kinds to non-negative integers"),
        "bad-session.json": (json.dumps({**good, "session": {**good["session"], "connections_opened": "9"}}),
                             "session.connections_opened must be an integer or null, got '9'"),
        "bad-rerun.json": (json.dumps({**good, "session": {**good["session"], "rerun_after_violations": "t.py::a"}}),
                           "session.rerun_after_violations must be a list of node ids, got 't.py::a'"),
        "bad-leak.json": (json.dumps({**good, "session": {**good["session"], "session_leaks": [{"kind": "socket"}]}}),
                          "session.session_leaks must hold objects with 'kind', 'what' and 'owner' strings"),
        "null-leak-count.json": (json.dumps({**good, "tests": [{"nodeid": "t.py::a", "clean": True, "violations": [],
                                                                 "counts": {"established": None}}]}),
                                 "test t.py::a: 'counts' must map kinds to non-negative integers (connections and "
                                 "time_wait may be null"),
    }
    out = []
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        out.append((tmp_path / name, message))
    out.append((tmp_path / "missing.json", "no such file"))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{\x00")  # unreadable as text (root reads any mode bits)
    out.append((tmp_path / "binary.json", "cannot be read: 'utf-8' codec can't decode byte 0xff"))
    out.append((tmp_path, "is a directory, not a report"))
    (tmp_path / "good.json").write_text(json.dumps(good))
    return out


def _cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``cli``'s answer from ``main`` called in this process: the same parser, commands and messages without an
    interpreter's start-up per call (54 calls below). ``cli`` itself runs one call per command there."""
    from pytest_sockhygiene.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out, err)
    return subprocess.CompletedProcess(["python", "-m", "pytest_sockhygiene", *args], code, out.getvalue(),
                                       err.getvalue())


def test_bad_input_is_a_clear_error_and_nothing_is_written(tmp_path):
    good = tmp_path / "in" / "good.json"
    (tmp_path / "in").mkdir()
    through_the_module = set()  # one call per command as a user makes it, a subprocess
    for path, message in _bad_inputs(tmp_path / "in"):
        out = tmp_path / "out.json"
        for args in (["merge", "-o", str(out), str(good), str(path)], ["baseline", "-o", str(out), str(path)],
                     ["show", str(path)], ["diff", str(good), str(path)], ["html", "-o", str(out), str(path)],
                     ["html", "-o", str(out), str(good), str(path)]):
            run = _cli_in_process if args[0] in through_the_module else cli
            through_the_module.add(args[0])
            done = run(*args)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert done.stderr == f"python -m pytest_sockhygiene {args[0]}: error: {path}: {message}" + \
                done.stderr.split(message, 1)[1], (args, done.stderr)
            assert done.stderr.count("\n") == 1
            assert not out.exists()
    unreadable = tmp_path / "in" / "good.json"
    # a folder that cannot be made (/proc takes none, even from root); missing folders elsewhere are made
    done = cli("merge", "-o", "/proc/sockhygiene-no-dir/m.json", str(unreadable))
    assert done.returncode == 2
    assert "error: cannot write the merged report" in done.stderr and "No such file or directory" in done.stderr
    assert cli("merge", "-o", str(tmp_path / "m.json")).returncode == 2  # argparse: a report is required
    done = cli("html", "-o", str(tmp_path), str(good))  # a directory where the page should go
    assert done.returncode == 2
    assert done.stderr.startswith(f"python -m pytest_sockhygiene html: error: cannot write the page {str(tmp_path)!r}")
    assert not list(tmp_path.glob("*.tmp*"))


UNMEASURED = dedent("""
    import socket, httpx

    REAL = socket.socket.connect

    def test_patches(server):  # replaces the hooks, never writes them back, connects: its event counts are unknown
        def connect(self, address):
            return REAL(self, address)
        socket.socket.connect = connect
        with httpx.Client() as c:
            c.get(server.url)

    def test_after(server):
        with httpx.Client() as c:
            c.get(server.url)
""")


def test_every_command_reads_a_report_with_unmeasured_counts(pytester, tmp_path):
    """A test run while other code had replaced the socket hooks has null ``connections`` and ``time_wait``, as the
    schema allows (docs/platforms.md): every command reads the report the plugin wrote (they refused it), and
    leaves those counts out of what it compares."""
    from conftest import INNER_CONFTEST

    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_u=UNMEASURED)
    rep = tmp_path / "r.json"
    _run(pytester, f"--sockhygiene-report={rep}").assert_outcomes(passed=2)
    counts = {t["nodeid"]: t["counts"] for t in report(rep)["tests"]}
    assert counts["test_u.py::test_patches"]["connections"] is None
    for args in (["show", str(rep)], ["merge", "-o", str(tmp_path / "m.json"), str(rep)],
                 ["baseline", "-o", str(tmp_path / "b.json"), str(rep)], ["diff", str(rep), str(rep)],
                 ["html", "-o", str(tmp_path / "p.html"), str(rep)]):
        done = _cli_in_process(*args)
        assert done.returncode == 0, (args, done.stderr)
    assert report(tmp_path / "m.json")["tests"] == report(rep)["tests"]
    assert json.loads((tmp_path / "b.json").read_text())["tests"]["test_u.py::test_patches"] == {}


def test_an_output_path_that_names_a_directory_is_refused(tmp_path):
    """``-o out/`` names a folder: refused, not written as a file named ``out`` (as the in-run options refuse it)."""
    (tmp_path / "in").mkdir()
    _bad_inputs(tmp_path / "in")
    rep = tmp_path / "in" / "good.json"
    for command in ("merge", "baseline", "html"):
        done = _cli_in_process(command, "-o", f"{tmp_path / 'out'}/", str(rep))
        assert done.returncode == 2, done.stdout
        assert "it names a directory; give a file path" in done.stderr
        assert not (tmp_path / "out").exists()


def test_an_output_in_folders_not_made_yet_is_written_there(tmp_path):
    """``-o reports/shard/merged.json`` makes the missing folders, as ``--sockhygiene-report`` and ``--junitxml``
    make theirs (a CI step that merges shards into a fresh folder failed with "No such file or directory"); a
    folder that cannot be made is a clear error, not a traceback."""
    (tmp_path / "in").mkdir()
    _bad_inputs(tmp_path / "in")
    rep = tmp_path / "in" / "good.json"
    for command, name in (("merge", "m.json"), ("baseline", "b.json"), ("html", "p.html")):
        out = tmp_path / "made" / command / name
        done = _cli_in_process(command, "-o", str(out), str(rep))
        assert done.returncode == 0, done.stderr
        assert out.is_file() and out.stat().st_size > 0
    (tmp_path / "a-file").write_text("")
    done = _cli_in_process("merge", "-o", str(tmp_path / "a-file" / "m.json"), str(rep))
    assert done.returncode == 2, done.stdout
    assert done.stderr == (f"python -m pytest_sockhygiene merge: error: cannot write the merged report "
                           f"{str(tmp_path / 'a-file' / 'm.json')!r}: a file is where one of its folders would be\n")


def test_baseline_from_a_report_is_the_file_baseline_update_writes(suite, tmp_path):
    rep, base = tmp_path / "r.json", tmp_path / "b.json"
    _run(suite, f"--sockhygiene-report={rep}", f"--sockhygiene-baseline={base}", "--sockhygiene-baseline-update")
    done = cli("baseline", "-o", str(tmp_path / "from-report.json"), str(rep))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote the baseline of 5 tests to {tmp_path / 'from-report.json'}\n"
    assert (tmp_path / "from-report.json").read_text() == base.read_text()
    # and the plugin reads it back as its baseline
    result = _run(suite, f"--sockhygiene-baseline={tmp_path / 'from-report.json'}")
    assert errors_of(result) == ["test_s.py::test_leak"]


def test_baseline_from_a_report_leaves_out_skipped_and_failed_tests(pytester, tmp_path):
    """A skipped or failed test counts 0 or less than it would: the report says which tests ran to the end, and
    the baseline written from it leaves the others out, as ``--sockhygiene-baseline-update`` does. A report of an
    earlier version (no ``finished``) is taken whole."""
    from conftest import INNER_CONFTEST

    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_b=dedent("""
        import httpx, pytest

        def test_runs(server):
            for _ in range(2):
                with httpx.Client() as c:
                    c.get(server.url)

        def test_skipped_midway(server):
            pytest.skip("not here")

        def test_fails_midway(server):
            with httpx.Client() as c:
                c.get(server.url)
            assert False
    """))
    rep, base = tmp_path / "r.json", tmp_path / "b.json"
    result = _run(pytester, f"--sockhygiene-report={rep}", f"--sockhygiene-baseline={base}",
                  "--sockhygiene-baseline-update")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    doc = report(rep)
    assert {t["nodeid"]: t["finished"] for t in doc["tests"]} == {
        "test_b.py::test_runs": True, "test_b.py::test_skipped_midway": False, "test_b.py::test_fails_midway": False}
    out = tmp_path / "from-report.json"
    done = cli("baseline", "-o", str(out), str(rep))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"wrote the baseline of 1 test to {out} (left out: 2 that did not run to the end, "
                           "skipped or failed)\n")
    assert list(json.loads(out.read_text())["tests"]) == ["test_b.py::test_runs"]
    assert out.read_text() == base.read_text()  # what the run itself wrote
    for t in doc["tests"]:
        del t["finished"]
    rep.write_text(json.dumps(doc))
    done = cli("baseline", "-o", str(out), str(rep))
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(out.read_text())["tests"]) == sorted(t["nodeid"] for t in doc["tests"])


def test_diff_grew_new_and_shrank(suite, tmp_path, monkeypatch):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "3")
    _run(suite, f"--sockhygiene-report={old}", "-k", "not steady")
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "5")  # 3 -> 5: beyond 3 + max(1, 10 %)
    _run(suite, f"--sockhygiene-report={new}")
    done = cli("diff", str(old), str(new))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "4 tests in both: 1 grew beyond the tolerance, 0 shrank; 1 new tests open connections",
        "grew beyond the tolerance (+max(1, 10%) for connections and TIME_WAIT, none for what is left open):",
        "  test_s.py::test_burst  time_wait 3 -> 5 (at most 4), connections 3 -> 5 (at most 4)",
        "new tests that open connections:",
        "  test_s.py::test_steady  connections 1",
    ]
    done = cli("diff", "--format=markdown", str(old), str(new))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "### Socket hygiene: grew",
        "",
        "4 tests in both reports: **1 grew** beyond the tolerance (+max(1, 10%) for connections and TIME_WAIT, none "
        "for what is left open), 0 shrank; 1 new tests open connections.",
        "",
        "| test | count | before | after | |",
        "|---|---|---:|---:|---|",
        "| `test_s.py::test_burst` | time_wait | 3 | 5 | grew (at most 4) |",
        "| `test_s.py::test_burst` | connections | 3 | 5 | grew (at most 4) |",
        "| `test_s.py::test_steady` | connections |  | 1 | new |",
    ]
    # the other way round: only shrinking, and a test of OLD missing from NEW: exit 0
    done = cli("diff", str(new), str(old))
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        "4 tests in both: 0 grew beyond the tolerance, 1 shrank; 0 new tests open connections; 1 tests of OLD are "
        "not in NEW",
        "shrank:",
        "  test_s.py::test_burst  time_wait 5 -> 3, connections 5 -> 3",
    ]


def test_diff_shows_one_more_connection_or_client_left_open_as_grown():
    """What a test leaves open gets no tolerance: a clean test that starts leaking one connection and one client
    grew (the +max(1, 10 %) rule of connections and TIME_WAIT hid it: 0 -> 1 was within it)."""
    from pytest_sockhygiene.reporting.diff import compare, text_lines
    from pytest_sockhygiene.verdict import KINDS

    zero = dict.fromkeys(KINDS, 0)
    old = {"t.py::a": {**zero, "connections": 1}, "t.py::b": {**zero, "connections": 3, "time_wait": 3}}
    new = {"t.py::a": {**zero, "connections": 2, "established": 1, "clients": 1},
           "t.py::b": {**zero, "connections": 4, "time_wait": 4}}
    d = compare(old, new, KINDS)
    assert [(c.nodeid, c.moves) for c in d.grew] == [("t.py::a", [("established", 0, 1), ("clients", 0, 1)])]
    assert "  t.py::a  established 0 -> 1 (at most 0), clients 0 -> 1 (at most 0)" in text_lines(d)


def test_diff_markdown_shows_a_node_id_with_backticks_and_pipes_as_it_is():
    """A code span's fence is longer than the id's longest run of backticks (CommonMark), pipes escaped (GFM)."""
    from pytest_sockhygiene.reporting.diff import _cell

    assert _cell("t.py::a[x|y]") == "`t.py::a[x\\|y]`"
    assert _cell("t.py::a[c`d]") == "`` t.py::a[c`d] ``"
    assert _cell("t.py::a[``]") == "``` t.py::a[``] ```"


def test_diff_against_a_baseline_file(suite, tmp_path, monkeypatch):
    base, new = tmp_path / "b.json", tmp_path / "new.json"
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "2")
    _run(suite, f"--sockhygiene-baseline={base}", "--sockhygiene-baseline-update")
    monkeypatch.setenv("SOCKHYGIENE_TEST_N", "4")
    _run(suite, f"--sockhygiene-report={new}")
    done = cli("diff", str(base), str(new))
    assert done.returncode == 1
    assert "  test_s.py::test_burst  connections 2 -> 4 (at most 3), time_wait 2 -> 4 (at most 3)" in \
        done.stdout.splitlines()


def _page_without_date(path: pathlib.Path) -> str:
    return re.sub(r" - written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d</p>", "</p>", path.read_text())


def test_html_of_a_report_is_the_page_the_run_wrote(suite, tmp_path):
    rep, written, drawn = tmp_path / "r.json", tmp_path / "run.html", tmp_path / "cli.html"
    _run(suite, f"--sockhygiene-report={rep}", f"--sockhygiene-html={written}")
    done = cli("html", "-o", str(drawn), str(rep))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote the page of the report (5 tests) to {drawn}\n"
    assert _page_without_date(drawn) == _page_without_date(written)
    assert "socket hygiene of a pytest session - 5 tests" in drawn.read_text()


def test_html_of_shards_draws_their_merged_report_and_counts_time_wait_per_shard(suite, tmp_path):
    a, b, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    _run(suite, f"--sockhygiene-report={a}", "-k", "clean or burst or stub")
    _run(suite, f"--sockhygiene-report={b}", "-k", "not (clean or burst or stub)")
    assert cli("merge", "-o", str(merged), str(a), str(b)).returncode == 0
    page = tmp_path / "shards" / "page.html"  # missing folders are made, as for --sockhygiene-html
    done = cli("html", "--title", "shop <shards>", "-o", str(page), str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == f"wrote the page of 2 reports (5 tests) to {page}\n"
    text = page.read_text()
    assert "<title>shop &lt;shards&gt;</title>" in text
    assert "socket hygiene of 2 reports merged - 5 tests" in text
    assert "TIME_WAIT entries in flight (each report&#x27;s own, 60 s each)" in text
    # the page of the merged report, but for how TIME_WAIT in flight adds up: not across shards
    from pytest_sockhygiene.reporting.html import in_flight, in_flight_by_run, render

    doc = report(merged)
    one_run = render(doc, "shop <shards>")
    offenders = [t["nodeid"] for t in doc["tests"] if not t["clean"]]
    assert offenders == ["test_s.py::test_leak"]
    for page_text in (text, one_run):
        assert re.findall(r'<a class="mark" href="#t\d+"><title>(.*?): [a-z_, ]+</title>', page_text) == offenders
        assert "5 tests checked, 1 with violations (established: 1)" in page_text
    # shard b's steady test ran after shard a's burst, within 60 s: one run's count would add a's entries to b's
    times = [t["sample"]["time"] for t in doc["tests"]]
    counts = [t["counts"]["time_wait"] for t in doc["tests"]]
    runs = [0] * len(report(a)["tests"]) + [1] * len(report(b)["tests"])
    assert counts[runs.index(1)] > 0 and max(counts[:runs.index(1)]) > 0, counts
    assert in_flight_by_run(times, counts, runs) == in_flight(times[:3], counts[:3]) + in_flight(times[3:], counts[3:])
    assert in_flight_by_run(times, counts, runs) != in_flight(times, counts)
    polygon = re.compile(r'<polygon class="tw" points="([^"]+)"')
    assert polygon.findall(text) != polygon.findall(one_run)


def test_html_subtitle_counts_every_report_given_also_one_without_tests(suite, tmp_path):
    a, empty, page = tmp_path / "a.json", tmp_path / "empty.json", tmp_path / "page.html"
    _run(suite, f"--sockhygiene-report={a}", "-k", "clean or burst or stub")
    _run(suite, f"--sockhygiene-report={empty}", "-k", "no_such_test")
    assert report(empty)["tests"] == []
    done = cli("html", "-o", str(page), str(a), str(empty))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote the page of 2 reports (3 tests) to {page}\n"
    text = page.read_text()
    assert "socket hygiene of 2 reports merged - 3 tests" in text
    # the tests all came from one run: TIME_WAIT in flight is that run's, labelled as one run's
    assert "TIME_WAIT entries in flight (this run&#x27;s own, 60 s each)" in text


def _section(lines: list[str], title: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.strip("= ") == title and line.startswith("="))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("====")), len(lines))
    return lines[start + 1:end]


def test_show_prints_what_the_terminal_printed(suite, tmp_path):
    rep = tmp_path / "r.json"
    result = _run(suite, f"--sockhygiene-report={rep}", "-o", "sockhygiene_time_wait=2")
    assert errors_of(result) == ["test_s.py::test_burst", "test_s.py::test_leak"]
    done = cli("show", str(rep))
    assert done.returncode == 0, done.stderr
    shown = done.stdout.splitlines()
    # the summary section, as the terminal had it (less the line naming the report's path)
    terminal_summary = [line for line in _section(result.outlines, "socket hygiene") if not line.startswith("report:")]
    assert _section(shown, "socket hygiene") == terminal_summary
    assert "      3  test_s.py::test_burst  [over limit 2]  (test_s.py:19 in test_burst)" in shown
    # each offender's failure text, exactly as at its teardown, offenders first
    offenders = _section(shown, "socket hygiene violations")
    text = "\n".join(result.outlines)
    for block in "\n".join(offenders).strip().split("\n\n"):
        assert block.startswith("sockhygiene: test_s.py::test_")
        assert block in text, block
    assert offenders[0].startswith("sockhygiene: test_s.py::test_burst broke its socket limits")


def test_show_a_clean_report_is_one_line_unless_verbose(pytester, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): pass\n")
    rep = tmp_path / "r.json"
    _run(pytester, f"--sockhygiene-report={rep}")
    done = cli("show", str(rep))
    # (pytest-socket, installed here, writes connect back at each test: a notice says so, with -v only)
    assert done.stdout.splitlines()[1:] == ["2 tests checked, all clean"]
    done = cli("show", "-v", str(rep))
    assert done.stdout.splitlines()[1].startswith("2 tests checked, 0 with violations")
    assert [line for line in done.stdout.splitlines() if line.startswith("notice: socket hooks replaced")]


def test_the_command_line_never_imports_the_pytest_hooks():
    code = ("import sys, pytest_sockhygiene.cli, pytest_sockhygiene.__main__; "
            "print(sorted(m for m in sys.modules if m in ('pytest', '_pytest', 'pytest_sockhygiene.plugin')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_show_reads_a_report_that_lacks_a_kind_this_version_counts(tmp_path):
    """A report written before a kind was added (its counts lack the key) is shown with that count as 0."""
    from pytest_sockhygiene.verdict import KINDS

    counts = {k: 0 for k in KINDS[:-1]}
    doc = {"version": 1, "tests": [{"nodeid": "t.py::a", "clean": True, "counts": counts, "violations": []}],
           "session": {"tests_checked": 1, "tests_with_violations": 0, "violations_by_kind": {},
                       "connections_opened": 0, "peak_time_wait": 0, "ephemeral_ports": None, "peak_open_fds": None,
                       "fd_limit": None, "session_leaks": [], "plugin_problems": 0, "notices": []}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    done = cli("show", "-v", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "1 test checked, 0 with violations"
