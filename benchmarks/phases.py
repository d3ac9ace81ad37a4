#!/usr/bin/env python
"""Where a checked test's time goes, part by part: the plugin's parts timed inside real warn-mode runs of the
violation suite, wall clock and the thread's CPU, per kind of test.

    python benchmarks/phases.py                   # 4 sessions of the 130-test violation suite, ~15 s
    python benchmarks/phases.py --sessions 8 --rev HEAD
    python benchmarks/phases.py --isolated        # + each look part again in a loop, warm, for comparison

A plugin loaded into each run (``-p _sockhygiene_phases``) wraps the parts below before the first test and
adds up, per test, the wall time (``perf_counter``) and the calling thread's CPU time (``thread_time``) spent
in each, by the thread that made the call (the test's, or another: an in-process server's accept and close run
on its threads). The whole test (its protocol: setup, call, teardown, check) is timed too. Wall time and CPU
time apart tell waiting (for the GIL, for a server thread) from work.

Why: ``instructions.py`` counts the check's instructions (the target's other half), but the wall ratio is higher
than the instruction ratio by more than the machine's noise. This shows which part of the check takes more time
inside a run than its instructions or a warm loop would say (``--isolated``): docs/performance.md, "sixteenth
pass". Each timed call costs about 1-2 us of its own (two clocks, a dict update), included in its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import SuiteSpec, expected_violations, extract_revision, generate_suite  # noqa: E402

PARTS = (
    # (module, class, method, label)
    ("pytest_sockhygiene.plugin", "SockHygienePlugin", "_judge", "check (all of it)"),
    ("pytest_sockhygiene.session", "Controller", "open_window", "window open"),
    ("pytest_sockhygiene.session", "Controller", "close_window", "window close"),
    ("pytest_sockhygiene.window", "Window", "observe", "look"),
    ("pytest_sockhygiene.table.linux", "LinuxTable", "rescan", "look: fd re-scan"),
    ("pytest_sockhygiene.table.linux", "LinuxTable", "scan", "look: full scan"),
    ("pytest_sockhygiene.window", "Window", "_look_up", "look: TIME_WAIT lookup"),
    ("pytest_sockhygiene.clients", "ClientRegistry", "probe", "look: client probe"),
    ("pytest_sockhygiene.events", "Recorder", "_identity_before_connect", "connect: identity (fstat)"),
    ("pytest_sockhygiene.events", "Recorder", "_on_connect", "connect: record"),
    ("pytest_sockhygiene.events", "Recorder", "_on_accept", "accept: record"),
    ("pytest_sockhygiene.events", "Recorder", "_on_close", "close: record"),
)
"""The parts timed. A part the plugin under test does not have (an older ``--rev``) is left out, with a note."""

PHASES_PLUGIN = textwrap.dedent('''
    """Written by benchmarks/phases.py: times parts of pytest-sockhygiene per test."""
    import importlib
    import json
    import os
    import threading
    import time

    import pytest

    PARTS = {parts!r}
    _acc = {{}}
    _per_test = []
    _missing = []
    _main = threading.main_thread().ident


    def _wrap(owner, name, label):
        orig = getattr(owner, name)

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return orig(*args, **kwargs)
            finally:
                key = label if threading.get_ident() == _main else label + " [other thread]"
                wall, cpu, calls = _acc.get(key, (0.0, 0.0, 0))
                _acc[key] = (wall + time.perf_counter() - t0, cpu + time.thread_time() - c0, calls + 1)

        setattr(owner, name, timed)


    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        for module, cls, name, label in PARTS:
            owner = getattr(importlib.import_module(module), cls, None)
            if owner is None or not hasattr(owner, name):
                _missing.append(f"{{module}}.{{cls}}.{{name}}")
                continue
            _wrap(owner, name, label)


    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(item, nextitem):
        _acc.clear()
        t0, c0 = time.perf_counter(), time.thread_time()
        yield
        _acc["the test (all of it)"] = (time.perf_counter() - t0, time.thread_time() - c0, 1)
        _per_test.append((item.name, dict(_acc)))


    def pytest_sessionfinish(session, exitstatus):
        with open(os.environ["SOCKHYGIENE_PHASES_OUT"], "w") as f:
            json.dump({{"tests": _per_test, "missing": _missing}}, f)
''')

ISOLATED = textwrap.dedent('''
    """Written by benchmarks/phases.py: the look's system-call parts in a warm loop, on one held connection."""
    import json
    import socket
    import sys
    import time

    from pytest_sockhygiene.table import kernel
    from pytest_sockhygiene.table.linux import LinuxTable

    N = 2000
    srv = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    key = (client.getsockname()[:2], srv.getsockname()[:2])
    table = LinuxTable()
    before = table.scan()
    out = {}

    def timed(label, fn):
        fn()
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(N):
            fn()
        out[label] = ((time.perf_counter() - t0) / N * 1e6, (time.thread_time() - c0) / N * 1e6)

    timed("look: fd re-scan", lambda: table.rescan(before, {client.fileno()}))
    timed("look: TIME_WAIT lookup", lambda: table.lingering({key}))
    timed("connect: identity (fstat)", lambda: table.identity_of(client.fileno(), None, None))
    json.dump(out, sys.stdout)
