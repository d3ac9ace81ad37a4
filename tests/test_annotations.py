"""GitHub Actions annotations (``--sockhygiene-annotate``): one workflow command per violation, at the user's line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_sockhygiene.endpoints import ConfigError
from pytest_sockhygiene.reporting.annotations import command, enabled, escape_data, escape_property

from conftest import ONE_BACKEND, dedent, errors_of

pytestmark = ONE_BACKEND

SUITE = dedent("""
    import socket, httpx, pytest

    KEEP = []

    def test_clean(server):
        with httpx.Client() as c:
            c.get(server.url)

    def test_leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))  # LEAK

    def test_burst(server):
        for _ in range(4):
            with httpx.Client() as c:
                c.get(server.url)  # BURST

    @pytest.mark.sockhygiene(unused_clients=0)  # never used: not a connection leak unless asked to be one
    @pytest.mark.parametrize("share", ["50%"])
    def test_client(server, share):
        KEEP.append(httpx.Client())  # CLIENT
""")


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(SUITE.splitlines(), 1) if line.rstrip().endswith(f"# {marker}"))


def commands(result: Any) -> list[str]:
    return [line for line in result.outlines if line.startswith("::")]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_a=SUITE)
    return pytester


def test_escapes_follow_githubs_rules():
    assert escape_data("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext: a, b"
    assert escape_property("sockhygiene: a,b\n%") == "sockhygiene%3A a%2Cb%0A%25"
    assert command("warning", "two\nlines", "sockhygiene: listen", "dir,x/t:1.py", 7) == (
        "::warning file=dir%2Cx/t%3A1.py,line=7,title=sockhygiene%3A listen::two%0Alines")
    assert command("error", "m", "t") == "::error title=t::m"


@pytest.mark.parametrize("cli, ini, env, on", [
    (None, "", {}, False),
    (None, "", {"GITHUB_ACTIONS": "true"}, True),
    (None, "", {"GITHUB_ACTIONS": "false"}, False),
    ("auto", "", {"GITHUB_ACTIONS": "true"}, True),
    ("github", "", {}, True),
    ("off", "", {"GITHUB_ACTIONS": "true"}, False),
    (None, "github", {}, True),
    (None, "off", {"GITHUB_ACTIONS": "true"}, False),
    ("auto", "github", {}, False),  # the command line beats the ini file
])
def test_auto_means_inside_github_actions(cli, ini, env, on):
    assert enabled(cli, ini, env) is on


def test_a_bad_value_names_the_option_or_key():
    with pytest.raises(ConfigError,
                       match=r"--sockhygiene-annotate: unknown value 'gh'; expected one of auto, github, off"):
        enabled("gh", "", {})
    with pytest.raises(ConfigError, match=r"ini 'sockhygiene_annotate': unknown value 'yes'"):
        enabled(None, "yes", {})


def test_one_command_per_violation_at_the_users_line(suite, run, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run("-o", "sockhygiene_time_wait=3")
    assert errors_of(result) == ["test_a.py::test_burst", "test_a.py::test_client[50%]", "test_a.py::test_leak"]
    got = commands(result)
    assert len(got) == 3, got
    [leak] = [c for c in got if "::test_a.py::test_leak%0A" in c]
    [burst] = [c for c in got if "::test_a.py::test_burst%0A" in c]
    [client] = [c for c in got if "::test_a.py::test_client[" in c]
    assert leak.startswith(f"::error file=test_a.py,line={line_of('LEAK')},title=sockhygiene%3A established::"
                           "test_a.py::test_leak%0Aestablished: 1 > limit 0 - open connection(s) left behind%0A    "
                           "ESTABLISHED 127.0.0.1:")
    assert f"opened at test_a.py:{line_of('LEAK')} in test_leak" in leak
    assert burst.startswith(f"::error file=test_a.py,line={line_of('BURST')},title=sockhygiene%3A time_wait::"
                            "test_a.py::test_burst%0Atime_wait: 4 > limit 3 - ")
    # the node id's '%' is escaped; the message is on one line
    assert client.startswith(f"::error file=test_a.py,line={line_of('CLIENT')},title=sockhygiene%3A unused_clients::"
                             "test_a.py::test_client[50%25]%0Aunused_clients: 1 > limit 0")
    assert all("\n" not in c and "\r" not in c for c in got)
    # the message is the terminal's text for that violation
    text = "\n".join(result.outlines)
    for c in got:
        for part in c.split("::", 2)[2].split("%0A")[1:]:
            assert part.replace("%25", "%") in text


def test_warn_mode_warns_and_a_baseline_growth_points_at_the_test(suite, run, monkeypatch, tmp_path):
    base = tmp_path / "b.json"
    base.write_text(json.dumps({"version": 1, "tests": {"test_a.py::test_burst": {"connections": 1, "time_wait": 1}}}))
    result = run("--sockhygiene-annotate=github", f"--sockhygiene-baseline={base}", "-k", "burst", mode="warn")
    assert result.ret == 0
    line = SUITE.splitlines().index("def test_burst(server):") + 1
    assert commands(result) == [
        f"::warning file=test_a.py,line={line},title=sockhygiene%3A baseline::test_a.py::test_burst%0A"
        f"{kind}: 4 (baseline 1) - grew beyond the baseline's tolerance (at most 2); fix the regression, or accept "
        "it with --sockhygiene-baseline-update" for kind in ("connections", "time_wait")]


def test_nothing_outside_github_actions_unless_forced(suite, run, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert commands(run("-k", "leak")) == []
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert commands(run("-k", "leak", "--sockhygiene-annotate=off")) == []
    assert commands(run("-k", "leak", "-o", "sockhygiene_annotate=off")) == []
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert len(commands(run("-k", "leak", "-o", "sockhygiene_annotate=github"))) == 1


def test_bad_value_is_a_usage_error(suite, run):
    result = run("--sockhygiene-annotate=yes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: --sockhygiene-annotate: unknown value 'yes'; expected one of "
                                 "auto, github, off"])
    result = run("-o", "sockhygiene_annotate=always", mode="off")  # checked in off mode too, like every key
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: sockhygiene: ini 'sockhygiene_annotate': unknown value 'always'; expected "
                                 "one of auto, github, off"])


def test_on_stdout_past_pytests_capture_and_with_xdist(suite, run, monkeypatch):
    """GitHub reads the job's stdout: a real subprocess, with capture on (the default) and with -s, and xdist's
    controller printing its workers' violations, and a session-level leak, which has no line of its own."""
    suite.makeconftest(dedent("""
        import threading, pytest
        from pytest_sockhygiene.testing import LoopbackHTTPServer, serve_http

        @pytest.fixture(scope="session")
        def server():
            with serve_http() as s:
                yield s

        @pytest.fixture(scope="session")
        def stub():
            s = LoopbackHTTPServer()
            threading.Thread(target=s.serve_forever, daemon=True).start()
            return s
    """))
    suite.makepyfile(test_b="def test_stub(stub): pass\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    for extra in ([], ["-s"], ["-n", "2"]):
        result = run("-k", "leak or stub", *extra, subprocess=True)
        got = commands(result)
        assert [c.split("::", 2)[1] for c in got] == [
            f"error file=test_a.py,line={line_of('LEAK')},title=sockhygiene%3A established",
            "error title=sockhygiene%3A session-level leak"], (extra, got)
        assert got[1].endswith(" - session-scoped fixture 'stub': left open at session end; close it in the fixture's "
                               "teardown")
        assert not any(line.startswith("::") for line in result.errlines)


def test_an_item_without_origin_points_at_the_test_function():
    """Where no origin is known (a socket opened by C code), the annotation points at the test function."""
    from pytest_sockhygiene.reporting.annotations import record_annotations

    record = {"nodeid": "tests/test_x.py::test_c", "clean": False, "file": "tests/test_x.py", "line": 12,
              "counts": {}, "violations": [{"kind": "established", "count": 1, "limit": 0, "items": [
                  {"state": "ESTABLISHED", "local": "127.0.0.1:5000", "remote": "[::1]:80", "fd": 9, "origin": None,
                   "count": 1, "note": None}]}]}
    [cmd] = record_annotations(record, "error")
    assert cmd.startswith("::error file=tests/test_x.py,line=12,title=sockhygiene%3A established::"
                          "tests/test_x.py::test_c%0Aestablished: 1 > limit 0 - open connection(s) left behind%0A"
                          "    ESTABLISHED 127.0.0.1:5000 -> [::1]:80 fd=9, origin unknown")
