"""End to end: bad input and edge runs (issue 13 section 4) - output paths, the off mode, the baseline under runs
whose tests did not run, pytest 9's typed ``[tool.pytest]`` table, the fixture used wrongly, the summary's words.

The interrupted run is in test_fixture_and_faults.py, malformed ignore globs in test_config.py's tables.
"""

from __future__ import annotations

import json

import pytest

from conftest import dedent, errors_of

PYTEST_VERSION = tuple(pytest.version_tuple[:2])


# -- --sockhygiene-report: folders, directories, a write that fails at the end ------------------------------------


def test_report_folders_are_made_and_a_directory_is_refused_at_start(pytester, run, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass")
    deep = tmp_path / "not" / "yet" / "r.json"
    result = run(f"--sockhygiene-report={deep}")
    assert result.ret == pytest.ExitCode.OK
    assert json.loads(deep.read_text())["session"]["tests_checked"] == 1  # folders made, as --junitxml does
    result.stdout.fnmatch_lines([f"report: {deep}"])

    for path in (f"{tmp_path / 'missing'}/", str(tmp_path)):  # a trailing slash, an existing directory
        result = run(f"--sockhygiene-report={path}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: sockhygiene: --sockhygiene-report: '{path}' names a directory; "
                                     "give a file path such as '*sockhygiene.json'"])
    assert not (tmp_path / "missing").exists()  # refused before anything was made

    a_file = tmp_path / "plain"
    a_file.write_text("")
    result = run(f"--sockhygiene-report={a_file / 'r.json'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: sockhygiene: --sockhygiene-report: cannot write *: '{a_file}' is not a "
                                 "directory"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_an_empty_output_path_is_refused_naming_the_option(pytester, run):
    pytester.makepyfile(test_ok="def test_a(): pass")
    for option, example in (("--sockhygiene-report", "sockhygiene.json"), ("--sockhygiene-html", "sockhygiene.html"),
                            ("--sockhygiene-baseline", ".sockhygiene-baseline.json")):
        result = run(f"{option}=")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, option
        result.stderr.fnmatch_lines([f"ERROR: sockhygiene: {option}: the path is empty; give a file path such as "
                                     f"'{example}'"])


def test_outputs_are_written_through_a_symlink_and_into_a_fifo(pytester, run, tmp_path):
    """A report path that is a symbolic link keeps being one (its target gets the report), and a FIFO is written
    to, not replaced by a regular file: as --junitxml writes. (A device node is the same case as the FIFO; it is not
    used here, since a regression would replace the machine's device when run as root.)"""
    import os
    import stat
    import threading

    pytester.makepyfile(test_ok="def test_a(): pass")
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    page_target, page_link = tmp_path / "page-target.html", tmp_path / "page.html"
    target.write_text("{}")
    link.symlink_to(target)
    page_link.symlink_to(page_target)  # dangling: the page is made at its target
    result = run(f"--sockhygiene-report={link}", f"--sockhygiene-html={page_link}")
    assert result.ret == pytest.ExitCode.OK
    assert link.is_symlink() and page_link.is_symlink()
    assert json.loads(target.read_text())["session"]["tests_checked"] == 1
    assert page_target.read_text().startswith("<!DOCTYPE html>")

    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run(f"--sockhygiene-report={fifo}")
    reader.join(30)
    assert result.ret == pytest.ExitCode.OK
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0])["session"]["tests_checked"] == 1
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_a_report_that_cannot_be_written_at_the_end_fails_the_run(pytester, run, tmp_path, mode):
    # a real fault: the path is fine at start, and a test makes it a directory before the end of the run
    report, baseline = tmp_path / "r.json", tmp_path / "b.json"
    pytester.makepyfile(test_w=dedent(f"""
        import os
        def test_takes_the_paths():
            os.makedirs({str(report)!r})
            os.makedirs({str(baseline)!r})
        def test_fine():
            pass
    """))
    result = run(f"--sockhygiene-report={report}", f"--sockhygiene-baseline={baseline}",
                 "--sockhygiene-baseline-update", mode=mode)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # like --junitxml's: a lost file is never a green run
    result.stdout.fnmatch_lines([
        f"ERROR: sockhygiene: --sockhygiene-report: the report could not be written to '{report}': Is a directory "
        "(this fails the run, as --junitxml does)",
        f"ERROR: sockhygiene: --sockhygiene-baseline-update: the baseline could not be written to '{baseline}': "
        "Is a directory (this fails the run, as --junitxml does)",
    ])
    assert not [line for line in result.outlines if line.startswith("report: ")]  # not claimed as written
    assert "plugin problem" not in result.stdout.str()  # the file system's fault, not the plugin's
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary file left behind


