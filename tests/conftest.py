"""Shared helpers: every end-to-end test runs once per socket-table backend, against real loopback sockets -
except in the modules marked ``one_backend``, whose subject comes after the socket table (warnings and outcomes,
reports, annotations, the HTML page, reruns, other plugins' wrappers): they run on the platform's first backend.

The inner test files written by ``pytester`` get a conftest with a session-scoped loopback HTTP server (the
GOOD pattern a real suite uses) unless a test writes its own.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - see below
import importlib
import importlib.util
import json
import os
import re
import socket
import sys
import textwrap
from typing import Any, Callable

import pytest

pytest_plugins = ["pytester"]

# Inner runs in a process of their own (``runpytest_subprocess``, an inner run's xdist workers) are fresh
# interpreters. Where PYTHONDONTWRITEBYTECODE is set (CI's machines set it) and the packages were installed without
# their bytecode (an editable install; uv, in the version matrix), every one of them compiled the plugin and every
# installed pytest plugin from source: 1-3 s of CPU per run, over a third of the suite's CPU. They may write the
# caches; this process keeps its own setting. A test whose outcome moved with it depended on chance (the collector's
# timing in test_settle's NOBODY_ELSE; pytest 7's mtime check in test_docs' ``Runner.write``): both now fix theirs.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# ``concurrent.futures.thread`` is imported here, in the test process, not first by an inner run: pytester's
# in-process runs remove the modules an inner run imported, and the ``concurrent.futures`` package keeps the
# ``ThreadPoolExecutor`` it exported first - a later inner run would get the class of a module the plugin no
# longer watches (its ``submit`` is wrapped for pool jobs' origins: pools.JobOrigins).



def _import_the_plugins_modules() -> None:
    """Import every module of the plugin here, in the test process, for the same reason: an inner run that first
    imports one (the trackers, in ``pytest_configure``; the report's modules, at a violation) has it removed
    after, and every later inner run imported it again - through pytest's assertion rewriting, which parses its
    source. Once, a collection during that parse ran an aiohttp finalizer and CPython 3.11's parser failed with
    "AST constructor recursion depth mismatch": an INTERNALERROR of an inner run that had nothing to do with it."""
    import pkgutil

    import pytest_sockhygiene

    for info in pkgutil.walk_packages(pytest_sockhygiene.__path__, "pytest_sockhygiene."):
        if info.name.startswith(("pytest_sockhygiene.demo", "pytest_sockhygiene.__main__")):
            continue  # (the demo runs its own suite; the entry point runs the CLI)
        importlib.import_module(info.name)


_import_the_plugins_modules()

BACKENDS = ["linux", "psutil"] if sys.platform.startswith("linux") else ["psutil"]

ONE_BACKEND = pytest.mark.one_backend
"""A module's ``pytestmark``: its tests run on ``BACKENDS[0]`` only. What they check (how a verdict becomes a
warning, an outcome, a report, an annotation, a page) is the same whichever backend took the verdict, and every
module about the verdict itself runs on both; run on both, these took a sixth of the suite's time."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_backend: run the module's end-to-end tests on the first backend only")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A ``parametrize`` mark, added before pytest's own implementations run: they then parametrize the test from
    it, and leave the fixture's own params aside (what every pytest since 7.0 does for a test that parametrizes
    a fixture's name itself)."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("one_backend") is not None:
        metafunc.definition.add_marker(pytest.mark.parametrize("backend", BACKENDS[:1]))

INNER_CONFTEST = '''
import pytest
from pytest_sockhygiene.testing import serve_http

@pytest.fixture(scope="session")
def server():
    with serve_http(keep_alive=120.0) as s:
        yield s
'''
"""A keep-alive timeout well beyond any inner run: on a loaded machine a test can take seconds between leaking a
connection and being judged, and a server closing it meanwhile would turn the ESTABLISHED leak under test into a
CLOSE_WAIT one (tests of CLOSE_WAIT start their own server with a short timeout)."""


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


