#!/usr/bin/env python
"""The plugin's per-test cost in CPU instructions, counted by valgrind's callgrind: a number that does not move
with what else the machine is doing.

    python benchmarks/instructions.py                      # trivial suite, 200 and 1,000 tests, off and on
    python benchmarks/instructions.py --suites trivial,http --rev HEAD

Wall-clock ratios on a shared 2-core machine swing by +-10 % from run to run (see docs/performance.md), more than
the cost being measured. Callgrind counts the instructions a process executes in user space, the same count for
the same code and input whatever runs beside it. Each suite is run at two sizes, plugin off and plugin on, and
the per-test cost is the difference between the sizes divided by the difference in tests, so interpreter start-up,
imports and collection fall out. The ratio on/off of those per-test counts is the plugin's share of a test's work.

What this does not count: time inside the kernel (the ``listdir`` of ``/proc/self/fd`` the plugin does once per
test, ~8 us here, and every syscall pytest makes), and cache or scheduling effects. Read it beside run.py's
wall-clock numbers, not instead of them.

Each run's full garbage collections are counted too (the suite's conftest writes ``gc.get_stats()``): a full
collection of a test run's heap costs tens of millions of instructions, and whether one more of them falls between
the two sizes in the plugin's runs than in the base's moves the per-test figure by ~40k on the trivial suite (one
in 800 tests). The table shows the counts and marks such a window; ``--small`` and ``--tests`` count others.
``--no-gc`` turns automatic collection off in every run of both conditions (from the suite's conftest on): what is
left is the work each test does, without the schedule - on the clean path the plugin's runs leave about as many
container objects alive as the base's (-0.96 per test at 6c5c2e6, printed with the result), so the schedule is all
the collector adds there; a heap that only grows is laid out differently, which moves the count by a few
thousand instructions per test (the violation suite's own collections are explicit ``gc.collect()`` calls, which
still run).

Every run uses ``PYTHONHASHSEED=0``: with a random seed, dict and set layouts differ from run to run and the
count of a whole run moves by tens of millions of instructions, which the difference of two runs would spread
over the tests. Every suite runs once natively first, so that bytecode is compiled and cached before anything is
counted.
Runs are independent processes; ``--jobs`` of them run at once (instruction counts do not depend on it). Each
run is ~40-60x slower than natively: the default trivial measurement takes ~4 minutes with 2 jobs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count_instructions(python: str, suite: Path, condition: str, env: dict[str, str], timeout: float,
                       expect: int) -> tuple[int, int | None, int | None]:
    """Instructions executed by one ``pytest`` run of ``suite`` under callgrind (user space, all threads), the
    full garbage collections the run made, and the collector's young-generation count at its end (with automatic
    collection off: the container objects the run left alive, net) - from the suite's timing file; None if it has
    none."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-m", "pytest", "-q",
           "-p", "no:cacheprovider", *bench.CONDITIONS[condition], *bench.EXTRA_ARGS]
    run_env = bench.condition_env(condition, env)
    run_env["PYTHONHASHSEED"] = "0"  # a random seed moves the count of the whole run by tens of millions
    timing = suite.parent / f"timing-{condition}-{suite.name}.json"
    run_env["SOCKHYGIENE_BENCH_OUT"] = str(timing)
    proc = subprocess.run(cmd, cwd=suite, env=run_env, capture_output=True, text=True, timeout=timeout)
    m = _COLLECTED.search(proc.stderr)
    passed = re.search(rf"\b{expect} passed\b", proc.stdout)
    if proc.returncode != 0 or m is None or passed is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise bench.BenchError(f"{' '.join(cmd)} in {suite} exited {proc.returncode}:\n{tail}")
    try:
        data = json.loads(timing.read_text())
        full, young = data["gc_collections"][-1], data["gc_count"][0]
    except (OSError, ValueError, KeyError, IndexError):
        full = young = None
    return int(m.group(1)), full, young