''')


def run_session(python: str, spec: SuiteSpec, suite: Path, env: dict[str, str], out: Path) -> dict[str, Any]:
    """One warn-mode run of the suite with the timing plugin; it must end with the suite's expected verdicts."""
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_sockhygiene_phases", "--sockhygiene=warn"]
    proc = subprocess.run(cmd, cwd=suite, env=dict(env, SOCKHYGIENE_PHASES_OUT=str(out)), capture_output=True,
                          text=True, timeout=600)
    expected = expected_violations(spec) or ""
    if proc.returncode != 0 or expected not in proc.stdout:
        raise SystemExit(f"{' '.join(cmd)} did not end as expected (exit {proc.returncode}; expected "
                         f"{expected!r}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def kind_of(test_name: str) -> str:
    return test_name[len("test_"):].split("_", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=4, help="sessions, each a fresh process (default 4)")
    ap.add_argument("--violation-tests", type=int, default=130, help="tests in the suite (default 130)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest, httpx and the plugin")
    ap.add_argument("--rev", help="time the package as committed at REV, not the work tree")
    ap.add_argument("--isolated", action="store_true", help="also time the look's system-call parts in a warm loop")
    ap.add_argument("--json", metavar="PATH", help="also write every test's figures to PATH")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sockhygiene-phases-") as tmp:
        work = Path(tmp)
        spec = SuiteSpec("violations", args.violation_tests)
        suite = generate_suite(spec, work)
        plugin_dir = work / "plugin"
        plugin_dir.mkdir()
        (plugin_dir / "_sockhygiene_phases.py").write_text(PHASES_PLUGIN.format(parts=PARTS))
        path = [str(plugin_dir)]
        label = "the work tree"
        if args.rev:
            src, commit = extract_revision(args.rev, work)
            path.insert(0, str(src))
            label = commit
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), PYTHONDONTWRITEBYTECODE="1")
        sessions = []
        for i in range(args.sessions):
            data = run_session(args.python, spec, suite, env, work / f"phases-{i}.json")
            sessions.append(data)
            print(f"session {i + 1}/{args.sessions}: {len(data['tests'])} tests", flush=True)
        isolated: dict[str, list[float]] = {}
        if args.isolated:
            script = work / "isolated.py"
            script.write_text(ISOLATED)
            done = subprocess.run([args.python, str(script)], env=env, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"the isolated loop failed:\n{done.stderr[-2000:]}")
            isolated = json.loads(done.stdout)
    missing = sorted({m for s in sessions for m in s["missing"]})
    # kind -> part -> (wall us, cpu us, calls) of every test
    figures: dict[str, dict[str, list[tuple[float, float, int]]]] = {}
    tests_of: dict[str, int] = {}
    for s in sessions:
        for name, parts in s["tests"][1:-1]:  # one-time costs: the first test, the last (session teardown)
            kind = kind_of(name)
            tests_of[kind] = tests_of.get(kind, 0) + 1
            for part, (wall, cpu, calls) in parts.items():
                figures.setdefault(kind, {}).setdefault(part, []).append((wall * 1e6, cpu * 1e6, calls))
    order = ["the test (all of it)"] + [p[3] for p in PARTS]
    print(f"\nthe plugin at {label}, {args.sessions} sessions of {args.violation_tests} tests, warn mode; per test: "
          "median wall us / median thread CPU us (calls per test)")
    for kind in sorted(figures):
        print(f"\n{kind} ({tests_of[kind]} tests)")
        parts = figures[kind]
        names = [p for p in order if p in parts] + sorted(p for p in parts if p not in order and "[other" not in p)
        names += sorted(p for p in parts if "[other thread]" in p and p not in names)
        for part in names:
            rows = parts[part]
            calls = sum(c for _, _, c in rows) / tests_of[kind]
            # a part not called in some tests counts 0 there
            walls = [w for w, _, _ in rows] + [0.0] * (tests_of[kind] - len(rows))
            cpus = [c for _, c, _ in rows] + [0.0] * (tests_of[kind] - len(rows))
            print(f"  {part:40s} {statistics.median(walls):8.0f} {statistics.median(cpus):8.0f}   ({calls:.2f})")
    if isolated:
        print("\nthe same parts in a warm loop on their own (one held loopback connection), wall us / CPU us per call:")
        for part, (wall, cpu) in isolated.items():
            print(f"  {part:40s} {wall:8.1f} {cpu:8.1f}")
    if missing:
        print(f"\nnot in the plugin under test, not timed: {', '.join(missing)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"label": label, "sessions": sessions, "isolated": isolated}))


if __name__ == "__main__":
    main()