# -- off mode: never silent ----------------------------------------------------------------------------------------


def test_off_mode_checks_outputs_and_says_they_are_ignored(pytester, tmp_path):
    pytester.makepyfile(test_ok="def test_a(): pass")
    report, baseline = tmp_path / "r.json", tmp_path / "b.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene=off", f"--sockhygiene-report={report}",
                                f"--sockhygiene-baseline={baseline}", "--sockhygiene-baseline-update")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "sockhygiene: --sockhygiene-report, --sockhygiene-baseline, --sockhygiene-baseline-update ignored: the mode "
        "is off, so nothing is checked, compared or written (turn checks on with --sockhygiene)"])
    assert not report.exists() and not baseline.exists()

    # the same checks as in the other modes: a directory, a missing baseline file
    result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-report={tmp_path}")  # off by default
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-report: * names a directory*"])
    result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-baseline={baseline}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-baseline: baseline file * does not exist*"])

    result = pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene=off")  # nothing given: nothing said
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*ignored: the mode is off*")


def test_off_mode_errors_a_test_with_a_bad_marker_as_enforce_does(pytester, backend):
    pytester.makepyfile(test_bad=dedent("""
        import pytest
        pytestmark = pytest.mark.sockhygiene(established=1)

        @pytest.mark.sockhygiene(estabished=1)
        def test_typo(request):
            raise AssertionError("never runs: the marker is refused at setup")

        @pytest.mark.sockhygiene(ignore=["127.0.0.1:[0-9"])
        def test_glob():
            pass

        @pytest.mark.sockhygiene(established=None, settle=0)
        def test_good():
            pass

        def test_plain():
            pass
    """))
    messages = [
        "*sockhygiene marker on test_bad.py::test_typo: unknown limit 'estabished' (did you mean 'established'?)",
        "*sockhygiene marker on test_bad.py::test_glob: malformed ignore pattern '127.0.0.1:[0-9'*",
    ]
    for mode in ("off", "enforce"):
        result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-backend={backend}",
                                    f"--sockhygiene={mode}")
        result.assert_outcomes(passed=2, errors=2)
        assert errors_of(result) == ["test_bad.py::test_glob", "test_bad.py::test_typo"]
        result.stdout.fnmatch_lines(messages, consecutive=False)
        assert "never runs" not in result.stdout.str()


# -- --sockhygiene-baseline-update: only tests whose body ran to the end ------------------------------------------

BASELINE_SUITE = dedent("""
    import os, socket, pytest

    SKIP = os.environ.get("SOCKHYGIENE_TEST_SKIP") == "1"

    def _open_and_close(server, n):
        for _ in range(n):
            socket.create_connection((server.host, server.port)).close()  # the client closes: its TIME_WAIT

    def test_skips_in_its_body(server):
        if SKIP:
            pytest.skip("not today")
        _open_and_close(server, 3)

    @pytest.mark.skipif(SKIP, reason="not today")
    def test_skipped_by_marker(server):
        _open_and_close(server, 2)

    def test_fails_part_way(server):
        if SKIP:
            assert False, "before any connection"
        _open_and_close(server, 2)
""")