CI_ENVIRONMENT = ("CI", "BUILD_NUMBER", "GITHUB_ACTIONS")
"""Variables by which pytest (``CI``, ``BUILD_NUMBER``: the short test summary then keeps a failure's whole message
instead of its first line) and the plugin (``GITHUB_ACTIONS``: annotations in ``auto`` mode) change what a run
prints. Inner runs and shell examples must print the same on a developer's machine and in CI, so they are removed
for every test; a test about CI behaviour sets them itself."""


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


INNER_ADDOPTS = "-p no:rerunfailures"
"""For every inner run: pytest-rerunfailures (in the test extra, for tests/test_reruns.py) starts a status server - a
listening socket and a thread blocked in ``accept()`` - in every session where pytest-xdist is installed, and never
stops it. In-process inner runs would pile them up in this process (75 in one xdist worker of a whole run): each
holds an fd number the kernel reserves, which turned the fd watch off for the linux-table tests that need it (9
skips in a whole run), and with pytest-rerunfailures 13 (the newest for pytest 7.0) every later check slowed: the
floor session's run took 13 minutes instead of 3. The tests about reruns turn it back on (``with_rerunfailures``)."""

INNER_FLAKY_ADDOPTS = "-p no:flaky"
"""For every inner run: flaky (in the test extra, for tests/test_reruns.py) runs every test's protocol itself, in
place of pytest's, and adds its report to every run's summary. The tests about reruns turn it back on
(``with_flaky``)."""


def _asyncio_loop_scope_args() -> str:
    """pytest-asyncio 0.24 and later warn in every run that leaves ``asyncio_default_fixture_loop_scope`` unset:
    most of this suite's warnings summary, one per inner run. Inner runs ignore that one warning (a filter, not the
    option: an inner run with ``-p no:asyncio`` would warn of an unknown option instead)."""
    try:
        from importlib.metadata import version

        installed = tuple(int(p) for p in version("pytest-asyncio").split(".")[:2] if p.isdigit())
    except Exception:  # noqa: BLE001 - not installed, or an unusual version string: leave the inner runs alone
        return ""
    unset = 'The configuration option "asyncio_default_fixture_loop_scope" is unset'
    return f"-W 'ignore:{unset}:DeprecationWarning'" if installed >= (0, 24) else ""


INNER_ASYNCIO_ADDOPTS = _asyncio_loop_scope_args()


