#!/usr/bin/env python
"""Bytecodes the plugin executes per test, by function and by module: where its cost is, on any Python.

    python benchmarks/bytecodes.py                       # the violation suite (130 tests), warn mode, ~10 s
    python benchmarks/bytecodes.py --suite sdk --top 40
    python benchmarks/bytecodes.py --floor               # benchmarks/floor_plugin.py instead of the plugin

A tracer (``sys.settrace`` and ``threading.settrace``, from the end of collection to the session's end) turns on
opcode events in every frame whose code is in the package (``pytest_sockhygiene``; with ``--floor``, the floor's
module too, which calls the package's kernel lookup and warning) and
counts them by code object: a function's own bytecodes, not its callees'. Other frames get no local tracer and
are not counted. The run is ~7 times slower than natively, but the count does not depend on the machine's load,
and on the violation suite one bytecode is ~100 instructions of the plugin's (``instructions.py``).

Why: callgrind (``instructions.py``) gives the plugin's whole cost in instructions but names only C functions on
Python 3.11, and Python-level profilers (cProfile) inflate what makes many calls. This names the plugin's
functions with counts that add up. Excluded from the totals: ``testing.py`` (the suite's own loopback server,
which runs without the plugin too) and ``replacements.holder_slot`` (a walk of the modules' globals made once or twice
a session when pytest-socket writes its method back, not per test). Results: docs/performance.md ("thirteenth
pass").
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

TRACER = textwrap.dedent('''
    import json, os, sys, threading

    _PKGS = tuple(os.environ["SOCKHYGIENE_BYTECODES_PKG"].split("|"))
    _counts = {}
    _calls = {}


    def _local(frame, event, arg):
        if event == "opcode":
            code = frame.f_code
            _counts[code] = _counts.get(code, 0) + 1
        return _local


    def _global(frame, event, arg):
        code = frame.f_code
        if any(p in code.co_filename for p in _PKGS):
            _calls[code] = _calls.get(code, 0) + 1
            frame.f_trace_opcodes = True
            return _local
        return None


    def pytest_collection_finish(session):
        sys.settrace(_global)
        threading.settrace(_global)


    def pytest_sessionfinish(session):
        sys.settrace(None)
        threading.settrace(None)
        rows = [(code.co_filename, code.co_name, n, _calls.get(code, 0)) for code, n in _counts.items()]
        with open(os.environ["SOCKHYGIENE_BYTECODES_OUT"], "w") as f:
            json.dump({"tests": session.testscollected, "rows": rows}, f)
''')

EXCLUDED = (("testing.py", None), ("replacements.py", "holder_slot"))
"""(file, function or None for all): not the plugin's per-test cost (see the module docstring)."""


def count(python: str, suite: Path, floor: bool, env: dict[str, str], out: Path) -> dict[str, Any]:
    """Run the suite once with the tracer; return its counts."""
    tracer_dir = out.parent / "bytecodes-tracer"
    tracer_dir.mkdir(exist_ok=True)
    (tracer_dir / "bytecodes_tracer.py").write_text(TRACER)
    condition = "floor" if floor else "warn"
    run_env = bench.condition_env(condition, env)
    run_env["PYTHONPATH"] = str(tracer_dir) + (os.pathsep + run_env["PYTHONPATH"] if run_env.get("PYTHONPATH") else "")
    # the floor's own module, and the plugin's parts it calls (its kernel lookup, its warning)
    run_env["SOCKHYGIENE_BYTECODES_PKG"] = "/floor_plugin.py|/pytest_sockhygiene/" if floor else "/pytest_sockhygiene/"
    run_env["SOCKHYGIENE_BYTECODES_OUT"] = str(out)
    run_env["PYTHONHASHSEED"] = "0"
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bytecodes_tracer",
           *bench.CONDITIONS[condition], *bench.EXTRA_ARGS]
    proc = subprocess.run(cmd, cwd=suite, env=run_env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise bench.BenchError(f"{' '.join(cmd)} in {suite} exited {proc.returncode}:\n{tail}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _excluded(filename: str, function: str) -> bool:
    return any(filename.endswith(f) and (fn is None or fn == function) for f, fn in EXCLUDED)


def summarize(data: dict[str, Any], top: int) -> str:
    tests = max(1, int(data["tests"]))
    rows = [(Path(f).name if "floor_plugin" in f else f.split("/pytest_sockhygiene/")[-1], fn, n, calls)
            for f, fn, n, calls in data["rows"] if not _excluded(f, fn)]
    total = sum(n for _, _, n, _ in rows)
    by_module: collections.Counter[str] = collections.Counter()
    for module, _, n, _ in rows:
        by_module[module] += n
    lines = [f"{total / tests:,.0f} bytecodes per test over {tests} tests (own counts; excluded: "
             + ", ".join(f"{f}{':' + fn if fn else ''}" for f, fn in EXCLUDED) + ")", "", "by module:"]
    lines += [f"  {n / tests:8,.0f}  {100 * n / max(1, total):5.1f} %  {m}" for m, n in by_module.most_common()]
    lines += ["", f"by function (top {top}): bytecodes per test, calls per test, bytecodes per call"]
    for module, fn, n, calls in sorted(rows, key=lambda r: -r[2])[:top]:
        lines.append(f"  {n / tests:8,.0f}  {calls / tests:7.2f}  {n / max(1, calls):7.1f}  {module}:{fn}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=("violations", "sdk", "http-client", "trivial"), default="violations")
    ap.add_argument("--tests", type=int, default=None, help="suite size (default: run.py's for that suite)")
    ap.add_argument("--floor", action="store_true", help="count benchmarks/floor_plugin.py (violations suite only)")
    ap.add_argument("--top", type=int, default=30, help="functions listed (default 30)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest and the plugin")
    ap.add_argument("--pytest-args", default="", metavar="ARGS", help="extra pytest arguments")
    args = ap.parse_args(argv)
    if args.floor and args.suite != "violations":
        ap.error("--floor gives the plugin's verdicts on the violations suite only")
    bench.EXTRA_ARGS[:] = args.pytest_args.split()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tests = args.tests or {"violations": 130, "sdk": 200, "http-client": 200, "trivial": 2000}[args.suite]
    with tempfile.TemporaryDirectory(prefix="sockhygiene-bytecodes-") as tmp:
        workdir = Path(tmp)
        env = bench.child_env(workdir)
        suite = bench.generate_suite(bench.SuiteSpec(args.suite, tests), workdir)
        data = count(args.python, suite, args.floor, env, workdir / "bytecodes.json")
    what = "benchmarks/floor_plugin.py" if args.floor else f"the plugin at {bench.revision()}, warn mode"
    print(f"python {bench.python_version(args.python)}; {args.suite} suite, {tests} tests; {what}")
    print(summarize(data, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