def test_baseline_update_keeps_entries_of_tests_whose_body_did_not_run(pytester, run, tmp_path, monkeypatch):
    pytester.makepyfile(test_b=BASELINE_SUITE)
    path = tmp_path / "b.json"
    args = (f"--sockhygiene-baseline={path}", "--sockhygiene-baseline-update", "-o", "sockhygiene_time_wait=9")
    first = run(*args)
    first.assert_outcomes(passed=3)
    recorded = json.loads(path.read_text())["tests"]
    made = {"test_b.py::test_skips_in_its_body": 3, "test_b.py::test_skipped_by_marker": 2,
            "test_b.py::test_fails_part_way": 2}
    assert set(recorded) == set(made)
    for k, v in recorded.items():  # fewer only by resets the kernel sent meanwhile (see conftest.lingered)
        assert made[k] - min(made[k], first.resets) <= v["time_wait"] <= made[k], (first.resets, recorded)
    before = path.read_text()

    monkeypatch.setenv("SOCKHYGIENE_TEST_SKIP", "1")
    run(*args).assert_outcomes(skipped=2, failed=1)
    assert path.read_text() == before  # skipped and failed tests keep their entries
    run(*args, "-n", "2").assert_outcomes(skipped=2, failed=1)  # outcomes from xdist's workers: the same
    assert path.read_text() == before
    for plan in ("--setup-plan", "--setup-only"):  # every test "checked", none of them run
        assert run(*args, plan).ret == pytest.ExitCode.OK
        assert path.read_text() == before

    monkeypatch.delenv("SOCKHYGIENE_TEST_SKIP")
    pytester.makepyfile(test_new=dedent("""
        def test_new():
            pass
    """))
    last = run(*args)
    last.assert_outcomes(passed=4)  # a test whose body ran gets its entry; the others' are rewritten as equal
    after = json.loads(path.read_text())["tests"]
    assert after["test_new.py::test_new"] == {"connections": 0, "time_wait": 0}
    kept = json.loads(before)["tests"]
    assert set(after) - {"test_new.py::test_new"} == set(kept)
    for k, v in kept.items():  # rewritten from a new run: the same counts, TIME_WAIT fewer only by kernel resets
        assert after[k]["connections"] == v["connections"], after
        assert made[k] - min(made[k], last.resets) <= after[k]["time_wait"] <= made[k], (last.resets, after)


# -- pytest 9's native [tool.pytest] table: TOML numbers and lists ------------------------------------------------

LEAKS = dedent("""
    import socket
    KEEP = []

    def test_two(server):
        KEEP.extend(socket.create_connection((server.host, server.port)) for _ in range(2))

    def test_three(server):
        KEEP.extend(socket.create_connection((server.host, server.port)) for _ in range(3))
""")


@pytest.mark.skipif(PYTEST_VERSION < (9, 2), reason="typed ini keys with unions (int | str) are pytest 9.2's")
def test_native_toml_table_takes_numbers_lists_and_words(pytester, backend):
    pytester.makeconftest(dedent("""
        import pytest
        from pytest_sockhygiene.testing import serve_http

        @pytest.fixture(scope="session")
        def server():
            with serve_http(keep_alive=5.0) as s:
                yield s
    """))
    pytester.makepyfile(test_t=LEAKS)
    pytester.makepyprojecttoml(dedent("""
        [tool.pytest]
        sockhygiene = "enforce"
        sockhygiene_established = 2
        sockhygiene_time_wait = "unlimited"
        sockhygiene_connections = 10
        sockhygiene_settle = 0.25
        sockhygiene_ignore = ["*:1", "[::1]:*"]
    """))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-backend={backend}")
    assert errors_of(result) == ["test_t.py::test_three"]
    result.stdout.fnmatch_lines(["*established: 3 > limit 2*"])

    for value, message in [
        ("sockhygiene_established = -1", "ERROR: sockhygiene: ini 'sockhygiene_established': expected a non-negative "
                                         "integer or 'unlimited', got '-1'"),
        ("sockhygiene_settle = \"soon\"", "ERROR: sockhygiene: ini 'sockhygiene_settle': expected a number of "
                                          "seconds >= 0, got 'soon'"),
        ("sockhygiene_established = 1.5", "ERROR: *config option 'sockhygiene_established' expects one of int | "
                                          "string, got float: 1.5"),
        ("sockhygiene_ignore = [\"*:-5\"]", "ERROR: sockhygiene: ini 'sockhygiene_ignore': malformed ignore pattern "
                                           "'*:-5': port '-5' can never match a port number (0-65535)"),
    ]:
        pytester.makepyprojecttoml(f"[tool.pytest]\n{value}\n")
        result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-backend={backend}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, value
        result.stderr.fnmatch_lines([message])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.skipif(not (9, 0) <= PYTEST_VERSION < (9, 2), reason="pytest 9.0 and 9.1 only")
