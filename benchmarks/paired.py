#!/usr/bin/env python
"""What being checked adds to each kind of test of the violation suite, measured inside one pytest session.

    python benchmarks/paired.py                    # 60 pairs per kind, 3 sessions, ~30 s
    python benchmarks/paired.py --pairs 100 --sessions 6

``run.py`` compares whole runs with and without the plugin: its wall ratios move by +-0.06 between runs an hour
apart on a 2-core VM, and a run's pair ratios spread over 0.9-1.5. Here every test of issue 12's violation suite
(clean, TIME_WAIT burst, over a connection budget, client dropped unclosed) comes twice, back to back, in one
session with ``--sockhygiene=warn``: once checked, once marked ``@pytest.mark.sockhygiene(enabled=False)``
(the order alternates from pair to pair). A hook wrapper around each test's protocol (setup, call, teardown - the
verdict runs in the teardown) times it. The two copies share the process, the server, the warm caches of the
test's own code and the machine's state of the moment, so their difference is what checking that test costs.

What it does not count: the plugin being installed at all (the unchecked copy still runs the socket hooks'
pass-through and the client trackers: ``instructions.py``'s absent condition has neither), and one-time costs
(the first and the last test of each session are left out). The weighted line applies the violation suite's mix
(40 clean, 30 of each other kind) to the medians: the suite's ratio, less those two parts.

Why: docs/performance.md ("ninth pass") - the per-test cost of a check is several times its instruction count,
and this is the measurement that is steady enough to show which part of it changes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import SHARED_TLS, VIOLATION_MIX, VIOLATION_TESTS, VIOLATIONS_CONFTEST, violations_summary  # noqa: E402

TIMING_CONFTEST = textwrap.dedent('''
    import json as _json
    import os as _os
    import time as _time

    import pytest

    _TIMES = []


    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(item, nextitem):
        start = _time.perf_counter()
        yield
        _TIMES.append((item.name, _time.perf_counter() - start))


    def pytest_sessionfinish(session, exitstatus):
        with open(_os.environ["SOCKHYGIENE_PAIRED_OUT"], "w") as f:
            _json.dump(_TIMES, f)
''')

UNCHECKED = "@pytest.mark.sockhygiene(enabled=False)\n"
LIMITS_MARKER = re.compile(r"^@pytest\.mark\.sockhygiene\(.*\)\n", re.MULTILINE)
"""A test's own limits (the budget tests' ``connections=1``): left off its unchecked copy."""


def copies(kind: str, n: int) -> tuple[str, str]:
    """The checked and the unchecked copy of test ``n`` of ``kind`` (the unchecked one's marker replaces any
    marker the test has: nothing is checked, so no limit matters)."""
    body = VIOLATION_TESTS[kind]
    checked = body.replace(f"def test_{kind}_{{n}}", f"def test_{kind}_checked_{n}").format(n=n)
    plain = LIMITS_MARKER.sub("", body)
    unchecked = plain.replace(f"def test_{kind}_{{n}}", UNCHECKED + f"def test_{kind}_unchecked_{n}").format(n=n)
    return checked, unchecked


def generate(where: Path, pairs: int) -> Path:
    (where / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")
    (where / "conftest.py").write_text(TIMING_CONFTEST + VIOLATIONS_CONFTEST)
    parts = ["import http.client\nimport ssl\n\nimport httpx\nimport pytest\n\n" + SHARED_TLS]
    for n in range(pairs):
        for kind, _ in VIOLATION_MIX:
            checked, unchecked = copies(kind, n)
            parts += [checked, unchecked] if n % 2 == 0 else [unchecked, checked]
    (where / "test_paired.py").write_text("".join(parts))
    return where


def weighted(medians: dict[str, float]) -> tuple[float, float]:
    """The violation suite's mix (``VIOLATION_MIX``) applied to per-kind medians: (unchecked, added) per test."""
    n = sum(w for _, w in VIOLATION_MIX)
    base = sum(w * medians[f"{k} unchecked"] for k, w in VIOLATION_MIX) / n
    added = sum(w * (medians[f"{k} checked"] - medians[f"{k} unchecked"]) for k, w in VIOLATION_MIX) / n
    return base, added


def run_session(python: str, where: Path, pairs: int) -> dict[str, list[float]]:
    out = where / "times.json"
    env = dict(os.environ, SOCKHYGIENE_PAIRED_OUT=str(out), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sockhygiene=warn"],
                          cwd=where, env=env, capture_output=True, text=True, timeout=600)
    summary = next((line for line in proc.stdout.splitlines() if "tests checked" in line), "")
    if proc.returncode != 0 or violations_summary({kind: pairs for kind, _ in VIOLATION_MIX}) not in summary:
        raise SystemExit(f"the session did not end as expected (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-2000:]}")
    times = json.loads(out.read_text())[1:-1]  # one-time costs: the first test, the last (session teardown)
    by: dict[str, list[float]] = {}
    for name, seconds in times:
        kind, condition, _ = name[len("test_"):].rsplit("_", 2)
        by.setdefault(f"{kind} {condition}", []).append(seconds)
    return by


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=60, help="pairs per kind in a session (default 60)")
    ap.add_argument("--sessions", type=int, default=3, help="sessions, each a fresh process (default 3)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with pytest, httpx and the plugin")
    ap.add_argument("--json", metavar="PATH", help="also write every session's medians to PATH")
    args = ap.parse_args()
    kinds = [kind for kind, _ in VIOLATION_MIX]
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sockhygiene-paired-") as tmp:
        where = generate(Path(tmp), args.pairs)
        for i in range(args.sessions):
            by = run_session(args.python, where, args.pairs)
            medians = {k: statistics.median(v) * 1e6 for k, v in by.items()}
            rows.append(medians)
            base, added = weighted(medians)
            print(f"session {i + 1}: " + ", ".join(f"{k} {medians[f'{k} checked'] - medians[f'{k} unchecked']:+.0f} us"
                                                   for k in kinds)
                  + f"; weighted {added:+.0f} us on {base:.0f} us ({1 + added / base:.3f}x)", flush=True)
    print(f"\nmedians over {args.sessions} sessions of {args.pairs} pairs per kind (us per test):")
    print(f"{'kind':10s} {'unchecked':>10s} {'checked':>10s} {'added':>8s} {'ratio':>7s}")
    overall = {f"{k} {c}": statistics.median(r[f"{k} {c}"] for r in rows) for k in kinds
               for c in ("checked", "unchecked")}
    for kind in kinds:
        off, on = overall[f"{kind} unchecked"], overall[f"{kind} checked"]
        print(f"{kind:10s} {off:10.0f} {on:10.0f} {on - off:+8.0f} {on / off:7.3f}x")
    base, added = weighted(overall)
    print(f"{'weighted':10s} {base:10.0f} {base + added:10.0f} {added:+8.0f} {1 + added / base:7.3f}x   "
          "(the violation suite's mix)")
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": args.pairs, "sessions": rows}, indent=1))


if __name__ == "__main__":
    main()
