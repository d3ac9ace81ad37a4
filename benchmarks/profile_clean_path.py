#!/usr/bin/env python
"""Where does the plugin's per-test time go on the clean path? Four views of the trivial suite, plugin on.

    python benchmarks/profile_clean_path.py            # all views, 2,000 trivial tests
    python benchmarks/profile_clean_path.py --view micro

Views:

* ``instrument``: the plugin's own functions wrapped with ``perf_counter`` accumulators during a real run
  (inclusive time per call and per test; the wrappers add ~0.3 us per call).
* ``micro``: after the tests ran, inside the same session (same fd table, same items, the live controller),
  each step of the clean path is timed on its own, thousands of times: the fd scan and its parts, a Window's
  construction and close, the client probe, the marker lookup, and pluggy's cost per hook wrapper.
* ``cprofile``: cProfile around ``pytest_runtestloop`` only, plugin off and on; the functions whose own time
  grew, per test. Deterministic profiling inflates small calls, so read it for structure, not absolute numbers.
* ``scan``: one fd-table scan (the ``ids()`` of the linux backend) with 0, 100 and 1,000 sockets held, against a
  leaner loop with the same result and the bare ``os.listdir`` floor.
* ``imports``: the one-time cost of what the plugin does at the first test (importing the client libraries its
  trackers patch), each measured in a fresh interpreter.

Every loop is bounded (fixed counts), every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

PROBE_PLUGIN = r'''
"""Loaded with -p _sockhygiene_probe by benchmarks/profile_clean_path.py."""
import gc
import json
import os
import time
import timeit

import pytest

VIEW = os.environ["SOCKHYGIENE_PROBE_VIEW"]
OUT = os.environ["SOCKHYGIENE_PROBE_OUT"]
_acc = {}
_t = {}


def _timed(name, fn):
    pc = time.perf_counter

    def wrapper(*a, **k):
        t0 = pc()
        try:
            return fn(*a, **k)
        finally:
            dt = pc() - t0
            rec = _acc.get(name)
            if rec is None:
                rec = _acc[name] = [0, 0.0, dt]  # calls, total, the first call (one-time work shows there)
            rec[0] += 1
            rec[1] += dt

    wrapper.__wrapped__ = fn
    return wrapper


def _wrap(owner, attr, name):
    fn = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if fn is None:
        return
    setattr(owner, attr, _timed(name, fn))


def _instrument():
    from pytest_sockhygiene import clients, plugin, session, window
    from pytest_sockhygiene.table import linux

    _wrap(session.Controller, "limits_for", "Controller.limits_for (markers -> Limits)")
    _wrap(session.Controller, "open_window", "Controller.open_window")
    _wrap(window.Window, "__init__", "  Window.__init__ (incl. 1st scan)")
    _wrap(session.Controller, "close_window", "Controller.close_window")
    _wrap(window.Window, "close", "  Window.close")
    _wrap(window.Window, "observe", "    Window.observe")
    _wrap(linux.LinuxTable, "ids", "      LinuxTable.ids (fd scan; both scans)")
    _wrap(clients.ClientRegistry, "probe", "      ClientRegistry.probe")
    _wrap(clients.ClientRegistry, "forget", "  ClientRegistry.forget")
    _wrap(plugin.SockHygienePlugin, "_judge", "SockHygienePlugin._judge (close + record)")
    _wrap(plugin, "_markers", "  plugin._markers (iter_markers)")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if VIEW == "instrument":
        _instrument()


_prof = []


def pytest_runtest_logfinish(nodeid, location):
    # profile tests 2..N: the first test pays one-time work (tracker installation) that is measured apart
    if VIEW == "cprofile" and not _prof:
        import cProfile

        _prof.append(cProfile.Profile())
        _t["first_done"] = time.perf_counter()
        _prof[0].enable()


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    t0 = time.perf_counter()
    try:
        return (yield)
    finally:
        t1 = time.perf_counter()
        _t["loop"] = t1 - t0
        if _prof:
            _prof[0].disable()
            _prof[0].dump_stats(OUT + ".prof")
            _t["profiled"] = t1 - _t["first_done"]


def _per_call(stmt, number, setup=None):
    """Best of 5 rounds of `number` calls, in microseconds per call (gc on, as in a test run)."""
    best = min(timeit.repeat(stmt, setup=setup or (lambda: None), number=number, repeat=5))
    return best / number * 1e6


def _micro(session):
    from pytest_sockhygiene import plugin
    from pytest_sockhygiene.table import linux
    from pytest_sockhygiene.window import Window

    res = {}
    p = session.config.pluginmanager.get_plugin("sockhygiene-session")
    item = session.items[-1]
    res["fds open in this process"] = len(os.listdir("/proc/self/fd"))
    res["sockets among them"] = len(linux.socket_inodes())
    n = 2000
    res["os.listdir('/proc/self/fd')"] = _per_call(lambda: os.listdir("/proc/self/fd"), n)
    names = [int(x) for x in os.listdir("/proc/self/fd")]
    fd = names[0]
    res["os.fstat(fd), one fd"] = _per_call(lambda: os.fstat(fd), 20000)
    res["socket_inodes() = one fd scan"] = _per_call(linux.socket_inodes, n)
    if p is None:
        return res
    c = p.controller
    limits = c.settings.limits
    res["item.iter_markers('sockhygiene') (plugin._markers)"] = _per_call(lambda: plugin._markers(item), n)
    res["Controller.limits_for(nodeid, markers)"] = _per_call(
        lambda: c.limits_for(item.nodeid, plugin._markers(item)), n)

    def open_close():
        w = Window(c.table, c.recorder, c.client_probe)
        w.close(limits)

    res["Window(...) + close(limits), clean"] = _per_call(open_close, n)

    def open_close_noprobe():
        w = Window(c.table, c.recorder, None)
        w.close(limits)

    res["  same without the client probe"] = _per_call(open_close_noprobe, n)
    w = Window(c.table, c.recorder, c.client_probe)
    if c.client_probe is not None:
        res["client probe (need_sockets=False)"] = _per_call(lambda: c.client_probe(w, False), n)
    c.recorder.remove_sink(w)
    if c.clients is not None:
        res["ClientRegistry.forget(window)"] = _per_call(lambda: c.clients.forget(w), n)
        res["client records held"] = len(c.clients.records())

    def full():
        c.open_window()
        c.close_window(limits)

    res["Controller.open_window + close_window"] = _per_call(full, n)
    fd_count = getattr(c.table, "fd_count", None)
    if fd_count is not None:
        res["table.fd_count() (peak-fd health check, per test)"] = _per_call(fd_count, n)
    try:  # the per-test record of a clean test (results.test_record), its time and its memory
        import tracemalloc
        from pytest_sockhygiene import results as results_mod
        from pytest_sockhygiene.verdict import CLEAN

        def record(i=0):
            return results_mod.test_record(f"{item.nodeid}{i}", CLEAN, [], c.format_origin, time.time(), 12)

        res["results.test_record(...) for a clean test"] = _per_call(record, n)
        gc.collect()
        tracemalloc.start()
        keep = [record(i) for i in range(2000)]
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        res["bytes per clean-test record (tracemalloc)"] = int(size / len(keep))
        props = [("sockhygiene_" + k, 0) for k in keep[0]["counts"]]
        res["user_properties entries added per test"] = len(props)
    except Exception as e:  # noqa: BLE001 - the package is being edited; report what could not be measured
        res[f"test_record not measured: {e!r}"[:58]] = 0
    res["gc.collect() (only on a dirty path)"] = _per_call(gc.collect, 20)
    res.update(_request_micro(c))
    return res


def _request_micro(c):
    """Per-request cost of the httpx tracker's send wrapper: a loopback GET, patched vs unpatched."""
    import sys

    httpx = sys.modules.get("httpx")
    send = getattr(getattr(httpx, "Client", None), "send", None)
    orig = getattr(send, "__wrapped__", None)
    if httpx is None or orig is None:
        return {}
    from pytest_sockhygiene.origin import capture
    from pytest_sockhygiene.testing import serve_http

    out = {"origin.capture() (per tracked request)": _per_call(capture, 5000)}
    with serve_http(keep_alive=30.0) as server:
        server.RequestHandlerClass = type("NoDelay", (server.RequestHandlerClass,), {"disable_nagle_algorithm": True})
        with httpx.Client(base_url=server.url) as client:
            client.get("/")
            patched, plain = [], []
            for _ in range(5):  # interleaved rounds, best of each
                plain_send = orig
                httpx.Client.send = plain_send
                try:
                    plain.append(timeit.timeit(lambda: client.get("/"), number=200) / 200 * 1e6)
                finally:
                    httpx.Client.send = send
                patched.append(timeit.timeit(lambda: client.get("/"), number=200) / 200 * 1e6)
    out["loopback GET, tracker unpatched"] = min(plain)
    out["loopback GET, tracker patched (send wrapper)"] = min(patched)
    out["  added per request"] = min(patched) - min(plain)
    return out