def measure(kind: str, small: int, large: int, args: argparse.Namespace, workdir: Path,
            env: dict[str, str]) -> list[dict[str, Any]]:
    """The plugin's per-test count against the base's, and with ``--floor`` (violations suite) the floor's."""
    suites = {n: bench.generate_suite(bench.SuiteSpec(kind, n, requests=args.requests), workdir)
              for n in (small, large)}
    # the violation-cost suite runs in warn mode (issue 12), against the suite without the plugin
    base, mode = ("absent", "warn") if kind in ("violations", "sdk") else ("off", args.mode)
    tested = [mode, "floor"] if args.floor and kind == "violations" else [mode]
    jobs = [(cond, n) for cond in (base, *tested) for n in (small, large)]
    for cond, n in jobs:  # natively first: bytecode compiled and cached, so no counted run pays for compiling
        subprocess.run([args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *bench.CONDITIONS[cond],
                        *bench.EXTRA_ARGS], cwd=suites[n], env=bench.condition_env(cond, env),
                       capture_output=True, timeout=args.timeout)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(count_instructions, args.python, suites[job[1]], job[0], env, args.timeout,
                                    job[1]) for job in jobs}
        done = {job: f.result() for job, f in futures.items()}
    counts = {job: n for job, (n, _full, _young) in done.items()}
    fulls = {job: full for job, (_n, full, _young) in done.items()}
    young = {job: y for job, (_n, _full, y) in done.items()}
    per_test = {cond: (counts[(cond, large)] - counts[(cond, small)]) / (large - small)
                for cond in (base, *tested)}
    return [{
        "suite": kind, "small": small, "large": large, "condition": f"{cond} vs {base}",
        "instructions": {f"{c}-{n}": counts[(c, n)] for c in (base, cond) for n in (small, large)},
        "per_test_off": per_test[base], "per_test_on": per_test[cond],
        "ratio": per_test[cond] / per_test[base],
        "added_per_test": per_test[cond] - per_test[base],
        "fixed_added": counts[(cond, small)] - counts[(base, small)] - small * (per_test[cond] - per_test[base]),
        # full collections of each run: when the plugin's runs make more of them between the two sizes than the
        # base's, one collection's cost (tens of millions of instructions on a test run's heap) is in added_per_test
        "full_collections": {f"{c}-{n}": fulls[(c, n)] for c in (base, cond) for n in (small, large)},
        # with --no-gc: container objects left alive per test, the plugin's runs' less the base's (what would
        # drive the collector's schedule)
        "kept_objects_per_test": _kept(young, base, cond, small, large) if args.no_gc else None,
    } for cond in tested]


def _kept(young: dict[tuple[str, int], int | None], base: str, cond: str, small: int, large: int) -> float | None:
    try:
        return ((young[(cond, large)] - young[(cond, small)])  # type: ignore[operator]
                - (young[(base, large)] - young[(base, small)])) / (large - small)  # type: ignore[operator]
    except TypeError:
        return None


def extra_full_collections(r: dict[str, Any]) -> int | None:
    """How many more full collections the plugin's runs made between the two sizes than the base's (0: as many)."""
    f = r.get("full_collections") or {}
    base, cond = r["condition"].split(" vs ")[1], r["condition"].split(" vs ")[0]
    try:
        return int((f[f"{cond}-{r['large']}"] - f[f"{cond}-{r['small']}"])
                   - (f[f"{base}-{r['large']}"] - f[f"{base}-{r['small']}"]))
    except (KeyError, TypeError):
        return None


def fmt(results: Sequence[dict[str, Any]]) -> str:
    rows = [(r["suite"] + f" ({r['condition']})", f"{r['small']}->{r['large']}", f"{r['per_test_off'] / 1e3:,.0f}k",
             f"{r['per_test_on'] / 1e3:,.0f}k", f"{r['ratio']:.3f}x", f"+{r['added_per_test'] / 1e3:,.1f}k",
             f"{r['fixed_added'] / 1e6:+,.1f}M", _fulls(r)) for r in results]
    header = ("suite (condition)", "tests", "base instr/test", "plugin instr/test", "ratio", "added/test",
              "once per run", "full GCs base / plugin")
    out = bench.fmt_table(rows, header)
    if any(extra_full_collections(r) for r in results):
        out += ("\n* the plugin's runs made a different number of full garbage collections between the two sizes "
                "than the base's: each costs tens of millions of instructions on a test run's heap, and lands in "
                "added/test. Read the figure with that in mind, or count other sizes (--small, --tests).")
    return out


