"""``python -m pytest_sockhygiene.demo [extra pytest args]``: run the demo suite and check its verdicts.

The demo's tests run in a subprocess (``sys.executable -m pytest``) with the plugin enforcing, this directory as
rootdir and its own ``pytest.ini`` (so the ini file of the project you run it from is never read), and their
output is streamed as it comes. The outcome is then read back from a JUnit XML report and checked: every
``test_leak_*`` and ``test_bad_*`` test must have failed at teardown with a sockhygiene report (of the kind the
demo expects, where it names one), and every ``test_good_*`` test must have passed. The exit status is 0 if and
only if that is what happened.

Extra arguments go to pytest, e.g. ``-n 2`` (pytest-xdist), ``--sockhygiene-backend=psutil`` or ``-k leak``.
``PYTEST_ADDOPTS`` and ``PYTEST_PLUGINS`` are not passed on, so that the demo runs the same everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent

BAD_PREFIXES = ("test_leak_", "test_bad_")
GOOD_PREFIX = "test_good_"

EXPECTED_KINDS: dict[str, frozenset[str]] = {
    # test -> the violation kinds of which its report must name at least one. A leaked connection to the
    # session's server is ESTABLISHED, unless the test happens to be the last one of its session (or of its
    # xdist worker): its window then spans the session's teardown, the server hangs up, and the connection
    # the test still holds is reported in the state the server left it in (CLOSE_WAIT). The leaked client
    # is reported either way.
    "test_leak_client_never_closed": frozenset({"established", "close_wait"}),
    "test_leak_stub_server_never_shut_down": frozenset({"listen"}),
    "test_leak_pooled_connection_closed_by_server": frozenset({"close_wait"}),
    "test_leak_connection_from_background_thread": frozenset({"established", "close_wait"}),
    "test_bad_new_client_per_request": frozenset({"time_wait"}),
    "test_bad_module_level_httpx_get_in_a_loop": frozenset({"time_wait"}),
    "test_bad_sync_job_over_its_connection_budget": frozenset({"connections"}),
}

_KIND_LINE = re.compile(r"^\s+(\w+): \d+ > limit \d+ - ", re.MULTILINE)
_HYGIENE_MARK = "broke its socket limits"
_SCRUBBED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
# The demo's tests use httpx, which the plugin itself does not need: it comes with the ``demo`` extra.
DEMO_REQUIRES = ("httpx",)
INSTALL_HINT = "pip install 'pytest-sockhygiene[demo]'"


@dataclass
class TestResult:
    name: str  # the test function's name, without parameters
    nodeid: str
    failures: list[str] = field(default_factory=list)  # messages of <failure> elements (the test's body failed)
    errors: list[str] = field(default_factory=list)  # messages of <error> elements that are not hygiene reports
    skipped: list[str] = field(default_factory=list)
    hygiene_kinds: list[str] = field(default_factory=list)  # violation kinds of the hygiene report, if any
    hygiene_reported: bool = False

    @property
    def passed(self) -> bool:
        return not (self.failures or self.errors or self.skipped or self.hygiene_reported)


def _nodeid(classname: str, name: str) -> str:
    """``test_mod.TestClass`` + ``test_x`` -> ``test_mod.py::TestClass::test_x`` (the demo is flat: no folders)."""
    if not classname:
        return name
    module, *classes = classname.split(".")
    return "::".join([f"{module}.py", *classes, name])


def read_junit(path: Path) -> list[TestResult]:
    root = ET.parse(path).getroot()
    results = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        classname = case.get("classname", "")
        r = TestResult(name=name.split("[", 1)[0], nodeid=_nodeid(classname, name))
        for child in case:
            message = child.get("message", "") or ""
            text = child.text or ""
            if child.tag == "failure":
                r.failures.append(message)
            elif child.tag == "skipped":
                r.skipped.append(message)
            elif child.tag == "error":
                if message.startswith("failed on teardown") and _HYGIENE_MARK in text:
                    r.hygiene_reported = True
                    r.hygiene_kinds.extend(k for k in _KIND_LINE.findall(text) if k not in r.hygiene_kinds)
                else:
                    r.errors.append(message)
        results.append(r)
    return results


def _short(messages: Sequence[str]) -> str:
    text = "; ".join(m.splitlines()[0] if m else "(no message)" for m in messages)
    return text if len(text) <= 160 else text[:157] + "..."


def mismatch(r: TestResult) -> str | None:
    """Why this result is not what the demo expects, or None if it is."""
    if r.name.startswith(BAD_PREFIXES):
        if r.skipped:
            return f"expected a hygiene failure, but the test was skipped: {_short(r.skipped)}"
        if r.failures or r.errors:
            return f"expected only a hygiene failure, but the test itself failed: {_short(r.failures + r.errors)}"
        if not r.hygiene_reported:
            return "the plugin MISSED this leak: the test passed"
        wanted = EXPECTED_KINDS.get(r.name)
        if wanted and not wanted & set(r.hygiene_kinds):
            return (f"the plugin reported {', '.join(r.hygiene_kinds) or 'no kind'}, "
                    f"expected {' or '.join(sorted(wanted))}")
        return None
    if r.name.startswith(GOOD_PREFIX):
        if r.hygiene_reported:
            return f"the plugin FLAGGED this clean test: {', '.join(r.hygiene_kinds) or 'unknown kind'}"
        if r.skipped:
            return f"expected to pass, but the test was skipped: {_short(r.skipped)}"
        if r.failures or r.errors:
            return f"expected to pass, but the test failed: {_short(r.failures + r.errors)}"
        return None
    if r.failures or r.errors:
        return f"not a demo test (a collection error?): {_short(r.failures + r.errors)}"
    return "not a demo test: its name starts with none of test_good_, test_leak_, test_bad_"


def pytest_command(junit_xml: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "pytest",
        "--sockhygiene=enforce",
        "-p", "no:cacheprovider",
        "-p", "no:randomly",  # the demo's story reads in file order
        "-c", str(DEMO_DIR / "pytest.ini"),
        "--rootdir", str(DEMO_DIR),
        "-o", "junit_family=xunit2",
        "-o", "junit_logging=no",
        "-v",
        *extra,
        f"--junitxml={junit_xml}",  # last, so that the report read back is this one
        str(DEMO_DIR),
    ]


def _rule(title: str) -> str:
    return f" {title} ".center(78, "=")


def explain(results: list[TestResult], elapsed: float) -> int:
    bad = [r for r in results if r.name.startswith(BAD_PREFIXES)]
    good = [r for r in results if r.name.startswith(GOOD_PREFIX)]
    problems = [(r, m) for r in results for m in [mismatch(r)] if m is not None]
    caught = [r for r in bad if r.hygiene_reported]
    width = max((len(r.name) for r in results), default=0) + 2

    print(_rule("what the demo shows"))
    print(f"{len(bad)} tests were expected to fail on hygiene; the plugin caught {len(caught)} of them:")
    for r in bad:
        verdict = ", ".join(r.hygiene_kinds) if r.hygiene_reported else "MISSED"
        print(f"  {r.name:<{width}}{verdict}")
    clean = [r for r in good if r.passed]
    if good and len(clean) == len(good):
        print(f"{len(good)} tests were expected to pass, and all did: nothing was blamed on them, nor on the "
              "session-scoped server and client fixtures they share.")
    else:
        print(f"{len(good)} tests were expected to pass; {len(clean)} did.")
    if not problems:
        print(f"Every verdict is the one the demo expects (the run took {elapsed:.1f} s). Read the reports above:")
        print("each names the socket's state and addresses, the line that opened it, and the fix.")
        return 0
    print(flush=True)
    print(f"DEMO FAILED: {len(problems)} verdict(s) differ from what the demo expects:", file=sys.stderr)
    for r, why in problems:
        print(f"  {r.nodeid}: {why}", file=sys.stderr)
    if any(r.hygiene_reported != r.name.startswith(BAD_PREFIXES) or _wrong_kind(r) for r, _ in problems):
        print("If your extra arguments did not change the plugin's mode or limits, a missed leak or a flagged "
              "clean test is a bug in pytest-sockhygiene: please report it with the output above.", file=sys.stderr)
    if any(r.failures or r.errors or r.skipped for r, _ in problems):
        print("A demo test that failed or was skipped in its own code is not a verdict of the plugin: the demo "
              "could not run as written here (another version of httpx or pytest, or your extra arguments). "
              "Please report it with the output above and `pip list`.", file=sys.stderr)
    return 1


def _wrong_kind(r: TestResult) -> bool:
    wanted = EXPECTED_KINDS.get(r.name)
    return bool(r.hygiene_reported and wanted and not wanted & set(r.hygiene_kinds))


def missing_requirements() -> list[str]:
    """The packages the demo's tests import that are not installed here."""
    return [name for name in DEMO_REQUIRES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    missing = missing_requirements()
    if missing:
        print(f"The pytest-sockhygiene demo needs {', '.join(missing)}, which is not installed here (the plugin "
              f"itself does not). Install the demo extra:\n    {INSTALL_HINT}", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the installed package
    with tempfile.TemporaryDirectory(prefix="sockhygiene-demo-") as tmp:
        junit_xml = Path(tmp) / "demo.xml"
        cmd = pytest_command(junit_xml, extra)
        print(_rule("pytest-sockhygiene demo"))
        print("Running the demo suite: clean tests (test_good_*) and tests that leak sockets or waste")
        print("connections (test_leak_*, test_bad_*), against a real HTTP server on loopback.")
        print("$ python -m pytest " + " ".join(cmd[3:]), flush=True)
        start = time.monotonic()
        try:
            returncode = subprocess.call(cmd, cwd=str(DEMO_DIR), env=env)
        except KeyboardInterrupt:
            return 130
        elapsed = time.monotonic() - start
        sys.stdout.flush()
        if returncode not in (0, 1) or not junit_xml.exists():
            print(f"\nDEMO FAILED: pytest exited with status {returncode} and did not run the demo's tests to the "
                  "end (a usage error, an interruption, or no tests collected); see its output above.",
                  file=sys.stderr)
            return returncode or 1
        try:
            results = read_junit(junit_xml)
        except ET.ParseError as e:
            print(f"\nDEMO FAILED: cannot read pytest's JUnit XML report: {e}", file=sys.stderr)
            return 1
    if not results:
        print("\nDEMO FAILED: no test ran.", file=sys.stderr)
        return 1
    print()
    return explain(results, elapsed)


if __name__ == "__main__":
    sys.exit(main())
