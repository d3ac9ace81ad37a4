"""``events.Ownership.current``: whose is a socket event, by the thread it happens on (no pytest run needed)."""

from __future__ import annotations

import sys
import threading

import pytest

from pytest_sockhygiene import events
from pytest_sockhygiene.clients import made_while_imported
from pytest_sockhygiene.events import Ownership, ThreadStarts

from conftest import dedent


def _started_owned(own: Ownership) -> list[str | None]:
    """Start a thread that a fixture owns (recorded by ident, as ``fixture_setup_end`` does) before it starts one
    of its own (a server's handler per connection); what ``current`` says in each."""
    seen: list[str | None] = []
    ready = threading.Event()
    go = threading.Event()
    starts = ThreadStarts(own)
    starts.install()
    try:
        def handler() -> None:
            seen.append(own.current())

        def server() -> None:
            ready.set()
            go.wait(5)
            seen.append(own.current())
            h = threading.Thread(target=handler)
            h.start()
            h.join()

        t = threading.Thread(target=server)
        t.start()
        assert ready.wait(5) and t.ident is not None
        own.thread_owner[t.ident] = "session-scoped fixture 'server'"
        go.set()
        t.join()
    finally:
        starts.uninstall()
    return seen


@pytest.mark.parametrize("thread_map", ["threading's own map", "current_thread()"])
def test_a_thread_started_by_an_owned_thread_has_its_owner(monkeypatch: pytest.MonkeyPatch, thread_map: str) -> None:
    """The handler thread inherits the owner through an attribute its start set; read from threading's
    ident -> Thread map, or through ``current_thread()`` where that map is missing (another interpreter)."""
    if thread_map == "current_thread()":
        monkeypatch.setattr(events, "_threads_by_ident", None)
    own = Ownership()
    assert _started_owned(own) == ["session-scoped fixture 'server'", "session-scoped fixture 'server'"]
    assert own.inherited


def test_the_main_thread_never_inherits_an_owner() -> None:
    """Once some thread carries an inherited owner, the main thread's events still belong to the test (none of
    its own), and a fixture set up on it still owns what its setup does there."""
    own = Ownership()
    _started_owned(own)
    assert own.inherited
    assert threading.current_thread() is threading.main_thread()
    assert own.current() is None
    own.fixture_stack.append("module-scoped fixture 'db'")
    own.fixture_thread = threading.get_ident()
    assert own.current() == "module-scoped fixture 'db'"


def test_a_thread_no_owned_thread_started_has_no_owner() -> None:
    """Looked up in threading's map like an inheriting one (some thread inherited an owner): no attribute, no
    owner. (The ended server thread's ident is forgotten first, as the session does at the next window's open:
    the new thread may be given it.)"""
    own = Ownership()
    _started_owned(own)
    own.thread_owner.clear()
    assert own.inherited
    seen: list[str | None] = []
    t = threading.Thread(target=lambda: seen.append(own.current()))
    t.start()
    t.join()
    assert seen == [None]


