#!/usr/bin/env python
"""Where a trivial test's added time goes, measured in one process with fine-grained alternation.

    python benchmarks/inprocess_ab.py              # 40 rounds, ~1 min
    python benchmarks/inprocess_ab.py --rounds 80

Separate pytest runs on a shared machine differ by +-15 % in CPU time from one run to the next, which hides a
cost of a few per cent. Here one process runs one trivial test's whole protocol (setup, call, teardown, reports)
in blocks of 200, rotating through the arms below block by block, so a drift of the machine hits every arm alike;
per arm it prints the median CPU time per test and the median difference to the block of ``base`` in the same
round, with its interquartile range:

* ``base``: the plugin's per-test hooks unregistered (mode off, in effect);
* ``noop``: one extra plain ``pytest_runtest_setup`` hook that does nothing (pluggy's price of a hook);
* ``listdir``: that hook doing only ``os.listdir("/proc/self/fd")``, the one system call the clean path makes;
* ``stat``: that hook doing only ``os.stat("/proc/self/fd")`` (one system call; its size is the fd *count*);
* ``getdents``: that hook reading the names as raw bytes, ``lseek`` + ``getdents64`` through ctypes on a
  directory fd kept open (two system calls, no strings): the alternative to ``listdir`` that was tried;
* ``countpoll``: that hook doing ``fstat`` of a directory fd kept open on /proc/self/fd (its size is the fd
  count) and one ``poll`` over the fds seen last (``POLLNVAL`` marks a closed one): two system calls that tell
  what a listing tells, whether the fd numbers are the same;
* ``lean``: the least a check of the plugin's design does for a clean test, in the fewest bytecodes (``Lean``):
  ``countpoll``'s two system calls, the counts to compare taken at setup, the verdict's finalizer registered at the
  call, the socket hooks checked at teardown, and the test recorded clean - what the plugin's trivial path could
  at best come down to with its hooks where they are;
* ``plugin``: pytest-sockhygiene enforcing, as installed.

Each round tears the session down and sets it up again (``nextitem=None``), the same in every arm; pytest-asyncio
is left out, since its session setup opens fds (see ``main``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CONFTEST = textwrap.dedent('''
    import os, statistics, sys, time
    import pytest
    from _pytest.runner import runtestprotocol


    class ListdirOnly:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            os.listdir("/proc/self/fd")


    class StatOnly:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            os.stat("/proc/self/fd")  # st_size is the number of open fds (Linux 6.2+): a count, not the names


    class RawGetdents:
        """The names as raw bytes: lseek + getdents64 on a directory fd kept open (ctypes), no strings."""

        def __init__(self):
            import ctypes

            self.getdents = ctypes.CDLL(None, use_errno=True).getdents64
            self.getdents.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
            self.getdents.restype = ctypes.c_ssize_t
            self.buf = ctypes.create_string_buffer(65536)
            self.fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.buf.raw[:self.getdents(self.fd, self.buf, 65536)]


    class CountAndPoll:
        """The fd count from ``fstat`` of a directory fd kept open on /proc/self/fd (Linux 6.2+), and one
        ``poll`` with no events over the fds seen last, to prove each is still open: the same fd numbers as a
        listing tells, in two system calls with no path walk and no strings."""

        def __init__(self):
            import select

            self.fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.poll = select.poll()
            for name in os.listdir("/proc/self/fd"):
                try:
                    os.fstat(int(name))
                except OSError:
                    continue
                self.poll.register(int(name), 0)

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            os.fstat(self.fd).st_size
            self.poll.poll(0)


    class Lean:
        """The least any check of this design does for a clean test, in the fewest bytecodes: at setup, the
        test's own markers looked at and the counts to compare taken (socket events, threads started, clients
        made); at the call, the verdict's finalizer registered (as the plugin does for a test with no fixture);
        at teardown, the socket hooks checked in place; in the finalizer, ``fstat`` + ``poll`` (``countpoll``),
        the counts compared and the test recorded as clean. What the plugin's own trivial path could at best
        come down to, with its hooks where they are."""

        def __init__(self):
            import socket

            self.poller = CountAndPoll()
            self.socket_class = socket.socket
            self.connect = socket.socket.connect
            self.events = []
            self.threads = []
            self.clients = 0
            self.clean = []
            self.state = None

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            if item.own_markers:
                item.get_closest_marker("sockhygiene")
            self.state = (item, len(self.events), len(self.threads), self.clients)

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_call(self, item):
            item.addfinalizer(self.judge)

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_teardown(self, item):
            import socket

            if socket.socket is not self.socket_class or socket.socket.connect is not self.connect:
                raise AssertionError("hooks replaced")

        def judge(self):
            item, events, threads, clients = self.state
            poller = self.poller
            if (os.fstat(poller.fd).st_size and not poller.poll.poll(0) and len(self.events) == events
                    and len(self.threads) == threads and self.clients == clients):
                self.clean.append(item.nodeid)
            self.state = None


    class NoopHook:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_setup(self, item):
            pass


    def pytest_sessionfinish(session):
        item = session.items[0]
        pm = session.config.pluginmanager
        names = ("sockhygiene-session",)
        plugins = [(n, pm.get_plugin(n)) for n in names]
        if any(p is None for n, p in plugins):
            sys.exit("the plugin is not active: run with --sockhygiene")
        for n, p in plugins:
            pm.unregister(p)
        arms = {"base": [], "noop": [(None, NoopHook())], "listdir": [(None, ListdirOnly())],
                "stat": [(None, StatOnly())], "getdents": [(None, RawGetdents())],
                "countpoll": [(None, CountAndPoll())], "lean": [(None, Lean())],
                "plugin": plugins}

        def block(arm, n):
            for name, p in arm:
                pm.register(p, name)
            t0 = time.process_time()
            for _ in range(n):
                runtestprotocol(item, log=True, nextitem=None)
            t = (time.process_time() - t0) / n * 1e6
            for name, p in arm:
                pm.unregister(p)
            return t

        for arm in arms.values():
            block(arm, 100)  # warm-up
        res = {k: [] for k in arms}
        for _ in range(int(os.environ["AB_ROUNDS"])):
            for k, arm in arms.items():
                res[k].append(block(arm, 200))
        for name, p in plugins:
            pm.register(p, name)
        with open(os.environ["AB_OUT"], "w") as f:
            for k, v in res.items():
                d = sorted(x - b for x, b in zip(v, res["base"]))
                q = len(d) // 4
                f.write(f"{k:8s}  {statistics.median(v):8.1f}  {statistics.median(d):+8.1f}  "
                        f"{d[q]:+.1f}..{d[-q - 1]:+.1f}\\n")
''')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="rounds of all arms (default 40)")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sockhygiene-ab-") as tmp:
        d = Path(tmp)
        (d / "conftest.py").write_text(CONFTEST)
        (d / "test_one.py").write_text("def test_one():\n    pass\n")
        out = d / "out.txt"
        env = dict(os.environ, AB_ROUNDS=str(args.rounds), AB_OUT=str(out), PYTHONDONTWRITEBYTECODE="1")
        # pytest-asyncio (1.x) makes its session's event loop - an epoll fd and a socket pair - at every session
        # setup and closes it at every teardown: here, every round of every arm, so the plugin's arm saw the fd
        # table change at every test and listed it (+220 us), which no real suite's clean test does
        proc = subprocess.run([args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
                               "--sockhygiene"],
                              cwd=d, env=env, capture_output=True, text=True, timeout=1800)
        if not out.exists():
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"one trivial test's protocol, CPU time per test, {args.rounds} rounds of 200 per arm")
        print(f"{'arm':8s}  {'median us':>8s}  {'added us':>8s}  IQR of added")
        print(out.read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
