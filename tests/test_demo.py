"""The demo's own judgement: what it says when it cannot run, and whom it blames when a verdict differs.

The demo run itself (``python -m pytest_sockhygiene.demo``) is run by CI from the README's command, from the built
wheel, and in every matrix session (so against httpx 0.23 and 0.27 as well as the newest).
"""

from __future__ import annotations

import subprocess
import sys

from pytest_sockhygiene.demo import __main__ as demo  # not its TestResult by name: pytest would collect it


def test_without_httpx_the_demo_names_the_extra_to_install():
    # httpx is installed here, so its absence is simulated the way Python itself marks a blocked import
    # (sys.modules[name] = None makes both `import httpx` and find_spec("httpx") answer "not there").
    code = ("import sys; sys.modules['httpx'] = None; "
            "from pytest_sockhygiene.demo.__main__ import main; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "needs httpx" in proc.stderr
    assert demo.INSTALL_HINT in proc.stderr
    assert proc.stdout == ""  # nothing was run


def _explain(results, capsys):
    code = demo.explain(results, elapsed=1.0)
    return code, capsys.readouterr()


def test_a_demo_test_failing_in_its_own_code_is_not_called_a_plugin_bug(capsys):
    caught_but_broken = demo.TestResult(name="test_leak_stub_server_never_shut_down", nodeid="t.py::x",
                                   failures=["assert [b'...'] == [b'...']"], hygiene_reported=True,
                                   hygiene_kinds=["listen"])
    code, out = _explain([caught_but_broken], capsys)
    assert code == 1
    assert "the test itself failed" in out.err
    assert "not a verdict of the plugin" in out.err
    assert "bug in pytest-sockhygiene" not in out.err


def test_a_missed_leak_is_called_a_plugin_bug(capsys):
    missed = demo.TestResult(name="test_leak_client_never_closed", nodeid="t.py::test_leak_client_never_closed")
    flagged = demo.TestResult(name="test_good_client_closed_by_with", nodeid="t.py::g", hygiene_reported=True,
                         hygiene_kinds=["established"])
    code, out = _explain([missed, flagged], capsys)
    assert code == 1
    assert "MISSED this leak" in out.err and "FLAGGED this clean test" in out.err
    assert "bug in pytest-sockhygiene" in out.err
    assert "not a verdict of the plugin" not in out.err


def test_every_expected_verdict_passes(capsys):
    results = [demo.TestResult(name="test_leak_stub_server_never_shut_down", nodeid="a", hygiene_reported=True,
                          hygiene_kinds=["listen"]),
               demo.TestResult(name="test_good_client_closed_by_with", nodeid="b")]
    code, out = _explain(results, capsys)
    assert code == 0
    assert "Every verdict is the one the demo expects" in out.out
    assert out.err == ""