def _pluggy_micro():
    """Per-call cost of one more implementation on a hook that already has a few (like pytest_runtest_setup)."""
    import pluggy

    spec = pluggy.HookspecMarker("bench")
    impl = pluggy.HookimplMarker("bench")

    class Spec:
        @spec
        def h(self, item):
            pass

    class Plain:
        @impl
        def h(self, item):
            return None

    class Wrapper:
        @impl(wrapper=True)
        def h(self, item):
            return (yield)

    class OldWrapper:
        @impl(hookwrapper=True)
        def h(self, item):
            yield

    out = {}
    for label, extra in (("4 plain impls (baseline)", []), ("+1 plain impl", [Plain]), ("+1 wrapper", [Wrapper]),
                         ("+1 old-style hookwrapper", [OldWrapper]),
                         ("+2 wrappers +1 plain", [Wrapper, Wrapper, Plain])):
        pm = pluggy.PluginManager("bench")
        pm.add_hookspecs(Spec)
        for _ in range(4):
            pm.register(Plain())
        for cls in extra:
            pm.register(cls())
        out[label] = _per_call(lambda: pm.hook.h(item=None), 20000)
    base = out["4 plain impls (baseline)"]
    return {f"pluggy: {k}": v for k, v in out.items()} | {
        f"pluggy: added by {k[1:]}": v - base for k, v in out.items() if k.startswith("+")}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    res = {"loop_s": _t.get("loop"), "profiled_s": _t.get("profiled"), "tests": len(session.items)}
    if VIEW == "instrument":
        res["instrumented"] = {k: {"calls": v[0], "total_s": v[1], "first_s": v[2]} for k, v in _acc.items()}
    elif VIEW == "micro":
        res["micro_us"] = _micro(session)
        res["micro_us"].update(_pluggy_micro())
    with open(OUT, "w") as f:
        json.dump(res, f)