@pytest.fixture(autouse=True)
def _inner_run_options(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Options for every inner run (``INNER_ADDOPTS``, ``INNER_ASYNCIO_ADDOPTS``), through ``PYTEST_ADDOPTS`` so that
    in-process and subprocess runs, with or without the ``run`` fixture, all get them."""
    inner = " ".join(filter(None, [
        INNER_ADDOPTS if importlib.util.find_spec("pytest_rerunfailures") is not None else "",
        INNER_FLAKY_ADDOPTS if importlib.util.find_spec("flaky") is not None else "", INNER_ASYNCIO_ADDOPTS]))
    if inner:
        if "pytester" in request.fixturenames:
            request.getfixturevalue("pytester")  # first: setting it up drops PYTEST_ADDOPTS ("discard outer options")
        monkeypatch.setenv("PYTEST_ADDOPTS", f"{os.environ.get('PYTEST_ADDOPTS', '')} {inner}".strip())


def with_rerunfailures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs of the calling test load pytest-rerunfailures again (see ``INNER_ADDOPTS``)."""
    addopts = os.environ.get("PYTEST_ADDOPTS", "").replace(INNER_ADDOPTS, "").strip()
    monkeypatch.setenv("PYTEST_ADDOPTS", addopts)


def with_flaky(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs of the calling test load flaky again (see ``INNER_FLAKY_ADDOPTS``)."""
    addopts = os.environ.get("PYTEST_ADDOPTS", "").replace(INNER_FLAKY_ADDOPTS, "").strip()
    monkeypatch.setenv("PYTEST_ADDOPTS", addopts)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Runner = Callable[..., Any]

# pytest < 7.2 marks every top-level module of a plugin's distribution for assertion rewriting, and so warns
# (PytestAssertRewriteWarning) about the finder module that a PEP 660 editable install (the README's
# `pip install -e`) puts beside the plugin and has already imported (pytest-dev/pytest#10230). Inner runs count
# their warnings, and this one is about how this checkout is installed, not about the plugin. A -W message
# cannot hold the module's name (the ':' splits the filter), so the filter is the whole message class, and only
# on the pytest releases that have the bug.
_PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())
INNER_WARNING_FILTERS: list[str] = (
    ["-W", "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning"]
    if _PYTEST_VERSION < (7, 2) else []
)



@pytest.fixture
def run(pytester: pytest.Pytester, backend: str) -> Runner:
    """Run pytest on the files in ``pytester``'s directory with the plugin enforcing and the chosen backend."""
    if not (pytester.path / "conftest.py").exists():
        pytester.makeconftest(INNER_CONFTEST)

    def _run(*args: str, mode: str = "enforce", subprocess: bool = False, settle: str = "0.25") -> Any:
        # a shorter settle than the default 0.5 s: every deliberate leak in these suites waits it out in full
        argv: list[str] = ["-p", "no:cacheprovider", f"--sockhygiene-backend={backend}", *INNER_WARNING_FILTERS]
        if settle and not any("sockhygiene_settle" in a for a in args):
            argv += ["-o", f"sockhygiene_settle={settle}"]
        if mode:
            argv.append(f"--sockhygiene={mode}")
        argv.extend(args)
        before = tcp_resets_sent()
        result = pytester.runpytest_subprocess(*argv) if subprocess else pytester.runpytest(*argv)
        result.resets = resets_between(before)
        return result

    return _run


def installed_library(pytester: pytest.Pytester, name: str, source: str) -> None:
    """A package ``name`` in the inner run's directory, treated as library code (as if installed in
    site-packages: ``origin.add_library_packages``), with the usual inner conftest."""
    pytester.mkpydir(name).joinpath("__init__.py").write_text(source)
    pytester.makeconftest(INNER_CONFTEST + "\nimport pytest_sockhygiene.origin\n"
                          f"pytest_sockhygiene.origin.add_library_packages([{name!r}])\n")


def established_by_test(pytester: pytest.Pytester, run: Runner) -> tuple[Any, dict[str, int]]:
    """Run the inner suite in a process of its own (a C library's threads stay out of this worker) with a JSON
    report, in file order: pytest's result, and each test's ``established`` count by its function's name."""
    report = pytester.path / "report.json"
    result = run(f"--sockhygiene-report={report}", "-p", "no:randomly", subprocess=True)
    tests = json.loads(report.read_text())["tests"]
    return result, {t["nodeid"].split("::")[1]: t["counts"]["established"] for t in tests}


def dedent(src: str) -> str:
    return textwrap.dedent(src).lstrip("\n")


ANYIO_BACKEND = dedent("""
    import pytest

    @pytest.fixture
    def anyio_backend():
        return "asyncio"
""")
"""The head of an inner test file whose async tests run on asyncio (anyio's pytest plugin). Inner tests' line
numbers, which expectations quote, start after it."""


def errors_of(result: Any) -> list[str]:
    """Node ids reported as ERROR (a sockhygiene violation fails the test at teardown)."""
    out = []
    for line in result.outlines:
        if line.startswith("ERROR ") and "::" in line:
            out.append(line.split()[1])
    return sorted(out)


def failure_block(result: Any, nodeid: str) -> str:
    """The failure text of one test, from its teardown error section."""
    out = result.stdout.str()
    start = out.index(f"sockhygiene: {nodeid} broke its socket limits")
    ends = [i for i in (out.find("\n___", start), out.find("\n===", start)) if i != -1]
    return out[start:min(ends)]


def _kernel_counters(path: str, prefix: str) -> dict[str, int]:
    with open(path) as f:
        lines = [line.split() for line in f if line.startswith(prefix)]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def tcp_resets_sent() -> int | None:
    """The kernel's count of TCP resets sent, machine-wide (``OutRsts`` in ``/proc/net/snmp``), plus its counts of
    the other ways a closed connection's TIME_WAIT entry ends early or is never made: an entry recycled for a new
    connection to the same server (``TWRecycled``, ``tcp_tw_reuse=2`` on loopback), one killed (``TWKilled``), one
    not made because the table was full (``TCPTimeWaitOverflow``), from ``/proc/net/netstat``. A burst's count may
    be short by as many as these moved during its run (``lingered``); resets are nearly all of it. None where there
    is nothing to read."""
    try:
        resets = _kernel_counters("/proc/net/snmp", "Tcp:")["OutRsts"]
    except (OSError, IndexError, KeyError, ValueError):
        return None
    try:
        ext = _kernel_counters("/proc/net/netstat", "TcpExt:")
    except (OSError, IndexError, ValueError):
        ext = {}
    return resets + sum(ext.get(k, 0) for k in ("TWRecycled", "TWKilled", "TCPTimeWaitOverflow"))


def resets_between(before: int | None) -> int:
    """The TCP resets (and other early ends of TIME_WAIT entries: ``tcp_resets_sent``) since ``before``, 0 where
    unknown."""
    now = tcp_resets_sent()
    return now - before if before is not None and now is not None else 0


def agree_but_for_resets(a: Any, b: Any, resets: int) -> bool:
    """Two runs' records of the same tests agree: equal, except that their ``time_wait`` counts may differ, in all
    by at most ``resets``, the TCP resets the kernel sent during the runs (each can end one TIME_WAIT entry under
    load: see ``lingered``)."""
    drift = 0

    def walk(x: Any, y: Any) -> bool:
        nonlocal drift
        if isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                return False
            for k in x:
                if k == "time_wait" and isinstance(x[k], int) and isinstance(y[k], int):
                    drift += abs(x[k] - y[k])
                elif not walk(x[k], y[k]):
                    return False
            return True
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(walk(p, q) for p, q in zip(x, y))
        return bool(x == y)

    return walk(a, b) and drift <= resets


def within_resets(n: int, made: int, result: Any) -> bool:
    """A burst's TIME_WAIT count ``n`` as ``lingered`` allows it: ``made``, or fewer by at most the TCP resets the
    kernel sent during ``result``'s run."""
    return made - min(made, result.resets) <= n <= made


def lingered(text: str, made: int, result: Any) -> int:
    """The ``time_wait`` count a failure text reports for a burst of ``made`` connections the test closed: ``made``,
    or fewer by at most the TCP resets the kernel sent while ``result``'s run ran (``result.resets``, from the
    ``run`` fixture).

    Why: on a busy machine the server's FIN can wait so long for its ACK that the kernel sends it again (a tail
    loss probe); the client's TIME_WAIT entry answers the copy with an ACK, the server's socket is gone by then,
    so its kernel answers with a reset, and a reset ends a TIME_WAIT entry (``net.ipv4.tcp_rfc1337=0``, the
    default). The burst then really has one entry fewer: measured with a burst script under two busy loops, 0 to
    14 of 2,800 loopback connections lost their entry, each time with ``OutRsts`` moving by exactly as many, and
    none of 8,400 with ``tcp_rfc1337=1``. The kernel's rarer early ends of an entry (one recycled for a new
    connection, one not made in a full table) are counted with the resets (``tcp_resets_sent``). Without any of
    them, the count must be exact."""
    m = re.search(r"time_wait: (\d+) > limit", text)
    assert m is not None, text
    n = int(m.group(1))
    assert made - min(made, result.resets) <= n <= made, (result.resets, text)
    return n

