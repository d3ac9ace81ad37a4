#!/usr/bin/env python
"""A real project's own test suite, from its source distribution on PyPI, with the plugin absent and in warn mode,
alternately: what a team that turns the plugin on would see.

    python benchmarks/real_suite.py                       # httpx 0.28.1's suite (1,418 tests), 6 pairs, ~5 min
    python benchmarks/real_suite.py --pairs 10 --python python3.12
    python benchmarks/real_suite.py --sdist respx==0.22.0 --deps "respx==0.22.0 pytest-asyncio" --tests tests

It downloads the sdist (``pip download --no-binary :all:``), makes a venv in the work directory, installs pytest,
the plugin from this checkout (not editable: the code as it is now), the project with its test dependencies
(``--deps``), then runs the suite from the unpacked sdist: ``-p no:sockhygiene`` and ``--sockhygiene=warn`` in
turn (ABBA), after one discarded run of each. The time is pytest's own (``... in 11.30s``), not interpreter
start-up. Every run must end with the same outcome counts (a project's own failures on this machine, if any,
are the same with and without the plugin, or the script stops), and the plugin's summary line is printed.

Why: issue 12 measured the cost of warn mode on open-source suites (1,412 tests: 49.6 s instead of 7.4 s); the
generated suites of ``run.py`` are the worst case of a check, this is the case a user brings. Needs PyPI.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

HTTPX = "httpx==0.28.1"
HTTPX_DEPS = "httpx[brotli,zstd,cli,http2,socks]==0.28.1 trustme uvicorn trio anyio chardet"
"""What httpx's tests import (its conftest starts uvicorn in a thread; trio and anyio for the async tests)."""

OUTCOME = re.compile(r"^=*\s*(?P<counts>(?:\d+ \w+(?:, )?)+) in (?P<seconds>[\d.]+)s")
"""pytest's last line: ``13 failed, 1404 passed, 1 skipped in 11.30s`` (with -q, no '=' around it)."""

CONDITIONS = {"absent": ["-p", "no:sockhygiene"], "warn": ["--sockhygiene=warn"]}


def sh(cmd: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}")
    return done.stdout


def prepare(work: Path, python: str, sdist: str, deps: str) -> tuple[Path, Path]:
    """(the venv's python, the unpacked source directory)."""
    sh([python, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", sdist, "-d", str(work)])
    archive = next(p for p in work.iterdir() if p.name.endswith(".tar.gz"))
    with tarfile.open(archive) as t:
        top = t.getnames()[0].split("/")[0]
        if hasattr(tarfile, "data_filter"):  # (3.9.17+: refuses links and paths out of the directory)
            t.extractall(work, filter="data")
        else:
            t.extractall(work)  # noqa: S202 - a package's own sdist from PyPI, in a directory made for it
    source = work / top
    sh([python, "-m", "venv", str(work / "venv")])
    venv_python = work / "venv" / "bin" / "python"
    sh([str(venv_python), "-m", "pip", "install", "-q", "pytest", str(ROOT), *shlex.split(deps)])
    return venv_python, source


def run(python: Path, source: Path, condition: str, tests: str) -> tuple[str, float, str]:
    """(outcome counts, seconds, the plugin's summary line or '')."""
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *CONDITIONS[condition], *shlex.split(tests)]
    done = subprocess.run(cmd, cwd=source, capture_output=True, text=True, timeout=1800)
    lines = done.stdout.splitlines()
    match = next((m for m in (OUTCOME.match(line.strip()) for line in reversed(lines)) if m), None)
    if match is None:
        raise SystemExit(f"{shlex.join(cmd)}: no outcome line (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-2000:]}")
    summary = next((line for line in lines if "tests checked" in line), "")
    return match.group("counts"), float(match.group("seconds")), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", default=HTTPX, help=f"the project, as pip names it (default {HTTPX})")
    ap.add_argument("--deps", default=HTTPX_DEPS, help="what its tests need, the project included, as pip names "
                    "them (default: httpx's)")
    ap.add_argument("--tests", default="", help="pytest arguments: what to run (default: the project's own "
                    "configuration decides)")
    ap.add_argument("--pairs", type=int, default=6, help="runs of each condition (default 6)")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to make the venv with")
    ap.add_argument("--workdir", help="keep the download and the venv here (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sockhygiene-real-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        venv_python, source = prepare(work, args.python, args.sdist, args.deps)
        version = sh([str(venv_python), "-c", "import platform, pytest; print(platform.python_version(), "
                                              "pytest.__version__)"]).split()
        print(f"{args.sdist} from its sdist; Python {version[0]}, pytest {version[1]}; the plugin from {ROOT}",
              flush=True)
        for condition in CONDITIONS:  # one discarded run of each: byte-compiling, the OS's caches
            run(venv_python, source, condition, args.tests)
        times: dict[str, list[float]] = {c: [] for c in CONDITIONS}
        outcomes: set[str] = set()
        summary = ""
        for i in range(args.pairs):
            order = list(CONDITIONS) if i % 2 == 0 else list(CONDITIONS)[::-1]
            for condition in order:
                counts, seconds, line = run(venv_python, source, condition, args.tests)
                outcomes.add(counts)
                times[condition].append(seconds)
                summary = line or summary
                print(f"  [{i + 1}/{args.pairs}] {condition:6s} {seconds:7.2f}s  {counts}", flush=True)
            if len(outcomes) > 1:
                raise SystemExit(f"the outcome differs between runs: {sorted(outcomes)}")
    off, on = times["absent"], times["warn"]
    pairs = sorted(b / a for a, b in zip(off, on))
    print(f"\n{args.sdist}: {outcomes.pop()} in every run")
    print(f"the plugin (warn): {summary.strip()}")
    print(f"median absent {statistics.median(off):.2f}s, warn {statistics.median(on):.2f}s: ratio of medians "
          f"{statistics.median(on) / statistics.median(off):.3f}x, median pair ratio {statistics.median(pairs):.3f}x "
          f"(pairs {pairs[0]:.3f}-{pairs[-1]:.3f}); best against best {min(on) / min(off):.3f}x")


if __name__ == "__main__":
    main()
