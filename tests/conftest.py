"""Shared helpers: every end-to-end test runs once per socket-table backend, against real loopback sockets.

The inner test files written by ``pytester`` get a conftest with a session-scoped loopback HTTP server (the
GOOD pattern a real suite uses) unless a test writes its own.
"""

from __future__ import annotations

import re
import socket
import sys
import textwrap
from typing import Any, Callable

import pytest

pytest_plugins = ["pytester"]

BACKENDS = ["linux", "psutil"] if sys.platform.startswith("linux") else ["psutil"]

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
        if subprocess:
            return pytester.runpytest_subprocess(*argv)
        return pytester.runpytest(*argv)

    return _run


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


def lingered(text: str, made: int) -> int:
    """The ``time_wait`` count a failure text reports for a burst of ``made`` connections the test closed: exactly
    ``made``. A bare connect-and-close burst must wait for the server's accept before each close
    (``LoopbackHTTPServer.wait_accepted``): under load, Linux resets a connection whose FIN follows the handshake
    before the accept, and it leaves no TIME_WAIT entry."""
    m = re.search(r"time_wait: (\d+) > limit", text)
    assert m is not None, text
    n = int(m.group(1))
    assert n == made, text
    return n