def _fulls(r: dict[str, Any]) -> str:
    """``1->1 / 1->2``: the full collections of the base's small and large runs, then the plugin's."""
    f = r.get("full_collections") or {}
    base, cond = r["condition"].split(" vs ")[1], r["condition"].split(" vs ")[0]
    small, large = r["small"], r["large"]
    text = " / ".join(f"{f.get(f'{c}-{small}')}->{f.get(f'{c}-{large}')}" for c in (base, cond))
    return text + (" *" if extra_full_collections(r) else "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", default="trivial",
                    help="any of trivial,http,http-client,violations,sdk (default trivial; violations and sdk: warn vs "
                         "-p no:sockhygiene)")
    ap.add_argument("--violation-tests", type=int, default=130, help="violation-cost tests in the large run (130)")
    ap.add_argument("--sdk-tests", type=int, default=200, help="SDK-shaped tests in the large run (200)")
    ap.add_argument("--pytest-args", default="", metavar="ARGS", help="extra pytest arguments for every run")
    ap.add_argument("--tests", type=int, default=1000, help="trivial tests in the large run (default 1000)")
    ap.add_argument("--small", type=int, default=None,
                    help="tests in every suite's small run (default: a fifth of its large run)")
    ap.add_argument("--http-tests", type=int, default=200, help="HTTP tests in the large run (default 200)")
    ap.add_argument("--requests", type=int, default=10, help="loopback requests per HTTP test (default 10)")
    ap.add_argument("--mode", choices=("enforce", "warn"), default="enforce", help="the plugin-on condition")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (default 2; counts do not depend on it)")
    ap.add_argument("--rev", metavar="REV", help="count the package as committed at REV, not the work tree")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest and the plugin (default: this)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one run (default 1800)")
    ap.add_argument("--floor", action="store_true",
                    help="with the violations suite: count benchmarks/floor_plugin.py too (the least any design "
                         "must spend: docs/performance.md)")
    ap.add_argument("--no-gc", action="store_true",
                    help="automatic garbage collection off from the suite's conftest on, in every run of both "
                         "conditions: the work per test without the collector's schedule (see the module's doc)")
    ap.add_argument("--json", metavar="PATH", help="also write the counts to PATH as JSON")
    args = ap.parse_args(argv)
    args.suite_list = [s.strip() for s in args.suites.split(",") if s.strip()]
    if not set(args.suite_list) <= {"trivial", "http", "http-client", "violations", "sdk"}:
        ap.error("--suites takes trivial, http, http-client, violations and/or sdk")
    bench.EXTRA_ARGS[:] = args.pytest_args.split()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sockhygiene-instr-") as tmp:
        workdir = Path(tmp)
        env = bench.child_env(workdir)
        if args.no_gc:
            env["SOCKHYGIENE_BENCH_NO_GC"] = "1"
        where = f"the work tree at {bench.revision()}"
        if args.rev:
            src, commit = bench.extract_revision(args.rev, workdir)
            env["PYTHONPATH"] = str(src) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            where = f"git revision {commit}"
        print(f"python {bench.python_version(args.python)} ({args.python}); plugin from {where}; callgrind, "
              f"{args.jobs} runs at once", flush=True)
        sizes: list[tuple[str, int, int]] = []
        for kind in args.suite_list:
            large = {"trivial": args.tests, "http": args.http_tests, "http-client": args.http_tests,
                     "violations": args.violation_tests, "sdk": args.sdk_tests}[kind]
            small = args.small if args.small is not None else max(1, large // 5)
            if not 0 < small < large:
                print(f"--small {small} must be between 0 and the {kind} suite's large run ({large})", file=sys.stderr)
                return 2
            sizes.append((kind, small, large))
        results = []
        for kind, small, large in sizes:
            for r in measure(kind, small, large, args, workdir, env):
                results.append(r)
                kept = r.get("kept_objects_per_test")
                print(f"  {kind} ({r['condition']}): {r['ratio']:.3f}x, +{r['added_per_test']:,.0f} instructions "
                      "per test" + (f", {kept:+.2f} container objects left alive per test" if kept is not None
                                    else ""), flush=True)
    print()
    print("Instructions per test (user space, callgrind), from the difference between two suite sizes:")
    print(fmt(results))
    print(f"\n(plugin from {where}; {time.monotonic() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"where": where, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