def test_native_toml_table_numbers_on_pytest_9_0_say_what_to_write(pytester):
    pytester.makepyfile(test_ok="def test_ok(): pass")
    pytester.makepyprojecttoml("[tool.pytest]\nsockhygiene_established = 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: ini 'sockhygiene_established': *expects a string, got int: 2 "
                                 "(pytest 9.0 and 9.1 read this key as a string: quote the value*"])
    pytester.makepyprojecttoml('[tool.pytest]\nsockhygiene_established = "2"\n')
    pytester.runpytest("-p", "no:cacheprovider", "--sockhygiene").assert_outcomes(passed=1)


def test_ini_options_table_takes_numbers_in_every_pytest(pytester, backend):
    pytester.makeconftest(dedent("""
        import pytest
        from pytest_sockhygiene.testing import serve_http

        @pytest.fixture(scope="session")
        def server():
            with serve_http(keep_alive=5.0) as s:
                yield s
    """))
    pytester.makepyfile(test_t=LEAKS)
    pytester.makepyprojecttoml(dedent("""
        [tool.pytest.ini_options]
        sockhygiene = "enforce"
        sockhygiene_established = 2
        sockhygiene_time_wait = "unlimited"
        sockhygiene_settle = 0.25
        sockhygiene_ignore = ["*:1"]
    """))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-backend={backend}")
    assert errors_of(result) == ["test_t.py::test_three"]
    result.stdout.fnmatch_lines(["*established: 3 > limit 2*"])


# -- the fixture used wrongly ---------------------------------------------------------------------------------------

FIXTURE_MISUSE = dedent("""
    import pytest
    KEPT = []

    def test_a_block_that_raises_is_not_measured(sockhygiene):
        with pytest.raises(ValueError):
            with sockhygiene.measure() as m:
                raise ValueError("part way")
        with pytest.raises(RuntimeError, match=r"^the measure\\(\\) block raised ValueError and was not measured$"):
            m.established
        with pytest.raises(RuntimeError, match="raised ValueError"):
            m.counts
        assert repr(m) == "Measurement(raised ValueError)"

    def test_inside_the_block_it_has_not_finished(sockhygiene):
        with sockhygiene.measure(settle=0) as m:
            with pytest.raises(RuntimeError, match="has not finished yet"):
                m.connections
        assert m.connections == 0

    def test_a_measure_object_is_entered_once(sockhygiene):
        block = sockhygiene.measure(settle=0)
        with block as first:
            pass
        assert first.established == 0
        with pytest.raises(RuntimeError, match=r"already used for a block; call sockhygiene.measure\\(\\) again"):
            with block:
                pass

    def test_keeps_its_fixture(sockhygiene):
        KEPT.append(sockhygiene)

    def test_uses_a_kept_fixture():
        for use in (lambda f: f.set_limits(established=3), lambda f: f.measure(), lambda f: f.snapshot(),
                    lambda f: f.limits):
            with pytest.raises(RuntimeError) as e:
                use(KEPT[0])
            assert str(e.value) == (
                "this sockhygiene fixture object belongs to test_f.py::test_keeps_its_fixture, which has ended, and "
                "is used in test_f.py::test_uses_a_kept_fixture: request the sockhygiene fixture in the test that "
                "uses it")
""")


@pytest.mark.parametrize("mode", ["enforce", "off"])
def test_fixture_misuse_gets_clear_errors(pytester, run, mode):
    pytester.makepyfile(test_f=FIXTURE_MISUSE)
    result = run("-p", "no:randomly", mode=mode)
    result.assert_outcomes(passed=5)


# -- the summary's words --------------------------------------------------------------------------------------------


def test_summary_says_1_test_and_1_connection(pytester, run):
    pytester.makepyfile(test_one=dedent("""
        import socket

        def test_one(server):
            socket.create_connection((server.host, server.port)).close()
    """))
    result = run("-v")
    result.stdout.fnmatch_lines(["1 test checked, 0 with violations",
                                 "session health: 1 connection opened; *"])
    assert "1 tests" not in result.stdout.str()
