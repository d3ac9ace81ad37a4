#!/usr/bin/env python
"""What one new-client connection costs with the plugin, against a server in this process or in another one.

    python benchmarks/connection_cycle.py                 # 4 rounds, in-process and out-of-process server
    python benchmarks/connection_cycle.py --rounds 6 --blocks 60

One generated test runs ``--blocks`` blocks of 10 cycles (a new ``httpx.Client``, one ``get``, close) against
``pytest_sockhygiene.testing.serve_http``, either in a thread of the test process (``inprocess``, as most suites
run their servers) or in a child process (``outofprocess``). Each round runs both arms plugin off
(``-p no:sockhygiene``) and on (``--sockhygiene=warn``), alternately. Per run it prints, per cycle: the median
wall time of a block, the process's user and system CPU time and its voluntary and involuntary context switches
(``getrusage``, all threads). Medians over the rounds follow.

Why: the violation benchmark's extra time per connection is several times the plugin's own instructions. The gap
between the two arms shows how much of it is the GIL shared with an in-process server's threads (the plugin's
hooks on the accept and handler threads run while the test's thread waits), which no per-function profile shows.
Results and how to read them: docs/performance.md ("fifth pass").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TEST = textwrap.dedent('''
    import os, resource, ssl, statistics, time

    import httpx
    import pytest

    from pytest_sockhygiene.testing import serve_http

    SSL = ssl.create_default_context()  # one TLS context: loading the CA bundle per client would drown the cycle


    @pytest.fixture(scope="module")
    def url():
        external = os.environ.get("CYCLE_URL")
        if external:
            yield external
            return
        with serve_http() as server:
            yield server.url


    @pytest.mark.sockhygiene(time_wait=1_000_000, connections=1_000_000)
    def test_cycles(url):
        blocks = int(os.environ["CYCLE_BLOCKS"])
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        per = []
        for _ in range(blocks):
            t = time.perf_counter()
            for _ in range(10):
                with httpx.Client(verify=SSL) as client:
                    client.get(url)
            per.append((time.perf_counter() - t) / 10)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        n = blocks * 10
        print("CYCLE", statistics.median(per) * 1e6, (r1.ru_utime - r0.ru_utime) / n * 1e6,
              (r1.ru_stime - r0.ru_stime) / n * 1e6, (r1.ru_nvcsw - r0.ru_nvcsw) / n,
              (r1.ru_nivcsw - r0.ru_nivcsw) / n)
''')

SERVER = textwrap.dedent('''
    import sys, time
    from pytest_sockhygiene.testing import serve_http
    with serve_http() as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
''')

FIELDS = ("wall_us", "user_us", "sys_us", "vcsw", "ivcsw")
CONDITIONS = {"off": ["-p", "no:sockhygiene"], "on": ["--sockhygiene=warn"]}


def run_once(python: str, workdir: Path, blocks: int, condition: str, url: str | None) -> dict[str, float]:
    env = dict(os.environ, CYCLE_BLOCKS=str(blocks))
    env.pop("PYTEST_ADDOPTS", None)
    if url:
        env["CYCLE_URL"] = url
    else:
        env.pop("CYCLE_URL", None)
    cmd = [python, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *CONDITIONS[condition], "test_cycle.py"]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CYCLE ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"run failed ({condition}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dict(zip(FIELDS, map(float, line.split()[1:])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="off/on pairs per arm (default 4)")
    parser.add_argument("--blocks", type=int, default=40, help="blocks of 10 cycles per run (default 40)")
    parser.add_argument("--arms", default="inprocess,outofprocess", help="inprocess, outofprocess or both")
    parser.add_argument("--python", default=sys.executable, help="interpreter with pytest, httpx and the plugin")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    with tempfile.TemporaryDirectory(prefix="sockhygiene-cycle-") as tmp:
        workdir = Path(tmp)
        (workdir / "test_cycle.py").write_text(TEST)
        (workdir / "pytest.ini").write_text("[pytest]\n")
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for arm in arms:
            server = None
            url = None
            if arm == "outofprocess":
                server = subprocess.Popen([args.python, "-c", SERVER], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
                assert server.stdout is not None
                url = server.stdout.readline().strip()
            try:
                for i in range(args.rounds):
                    order = ("off", "on") if i % 2 == 0 else ("on", "off")  # ABBA
                    for condition in order:
                        r = run_once(args.python, workdir, args.blocks, condition, url)
                        results.setdefault((arm, condition), []).append(r)
                        print(f"[{arm} {i + 1}/{args.rounds}] {condition:3s} " +
                              "  ".join(f"{k} {v:8.1f}" for k, v in r.items()), flush=True)
            finally:
                if server is not None:
                    assert server.stdin is not None
                    server.stdin.close()
                    server.wait(timeout=10)
        print("\nmedians per cycle (one new client, one get, close):")
        print(f"{'arm':13s} {'cond':4s} " + " ".join(f"{f:>9s}" for f in FIELDS))
        for arm in arms:
            med = {c: {f: statistics.median(r[f] for r in results[(arm, c)]) for f in FIELDS} for c in CONDITIONS}
            for c in CONDITIONS:
                print(f"{arm:13s} {c:4s} " + " ".join(f"{med[c][f]:9.1f}" for f in FIELDS))
            added = {f: med["on"][f] - med["off"][f] for f in FIELDS}
            print(f"{arm:13s} {'+':4s} " + " ".join(f"{added[f]:+9.1f}" for f in FIELDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
