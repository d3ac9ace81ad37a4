#!/usr/bin/env python
"""Benchmark of pytest-sockhygiene: the same generated suites with the plugin off and on, alternately.

    python benchmarks/run.py                      # trivial (2,000 tests) + http (200 x 10 requests), 5 repeats
    python benchmarks/run.py --quick              # smoke run: small suites, 2 repeats
    python benchmarks/run.py --neighbour-time-wait 5000   # with another process holding 5,000 TIME_WAIT rows
    python benchmarks/run.py --held-sockets 1000 --suites trivial  # the process holds 1,000 loopback sockets
    python benchmarks/run.py --memory --suites memory     # 10,000 tests: RSS growth off vs on
    python benchmarks/run.py --mode off           # `-p no:sockhygiene` vs installed-but-off
    python benchmarks/run.py --all --json results.json    # everything above, one after the other

Each run is a fresh ``python -m pytest -q -p no:cacheprovider`` subprocess in a generated suite directory. The
time measured is the pytest session's own: a conftest in the suite records ``time.perf_counter()`` (and
``time.process_time()``, and RSS for the memory suite) at ``pytest_sessionstart``, at the end of collection and
at ``pytest_sessionfinish``, so interpreter start-up and plugin import are not in it. Conditions alternate
(ABBA by default: off on, on off, ...) after one discarded warm-up run of each, and the report gives medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --------------------------------------------------------------------------------------------------------------
# the generated suites
# --------------------------------------------------------------------------------------------------------------

TIMER_CONFTEST = '''
# Written by benchmarks/run.py: session-internal timing (not interpreter start-up).
import json as _json
import os as _os
import time as _time

import pytest

_BENCH = {}
_OUT = _os.environ.get("SOCKHYGIENE_BENCH_OUT")
if _os.environ.get("SOCKHYGIENE_BENCH_NO_GC") == "1":  # instructions.py --no-gc: the collector's schedule left out
    __import__("gc").disable()
_RSS = _os.environ.get("SOCKHYGIENE_BENCH_RSS") == "1"
if _RSS:
    import psutil as _psutil

    _PROC = _psutil.Process()


def _rss():
    return _PROC.memory_info().rss if _RSS else None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _BENCH["rss_start"] = _rss()
    _BENCH["cpu_start"] = _time.process_time()
    _BENCH["t_start"] = _time.perf_counter()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    t = _time.perf_counter()
    _BENCH["t_collected"] = t
    _BENCH["cpu_collected"] = _time.process_time()
    _BENCH["rss_collected"] = _rss()
    _BENCH["items"] = len(session.items)
    _BENCH["plugin_active"] = session.config.pluginmanager.has_plugin("sockhygiene-session")
    _BENCH["plugin_loaded"] = session.config.pluginmanager.has_plugin("sockhygiene")
    _mod = __import__("sys").modules.get("pytest_sockhygiene")
    _BENCH["plugin_file"] = getattr(_mod, "__file__", None)
    _BENCH["t_collected_overhead"] = _time.perf_counter() - t


def pytest_runtest_logfinish(nodeid, location):
    # the end of the first test: what follows is the steady per-test cost, without one-time work done on the
    # first test (a plugin that imports or patches something at its first window)
    if "t_first_done" not in _BENCH:
        _BENCH["t_first_done"] = _time.perf_counter()
        _BENCH["cpu_first_done"] = _time.process_time()
        _BENCH["rss_first_done"] = _rss()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    _BENCH["t_end"] = _time.perf_counter()
    _BENCH["cpu_end"] = _time.process_time()
    _BENCH["rss_end"] = _rss()
    _BENCH["exitstatus"] = int(exitstatus)
    # collections per generation: a full one (the last) costs as much as dozens of trivial tests, and whether one
    # more falls between two suite sizes decides a per-test difference of ~40k instructions (instructions.py)
    _BENCH["gc_collections"] = [s["collections"] for s in __import__("gc").get_stats()]
    _BENCH["gc_count"] = list(__import__("gc").get_count())  # (with --no-gc: tracked objects alive, net, since)
    if _OUT:
        with open(_OUT, "w") as f:
            _json.dump(_BENCH, f)
'''

HTTP_CONFTEST = '''
import httpx

from pytest_sockhygiene.testing import serve_http


@pytest.fixture(scope="session")
def server():
    with serve_http(keep_alive=30.0) as s:
        # serve_http's handler leaves Nagle's algorithm on and writes headers and body in two sends, so every
        # response waits for the client's delayed ACK (~40 ms on Linux). Turn it off for the connections to come
        # (StreamRequestHandler.setup sets TCP_NODELAY), so the suite measures the plugin, not that stall.
        s.RequestHandlerClass = type("NoDelayHandler", (s.RequestHandlerClass,), {"disable_nagle_algorithm": True})
        yield s


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url) as c:
        yield c
'''

HELD_CONFTEST = '''
import resource as _resource
import socket as _socket

HELD_SOCKETS = {held}


@pytest.fixture(scope="session", autouse=True)
def _held_sockets():
    """Hold HELD_SOCKETS open loopback TCP sockets (HELD_SOCKETS // 2 connected pairs) for the whole session."""
    need = HELD_SOCKETS + 512
    soft, hard = _resource.getrlimit(_resource.RLIMIT_NOFILE)
    if soft != _resource.RLIM_INFINITY and soft < need:
        new = need if hard == _resource.RLIM_INFINITY else min(need, hard)
        _resource.setrlimit(_resource.RLIMIT_NOFILE, (new, hard))
    listener = _socket.create_server(("127.0.0.1", 0), backlog=16)
    listener.settimeout(5.0)
    addr = listener.getsockname()
    held = []
    deadline = _time.monotonic() + 60.0
    try:
        for _ in range(HELD_SOCKETS // 2):  # bounded in count and time
            if _time.monotonic() > deadline:
                raise RuntimeError("could not open the held sockets in 60 s")
            c = _socket.create_connection(addr, timeout=5.0)
            s, _ = listener.accept()
            held += [c, s]
    finally:
        listener.close()
    try:
        yield len(held)
    finally:
        linger = __import__("struct").pack("ii", 1, 0)
        for s in held:
            try:
                s.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, linger)  # RST: leave no TIME_WAIT behind
            except OSError:
                pass
            s.close()
'''

VIOLATIONS_CONFTEST = HTTP_CONFTEST + '''

def pytest_configure(config):
    config.addinivalue_line("markers", "sockhygiene(**limits): (registered here too, for the run without the plugin)")
'''

VIOLATION_TESTS = {
    # the good pattern of a test that needs its own client: one request, closed (1 TIME_WAIT entry: within limits)
    "clean": '''
def test_clean_{n}(server):
    with httpx.Client(verify=SSL) as c:
        assert c.get(server.url).status_code == 200
''',
    # a new client per request: 7 TIME_WAIT entries, over the default limit of 5; waiting cannot clear them
    "burst": '''
def test_burst_{n}(server):
    for _ in range(7):
        with httpx.Client(verify=SSL) as c:
            assert c.get(server.url).status_code == 200
''',
    # 3 connections where the test's budget is 1: made is made
    "budget": '''
@pytest.mark.sockhygiene(connections=1)
def test_budget_{n}(server):
    for _ in range(3):
        conn = http.client.HTTPConnection(server.host, server.port)
        conn.request("GET", "/")
        assert conn.getresponse().read() is not None
        conn.close()
''',
    # a client used once and dropped unclosed: garbage-collected without being closed, for good
    "dropped": '''
def test_dropped_{n}(server):
    c = httpx.Client(verify=SSL)
    assert c.get(server.url).status_code == 200
    del c
''',
}
VIOLATION_MIX = (("clean", 40), ("burst", 30), ("budget", 30), ("dropped", 30))
"""The violation-cost suite of issue 12: 130 tests, 90 of them violating only in ways waiting cannot change."""

TRANSIENT_CONFTEST = HTTP_CONFTEST + '''
import random as _random
import socket as _socket
import threading as _threading

_RANDOM = _random.Random(12)


@pytest.fixture(scope="session")
def closing_server():
    """A server that accepts and closes at once: the test's side of each connection is left in CLOSE_WAIT."""
    listener = _socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    _threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()
    listener.close()


@pytest.fixture
def closed_late():
    """Sockets handed to it are closed by another thread 20-100 ms after the test's teardown: a server thread
    shutting down, a pool reaping a connection, just after the test ended."""
    held = []
    yield held.append
    for sock in held:
        timer = _threading.Timer(_RANDOM.uniform(0.02, 0.1), sock.close)
        timer.daemon = True
        timer.start()
'''

TRANSIENT_TESTS = {
    "listen": '''
def test_listen_{n}(closed_late):
    closed_late(socket.create_server(("127.0.0.1", 0)))
''',
    "close_wait": '''
def test_close_wait_{n}(closing_server, closed_late):
    sock = socket.create_connection(closing_server)
    assert sock.recv(1) == b""  # the server closed first: this side is in CLOSE_WAIT now
    closed_late(sock)
''',
}
TRANSIENT_MIX = (("listen", 20), ("close_wait", 20))
"""Issue 12's second shape: a LISTEN and a CLOSE_WAIT socket closed by another thread 20-100 ms after teardown."""


SDK_MODULE = '''"""An API SDK the way they are built (the openai and anthropic SDKs, for one): an object that
makes its own httpx client, which tests rarely close. Written by benchmarks/run.py."""
import ssl

import httpx

# one TLS context for every client, as in the other suites: loading the CA bundle per client costs 10-500 ms here
SSL = ssl.create_default_context()


class Acme:
    def __init__(self, base_url):
        self._client = httpx.Client(base_url=base_url, verify=SSL)

    def status(self, path="/"):
        return self._client.get(path).status_code

    def close(self):
        self._client.close()


class AsyncAcme:
    def __init__(self, base_url):
        self._client = httpx.AsyncClient(base_url=base_url, verify=SSL)

    async def status(self, path="/"):
        return (await self._client.get(path)).status_code
'''

SDK_TESTS = {
    # a unit test of the SDK's own code: no socket
    "unit": '''
def test_unit_{n}():
    assert json.loads(json.dumps({{"id": {n}, "items": list(range(10))}}))["items"][-1] == 9
''',
    # the SDK's requests answered by respx; the SDK object is never closed (no connection: nothing to report)
    "mocked": '''
@respx.mock
def test_mocked_{n}():
    respx.get(BASE + "/v1/models").mock(return_value=httpx.Response(200, json={{"data": []}}))
    assert Acme(BASE).status("/v1/models") == 200
''',
    # respx's fixture, a client closed by its `with`
    "mocked_closed": '''
def test_mocked_closed_{n}(respx_mock):
    respx_mock.get(BASE + "/v1/models").mock(return_value=httpx.Response(200))
    with httpx.Client(base_url=BASE, verify=SSL) as c:
        assert c.get("/v1/models").status_code == 200
''',
    # against a real server, the SDK object never closed: a `clients` violation (collected unclosed: final)
    "unclosed": '''
def test_unclosed_{n}(server):
    assert Acme(server.url).status() == 200
''',
    # the same with the async client (pytest-asyncio, asyncio_mode = auto)
    "async_unclosed": '''
async def test_async_unclosed_{n}(server):
    assert await AsyncAcme(server.url).status() == 200
''',
    # an async client closed by its `async with`, three requests on one connection: clean
    "async_closed": '''
async def test_async_closed_{n}(server):
    async with httpx.AsyncClient(base_url=server.url, verify=SSL) as c:
        for _ in range(3):
            assert (await c.get("/")).status_code == 200
''',
}
SDK_MIX = (("unit", 60), ("mocked", 50), ("mocked_closed", 30), ("unclosed", 20), ("async_unclosed", 20),
           ("async_closed", 20))
"""The shape of an API SDK's suite, where issue 12's 3.5x was measured: unit tests, respx-mocked requests through
SDK objects never closed, and some tests against a real server whose clients are not closed either (40 of 200
violate, all of them final: a client collected unclosed). Needs respx and pytest-asyncio (the test extra)."""


SDK_HEAD = ("# generated by benchmarks/run.py\nimport json\n\nimport httpx\nimport respx\n\n"
            "from acme import SSL, Acme, AsyncAcme\n\nBASE = \"http://api.example.test\"\n")
SDK_INI = "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"

MIXED_SUITES: dict[str, tuple[Mapping[str, str], Sequence[tuple[str, int]]]] = {
    "violations": (VIOLATION_TESTS, VIOLATION_MIX),
    "transient": (TRANSIENT_TESTS, TRANSIENT_MIX),
    "sdk": (SDK_TESTS, SDK_MIX),
}
"""The suites made of kinds of test in fixed shares (test bodies by kind, the mix): warn vs absent (issue 12)."""


def scaled_mix(mix: Sequence[tuple[str, int]], tests: int) -> list[tuple[str, int]]:
    """The mix's shares for a suite of ``tests`` tests (the instruction counts run a smaller copy too)."""
    total = sum(n for _, n in mix)
    counts = [(kind, n * tests // total) for kind, n in mix]
    counts[0] = (counts[0][0], counts[0][1] + tests - sum(n for _, n in counts))
    return counts


def expected_violations(spec: SuiteSpec) -> str | None:
    """The plugin's summary line a run of this suite must print (None: the usual all-clean check)."""
    if spec.kind == "sdk":
        counts = dict(scaled_mix(SDK_MIX, spec.tests))
        return checked_summary(spec.tests, {"clients": counts["unclosed"] + counts["async_unclosed"]})
    if spec.kind != "violations":
        return None
    return violations_summary(dict(scaled_mix(VIOLATION_MIX, spec.tests)))


def checked_summary(tests: int, violations_by_kind: Mapping[str, int]) -> str:
    """The plugin's first summary line for ``tests`` checked tests, each violating test violating one kind."""
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(violations_by_kind.items()))
    return f"{tests} tests checked, {sum(violations_by_kind.values())} with violations ({kinds})"


def violations_summary(counts: Mapping[str, int]) -> str:
    """The summary line of a run of violation-suite tests, checked ones by kind (``VIOLATION_TESTS``): every
    burst, budget and dropped test violates once (time_wait, connections, clients), no clean one does."""
    return checked_summary(sum(counts.values()), {"clients": counts["dropped"], "connections": counts["budget"],
                                                  "time_wait": counts["burst"]})


PYTEST_INI = """[pytest]
# written by benchmarks/run.py
addopts =
python_files = test_*.py
"""


@dataclass(frozen=True)
class SuiteSpec:
    kind: str  # trivial | http | http-client | memory | violations | transient | sdk
    tests: int
    per_file: int = 100
    requests: int = 10
    held: int = 0

    @property
    def name(self) -> str:
        base = f"{self.kind}-{self.tests}"
        if self.kind in ("http", "http-client"):
            base += f"x{self.requests}"
        if self.held:
            base += f"-held{self.held}"
        return base


SHARED_TLS = ("# one TLS context for every client: loading the CA bundle costs 10-500 ms per client on the\n"
              "# benchmark machine, which would drown what the suite measures (no request here uses TLS)\n"
              "SSL = ssl.create_default_context()\n")
"""The generated test files' shared TLS context, for suites that create clients in their tests."""


def generate_suite(spec: SuiteSpec, where: Path) -> Path:
    d = where / spec.name
    if (d / ".complete").exists():
        return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "pytest.ini").write_text(PYTEST_INI + (SDK_INI if spec.kind == "sdk" else ""))
    conftest = TIMER_CONFTEST
    if spec.kind in ("http", "http-client", "sdk"):
        conftest += HTTP_CONFTEST
    elif spec.kind == "violations":
        conftest += VIOLATIONS_CONFTEST
    elif spec.kind == "transient":
        conftest += TRANSIENT_CONFTEST
    if spec.held:
        conftest += HELD_CONFTEST.format(held=spec.held)
    (d / "conftest.py").write_text(conftest)
    if spec.kind in MIXED_SUITES:
        bodies, mix = MIXED_SUITES[spec.kind]
        if spec.kind == "sdk":
            (d / "acme.py").write_text(SDK_MODULE)
            head = SDK_HEAD
        else:
            head = ("# generated by benchmarks/run.py\nimport http.client\nimport socket\nimport ssl\n\n"
                    "import httpx\nimport pytest\n\n" + SHARED_TLS)
        for kind, count in scaled_mix(mix, spec.tests):
            (d / f"test_{kind}.py").write_text(head + "".join(bodies[kind].format(n=i) for i in range(count)))
        (d / ".complete").write_text("ok\n")
        return d
    files = (spec.tests + spec.per_file - 1) // spec.per_file
    n = 0
    for f in range(files):
        lines = [f"# generated by benchmarks/run.py ({spec.kind})\n"]
        if spec.kind == "http-client":
            lines.append("import ssl\n\nimport httpx\n\n" + SHARED_TLS)
        for _ in range(min(spec.per_file, spec.tests - n)):
            if spec.kind == "http-client":  # one client per test, closed by its `with`
                lines.append(textwrap.dedent(f"""
                    def test_{n}(server):
                        with httpx.Client(base_url=server.url, verify=SSL) as client:
                            for _ in range({spec.requests}):
                                r = client.get("/")
                                assert r.status_code == 200
                    """))
            elif spec.kind == "http":
                lines.append(textwrap.dedent(f"""
                    def test_{n}(client):
                        for _ in range({spec.requests}):
                            r = client.get("/")
                            assert r.status_code == 200
                    """))
            else:
                lines.append(f"\ndef test_{n}():\n    pass\n")
            n += 1
        (d / f"test_{f:04d}.py").write_text("".join(lines))
    (d / ".complete").write_text("ok\n")
    return d


# --------------------------------------------------------------------------------------------------------------
# machine state: TIME_WAIT rows and background CPU
# --------------------------------------------------------------------------------------------------------------


def count_tcp_states() -> dict[str, int]:
    """Rows of /proc/net/tcp and tcp6 by state (the whole network namespace, every process)."""
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    out: dict[str, int] = {"total": 0}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, "rb") as f:
                f.readline()
                for line in f:
                    fields = line.split(None, 4)
                    if len(fields) < 4:
                        continue
                    name = names.get(fields[3].decode(), "other")
                    out[name] = out.get(name, 0) + 1
                    out["total"] += 1
        except OSError:
            pass
    return out


def cpu_busy_seconds() -> float | None:
    """Machine-wide non-idle CPU seconds since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    values = [int(x) for x in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal; guest is inside user
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def background_load(window: float = 0.3) -> float | None:
    """Cores kept busy by everything but this harness during ``window`` seconds."""
    b0, c0, s0 = cpu_busy_seconds(), time.process_time(), time.monotonic()
    time.sleep(window)
    b1, c1, s1 = cpu_busy_seconds(), time.process_time(), time.monotonic()
    if b0 is None or b1 is None:
        return None
    return max(0.0, (b1 - b0) - (c1 - c0)) / (s1 - s0)


def wait_for_quiet(max_load: float, max_wait: float) -> tuple[float | None, float]:
    """Wait (bounded) until other processes use less than ``max_load`` cores; return (last load, seconds waited)."""
    start = time.monotonic()
    load = background_load()
    while load is not None and load > max_load and time.monotonic() - start < max_wait:
        load = background_load()
    return load, time.monotonic() - start


# --------------------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------------------

EXTRA_ARGS: list[str] = []
"""``--pytest-args``, for every run of every condition."""

CONDITIONS: dict[str, list[str]] = {
    "absent": ["-p", "no:sockhygiene"],  # the plugin not loaded at all
    "off": [],  # installed, mode off (the default)
    "enforce": ["--sockhygiene=enforce"],
    "warn": ["--sockhygiene=warn"],
    "floor": ["-p", "no:sockhygiene", "-p", "floor_plugin"],  # benchmarks/floor_plugin.py: --floor
}
NOT_LOADED = ("absent", "floor")
"""Conditions without the plugin itself (the floor imports pieces of it, never loads it as a plugin)."""


def condition_env(condition: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment of one run: ``env``, with this directory on ``PYTHONPATH`` for the floor's plugin
    (after a ``--rev``'s package, which stays first: the floor uses its kernel lookup and warning)."""
    out = dict(env)
    if condition == "floor":
        out["PYTHONPATH"] = (out["PYTHONPATH"] + os.pathsep if out.get("PYTHONPATH") else "") + str(HERE)
    return out


def floor_warnings(summary: str | None) -> int | None:
    """How many warnings the floor must print for a suite whose plugin summary is ``summary``: one per violating
    test (None: the floor has no verdict to check there)."""
    m = re.search(r"(\d+) with violations", summary or "")
    return int(m.group(1)) if m else None


@dataclass
class RunResult:
    condition: str
    session: float
    loop: float
    collect: float
    cpu_session: float
    cpu_loop: float
    steady: float
    cpu_steady: float
    first_test: float
    rss_start: int | None
    rss_collected: int | None
    rss_first_done: int | None
    rss_end: int | None
    items: int
    background: float | None
    wall_process: float
    warning: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BenchError(RuntimeError):
    pass


def run_once(python: str, suite: Path, condition: str, backend: str | None, env: dict[str, str],
             timeout: float, memory: bool, expect_items: int, expect_summary: str | None = None,
             check_verdicts: bool = True) -> RunResult:
    out = Path(tempfile.mkstemp(prefix="timing-", suffix=".json", dir=suite.parent)[1])
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CONDITIONS[condition], *EXTRA_ARGS]
    if backend and condition in ("enforce", "warn"):
        cmd.append(f"--sockhygiene-backend={backend}")
    run_env = condition_env(condition, env)
    run_env["SOCKHYGIENE_BENCH_OUT"] = str(out)
    if memory:
        run_env["SOCKHYGIENE_BENCH_RSS"] = "1"
    busy0, kids0, t0 = cpu_busy_seconds(), children_cpu(), time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=suite, env=run_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(cmd)} in {suite} timed out after {timeout:.0f}s") from e
    wall = time.monotonic() - t0
    busy1, kids1 = cpu_busy_seconds(), children_cpu()
    background = None
    if busy0 is not None and busy1 is not None:
        background = max(0.0, (busy1 - busy0) - (kids1 - kids0)) / wall
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {}
    finally:
        out.unlink(missing_ok=True)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    warning = ""
    if not data:
        raise BenchError(f"{' '.join(cmd)} in {suite} exited {proc.returncode} without timings:\n{tail}")
    if proc.returncode != 0:
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode == 1 and re.search(rf"\b{expect_items} passed\b", last) and not re.search(
                r"failed|error", last):
            # every test passed, but the plugin failed the session for something outside the tests (e.g. a
            # session-level finding): the timings are valid; say so in the report
            lines = proc.stdout.splitlines()
            start = next((i for i, ln in enumerate(lines) if "socket hygiene" in ln), max(0, len(lines) - 8))
            warning = "exit status 1 with every test passed:\n" + "\n".join(lines[start:])[-1500:]
        else:
            raise BenchError(f"{' '.join(cmd)} in {suite} exited {proc.returncode}:\n{tail}")
    want_src = env.get("SOCKHYGIENE_BENCH_SRC")
    if want_src and condition != "absent" and not str(data.get("plugin_file") or "").startswith(want_src):
        raise BenchError(f"the plugin was imported from {data.get('plugin_file')}, not from {want_src}")
    if data.get("items") != expect_items:
        raise BenchError(f"expected {expect_items} tests, pytest collected {data.get('items')}:\n{tail}")
    m = re.search(r"(\d+) passed", proc.stdout)
    if not m or int(m.group(1)) != expect_items:
        raise BenchError(f"not every test passed:\n{tail}")
    active = condition in ("enforce", "warn")
    if bool(data.get("plugin_active")) != active:
        raise BenchError(f"plugin active={data.get('plugin_active')} in condition {condition}:\n{tail}")
    if (condition in NOT_LOADED) == bool(data.get("plugin_loaded")):
        raise BenchError(f"plugin loaded={data.get('plugin_loaded')} in condition {condition}:\n{tail}")
    if condition == "floor":  # the floor's verdicts: one warning per violating test, as the plugin's summary says
        want = floor_warnings(expect_summary)
        if want is None or not re.search(rf"\b{want} warnings?\b", proc.stdout.strip().splitlines()[-1]):
            raise BenchError(f"expected the floor to print {want} warnings:\n{tail}")
    elif active and not check_verdicts:  # --verdicts-may-differ: every test checked, whatever they found
        m = re.search(r"(\d+) tests? checked", proc.stdout)
        if not m or int(m.group(1)) != expect_items:
            raise BenchError(f"expected {expect_items} tests checked:\n{tail}")
    elif active and expect_summary:
        if expect_summary not in proc.stdout:
            raise BenchError(f"expected the summary {expect_summary!r}:\n{tail}")
    elif active:
        m = re.search(r"(\d+) tests? checked", proc.stdout)
        bad = re.search(r"([1-9]\d*) with violations", proc.stdout)
        if not m or int(m.group(1)) != expect_items or bad:
            raise BenchError(f"expected {expect_items} tests checked and no violations:\n{tail}")
        if "plugin problem" in proc.stdout:
            raise BenchError(f"the plugin reported problems:\n{tail}")
    t_start, t_coll, t_end = data["t_start"], data["t_collected"], data["t_end"]
    return RunResult(
        condition=condition,
        session=t_end - t_start,
        loop=t_end - t_coll - data.get("t_collected_overhead", 0.0),
        collect=t_coll - t_start,
        cpu_session=data["cpu_end"] - data["cpu_start"],
        cpu_loop=data["cpu_end"] - data["cpu_collected"],
        steady=t_end - data["t_first_done"],
        cpu_steady=data["cpu_end"] - data["cpu_first_done"],
        first_test=data["t_first_done"] - t_coll,
        rss_start=data.get("rss_start"),
        rss_collected=data.get("rss_collected"),
        rss_first_done=data.get("rss_first_done"),
        rss_end=data.get("rss_end"),
        items=int(data["items"]),
        background=background,
        wall_process=wall,
        warning=warning,
    )


# --------------------------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    label: str
    spec: SuiteSpec
    base: str  # condition A (the reference)
    test: str  # condition B
    note: str = ""
    memory: bool = False
    results: list[RunResult] = field(default_factory=list)
    tcp_states: list[dict[str, int]] = field(default_factory=list)
    waited: float = 0.0

    def samples(self, condition: str, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.results if r.condition == condition]

    def median(self, condition: str, attr: str = "session") -> float:
        return statistics.median(self.samples(condition, attr))

    def pair_ratios(self, attr: str = "session") -> list[float]:
        a, b = self.samples(self.base, attr), self.samples(self.test, attr)
        return [y / x for x, y in zip(a, b)]

    def intervals(self, attr: str = "session") -> dict[str, Any]:
        """See :func:`ratio_intervals`."""
        return ratio_intervals(self.samples(self.base, attr), self.samples(self.test, attr))

    def summary(self) -> dict[str, Any]:
        n = self.spec.tests
        out: dict[str, Any] = {
            "label": self.label,
            "suite": self.spec.name,
            "tests": n,
            "base": self.base,
            "test": self.test,
            "note": self.note,
            "runs": [r.as_dict() for r in self.results],
            "tcp_states_between_runs": self.tcp_states,
            "seconds_waited_for_quiet": round(self.waited, 1),
        }
        for attr in ("session", "loop", "steady", "first_test", "cpu_session", "cpu_loop", "cpu_steady"):
            ma, mb = self.median(self.base, attr), self.median(self.test, attr)
            ratios = self.pair_ratios(attr)
            per = 1 if attr == "first_test" else (n - 1 if attr in ("steady", "cpu_steady") else n)
            out[attr] = {
                "median_base_s": ma,
                "median_test_s": mb,
                "min_base_s": min(self.samples(self.base, attr)),
                "min_test_s": min(self.samples(self.test, attr)),
                "ratio": mb / ma if ma else None,
                "added_us_per_test": (mb - ma) / max(per, 1) * 1e6,
                "pair_ratio_min": min(ratios),
                "pair_ratio_max": max(ratios),
                "intervals": self.intervals(attr) if attr in ("session", "steady") else None,
            }
        warnings = sorted({r.warning for r in self.results if r.warning})
        out["warnings"] = warnings
        bg = [r.background for r in self.results if r.background is not None]
        out["background_cores_median"] = statistics.median(bg) if bg else None
        tw = [s.get("TIME_WAIT", 0) for s in self.tcp_states]
        out["time_wait_rows"] = {"min": min(tw), "median": statistics.median(tw), "max": max(tw)} if tw else None
        if self.memory:
            mem: dict[str, Any] = {}
            for cond in (self.base, self.test):
                # (start, collected, first test done, end) of the runs that measured all four
                rs = [(r.rss_start, r.rss_collected, r.rss_first_done, r.rss_end) for r in self.results
                      if r.condition == cond and r.rss_start is not None and r.rss_collected is not None
                      and r.rss_first_done is not None and r.rss_end is not None]
                mem[cond] = {
                    "session_growth_mb": statistics.median((end - start) / 2**20 for start, _, _, end in rs),
                    "loop_growth_mb": statistics.median((end - collected) / 2**20 for _, collected, _, end in rs),
                    "first_test_growth_mb": statistics.median(
                        (first - collected) / 2**20 for _, collected, first, _ in rs),
                    "steady_growth_mb": statistics.median((end - first) / 2**20 for _, _, first, end in rs),
                    "rss_end_mb": statistics.median(end / 2**20 for _, _, _, end in rs),
                }
            mem["plugin_session_growth_mb"] = mem[self.test]["session_growth_mb"] - mem[self.base]["session_growth_mb"]
            mem["plugin_loop_growth_mb"] = mem[self.test]["loop_growth_mb"] - mem[self.base]["loop_growth_mb"]
            mem["plugin_rss_end_mb"] = mem[self.test]["rss_end_mb"] - mem[self.base]["rss_end_mb"]
            for k in ("first_test_growth_mb", "steady_growth_mb"):
                mem["plugin_" + k] = mem[self.test][k] - mem[self.base][k]
            out["memory"] = mem
        return out


def _bootstrap(pairs: Sequence[tuple[float, float]], statistic: Callable[[Sequence[tuple[float, float]]], float],
               draws: int = 4000,
               seed: int = 12) -> tuple[float, float] | None:
    """A 95 % bootstrap interval of ``statistic(pairs)``: the alternated pairs drawn again with replacement, a
    pair's two runs together (they ran side by side, so a drift of the machine hits both). A fixed seed: the same
    runs give the same interval. None with fewer than 5 pairs."""
    n = len(pairs)
    if n < 5:
        return None
    rng = random.Random(seed)
    values = sorted(statistic([pairs[rng.randrange(n)] for _ in range(n)]) for _ in range(draws))
    return values[int(0.025 * draws)], values[min(draws - 1, int(0.975 * draws))]


def _ratio_of_medians(pairs: Sequence[tuple[float, float]]) -> float:
    a = statistics.median(p[0] for p in pairs)
    return statistics.median(p[1] for p in pairs) / a if a else float("nan")


def _median_pair_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    return statistics.median(b / a for a, b in pairs if a)


def ratio_intervals(base: Sequence[float], test: Sequence[float]) -> dict[str, Any]:
    """How far a run's ratio could move with another run of as many pairs on the same machine: a 95 % bootstrap
    interval of the ratio of medians (the tables' ``ratio``), and the median of the pair ratios with its own. On a
    shared machine separate runs of 15 pairs have differed by more than 0.05, which a single ratio does not show;
    the median pair ratio is the steadier of the two when the machine drifts during a run (each pair is compared
    with itself), and the one to pool over several runs."""
    pairs = list(zip(base, test))
    return {
        "ratio_of_medians_95": _bootstrap(pairs, _ratio_of_medians),
        "median_pair_ratio": _median_pair_ratio(pairs) if pairs else None,
        "median_pair_ratio_95": _bootstrap(pairs, _median_pair_ratio),
    }


def interval_report(summaries: list[dict[str, Any]]) -> str:
    """The session's and the steady state's ratios, each with its 95 % bootstrap interval."""
    header = ("suite", "condition", "pairs", "session: ratio", "95% interval", "median pair ratio", "95% interval",
              "steady: ratio", "95% interval", "median pair ratio", "95% interval")
    rows = []

    def fmt(v: float | None) -> str:
        return f"{v:.3f}x" if v is not None else "n/a"

    def span(iv: Sequence[float] | None) -> str:
        return f"{iv[0]:.3f}-{iv[1]:.3f}" if iv else "n/a"

    for s in summaries:
        row = [s["suite"], s["label"], str(sum(1 for r in s["runs"] if r["condition"] == s["test"]))]
        for attr in ("session", "steady"):
            iv = s[attr]["intervals"]
            row += [fmt(s[attr]["ratio"]), span(iv["ratio_of_medians_95"]),
                    fmt(iv["median_pair_ratio"]), span(iv["median_pair_ratio_95"])]
        rows.append(row)
    return fmt_table(rows, header)


def run_scenario(sc: Scenario, args: argparse.Namespace, workdir: Path, env: dict[str, str], log: Any) -> None:
    suite = generate_suite(sc.spec, workdir)
    order_pairs: list[tuple[str, str]] = []
    repeats = min(args.repeats, args.memory_repeats) if sc.memory else args.repeats
    for n in range(repeats):
        ab = (sc.base, sc.test)
        order_pairs.append(ab if (args.order == "abab" or n % 2 == 0) else ab[::-1])
    log(f"\n== {sc.label}: {sc.spec.name} ({sc.spec.tests} tests), {sc.base} vs {sc.test}, "
        f"{repeats} repeats ({args.order}) ==")
    def run(condition: str) -> RunResult:
        return run_once(args.python, suite, condition, args.backend, env, args.timeout, sc.memory, sc.spec.tests,
                        expected_violations(sc.spec), check_verdicts=not args.verdicts_may_differ)

    if not args.no_warmup:
        for cond in (sc.base, sc.test):
            r = run(cond)
            log(f"   warm-up {cond:8s} session {r.session:7.3f}s (discarded)")
    for i, pair in enumerate(order_pairs):
        for cond in pair:
            if args.quiet_load > 0:
                _load, waited = wait_for_quiet(args.quiet_load, args.quiet_wait)
                sc.waited += waited
            sc.tcp_states.append(count_tcp_states())
            r = run(cond)
            sc.results.append(r)
            extra = ""
            if sc.memory and r.rss_end is not None and r.rss_start is not None:
                extra = f"  rss +{(r.rss_end - r.rss_start) / 2**20:6.1f} MB"
            bg = f"{r.background:4.2f}" if r.background is not None else " n/a"
            log(f"   [{i + 1}/{len(order_pairs)}] {cond:8s} session {r.session:7.3f}s  loop {r.loop:7.3f}s  "
                f"cpu {r.cpu_session:7.3f}s  other load {bg} cores  TIME_WAIT {sc.tcp_states[-1].get('TIME_WAIT', 0)}"
                f"{extra}")
    sc.tcp_states.append(count_tcp_states())


# --------------------------------------------------------------------------------------------------------------
# neighbour
# --------------------------------------------------------------------------------------------------------------


class Neighbour:
    def __init__(self, python: str, target: int, log: Any) -> None:
        self.target = target
        self.log = log
        self.proc = subprocess.Popen(
            [python, str(HERE / "neighbour.py"), "--target", str(target), "--max-seconds", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()  # neighbour.py prints within its --ramp-timeout (60 s)
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise BenchError(f"the TIME_WAIT neighbour did not start: {err}")
        self.port = int(line[1])
        counts = count_tcp_states()
        log(f"neighbour pid {self.proc.pid} on 127.0.0.1:{self.port}: {line[0]} with {line[2]} of its own "
            f"TIME_WAIT rows; /proc/net/tcp{{,6}} now holds {counts.get('TIME_WAIT', 0)} TIME_WAIT rows")
        if line[0] != "ready":
            raise BenchError("the TIME_WAIT neighbour could not reach its target")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log(f"neighbour pid {self.proc.pid} stopped (its rows expire within 60 s)")


# --------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------


def fmt_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(x).ljust(w) if i < 2 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def report(summaries: list[dict[str, Any]], attr: str = "session", stat: str = "median") -> str:
    header = ("suite", "condition", f"{stat} off s", f"{stat} on s", "ratio", "added us/test", "pair ratios", "load",
              "TIME_WAIT")
    rows = []
    for s in summaries:
        m = s[attr]
        tw = s.get("time_wait_rows")
        a, b = m[f"{stat}_base_s"], m[f"{stat}_test_s"]
        per = 1 if attr == "first_test" else (s["tests"] - 1 if attr in ("steady", "cpu_steady") else s["tests"])
        rows.append((
            s["suite"],
            s["label"],
            f"{a:.3f}",
            f"{b:.3f}",
            f"{b / a:.3f}x" if a else "n/a",
            f"{(b - a) / max(per, 1) * 1e6:+.0f}",
            f"{m['pair_ratio_min']:.3f}-{m['pair_ratio_max']:.3f}",
            f"{s['background_cores_median']:.2f}" if s["background_cores_median"] is not None else "n/a",
            f"{tw['median']:.0f}" if tw else "",
        ))
    return fmt_table(rows, header)


def memory_report(summaries: list[dict[str, Any]]) -> str:
    header = ("suite", "condition", "session growth off MB", "on MB", "plugin MB", "first test: plugin MB",
              "tests 2..N: off MB", "on MB", "plugin MB", "plugin KB/test")
    rows = []
    for s in summaries:
        mem = s.get("memory")
        if not mem:
            continue
        a, b = mem[s["base"]], mem[s["test"]]
        rows.append((s["suite"], s["label"], f"{a['session_growth_mb']:.1f}", f"{b['session_growth_mb']:.1f}",
                     f"{mem['plugin_session_growth_mb']:+.1f}", f"{mem['plugin_first_test_growth_mb']:+.1f}",
                     f"{a['steady_growth_mb']:.1f}", f"{b['steady_growth_mb']:.1f}",
                     f"{mem['plugin_steady_growth_mb']:+.1f}",
                     f"{mem['plugin_steady_growth_mb'] * 1024 / max(1, s['tests'] - 1):+.2f}"))
    return fmt_table(rows, header) if rows else ""


# --------------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------------


def build_scenarios(args: argparse.Namespace, neighbour: int, held: int, memory: bool, mode: str,
                    suites: Sequence[str], tag: str = "") -> list[Scenario]:
    base, test = ("absent", "off") if mode == "off" else ("off", mode)
    cond = f"{test} vs {base}"
    if args.backend and mode != "off":
        cond += f", backend {args.backend}"
    if neighbour:
        cond += f", neighbour {neighbour} TW"
    out: list[Scenario] = []
    for name in suites:
        if name == "trivial":
            spec = SuiteSpec("trivial", args.tests, held=held)
            label = cond + (f", {held} held sockets" if held else "")
            out.append(Scenario(label + tag, spec, base, test))
        elif name in ("http", "http-client"):  # one client for the session / one client per test
            spec = SuiteSpec(name, args.http_tests, requests=args.requests)
            out.append(Scenario(cond + tag, spec, base, test))
        elif name in MIXED_SUITES:
            # issue 12: warn mode (what the docs recommend for adoption) against the suite without the plugin
            vbase = "absent" if mode != "off" else base
            vtest = "warn" if mode != "off" else test
            vcond = f"{vtest} vs {vbase}" + (f", backend {args.backend}" if args.backend else "")
            n = {"violations": args.violation_tests, "transient": args.transient_tests, "sdk": args.sdk_tests}[name]
            out.append(Scenario(vcond + tag, SuiteSpec(name, n), vbase, vtest))
            if args.floor and name == "violations" and mode != "off":
                out.append(Scenario("floor vs absent" + tag, SuiteSpec(name, n), "absent", "floor"))
        elif name == "memory":
            pass
        else:
            raise SystemExit(f"unknown suite {name!r}")
    if memory or "memory" in suites:
        out.append(Scenario(cond + ", memory" + tag, SuiteSpec("memory", args.memory_tests), base, test,
                            memory=True))
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See benchmarks/README.md for the method and results.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-n", "--tests", type=int, default=2000, help="trivial tests in suite (a) (default 2000)")
    ap.add_argument("--http-tests", type=int, default=200, help="tests in the HTTP suite (b) (default 200)")
    ap.add_argument("--requests", type=int, default=10, help="loopback requests per HTTP test (default 10)")
    ap.add_argument("--memory-tests", type=int, default=10000, help="tests in the memory suite (c) (default 10000)")
    ap.add_argument("--violation-tests", type=int, default=130,
                    help="tests in the violation-cost suite (default 130: 40 clean, 30 TIME_WAIT bursts, 30 over a "
                         "connection budget, 30 clients dropped unclosed)")
    ap.add_argument("--transient-tests", type=int, default=40,
                    help="tests in the transient suite (default 40: LISTEN and CLOSE_WAIT closed 20-100 ms after "
                         "teardown)")
    ap.add_argument("--sdk-tests", type=int, default=200,
                    help="tests in the SDK-shaped suite (default 200: 60 unit tests, 80 mocked with respx, 40 "
                         "against a real server whose clients are never closed, 20 closed async clients)")
    ap.add_argument("--floor", action="store_true",
                    help="with the violations suite: also run benchmarks/floor_plugin.py against the suite without "
                         "the plugin, right after warn mode (the least any design must spend: docs/performance.md)")
    ap.add_argument("--verdicts-may-differ", action="store_true",
                    help="check only that every test was checked, not the verdicts (for a --rev from before a "
                         "change of verdicts, e.g. the SDK suite at f4d33c8, before issue 12)")
    ap.add_argument("--pytest-args", default="", metavar="ARGS",
                    help="extra pytest arguments for every run, both conditions (e.g. '-p no:socket')")
    ap.add_argument("-r", "--repeats", type=int, default=5, help="runs of each condition (default 5)")
    ap.add_argument("--memory-repeats", type=int, default=3,
                    help="runs of each condition for the memory suite (default 3; it is slow and RSS is stable)")
    ap.add_argument("--suites", default=None,
                    help="comma-separated: trivial, http, http-client, memory, violations, transient, sdk (default "
                         "trivial,http; memory is added by --memory; violations, transient and sdk run warn vs "
                         "-p no:sockhygiene)")
    ap.add_argument("--neighbour-time-wait", type=int, default=0, metavar="N",
                    help="start a process that keeps ~N TIME_WAIT rows on the machine during the benchmark")
    ap.add_argument("--held-sockets", type=int, default=0, metavar="N",
                    help="suite (a) holds N open loopback sockets (N/2 connected pairs) in a session fixture")
    ap.add_argument("--memory", action="store_true", help="also run the 10,000-test suite and report RSS growth")
    ap.add_argument("--mode", choices=("enforce", "warn", "off"), default="enforce",
                    help="plugin-on condition (default enforce); 'off' compares -p no:sockhygiene (base) with the "
                         "plugin installed but off")
    ap.add_argument("--backend", choices=("auto", "linux", "psutil"), default=None,
                    help="--sockhygiene-backend for the plugin-on runs (default: the plugin's own default, auto)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 trivial, 20 http, 1000 memory tests, 2 repeats, no warm-up")
    ap.add_argument("--all", action="store_true",
                    help="run everything: default suites; 1000 held sockets; memory; --mode off; and with a 5000 "
                         "TIME_WAIT neighbour (last)")
    ap.add_argument("--order", choices=("abba", "abab"), default="abba",
                    help="abba (default): off on | on off | ...; abab: off on | off on | ...")
    ap.add_argument("--no-warmup", action="store_true", help="skip the discarded warm-up run of each condition")
    ap.add_argument("--quiet-load", type=float, default=1.0, metavar="CORES",
                    help="before each run wait until other processes use fewer cores than this (default 1.0; "
                         "0 disables)")
    ap.add_argument("--quiet-wait", type=float, default=5.0, metavar="S",
                    help="longest wait for --quiet-load before each run (default 5 s)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one pytest run (default 600)")
    ap.add_argument("--json", metavar="PATH", help="also write every number to PATH as JSON")
    ap.add_argument("--workdir", metavar="DIR", help="generate suites here and keep them (default: a temp dir)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest and the plugin (default: this)")
    ap.add_argument("--rev", metavar="REV",
                    help="benchmark the plugin as committed at git revision REV (e.g. HEAD, a tag), extracted into the "
                         "work dir and put first on PYTHONPATH; default: the work tree as it is")
    args = ap.parse_args(argv)
    if args.quick:
        args.tests, args.http_tests, args.memory_tests = min(args.tests, 200), min(args.http_tests, 20), 1000
        args.repeats = min(args.repeats, 2)
        args.no_warmup = True
    if args.repeats < 1 or args.repeats > 50:
        ap.error("--repeats must be in 1..50")
    for name in ("tests", "http_tests", "memory_tests"):
        if not 1 <= getattr(args, name) <= 100000:
            ap.error(f"--{name.replace('_', '-')} must be in 1..100000")
    if not 0 <= args.held_sockets <= 16000 or not 0 <= args.neighbour_time_wait <= 20000:
        ap.error("--held-sockets must be in 0..16000, --neighbour-time-wait in 0..20000")
    args.suite_list = [s.strip() for s in args.suites.split(",")] if args.suites else ["trivial", "http"]
    EXTRA_ARGS[:] = args.pytest_args.split()
    return args


def revision() -> str:
    """The plugin's git commit, with '+dirty' when its work tree has changes (the numbers belong to that code)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pytest_sockhygiene"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def extract_revision(rev: str, workdir: Path) -> tuple[Path, str]:
    """``git archive`` the package at ``rev`` into the work dir; return (directory for PYTHONPATH, commit)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        dest = workdir / f"src-{commit}"
        if not (dest / "pytest_sockhygiene" / "__init__.py").exists():
            dest.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "archive", "--format=tar", commit, "pytest_sockhygiene"], cwd=ROOT,
                                     capture_output=True, timeout=60, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"cannot extract revision {rev!r}: {e}") from e
    return dest, commit


def python_version(python: str) -> str:
    """The version of ``python``, the interpreter that runs the suites (``--python``), not this script's."""
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True).stdout.strip() or "(unknown version)"


def child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONDONTWRITEBYTECODE"):
        env.pop(k, None)
    # bytecode goes to the temp dir, never next to the sources (the package is somebody else's work tree)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tmp = None
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="sockhygiene-bench-")
        workdir = Path(tmp.name)
    env = child_env(workdir)
    rev_label = revision()
    if args.rev:
        try:
            src, rev_label = extract_revision(args.rev, workdir)
        except BenchError as e:
            log(f"BENCHMARK FAILED: {e}")
            return 1
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["SOCKHYGIENE_BENCH_SRC"] = str(src)
        log(f"plugin from git revision {rev_label}, extracted to {src}")

    plan: list[tuple[int, list[Scenario]]] = []  # (neighbour TIME_WAIT target, scenarios)
    if args.all:
        plan.append((0, build_scenarios(args, 0, 0, False, args.mode, ["trivial", "http"])))
        plan.append((0, build_scenarios(args, 0, args.held_sockets or 1000, False, args.mode, ["trivial"])))
        plan.append((0, build_scenarios(args, 0, 0, True, args.mode, [])))
        plan.append((0, build_scenarios(args, 0, 0, False, "off", ["trivial", "http"])))
        plan.append((args.neighbour_time_wait or 5000,
                     build_scenarios(args, args.neighbour_time_wait or 5000, 0, False, args.mode, ["trivial", "http"])))
    else:
        plan.append((args.neighbour_time_wait,
                     build_scenarios(args, args.neighbour_time_wait, args.held_sockets, args.memory, args.mode,
                                     args.suite_list)))

    version = python_version(args.python)
    log(f"python {version} ({args.python}), {os.cpu_count()} cores, workdir {workdir}")
    log(f"machine before: {count_tcp_states()}")
    done: list[Scenario] = []
    try:
        for target, scenarios in plan:
            neighbour = Neighbour(args.python, target, log) if target else None
            try:
                for sc in scenarios:
                    run_scenario(sc, args, workdir, env, log)
                    done.append(sc)
            finally:
                if neighbour is not None:
                    neighbour.stop()
    except BenchError as e:
        log(f"\nBENCHMARK FAILED: {e}")
        return 1
    except KeyboardInterrupt:
        log("\ninterrupted; reporting what finished")
    finally:
        if tmp is not None:
            tmp.cleanup()

    summaries = [sc.summary() for sc in done]
    if not summaries:
        return 1
    print("\nSession time (pytest_sessionstart -> pytest_sessionfinish), medians; ratio = on/off; "
          "added us/test = (on - off) / tests;")
    print("pair ratios = range of on/off over the alternated pairs; load = median cores used by other processes "
          "during a run; TIME_WAIT = median rows on the machine.\n")
    print(report(summaries))
    print("\nSteady state: tests 2..N only (end of the first test -> pytest_sessionfinish; one-time work done at "
          "the first test excluded; us/test over N-1 tests):\n")
    print(report(summaries, "steady"))
    print("\nProcess CPU time, steady state (tests 2..N; less sensitive to other processes on the machine):\n")
    print(report(summaries, "cpu_steady"))
    print("\nBest of the runs (minimum): contention from other processes only ever adds time, so the minimum is the "
          "least disturbed estimate. Session, then steady state (tests 2..N):\n")
    print(report(summaries, "session", "min"))
    print()
    print(report(summaries, "steady", "min"))
    print("\nHow far the ratios could move: the ratio of medians (as above) and the median of the pair ratios, each "
          "with a 95 % bootstrap interval (the pairs drawn again with replacement; 5 pairs or more):\n")
    print(interval_report(summaries))
    print("\nThe first test alone (collection end -> end of test 1; 'added us/test' is the added time of that test):\n")
    print(report(summaries, "first_test"))
    mem = memory_report(summaries)
    if mem:
        print("\nResident memory (psutil RSS): growth from session start to finish, and over the test loop only; "
              "medians:\n")
        print(mem)
    for s in summaries:
        if "held" in s["suite"]:
            m = s["session"]
            print(f"\n{s['suite']}: {m['added_us_per_test'] / 1000:+.3f} ms added per test with the held sockets")
    for s in summaries:
        for w in s.get("warnings", []):
            print(f"\nWARNING ({s['suite']}, {s['label']}): {w}")
    print(f"\n(total benchmark time {time.monotonic() - started:.0f} s; plugin at {rev_label})")
    if args.json:
        payload = {
            "argv": sys.argv[1:] if argv is None else list(argv),
            "python": version,
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "revision": rev_label,
            "total_seconds": time.monotonic() - started,
            "scenarios": summaries,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