def test_made_while_imported_tells_an_import_from_later_calls_and_exec(tmp_path, monkeypatch):
    """``clients.made_while_imported``: true for the top-level code of a module being imported (and what it calls),
    false for its functions called later, for code run with ``exec`` in a module's namespace, and for a test."""
    (tmp_path / "imported_for_the_rule.py").write_text(dedent("""
        import sys
        from pytest_sockhygiene.clients import made_while_imported

        def factory():
            return made_while_imported(sys._getframe())

        AT_IMPORT = factory()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import imported_for_the_rule as module

    assert module.AT_IMPORT is True
    assert module.factory() is False  # called from this test, long after the import
    namespace = dict(vars(module))
    exec("R = factory()", namespace)  # module-level code, but no import under way (a doctest's examples too)
    assert namespace["R"] is False
    assert made_while_imported(sys._getframe()) is False


def test_made_while_imported_walks_the_frames_while_another_thread_imports(tmp_path, monkeypatch):
    """The answer without a walk (no module lock held by importlib: no import anywhere) must not be the only
    path: while another thread is inside an import, this thread's frames are walked, and a test is no import."""
    import threading

    (tmp_path / "imported_slowly.py").write_text(dedent("""
        import builtins
        builtins._sockhygiene_started.set()
        builtins._sockhygiene_release.wait(10)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    started, release = threading.Event(), threading.Event()
    monkeypatch.setattr(builtins, "_sockhygiene_started", started, raising=False)
    monkeypatch.setattr(builtins, "_sockhygiene_release", release, raising=False)
    importer = threading.Thread(target=__import__, args=("imported_slowly",))
    importer.start()
    try:
        assert started.wait(10)
        assert "imported_slowly" in sys.modules["_frozen_importlib"]._module_locks  # the walk's path is taken
        assert made_while_imported(sys._getframe()) is False
    finally:
        release.set()
        importer.join(10)


def test_fixture_holders_follow_attributes_and_containers_not_modules():
    """``holders.fixture_holders``: a socket reached from a fixture's value through instances, lists and dicts is
    found; one reached only through a module or a function's globals is not (they reach everything); the walk is
    bounded in depth."""
    import socket
    import types

    from pytest_sockhygiene.holders import MAX_DEPTH, fixture_holders

    a, b, c, d, e = (socket.socket() for _ in range(5))
    try:
        class Pool:
            def __init__(self, conns):
                self.available = list(conns)

        class Client:
            def __init__(self, pool):
                self.connection_pool = pool

        module = types.ModuleType("elsewhere")
        module.sock = c  # type: ignore[attr-defined]
        deep: object = d
        for _ in range(MAX_DEPTH + 2):
            deep = [deep]
        edge: object = e  # exactly MAX_DEPTH references from its fixture's value: still found
        for _ in range(MAX_DEPTH):
            edge = [edge]
        wanted = {a.fileno(): "a", b.fileno(): "b", c.fileno(): "c", d.fileno(): "d", e.fileno(): "e"}
        roots = [("session-scoped fixture 'client'", Client(Pool([a]))),
                 ("module-scoped fixture 'conf'", {"pools": {"x": (b,)}, "module": module, "deep": deep}),
                 ("session-scoped fixture 'edge'", edge)]
        assert fixture_holders(wanted, roots) == {"a": "session-scoped fixture 'client'",
                                                  "b": "module-scoped fixture 'conf'",
                                                  "e": "session-scoped fixture 'edge'"}
        assert fixture_holders({}, roots) == {}
    finally:
        for s in (a, b, c, d, e):
            s.close()


def test_fixture_holders_run_no_user_code_and_stay_bounded(monkeypatch):
    """The walk asks an object's real type, never ``obj.__class__`` (a lazy proxy - Django's ``SimpleLazyObject`` -
    runs its factory when asked, which may raise), does not walk into a container larger than ``MAX_CONTAINER``
    (a data set a fixture loaded), and counts every object it meets against ``MAX_OBJECTS`` (found in review: a
    2M-entry dict cost 0.66 s per look)."""
    import gc
    import socket

    from pytest_sockhygiene import holders

    evaluated = []

    class Lazy:
        @property  # type: ignore[misc]
        def __class__(self):
            evaluated.append(1)
            raise RuntimeError("working outside of the application's context")

    s = socket.socket()
    try:
        big = [*range(holders.MAX_CONTAINER), s]
        assert holders.fixture_holders({s.fileno(): "s"}, [("f", {"user": Lazy(), "big": big})]) == {}
        assert evaluated == []
        met = []
        real = gc.get_referents

        def counting(*objects):
            out = real(*objects)
            met.append(len(out))
            return out

        monkeypatch.setattr(holders.gc, "get_referents", counting)
        wide = [[i] for i in range(holders.MAX_CONTAINER)] * 4  # 40,000 small lists: each one an object met
        assert holders.fixture_holders({s.fileno(): "s"}, [("f", {"a": wide[:9_000], "b": wide[9_000:18_000],
                                                                  "c": wide[18_000:27_000]})]) == {}
        assert sum(met) <= 2 * holders.MAX_OBJECTS + holders.MAX_CONTAINER
    finally:
        s.close()


def test_fixture_holders_find_a_libpq_connection_by_its_fileno():
    """A psycopg (3) or psycopg2 connection holds its socket in C (libpq): found by the connection's ``fileno()``.
    A stand-in class under psycopg's module and class names, over a real socket: PostgreSQL is not part of this
    suite (checked against a real server with SQLAlchemy over psycopg for issue 12). No other class's
    ``fileno()`` is called."""
    import socket

    from pytest_sockhygiene.holders import fixture_holders

    s = socket.socket()
    calls = []
    try:
        def stand_in(module, name):
            cls = type(name, (), {"fileno": lambda self: calls.append(name) or s.fileno()})
            cls.__module__ = module
            return cls()

        wanted = {s.fileno(): "pg"}
        for module in ("psycopg", "psycopg2.extensions"):
            name = "Connection" if module == "psycopg" else "connection"
            assert fixture_holders(wanted, [("session-scoped fixture 'engine'", {"pool": [stand_in(module, name)]})]) \
                == {"pg": "session-scoped fixture 'engine'"}
        assert fixture_holders(wanted, [("f", [stand_in("mylib", "Connection")])]) == {}
        assert calls == ["Connection", "connection"]
    finally:
        s.close()
