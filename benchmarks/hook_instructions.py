#!/usr/bin/env python
"""Instructions per test and per plugin hook, in the real test loop, counted by callgrind: where a clean test's
added cost goes, one number per hook, with no run-to-run noise.

    python benchmarks/hook_instructions.py              # 200 trivial tests, off and enforce, ~2 minutes
    python benchmarks/hook_instructions.py --tests 400

``instructions.py`` gives the plugin's per-test cost as a difference of two suite sizes, which a full garbage
collection falling in one run and not the other can move by several thousand instructions per test. This
script counts each test on its own instead: callgrind writes a count at the entry and at the exit of a C
function (``--dump-before`` / ``--dump-after``), so the suite's conftest runs each test's
``pytest_runtest_protocol`` inside ``functools.reduce`` and, plugin on, each of the plugin's per-test functions
(its setup, call and teardown hooks and the verdict's finalizer) inside ``itertools.starmap``, two C functions
nothing else on that path calls. The medians over the tests are printed: the protocol off and on, and each
hook's own count (inclusive). What the protocol adds beyond the hooks is pluggy calling them and what they
cause elsewhere (a class attribute written invalidates the method cache, for instance).

Every run uses ``PYTHONHASHSEED=0`` and ``setarch -R`` (no address randomisation): two runs of the same tree
then count the same to a few instructions per test.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

HOOKS = ("pytest_runtest_setup", "pytest_runtest_call", "pytest_runtest_teardown", "_judge")
"""The plugin's functions a clean test runs, in the order it runs them."""

SPLIT_CONFTEST = textwrap.dedent('''
    # added by benchmarks/hook_instructions.py: one callgrind count per test and per plugin hook
    import functools as _ft
    import itertools as _it
    import os as _os

    from _pytest.runner import pytest_runtest_protocol as _protocol


    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(item, nextitem):
        return _ft.reduce(lambda acc, _: _protocol(item, nextitem), range(1), None)


    if _os.environ.get("SOCKHYGIENE_SPLIT_HOOKS"):
        from pytest_sockhygiene import plugin as _plugin

        def _counted(fn):
            @_ft.wraps(fn)  # keeps pluggy's hookimpl marker
            def counted(*args, **kwargs):
                return list(_it.starmap(lambda: fn(*args, **kwargs), [()]))[0]
            return counted

        for _name in {hooks!r}:
            setattr(_plugin.SockHygienePlugin, _name, _counted(getattr(_plugin.SockHygienePlugin, _name)))
''')

_SUMMARY = re.compile(r"^summary:\s*(\d+)", re.M)
_TRIGGER = re.compile(r"Trigger: --dump-(before|after)=(\w+)")


def segments(outdir: Path) -> list[tuple[str, str, int]]:
    """(before|after, function, instructions) of each dump, in order: the instructions since the last dump."""
    out = []
    for path in sorted(outdir.glob("cg.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])):
        with open(path) as f:
            head = f.read(4000)
        trigger, summary = _TRIGGER.search(head), _SUMMARY.search(head)
        if trigger and summary:
            out.append((trigger.group(1), trigger.group(2), int(summary.group(1))))
    return out


def per_test(segs: list[tuple[str, str, int]]) -> list[tuple[int, list[int]]]:
    """For each test: the protocol's instructions (every segment inside it), and each counted hook's own."""
    tests: list[tuple[int, list[int]]] = []
    current: list[tuple[str, str, int]] | None = None
    for kind, fn, n in segs:
        if fn == "functools_reduce" and kind == "before":
            current = []
            continue
        if current is None:
            continue
        current.append((kind, fn, n))
        if fn == "functools_reduce" and kind == "after":
            hooks = [n for k, f, n in current if k == "after" and f == "starmap_next"]
            total = sum(n for _, _, n in current)
            if total > 200_000:  # a test's protocol (over a million); not another reduce() call at start-up
                tests.append((total, hooks[::2]))  # each starmap ends twice: the call, then its stop
            current = None
    return tests


def count(python: str, suite: Path, mode: str, split: bool, workdir: Path, env: dict[str, str],
          timeout: float) -> list[tuple[int, list[int]]]:
    outdir = workdir / f"cg-{mode}-{int(split)}"
    outdir.mkdir()
    cmd = ["valgrind", "--tool=callgrind", "--dump-before=functools_reduce", "--dump-after=functools_reduce",
           "--dump-before=starmap_next", "--dump-after=starmap_next", f"--callgrind-out-file={outdir / 'cg'}",
           python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--sockhygiene={mode}"]
    if shutil.which("setarch"):
        cmd = ["setarch", platform.machine(), "-R", *cmd]
    run_env = dict(env, PYTHONHASHSEED="0")
    if split:
        run_env["SOCKHYGIENE_SPLIT_HOOKS"] = "1"
    subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--sockhygiene={mode}"], cwd=suite,
                   env=env, capture_output=True, timeout=timeout)  # bytecode compiled before anything is counted
    proc = subprocess.run(cmd, cwd=suite, env=run_env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise bench.BenchError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    tests = per_test(segments(outdir))
    shutil.rmtree(outdir)  # one file per dump: thousands
    return tests[1:]  # the first test pays one-time work (the trackers' imports)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=int, default=200, help="trivial tests (default 200)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest and the plugin (default: this)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one run (default 1800)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sockhygiene-hooks-") as tmp:
        workdir = Path(tmp)
        suite = bench.generate_suite(bench.SuiteSpec("trivial", args.tests), workdir)
        with open(suite / "conftest.py", "a") as f:
            f.write(SPLIT_CONFTEST.format(hooks=HOOKS))
        env = bench.child_env(workdir)
        print(f"plugin from the work tree at {bench.revision()}; {args.tests} trivial tests", flush=True)
        runs: dict[str, Any] = {}
        for label, mode, split in (("off", "off", False), ("enforce", "enforce", False),
                                   ("enforce, hooks counted", "enforce", True)):
            runs[label] = count(args.python, suite, mode, split, workdir, env, args.timeout)
    off = statistics.median(p for p, _ in runs["off"])
    on = statistics.median(p for p, _ in runs["enforce"])
    print(f"\nInstructions per test, medians over tests 2..{args.tests} (callgrind, user space):")
    print(f"  protocol, plugin off       {off / 1e3:10,.1f}k")
    print(f"  protocol, enforce          {on / 1e3:10,.1f}k   (+{(on - off) / 1e3:,.1f}k, {on / off:.3f}x)")
    counted = [h for _, h in runs["enforce, hooks counted"] if len(h) == len(HOOKS)]
    for i, name in enumerate(HOOKS):
        print(f"    {name:26s} {statistics.median(h[i] for h in counted) / 1e3:8,.1f}k")
    print(f"    (tests with every hook counted: {len(counted)} of {len(runs['enforce, hooks counted'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
