"""Other code that re-patches ``socket.socket`` (pytest-socket, mock.patch, monkeypatch) never blinds the plugin.

pytest-socket saves ``socket.socket.connect`` when it is imported and writes it back at every test's teardown
(with ``--allow-hosts`` it also installs a guard that calls the saved original at every setup): the plugin's
wrappers are gone after the first test unless they are put back. These runs use the real pytest-socket.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from conftest import agree_but_for_resets, dedent, resets_between, tcp_resets_sent

SUITE = dedent('''
    import socket
    import pytest
    from pytest_sockhygiene.testing import wait_for

    # The in-process server must accept each connection before its test ends: under --disable-socket an accept
    # that runs after pytest-socket has disabled sockets again raises in the server's thread, which then stops
    # serving (and every later connect times out). On a loaded machine that accept can lag behind the test.
    def served(server, before, n):
        assert wait_for(lambda: server.accepted >= before + n, 10)

    def request(sock):
        # a whole request and its answer: the server has accepted the connection before the test goes on (a
        # server thread accepting while a later test runs with sockets disabled would die: accept() makes a
        # socket.socket, which pytest-socket then blocks)
        sock.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
        data = b""
        while not data.endswith(b"ok\\n"):
            data += sock.recv(1024)

    def connect(server, n):
        before = server.accepted
        for _ in range(n):
            # a whole request first: the client closes after the server answered, so the client's side is the one
            # that closes first and lingers in TIME_WAIT in every run (a bare connect-and-close races the accept)
            s = socket.create_connection((server.host, server.port))
            request(s)
            s.close()
        served(server, before, n)

    @pytest.mark.enable_socket
    def test_01(server):
        connect(server, 1)

    @pytest.mark.enable_socket
    @pytest.mark.sockhygiene(connections=0)
    def test_02(server):
        connect(server, 2)

    def test_03():
        pass  # no network: under --disable-socket it runs with sockets disabled

    @pytest.mark.enable_socket
    def test_04(server):
        connect(server, 1)

    @pytest.mark.enable_socket
    @pytest.mark.sockhygiene(connections=1)
    def test_05(server):
        before = server.accepted
        for _ in range(3):
            s = socket.create_connection((server.host, server.port))
            request(s)
            s.close()
        served(server, before, 3)

    @pytest.mark.enable_socket
    def test_06(server):
        connect(server, 2)

    @pytest.mark.enable_socket
    def test_07(server):
        pass

    @pytest.mark.enable_socket
    def test_08(server):
        connect(server, 1)

    @pytest.mark.enable_socket
    def test_09(server):
        connect(server, 3)

    @pytest.mark.enable_socket
    @pytest.mark.sockhygiene(connections=0)
    def test_10(server):
        before = server.accepted
        socket.create_connection((server.host, server.port)).close()
        served(server, before, 1)
''')


def _report(pytester: pytest.Pytester, run: Any, name: str, *args: str) -> dict[str, Any]:
    path = pytester.path / f"{name}.json"
    result = run(f"--sockhygiene-report={path}", "-o", "markers=enable_socket: x", *args)
    result.assert_outcomes(passed=10, errors=3)
    return json.loads(path.read_text())


def _tests(report: dict[str, Any]) -> dict[str, Any]:
    return {t["nodeid"].split("::")[1]: t for t in report["tests"]}


@pytest.mark.parametrize("options", [(), ("--allow-hosts=127.0.0.1",), ("--disable-socket",)],
                         ids=["no-option", "allow-hosts", "disable-socket"])
def test_counts_and_origins_under_pytest_socket_equal_a_run_without_it(pytester, run, options):
    pytester.makepyfile(test_s=SUITE)
    before = tcp_resets_sent()
    without = _report(pytester, run, "without", "-p", "no:socket")
    with_ = _report(pytester, run, "with", *options)
    resets = resets_between(before)
    a, b = _tests(without), _tests(with_)
    assert [a[f"test_{i:02}"]["counts"]["connections"] for i in range(1, 11)] == [1, 2, 0, 1, 3, 2, 0, 1, 3, 1]
    for name in ("test_02", "test_05", "test_10"):
        assert agree_but_for_resets(b[name]["counts"], a[name]["counts"], resets), (resets, a[name], b[name])
        origins = [i["origin"] for v in b[name]["violations"] for i in v["items"]]
        assert origins and origins == [i["origin"] for v in a[name]["violations"] for i in v["items"]]
        assert all(o.startswith("test_s.py:") for o in origins), origins
    assert agree_but_for_resets({n: t["counts"] for n, t in b.items()}, {n: t["counts"] for n, t in a.items()}, resets)
    assert with_["session"]["connections_opened"] == without["session"]["connections_opened"] == 14
    # said once, with who replaced the hooks; the run without pytest-socket has nothing to say
    assert not [n for n in without["session"]["notices"] if "socket hooks" in n]
    notices = [n for n in with_["session"]["notices"] if "socket hooks" in n]
    assert len(notices) == 1
    assert notices[0].startswith("socket hooks replaced by other code were wrapped again before any fixture or "
                                 "test code ran, so no socket call was missed")
    assert "socket.socket.connect by the original method written back (a copy saved as pytest_socket._true_connect)" \
        in notices[0]
    if options == ("--allow-hosts=127.0.0.1",):
        assert "pytest_socket.socket_allow_hosts.<locals>.guarded_connect" in notices[0]
    assert "unknown" not in notices[0]  # every replacement was undone before fixture or test code ran


def test_allow_hosts_guard_still_blocks_and_its_restore_still_works(pytester, run):
    """Re-installed around pytest-socket's guard: the guard still runs (a connect to another host is blocked),
    and what pytest-socket writes back at teardown is what is there afterwards."""
    pytester.makepyfile(test_g=dedent('''
        import socket
        import pytest
        from pytest_socket import SocketConnectBlockedError

        def test_blocked(server):
            with pytest.raises(SocketConnectBlockedError):
                socket.create_connection(("127.0.0.2", server.port))
            socket.create_connection((server.host, server.port)).close()

        def test_after(sockhygiene, server):
            with sockhygiene.measure(connections=None) as m:
                socket.create_connection((server.host, server.port)).close()
            assert m.connections == 1
    '''))
    result = run("--allow-hosts=127.0.0.1", "-W", "ignore::UserWarning")
    result.assert_outcomes(passed=2)


def test_the_saved_copy_pytest_socket_writes_back_holds_the_plugins_wrapper_until_the_session_ends(pytester, run):
    """After the first write-back, pytest-socket's saved ``_true_connect`` holds the plugin's wrapper of the original
    (so each later teardown writes the hook back itself, and nothing is wrapped again per test); the session's end
    gives the saved copy its original back. Runs in this process, so the copy read afterwards is the real one."""
    import _socket

    import pytest_socket

    original = pytest_socket._true_connect
    assert original is _socket.socket.connect
    pytester.makepyfile(test_h=dedent('''
        import socket
        import pytest_socket

        def test_1(server):
            socket.create_connection((server.host, server.port)).close()

        def test_2(server):
            # written back over the plugin's hook at test_1's teardown, and wrapped there
            assert pytest_socket._true_connect is not socket.socket.__base__.connect
            assert pytest_socket._true_connect.__module__ == "pytest_sockhygiene.events"
            socket.create_connection((server.host, server.port)).close()

        def test_3(sockhygiene, server):
            with sockhygiene.measure(connections=None) as m:
                socket.create_connection((server.host, server.port)).close()
            assert m.connections == 1
    '''))
    result = run("--sockhygiene-report=r.json")
    result.assert_outcomes(passed=3)
    assert pytest_socket._true_connect is original
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["session"]["connections_opened"] == 3
    assert [n for n in report["session"]["notices"] if "_true_connect" in n]
    # nothing was missed, so nothing to act on: the terminal says so only with -v (every pytest-socket user's run)
    assert "socket hooks" not in result.stdout.str()
    verbose = run("-v", subprocess=True)  # (in its own process: nothing of it left in this one)
    verbose.assert_outcomes(passed=3)
    verbose.stdout.fnmatch_lines(["notice: socket hooks replaced by other code were wrapped again before any "
                                  "fixture or test code ran, so no socket call was missed (*_true_connect*)"])


def test_a_replacement_made_by_the_test_itself_makes_its_counts_unknown_not_zero(pytester, run):
    """A test that puts the C method back on ``socket.socket.connect`` and leaves it there: connects after that
    are unseen until the next check. That test's connection and TIME_WAIT counts are null in the report, never 0;
    the next test is measured again, and the notice says how many tests ran partly blind."""
    import jsonschema

    pytester.makepyfile(test_b=dedent('''
        import _socket
        import socket

        def test_blinds(server):
            socket.socket.connect = _socket.socket.connect  # a restore of a copy saved before the plugin started
            socket.create_connection((server.host, server.port)).close()

        def test_after(server):
            socket.create_connection((server.host, server.port)).close()
    '''))
    path = pytester.path / "report.json"
    run(f"--sockhygiene-report={path}").assert_outcomes(passed=2)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, json.loads((pathlib.Path(__file__).parent.parent / "docs" / "report.schema.json")
                                        .read_text()))
    tests = _tests(doc)
    assert tests["test_blinds"]["counts"]["connections"] is None
    assert tests["test_blinds"]["counts"]["time_wait"] is None
    assert tests["test_after"]["counts"]["connections"] == 1
    notice = [n for n in doc["session"]["notices"] if "socket hooks" in n]
    assert len(notice) == 1 and "1 test(s) ran partly without them" in notice[0], notice
    assert notice[0].startswith("other code replaced the plugin's socket hooks"), notice  # (shown without -v)


WRAPPING_SUITE = dedent('''
    import os
    import socket

    import httpx
    import pytest

    def wrap(func):
        # a checker's wrapper around whatever is in place (blockbuster's _wrap_blocking has this shape): it keeps
        # the function it wraps in its closure and calls it
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)
        return wrapper

    @pytest.fixture(autouse=True)
    def checker():
        if os.environ.get("WITH_BLOCKBUSTER"):
            from blockbuster import BlockBuster
            bb = BlockBuster()
            bb.activate()
            yield
            bb.deactivate()
            return
        saved = socket.socket.connect, socket.socket.accept
        socket.socket.connect, socket.socket.accept = wrap(saved[0]), wrap(saved[1])
        yield
        socket.socket.connect, socket.socket.accept = saved

    def test_burst(server):
        for _ in range(7):
            with httpx.Client() as client:
                client.get(server.url)

    def test_one(server):
        with httpx.Client() as client:
            client.get(server.url)
''')


@pytest.mark.parametrize("checker", ["decorator", "blockbuster"])
def test_a_wrapper_around_the_plugins_hook_is_adopted_and_nothing_is_unknown(pytester, run, monkeypatch, checker):
    """A function fixture that wraps ``socket.socket.connect`` and ``accept`` (blockbuster does, in starlette's
    and many async projects' conftest) keeps calling the plugin's wrapper: every count is measured, no test is
    blind, and no notice is printed."""
    if checker == "blockbuster":
        pytest.importorskip("blockbuster")
        monkeypatch.setenv("WITH_BLOCKBUSTER", "1")
    pytester.makepyfile(test_w=WRAPPING_SUITE)
    path = pytester.path / "report.json"
    # (-p no:socket: pytest-socket, installed here, writes its saved connect back at every teardown and is named
    # in a notice of its own; this run is about the checker alone)
    result = run("-p", "no:socket", f"--sockhygiene-report={path}", "-o", "sockhygiene_time_wait=None")
    result.assert_outcomes(passed=2)
    tests = _tests(json.loads(path.read_text()))
    assert tests["test_burst"]["counts"]["connections"] == 7
    assert tests["test_burst"]["counts"]["time_wait"] == 7
    assert tests["test_one"]["counts"]["connections"] == 1
    assert "socket hooks" not in result.stdout.str()
    assert "plugin problem" not in result.stdout.str()


def test_the_hooks_keep_the_names_of_the_methods_they_stand_in_for(pytester, run):
    """Code that checks which ``socket.socket.connect`` it finds by its name (pytest-recording's own suite: a guard
    is ``network_guard``, the real method ``connect``) reads the method's name on the plugin's hook too: it read
    ``wrapper``, and a test that passes without the plugin failed with it (pytest-recording's
    ``test_critical_error``)."""
    pytester.makepyfile(test_names=dedent('''
        import socket

        from pytest_sockhygiene.replacements import PATCHED


        def test_names():
            for name in PATCHED:
                method = getattr(socket.socket, name)
                assert method.__name__ == name, (name, method)
                assert "sockhygiene" in method.__module__  # (ours: the name is not the C method's by chance)
    '''))
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_naming_who_saved_a_copy_reads_no_computed_module_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``py`` library that pytest 7.0 installs has lazy (apipkg) modules whose ``__dict__`` imports every
    submodule: reading it while naming pytest-socket's saved copy opened files in a test that had run out of file
    descriptors, and the hooks were then reported as lost. Only plain modules are read; a plain module holding the
    copy is still named. (A module subclass stands in for apipkg here: what matters is that its namespace is never
    computed, which a real lazy module would not let this test observe.)"""
    import sys
    import types

    from pytest_sockhygiene import replacements

    class LazyModule(types.ModuleType):
        @property  # type: ignore[misc]
        def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
            raise AssertionError("a computed module namespace was read")

    copy = object()  # held by no other module: the walk visits every one
    holder = types.ModuleType("saved_copy_holder")
    holder.kept_connect = copy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lazy_namespace_module", LazyModule("lazy_namespace_module"))
    assert replacements.holder_of(copy) is None
    monkeypatch.setitem(sys.modules, "saved_copy_holder", holder)  # after the lazy one
    assert replacements.holder_of(copy) == "saved_copy_holder.kept_connect"


def test_naming_who_saved_a_copy_looks_at_pytest_plugins_and_conftests_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk for a saved copy starts with the modules of pytest plugins and conftests, where pytest-socket keeps
    ``_true_connect``: it was among the last 20 of ~700 modules, and the walk of all of them cost ~5 ms of the
    first test. When two modules hold the copy, the plugin's is the one named, wherever it sits in
    ``sys.modules``."""
    import sys
    import types

    from pytest_sockhygiene import replacements

    copy = object()
    other = types.ModuleType("an_app_module")
    other.connect_copy = copy  # type: ignore[attr-defined]
    plugin = types.ModuleType("pytest_saving_plugin")
    plugin._true_connect = copy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "an_app_module", other)
    assert replacements.holder_of(copy) == "an_app_module.connect_copy"  # the only holder: found by the full walk
    monkeypatch.setitem(sys.modules, "pytest_saving_plugin", plugin)  # after the other one
    replacements._slots.pop(id(copy), None)
    assert replacements.holder_of(copy) == "pytest_saving_plugin._true_connect"