'''


def run_view(view: str, suite: Path, env: dict[str, str], on: bool, python: str, timeout: float) -> dict[str, Any]:
    fd, out = tempfile.mkstemp(prefix=f"probe-{view}-", suffix=".json", dir=suite.parent)
    os.close(fd)
    e = dict(env)
    e["SOCKHYGIENE_PROBE_VIEW"] = view
    e["SOCKHYGIENE_PROBE_OUT"] = out
    e["PYTHONPATH"] = os.pathsep.join(p for p in (e.get("PYTHONPATH"), str(suite.parent)) if p)
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_sockhygiene_probe"]
    if on:
        cmd.append("--sockhygiene=enforce")
    proc = subprocess.run(cmd, cwd=suite, env=e, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(Path(out).read_text())
    data["_prof"] = out + ".prof"
    os.unlink(out)
    return data


def view_instrument(suite: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    run_view("instrument", suite, env, True, args.python, args.timeout)  # warm-up (first run compiles, imports)
    data = run_view("instrument", suite, env, True, args.python, args.timeout)
    n = data["tests"]
    print(f"\n## instrument: plugin functions, inclusive, during a real run of {n} tests "
          f"(test loop {data['loop_s']:.3f} s = {data['loop_s'] / n * 1e6:.0f} us/test)\n")
    print("(us/test excludes each function's first call, shown apart: the first window pays one-time work)\n")
    print(f"{'function':58s} {'calls':>7s} {'first ms':>9s} {'us/call':>9s} {'us/test':>9s}")
    for name, rec in data["instrumented"].items():
        calls, total, first = rec["calls"], rec["total_s"], rec["first_s"]
        rest = total - first
        print(f"{name:58s} {calls:7d} {first * 1e3:9.2f} {rest / max(calls - 1, 1) * 1e6:9.1f} "
              f"{rest / max(n - 1, 1) * 1e6:9.1f}")


def view_micro(suite: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    data = run_view("micro", suite, env, True, args.python, args.timeout)
    print("\n## micro: each step of the clean path timed alone, inside a live session (best of 5, us per call)\n")
    for name, v in data["micro_us"].items():
        if isinstance(v, float):
            print(f"{name:58s} {v:9.2f} us")
        else:
            print(f"{name:58s} {v:9d}")


def view_cprofile(suite: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    import pstats

    stats = {}
    run_view("cprofile", suite, env, True, args.python, args.timeout)  # warm-up: fills the bytecode cache
    for on in (False, True):
        data = run_view("cprofile", suite, env, on, args.python, args.timeout)
        st = pstats.Stats(data["_prof"])
        stats[on] = (st, data)
    n = stats[True][1]["tests"] - 1  # tests 2..N were profiled
    own: dict[bool, dict[str, list[float]]] = {}
    for on, (st, _) in stats.items():
        d: dict[str, list[float]] = {}
        for (fn, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            key = f"{os.path.relpath(fn, '/') if fn.startswith('/') else fn}:{line}({name})"
            key = key.split("site-packages/")[-1].split("work/main/")[-1]
            if "pytest_sockhygiene/" in key:  # also when imported from an extracted --rev
                key = key[key.index("pytest_sockhygiene/"):]
            d[key] = [nc, tt, ct]
        own[on] = d
    rows = []
    for key, (nc, tt, ct) in own[True].items():
        off = own[False].get(key, [0, 0.0, 0.0])
        rows.append((tt - off[1], key, nc - off[0], ct))
    rows.sort(reverse=True)
    loop_off, loop_on = stats[False][1]["profiled_s"], stats[True][1]["profiled_s"]
    print(f"\n## cprofile: tests 2..N under cProfile, off {loop_off:.3f} s, on {loop_on:.3f} s "
          f"({(loop_on - loop_off) / n * 1e6:+.0f} us/test under the profiler, which inflates small calls)")
    print("functions whose own time grew most with the plugin on (us/test)\n")
    print(f"{'function':80s} {'+calls/test':>11s} {'+own us/test':>12s}")
    for dt, key, dn, _ct in rows[: args.top]:
        print(f"{key[:80]:80s} {dn / n:11.2f} {dt / n * 1e6:12.2f}")
    for on in (False, True):
        os.unlink(stats[on][1]["_prof"])


SCAN_CODE = r"""
import os, resource, socket, stat, sys, timeit
from pytest_sockhygiene.table import linux

held = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < held + 512:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(held + 512, hard), hard))
lst = socket.create_server(("127.0.0.1", 0))
keep = []
for _ in range(held // 2):  # bounded: held // 2 pairs
    c = socket.create_connection(lst.getsockname(), timeout=5)
    s_, _ = lst.accept()
    keep += [c, s_]
lst.close()
for _ in range(12 - min(12, len(os.listdir("/proc/self/fd")))):  # about the fd table of a pytest process
    keep.append(open(os.devnull))

_FD = "/proc/self/fd"

def fast():  # same result as socket_inodes(), less Python per fd
    out = {}
    fstat = os.fstat
    for fd in map(int, os.listdir(_FD)):
        try:
            st = fstat(fd)
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o140000:
            out[st.st_ino] = fd
    return out

def names():  # the listing alone: the floor of any scan that reads /proc/self/fd
    return os.listdir(_FD)

assert fast() == linux.socket_inodes()
n = max(20, 20000 // (held + 20))
res = {}
for label, fn in (("socket_inodes() (current)", linux.socket_inodes), ("same, leaner loop", fast),
                  ("os.listdir only", names)):
    res[label] = min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e6
print(len(os.listdir(_FD)), repr(res))
"""


def view_scan(suite: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    print("\n## scan: one fd-table scan as the process holds more sockets (best of 7, us per scan)\n")
    print(f"{'held sockets':>12s} {'fds':>6s}  {'socket_inodes() (current)':>26s} {'same, leaner loop':>18s} "
          f"{'os.listdir only':>16s}")
    for held in (0, 100, 1000):
        p = subprocess.run([args.python, "-c", SCAN_CODE, str(held)], env=env, capture_output=True, text=True,
                           timeout=args.timeout)
        if p.returncode != 0:
            print(p.stderr[-2000:])
            return
        fds, res = p.stdout.split(" ", 1)
        r = eval(res)  # noqa: S307 - our own child's repr of a dict of floats
        print(f"{held:12d} {int(fds):6d}  {r['socket_inodes() (current)']:26.1f} {r['same, leaner loop']:18.1f} "
              f"{r['os.listdir only']:16.1f}")


IMPORTS = ["httpx", "httpx2", "requests", "urllib3", "aiohttp"]


def view_imports(suite: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    print("\n## imports: one-time work at the first window (trackers import the client libraries they patch)\n")
    code = textwrap.dedent("""
        import sys, time, importlib
        import pytest  # already imported in a pytest process
        t = time.perf_counter()
        for name in sys.argv[1:]:
            importlib.import_module(name)
        print(time.perf_counter() - t)
    """)
    for names in [[m] for m in IMPORTS] + [IMPORTS]:
        best = []
        for _ in range(4):  # first one fills the bytecode cache
            p = subprocess.run([args.python, "-c", code, *names], env=env, capture_output=True, text=True,
                               timeout=args.timeout)
            if p.returncode != 0:
                best.append(float("nan"))
                break
            best.append(float(p.stdout.strip()))
        print(f"import {', '.join(names):45s} {min(best[1:] or best) * 1000:8.1f} ms")
    code2 = textwrap.dedent("""
        import time
        t = time.perf_counter()
        from pytest_sockhygiene.session import Controller
        from pytest_sockhygiene.settings import read_settings
        import pytest
        s = read_settings("enforce", None, lambda k: [] if k.endswith("ignore") else "")
        pm = pytest.PytestPluginManager()
        from pytest_sockhygiene import hookspecs
        pm.add_hookspecs(hookspecs)
        from pytest_sockhygiene.trackers import builtin_trackers
        for t_ in builtin_trackers():
            pm.register(t_)
        c = Controller(s, "/", pm.hook)
        t0 = time.perf_counter()
        c.ensure_started()
        print(time.perf_counter() - t0)
    """)
    best = []
    for _ in range(4):
        p = subprocess.run([args.python, "-c", code2], env=env, capture_output=True, text=True, timeout=args.timeout)
        if p.returncode != 0:
            print(p.stderr[-2000:])
            return
        best.append(float(p.stdout.strip()))
    print(f"{'Controller.ensure_started() (backend + hooks + trackers)':52s} {min(best[1:]) * 1000:8.1f} ms")
    # an indirect per-test cost: pytest's logging plugin enters catching_logs twice per test phase (6 per test),
    # and each entry walks every logger in logging's loggerDict; the imported libraries add loggers
    code3 = textwrap.dedent("""
        import importlib, logging, sys, timeit
        from _pytest.logging import LogCaptureHandler, catching_logs
        h = LogCaptureHandler()
        def once():
            with catching_logs(h):
                pass
        def cost():
            return min(timeit.repeat(once, number=5000, repeat=5)) / 5000 * 1e6
        n0, c0 = len(logging.root.manager.loggerDict), cost()
        for name in sys.argv[1:]:
            importlib.import_module(name)
        n1, c1 = len(logging.root.manager.loggerDict), cost()
        print(n0, n1, c0, c1)
    """)
    p = subprocess.run([args.python, "-c", code3, *IMPORTS], env=env, capture_output=True, text=True,
                       timeout=args.timeout)
    if p.returncode == 0:
        n0, n1, c0, c1 = p.stdout.split()
        print(f"pytest's catching_logs enter+exit: {float(c0):.2f} us with {n0} loggers, {float(c1):.2f} us with "
              f"{n1} after those imports; x6 per test = {6 * (float(c1) - float(c0)):+.1f} us per test")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--tests", type=int, default=None, help="tests (default 2000 trivial, 200 http)")
    ap.add_argument("--suite", choices=("trivial", "http"), default="trivial",
                    help="profile the trivial suite (default) or the HTTP suite (200 tests x 10 requests)")
    ap.add_argument("--view", choices=("all", "instrument", "micro", "cprofile", "imports", "scan"), default="all")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rev", metavar="REV", help="profile the plugin as committed at git revision REV (see run.py)")
    args = ap.parse_args()
    if args.tests is None:
        args.tests = 2000 if args.suite == "trivial" else 200
    if not 1 <= args.tests <= 100000:
        ap.error("--tests must be in 1..100000")
    with tempfile.TemporaryDirectory(prefix="sockhygiene-profile-") as tmp:
        work = Path(tmp)
        suite = bench.generate_suite(bench.SuiteSpec(args.suite, args.tests), work)
        (work / "_sockhygiene_probe.py").write_text(PROBE_PLUGIN)
        env = bench.child_env(work)
        if args.rev:
            src, commit = bench.extract_revision(args.rev, work)
            env["PYTHONPATH"] = str(src)
            print(f"plugin from git revision {commit}")
        else:
            print(f"plugin from the work tree at {bench.revision()}")
        t0 = time.monotonic()
        for view in ("imports", "scan", "micro", "instrument", "cprofile"):
            if args.view in ("all", view):
                globals()[f"view_{view}"](suite, env, args)
        print(f"\n(profile time {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
