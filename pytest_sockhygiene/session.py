"""The per-session controller: owns the backend, the socket hooks, the current window and the results.

Plain Python, so the pytest face (``plugin.py``) stays a few lines per hook. Every entry point that runs
inside a user's test is guarded: a fault of the plugin becomes a *plugin problem* in the summary and the
test's own result stands.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from . import origin as origin_mod
from .clients import COLLECTED_UNCLOSED, ClientRegistry, client_items, created_items, socket_identity
from .closers import may_close_elsewhere, nothing_else_runs
from .endpoints import ConfigError
from .events import _OWNER_ATTR, FIRST_EVENT_ATTR, Recorder, _get_ident, _threads_by_ident
from .health import ephemeral_port_count, fd_limit
from .limits import Limits, merge_marker_kwargs, parse_overrides
from .pools import is_pool_worker
from .replacements import SOCKET_CLASS, replaced_socket_class
from .results import CHECKS_OFF, HOOKS_REWRAPPED
from .settings import Settings
from .table import OPEN_STATES, Scan, SocketEntry, SocketTable, TableUnavailable, TcpState, select_table
from .transports import closing_on_stopped_loops
from .verdict import CLEAN, RESET_HELD, Item, Verdict, unmeasured
from .window import ClientProbe, Window, backoff

_GEVENT_SOCKETS = "gevent._socket3"
"""gevent's socket module: loaded, sockets may be made that bypass the hooks (``Controller.open_window``)."""

_RESERVED_MARGIN = 16
"""How near the fd limit the peak asks the kernel's count (``SocketTable.fds_in_use``), which counts the numbers
that threads blocked in ``accept()`` have reserved: a system call only a test near the limit pays for."""


def thread_snapshot() -> dict[Any, Any]:
    """The running threads by ident: a copy of ``threading._active`` (one small dict copy per window), or built
    from ``threading.enumerate()`` where that private dict is missing."""
    active = getattr(threading, "_active", None)
    if isinstance(active, dict):
        return active.copy()
    return {t.ident: t for t in threading.enumerate()}


_LOGGED: dict[Any, Any] = {}
"""``Controller._threads_at_open`` when no snapshot was taken: the threads the window starts are logged instead
(``ThreadStarts.begin_log``)."""


def effective_limits(base: Limits, overrides: Mapping[str, Any]) -> Limits:
    """Merge validated overrides onto the base. Ignore globs add to the ini's list rather than replace it:
    a marker that ignores Redis must not un-ignore the database the whole suite ignores."""
    if "ignore" in overrides:
        overrides = dict(overrides)
        overrides["ignore"] = tuple(base.ignore) + tuple(p for p in overrides["ignore"] if p not in base.ignore)
    return base.merged(overrides)


def table_unreadable(exc: BaseException) -> bool:
    """Whether ``exc`` says the socket table cannot be read (rather than that the plugin has a fault): raised by a
    backend's own code (``pytest_sockhygiene.table``) as the backend's unavailability, a refusal or a missing
    ``/proc`` entry (``OSError`` with EACCES, EPERM, ENOENT, ENOTDIR, ESRCH), or psutil's AccessDenied or
    NoSuchProcess. Running out of fds is not one: the backends cope with it."""
    if isinstance(exc, TableUnavailable):
        return True
    refused = isinstance(exc, OSError) and exc.errno in _REFUSED
    if not refused:
        psutil = sys.modules.get("psutil")
        refused = psutil is not None and isinstance(exc, (psutil.AccessDenied, psutil.NoSuchProcess))
    if not refused:
        return False
    tb = exc.__traceback__
    while tb is not None:  # from a backend's code, not from any other part of the plugin
        if tb.tb_frame.f_globals.get("__name__", "").startswith(_TABLE_PACKAGE):
            return True
        tb = tb.tb_next
    return False


_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.ESRCH})
_TABLE_PACKAGE = "pytest_sockhygiene.table"


def marker_limits(base: Limits, nodeid: str, markers: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]) -> Limits:
    """Limits for one test from its ``sockhygiene`` markers (closest first); ConfigError names the test."""
    try:
        return effective_limits(base, merge_marker_kwargs(markers))
    except ConfigError as e:
        raise ConfigError(f"sockhygiene marker on {nodeid}: {e}") from None


def bad_marker_message(nodeid: str, problems: Sequence[tuple[str | None, str]], fallback: str) -> str:
    """One line per bad marker (``limits.marker_problems``), each naming the test, the key and, for a marker the
    test inherits, the module or class that sets it: a ``pytestmark`` typo errors every test of its module, and
    the line says where to fix it once. ``fallback`` (the merged error) when no single marker is wrong."""
    if not problems:
        return fallback
    return "\n".join(f"sockhygiene marker on {nodeid}" + (f" (set on {where})" if where else "") + f": {what}"
                     for where, what in problems)


def _markers_key(markers: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]) -> Hashable | None:
    """What a test's markers ask for, as a key (``Controller.limits_for``: a suite marks many tests alike, and
    validating and merging them is most of a marked test's setup cost), or None when a value cannot be hashed.
    Each value's type is part of it: ``connections=True`` is refused where ``connections=1`` is not, and the two
    are equal as keys otherwise."""
    try:
        key = tuple((tuple((type(a), a) for a in args), tuple((k, type(v), v) for k, v in kwargs.items()))
                    for args, kwargs in markers)
        hash(key)
    except Exception:  # noqa: BLE001 - a list value (ignore=[...]), or a value whose hash fails: parsed every
        return None  # time, as it always was (parsing says what is wrong with it, naming the test)
    return key


def _thread_code(t: threading.Thread) -> Any:
    """The code a thread runs: its target's, else its class's ``run`` (None for a target with no code of its own, a
    ``functools.partial``: such threads are always waited for)."""
    target = getattr(t, "_target", None)
    if target is not None:
        return getattr(target, "__code__", None)
    return getattr(getattr(type(t), "run", None), "__code__", None)


def _nearer_limit(fds: int, limit: int | None, peak: int | None, peak_limit: int | None) -> bool:
    """Whether ``fds`` of ``limit`` came closer to running out than the peak so far: the session health shows
    the closest approach, with the limit in force then (the largest count, where a limit is unknown)."""
    if peak is None:
        return True
    if limit and peak_limit:
        return fds * peak_limit > peak * limit
    return fds > peak


UNSEEN_CONNECTS = (
    "some clients had a connection in their pool after a request that no Python socket call was seen opening "
    "(C code opened it: an event loop such as uvloop, a C library): connections opened and closed that way are not "
    "in the connections and TIME_WAIT counts, so those counts are low for the tests that made them; sockets still "
    "open at a test's end are seen all the same (docs/platforms.md, What stays invisible)")
"""The health notice when ``ClientRegistry.unseen_connects`` moved (the same text in every xdist worker)."""


class Controller:
    def __init__(self, settings: Settings, rootdir: str | None, hook: Any = None) -> None:
        self.settings = settings
        self.rootdir = rootdir
        self.hook = hook
        self._marker_limits: dict[Hashable, Limits] = {}
        """``limits_for``'s answers by ``_markers_key``: the session's limits never change, so neither do these."""
        self._origin_texts: dict[Hashable, str] = {}
        """``format_origin``'s answers: a suite's connections and clients come from a few lines, each formatted
        for every record and failure text that names it."""
        self.clients: ClientRegistry | None = None
        self.table: SocketTable | None = None
        self.recorder: Recorder | None = None
        self.window: Window | None = None
        self.client_probe: ClientProbe | None = None
        self.notices: list[str] = []
        self.problems: list[str] = []
        self._started = False
        self.unavailable: str | None = None
        """Why no backend could read the socket table (then the session's checks are off), once started."""
        self.peak_fds: int | None = None
        self.peak_fd_limit: int | None = None
        """The soft RLIMIT_NOFILE in force when ``peak_fds`` was seen (a test may lower it, and restore it)."""
        self._last_scan: Scan | None = None
        self._torn_down_ids: Mapping[Hashable, int] | None = None
        """The look the last broader fixture's teardown took (``fixture_torn_down``), while no window closed since."""
        self._fixture_marks: list[tuple[str, Mapping[Hashable, int] | None, set[Any]]] = []
        self.replacements: dict[str, int] = {}
        """What other code put in place of the socket hooks (who, which method) -> how many times."""
        self.blind_windows = 0
        """Windows that ran partly without the socket hooks (their event-based counts are unknown)."""
        self.hooks_lost: str | None = None
        """Why the socket hooks could not be put back, once that happened."""
        self.class_replaced: str | None = None
        """What ``socket.socket`` was replaced with, once other code put a class there that bypasses the hooks
        (gevent's monkey-patching): ``replacements.replaced_socket_class``. The windows that run while it is are
        blind (their event-based counts are unknown)."""
        self._threads_at_open: dict[Any, Any] | None = None
        self._clients_at_open = 0
        self._window_test: Any = None
        """The open window's test: its node id, or the pytest item (whose node id pytest 9.2 builds at each read:
        read only for a thread the test leaves running)."""
        self._owned_threads: dict[int, tuple[threading.Thread, str]] = {}
        """Threads given an owner by ident (``Ownership.thread_owner``) - those fixtures of broader scope started and
        those tests left running - as ident -> (thread, owner label): forgotten once they end, so that a new thread
        given the same ident (Linux reuses a joined thread's stack, and the ident with it) is not taken for
        theirs."""
        self._outlived_grace: set[Any] = set()
        """The code threads ran that were still running after a test's grace (``_threads_left``): a thread of that
        code is not waited for again (a logging ``QueueListener`` every app starts: 50 ms per test for nothing)."""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.ensure_started() and self.table is not None

    def ensure_started(self) -> bool:
        """Pick the backend and install the socket hooks on first use (an xdist controller never does)."""
        if self._started:
            return self.table is not None
        self._started = True
        try:
            self.table = select_table(self.settings.backend)
            if self.settings.backend == "auto" and self.table.name == "psutil" and sys.platform.startswith("linux"):
                why = f" ({self.table.instead_of})" if self.table.instead_of else ""
                self.notices.append(f"the linux backend is unavailable here{why}; using psutil (slower: it reads "
                                    "the whole machine's TCP table)")
        except TableUnavailable as e:
            self.unavailable = str(e)
            self.notices.append(f"{CHECKS_OFF}: {e}")
            return False
        except Exception as e:  # noqa: BLE001
            self.unavailable = "a plugin problem (see the summary)"
            self.problem("selecting the socket table backend", e)
            return False
        try:  # where library and standard-library code lives: read now, not in a socket hook inside an event loop
            origin_mod.prepare()
        except Exception as e:  # noqa: BLE001 - read again at the first origin
            self.problem("reading where library code lives", e)
        self.recorder = Recorder(self.table.identity_of, self._hook_error, early_identity=self.table.identity_from_fd)
        self.recorder.install()
        if self.hook is not None:
            self._start_client_tracking()
        return True

    def backend_label(self) -> str:
        """The backend for the run's header line: the one in use, or why there is none. Before the start (only an
        xdist controller, which runs no test, never starts) the setting, since each worker picks its own."""
        if self.table is not None:
            return self.table.name
        if self.unavailable is not None:
            return f"none ({CHECKS_OFF}: see the notice at the end)"
        if self.settings.backend == "auto":
            return "auto (each xdist worker picks its own)" if not self._started else "auto"
        return self.settings.backend

    def _start_client_tracking(self) -> None:
        assert self.recorder is not None and self.table is not None
        recorder = self.recorder
        self.clients = ClientRegistry(recorder.ownership.current, lambda: recorder.sinks, self.hook)
        self.clients.on_error = lambda e: self.problem("installing a client tracker (built in, or a plugin's)", e)
        try:
            self.hook.pytest_sockhygiene_install_tracker.call_historic(kwargs={"registry": self.clients})
        except Exception as e:  # noqa: BLE001
            self.problem("installing client trackers", e)
        identity = socket_identity(self.table.identity_of)
        registry = self.clients

        nothing: tuple[list[Item], dict[Hashable, str], dict[Hashable, str], list[Item], list[Item]] = (
            [], {}, {}, [], [])

        def probe(window: Window, need_sockets: bool) -> tuple[list[Item], dict[Hashable, str], dict[Hashable, str],
                                                               list[Item], list[Item]]:
            if not registry.held:
                return nothing  # the clean path of a suite that has no tracked client alive
            p = registry.probe(window, identity, need_sockets, self.format_origin)
            fixture_values = recorder.ownership.fixture_values
            if ((p.unclosed or p.unused) and fixture_values
                    and registry.adopt_held_by_fixtures(window, list(fixture_values.values()))):
                # a broader fixture's value holds one of them: it is that fixture's, and so is its pool
                p = registry.probe(window, identity, need_sockets, self.format_origin)
            # (a client with no pool - ASGI, WSGI, mock - opened none of the connections its created list explains)
            return (client_items(p.unclosed), p.owned, p.notes, created_items(r for r in p.created if r.networked),
                    client_items(p.unused))

        self.client_probe = probe

    def stop(self) -> None:
        if self.clients is not None and self.hook is not None:
            try:
                self.clients.close()
                self.hook.pytest_sockhygiene_uninstall_tracker(registry=self.clients)
            except Exception as e:  # noqa: BLE001
                self.problem("uninstalling client trackers", e)
        if self.recorder is not None:
            self.recorder.uninstall()
        if self.table is not None:
            try:
                self.table.close()
            except Exception as e:  # noqa: BLE001
                self.problem("closing the socket table", e)

    # -- problems ------------------------------------------------------------------------------------------------

    def problem(self, where: str, exc: BaseException) -> None:
        if self.table is not None and table_unreadable(exc):
            self._lose_table(where, exc)
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        self.problems.append(f"{where}: {exc!r}\n{tb}")

    def _lose_table(self, where: str, exc: BaseException) -> None:
        """The socket table could be read at the start and cannot any more (``/proc/self/fd`` refused, psutil
        denied): no later look can succeed, so the checks stop here with one notice, as when the table cannot be
        read from the start - not a plugin problem with a traceback at every later test (sixteen of them, and
        nothing said the checks were off)."""
        self.abandon_window()
        self.table = None  # (``usable`` is False from now on: no window opens, no fixture is watched)
        self.unavailable = f"{type(exc).__name__}: {exc}"
        self.notices.append(f"socket checks were switched off during the session ({where}): the socket table "
                            f"could not be read any more ({self.unavailable}); the tests run after that were not "
                            "checked")

    def _hook_error(self, exc: BaseException) -> None:
        self.problem(f"socket hook in thread {threading.current_thread().name}", exc)

    def format_origin(self, origin: origin_mod.Origin | None) -> str:
        texts = self._origin_texts
        try:
            return texts[origin]
        except KeyError:
            pass
        except TypeError:  # not hashable (an origin is a tuple of strings and ints: not expected)
            return origin_mod.format_origin(origin, self.rootdir)
        text = origin_mod.format_origin(origin, self.rootdir)
        if len(texts) >= 4096:  # a suite of many lines: keep the table small
            texts.clear()
        texts[origin] = text
        return text

    def locate_origin(self, origin: origin_mod.Origin | None) -> tuple[str, int] | None:
        """``(path relative to the rootdir, line)`` of an origin: where a CI annotation points."""
        if origin is None or not origin[0]:  # unknown, or only known as "accepted by the listener at ..."
            return None
        return origin_mod.relative_path(origin[0], self.rootdir), int(origin[1])

    def fd_sample(self) -> int | None:
        """This process's open fds as of the last look (for the per-test sample of the report and the HTML page):
        free where the look listed the fds (the quick look checked the same ones are open), else the backend's
        count (psutil: one listing)."""
        scan = self._last_scan
        if scan is not None and scan.fds is not None:
            return len(scan.fds)
        return self.table.fd_count() if self.table is not None else None

    # -- the socket hooks: put back when other code replaced them ---------------------------------------------

    def keep_hooks(self, user_code: bool) -> None:
        """Check that the socket hooks are still in place and wrap them again if other code replaced them.

        Called at a window's open and at the boundaries of a test's phases (see plugin.py), so a replacement made
        by another plugin's setup or teardown hook (pytest-socket writes ``socket.socket.connect`` back at every
        test's teardown, and installs a guard at setup with ``--allow-hosts``) is undone before any fixture or test
        code runs. ``user_code``: fixture or test code ran since the last check, so a replacement found now may
        have hidden some of the open window's connects: its event-based counts are then unknown, never 0. The
        clean path is one dict lookup per hooked method."""
        if socket.socket is not SOCKET_CLASS:
            self._check_socket_class()
        recorder = self.recorder
        if recorder is None or recorder.in_place():
            return
        try:
            replaced = recorder.reinstall()
        except Exception as e:  # noqa: BLE001 - the hooks stay off: say so, and measure nothing as 0
            if self.hooks_lost is None:
                self.hooks_lost = f"{type(e).__name__}: {e}"
            replaced = ["(could not be wrapped again)"]
        if not replaced:
            return  # a wrapper of ours written back: it records like a new one
        for text in replaced:
            self.replacements[text] = self.replacements.get(text, 0) + 1
        window = self.window
        if window is not None and (user_code or self.hooks_lost is not None) and not window.blind:
            window.blind = True
            self.blind_windows += 1

    def _check_socket_class(self) -> None:
        """``socket.socket`` is not the standard class: if it is one that bypasses the hooks (gevent's), the open
        window's event-based counts are unknown, and the session says why (``class_notice``)."""
        replaced = replaced_socket_class()
        if replaced is None:
            return
        self.class_replaced = replaced
        if self.window is not None:
            self.window.blind = True

    def class_notice(self) -> str | None:
        """The session health's one line about a socket class that bypasses the hooks, or about gevent's sockets
        in use without one (geventhttpclient makes ``gevent.socket`` sockets itself): None if neither."""
        if self.class_replaced is not None:
            return (f"socket.socket was replaced by {self.class_replaced} (gevent's or eventlet's monkey-patching), "
                    "whose sockets bypass the plugin's socket hooks: the connection and TIME_WAIT counts of the "
                    "tests run while it was are unknown (null in the JSON report), and their limits were checked "
                    "only against the connections tracked clients (requests, httpx, urllib3, aiohttp) were seen "
                    "holding; sockets left open and unclosed clients are still found, with no line that opened "
                    "them")
        if _GEVENT_SOCKETS in sys.modules:
            return ("gevent's socket module is loaded: sockets made with it (gevent.socket, gevent's servers, "
                    "geventhttpclient) bypass the plugin's socket hooks, so their connections are not in the "
                    "connection and TIME_WAIT counts; sockets left open and unclosed clients are still found")
        return None

    def hooks_notice(self) -> str | None:
        """The session health's one line about replaced socket hooks, if any were."""
        if not self.replacements and self.hooks_lost is None:
            return None
        # no count of replacements: each xdist worker's notice must read the same to be shown once
        who = "; ".join(sorted(t for t in self.replacements if not t.startswith("(")))
        if self.hooks_lost is None and not self.blind_windows:
            return f"{HOOKS_REWRAPPED}, so no socket call was missed ({who or 'unknown'})"
        text = (f"other code replaced the plugin's socket hooks ({who or 'unknown'}); they were "
                "wrapped again around the replacement whenever it happened, at the next window open or test "
                "phase, so the other code's function still runs")
        if self.hooks_lost is not None:
            text += (f"; from some point on they could not be put back ({self.hooks_lost}): connection and "
                     "TIME_WAIT counts of the tests run since are unknown")
        if self.blind_windows:
            text += (f"; {self.blind_windows} test(s) ran partly without them (replaced while fixture or test code "
                     "ran): their connection and TIME_WAIT counts are unknown (null in the JSON report)")
        return text

    # -- windows -----------------------------------------------------------------------------------------------

    def look_afresh(self) -> None:
        """A broader fixture was torn down: its teardown runs after the last test's check, outside any window, and
        C code in it may have opened or closed sockets no hook sees (Django's ``tearDownClass`` reconnecting
        through libpq). The next window takes a full first look, not the last window's final one: else the
        socket was new at the next test's end, that test's leak (found on django-rest-framework's suite under
        PostgreSQL), and a reconnect on the same fd number went unseen by the quick look."""
        self._last_scan = None

    def fixture_torn_down(self, label: str) -> None:
        """A broader fixture's teardown has run: the sockets that appeared since the last look before it (the last
        window's final one, or the last such teardown's) and that nothing owns are its own - opened by its
        teardown code (a notifier's last message, a reconnect), outside any window. Still held at the session's
        end, they are its session-level leak; they were nobody's, and passed unseen. Then the next window looks
        afresh (``look_afresh``)."""
        last = self._last_scan
        reference = last.ids if last is not None else self._torn_down_ids
        self._last_scan = None
        if self.table is None or self.recorder is None or self.window is not None:
            self._torn_down_ids = None
            return
        now = self.table.ids()
        self._torn_down_ids = now
        if reference is not None:
            own = self.recorder.ownership
            new = {key: now[key] for key in now.keys() - reference.keys() if key not in own.socket_owner}
            for e in self.table.describe(new) if new else ():
                own.socket_owner[e.key] = label
                if e.four_tuple is not None:  # connected: reset by its peer later, it is still a leak (``peers``)
                    own.peers[e.key] = e.four_tuple

    def open_window(self, test: Any = None) -> Window | None:
        if (self.recorder is None or self.table is None) and not self.usable:  # starts on the first window
            return None
        recorder = self.recorder
        assert self.table is not None and recorder is not None
        recorder.ownership.fixture_thread = _get_ident()  # (the one the hooks ask: gevent patches threading's)
        if socket.socket is not SOCKET_CLASS or not recorder.in_place():  # (keep_hooks' own test, inline: per test)
            self.keep_hooks(False)
        if self._owned_threads:
            self._prune_owned_threads()
        starts = recorder.thread_starts
        if starts.begin_log():  # the threads started in the window are logged as they start: no snapshot needed
            self._threads_at_open = _LOGGED
        else:
            self._threads_at_open = thread_snapshot()
        self._clients_at_open = self.clients.recorded if self.clients is not None else 0
        self._window_test = test
        # the last window's final look is this one's first, if no socket call happened in between
        last = self._last_scan
        # sockets may be made where no hook sees them - ``socket.socket`` replaced by a class that bypasses the hooks
        # (gevent's or eventlet's monkey-patching: ``keep_hooks`` above has noted it), or gevent's socket module
        # loaded (its servers and geventhttpclient make ``gevent.socket`` sockets themselves): every look is then a
        # full one (``Window.exact``)
        exact = self.class_replaced is not None or _GEVENT_SOCKETS in sys.modules
        before = last if not recorder.touched and not exact else None
        window = self.window = Window(self.table, recorder, self.client_probe, before, None if exact else last, exact)
        if starts.logging:
            starts.events = window.events
        if self.hooks_lost is not None and not recorder.in_place():
            window.blind = True
            self.blind_windows += 1
        if socket.socket is not SOCKET_CLASS:
            self._check_socket_class()
        return window

    def _test_location(self) -> tuple[str, int] | None:
        """The window's test function's file (absolute, as Python's warnings name a file) and line, if the window
        is a pytest item's: where a warning the check set off is shown when the line that opened its socket is
        not known (``Window.close``). Asked only then."""
        test = self._window_test
        location = getattr(test, "location", None)
        if not isinstance(location, tuple) or len(location) < 2:
            return None
        # the file of the test function (``location``: relative to the rootdir; an inherited test's function
        # lies in its base class's file, not in the module that collected it)
        root = getattr(getattr(test, "config", None), "rootpath", None)
        path = os.path.join(str(root), str(location[0])) if root is not None else getattr(test, "path", None)
        return (str(path), (location[1] or 0) + 1) if path is not None else None

    def close_window(self, limits: Limits, user_code: bool = True) -> Verdict | None:
        """The open window's verdict. ``user_code``: fixture teardown code ran since the hooks were last checked
        (see ``keep_hooks``); False when only other plugins' teardown hooks did."""
        window = self.window
        if window is None or window.closed:
            self.window = None
            return None
        recorder = self.recorder
        if socket.socket is not SOCKET_CLASS or recorder is None or not recorder.in_place():  # (inline: per test)
            self.keep_hooks(user_code)
        self.window = None
        clients = self.clients
        if (clients is None or not clients.held or clients.recorded == self._clients_at_open) and window.close_quiet():
            self._last_scan = window.after_scan  # the same fds as the window's first look: no new fd peak
            if self._threads_at_open is not _LOGGED or window.blind:
                return self._with_threads(CLEAN, window, limits)
            # the clean path: the thread log says whether a thread was started, as in _threads_left
            self._threads_at_open = None
            started = recorder.thread_starts.end_log() if recorder is not None else None
            return self._threads_started(CLEAN, window, limits, started) if started else CLEAN
        try:
            verdict = window.close(limits, self._test_location)
            self._last_scan = window.after_scan
            window.remember_left()
            return self._with_threads(verdict, window, limits)
        finally:
            if self.clients is not None and self.clients.held:
                self.clients.forget(window)
            if self.table is not None and window.after_scan is not window.before_scan:  # else: same fds as before
                fds = self.table.fd_count()
                if fds is not None:
                    limit = fd_limit()
                    if limit is not None and fds >= limit - _RESERVED_MARGIN:
                        fds = self.table.fds_in_use() or fds  # near the limit: numbers reserved count too
                    if _nearer_limit(fds, limit, self.peak_fds, self.peak_fd_limit):
                        self.peak_fds, self.peak_fd_limit = fds, limit

    # -- threads a test leaves running ----------------------------------------------------------------------------

    def _with_threads(self, verdict: Verdict, window: Window, limits: Limits) -> Verdict:
        """The window's verdict as recorded: counts it could not measure made unknown, threads left running added."""
        if window.blind:
            verdict = unmeasured(verdict)
        return self._threads_left(verdict, window, limits)

    def _threads_left(self, verdict: Verdict, window: Window, limits: Limits) -> Verdict:
        """The verdict, with the threads the test started and left running: from now on they are the test's, so
        nothing they do later counts against another test. The clean path looks at nothing: no thread was started
        in the window (``ThreadStarts`` logs them); where that log cannot be trusted, two small dicts are compared."""
        before, self._threads_at_open = self._threads_at_open, None
        if before is None or self.recorder is None:
            return verdict
        if before is _LOGGED:
            started = self.recorder.thread_starts.end_log()
            if not started:  # no thread started in the window
                return verdict
            return self._threads_started(verdict, window, limits, started)
        now = thread_snapshot()
        if now == before:  # the same idents, each the same Thread (compared by identity: Thread has no __eq__)
            return verdict
        return self._threads_started(verdict, window, limits,
                                     [t for ident, t in now.items() if before.get(ident) is not t])

    def _threads_started(self, verdict: Verdict, window: Window, limits: Limits,
                         started: list[threading.Thread]) -> Verdict:
        """``_threads_left`` for the threads started in the window (from the log, or the snapshots' difference)."""
        assert self.recorder is not None
        candidates: list[tuple[Any, Any]] = [(t.ident, t) for t in started]
        own = self.recorder.ownership
        new = [t for ident, t in candidates if own.thread_label(ident) is None
               and getattr(t, _OWNER_ATTR, None) is None  # a thread an owned thread started is that owner's
               and not isinstance(t, threading._DummyThread) and t is not threading.current_thread()
               and not is_pool_worker(t)]  # a pool's worker works for every test that hands it a job (pools.py)
        # a thread that is finishing (a Timer that just fired, an executor shutting down) is given a moment - unless
        # a thread running the same code outlived that moment in an earlier test: a server, a listener, a monitor
        # that runs for the session is waited for once, not at every test that starts one
        outlived = self._outlived_grace
        waited = [t for t in new if _thread_code(t) not in outlived] if outlived else new
        if waited:
            deadline = time.monotonic() + min(0.05, limits.settle)
            for t in waited:
                t.join(max(0.0, deadline - time.monotonic()))
        left = [t for t in new if t.is_alive() and t.ident is not None]
        if not left:
            return verdict
        for t in left:
            code = _thread_code(t)
            if code is not None:
                outlived.add(code)
        test = str(getattr(self._window_test, "nodeid", self._window_test) or "the test")
        lines = []
        for t in left:
            label = f"thread '{t.name}' left running by {test}"
            own.thread_owner[t.ident] = label
            own.thread_objects[t.ident] = t
            try:
                setattr(t, _OWNER_ATTR, label)  # passed on to the threads it starts
                own.inherited = True
            except Exception:  # noqa: BLE001
                pass
            self._owned_threads[t.ident] = (t, label)
            lines.append(self.describe_thread(t, window))
        return dataclasses.replace(verdict, threads=verdict.threads + tuple(lines))

    def describe_thread(self, t: threading.Thread, window: Window) -> str:
        """``thread 'push' (running push at test_x.py:12) is still running, holding 1 connection``."""
        target = getattr(t, "_target", None)  # what Thread(target=...) runs; a subclass runs its own run()
        code = _thread_code(t) or getattr(getattr(type(t), "run", None), "__code__", None)
        running = ""
        if code is not None:
            name = getattr(target, "__qualname__", None) or f"{type(t).__qualname__}.run"
            filename, lineno = code.co_filename, code.co_firstlineno
            if filename.startswith(origin_mod.DOCTEST_PREFIX):  # a function a doctest's example defined
                filename, lineno = origin_mod.doctest_line(filename, lineno)
            where = f"{origin_mod.short_path(filename, self.rootdir)}:{lineno}"
            running = f" (running {name} at {where})"
        held = window.after_scan.ids if window.after_scan is not None else {}
        kinds: dict[str, int] = {}
        seen = set()
        # (from its start on: an earlier thread of the window that ended may have had the same ident)
        for ev in window.events[getattr(t, FIRST_EVENT_ATTR, 0):]:
            if ev.thread == t.ident and ev.kind in ("connect", "accept", "listen") and ev.identity in held \
                    and ev.identity not in seen:
                seen.add(ev.identity)
                what = "listening socket" if ev.kind == "listen" else "connection"
                kinds[what] = kinds.get(what, 0) + 1
        # what the thread itself opened: a reader thread serving a socket another thread opened (a websocket
        # client's, serve_forever on a listener the test made) opened none - not "holds none" (websockets' suite)
        holding = (", holding " + ", ".join(f"{n} {what}(s)" for what, n in kinds.items()) if kinds
                   else " (it opened none of the sockets still open, but may be serving one)")
        return (f"thread '{t.name}'{running} started by this test is still running{holding}; what it does from now "
                "on is its own, never a later test's")

    def _prune_owned_threads(self) -> None:
        """Forget owned threads that have ended: their idents may be given to new threads. Run at every window's
        open, where a session's server thread is usually the only one: a lookup in threading's own map each (a
        thread leaves it as it ends), no call, until one has ended."""
        threads = self._owned_threads
        active = _threads_by_ident
        if active is not None:
            for ident, (t, _label) in threads.items():  # (a loop, not all() over a generator: at every test)
                if active.get(ident) is not t:
                    break
            else:
                return
            ended = [ident for ident, (t, _label) in threads.items() if active.get(ident) is not t]
        else:
            ended = [ident for ident, (t, _label) in threads.items() if not t.is_alive()]
        own = self.recorder.ownership if self.recorder is not None else None
        for ident in ended:
            _t, label = threads.pop(ident)
            if own is not None and own.thread_owner.get(ident) == label:
                del own.thread_owner[ident]
                own.thread_objects.pop(ident, None)

    # -- the session's end ---------------------------------------------------------------------------------------

    def session_leaks(self) -> list[dict[str, str]]:
        """Sockets and clients that fixtures of broader scope created and left open at session end, re-checked
        like a test's violation: only while a leak can still go away (a server thread may close its listener
        just after teardown), for up to ``settle`` seconds, stopping the moment none is left that can."""
        if self.table is None or self.recorder is None:
            return []
        leaks, pending = self._session_leaks_once()
        if not pending:
            return leaks
        for _ in backoff(time.monotonic() + self.settings.limits.settle):
            leaks, pending = self._session_leaks_once()
            if not pending:
                break
        return leaks

    def _session_leaks_once(self) -> tuple[list[dict[str, str]], bool]:
        """The leaks, and whether any of them can still go away (``_may_go_away``). Each one listed is a socket
        the process still holds, or a client a fixture of broader scope made and never closed: alive, or
        garbage-collected without being closed - a fixture that returns a client and has no teardown drops it
        as it is torn down, before this check, and was clean where the same client kept alive by a global was
        listed (found with pytest-localserver's users' shape), as a test's client is counted either way."""
        assert self.table is not None and self.recorder is not None
        held = self.table.ids()
        owners = {k: label for k, label in self.recorder.ownership.socket_owner.items() if k in held}
        peers = self.recorder.ownership.peers
        entries = [e if e.state != TcpState.CLOSE else dataclasses.replace(e, remote=e.remote or peers[e.key][1])
                   for e in self.table.describe({k: held[k] for k in owners})
                   if e.state in OPEN_STATES or e.state in (TcpState.CLOSE_WAIT, TcpState.LISTEN)
                   or (e.state == TcpState.CLOSE and e.key in peers)]  # (reset by the peer: as a test's, verdict.py)
        sockets = self._without_served_sides(entries, held)
        leaks = [{"kind": "socket", "what": e.describe() + (f" ({RESET_HELD})" if e.state == TcpState.CLOSE else ""),
                  "owner": owners[e.key]} for e in sockets]
        live: list[Any] = []
        if self.clients is not None:
            for r in self.clients.records():
                # a client that never opened a connection holds no socket: not a leak (see clients.py)
                if (r.owner and r.networked and not r.shared and r.part_of is None
                        and not self.clients.is_closed(r) and self.clients.used(r)):
                    created = origin_mod.created(self.format_origin(r.origin))
                    what = f"{r.kind} {created}" + (f" ({COLLECTED_UNCLOSED})" if r.collected else "")
                    leaks.append({"kind": "client", "what": what, "owner": r.owner})
                    client = r.ref() if r.ref is not None and not r.collected else None
                    if client is not None:
                        live.append(client)
        return leaks, bool(leaks) and self._may_go_away(sockets, live)

    def _may_go_away(self, sockets: list[SocketEntry], clients: list[Any]) -> bool:
        """Whether a session-level leak can still go away, by the rule a test's check follows (``Window._close``):
        a socket held other than in a leaked client's pool may be closed by a thread just after its fixture's
        teardown, unless an asyncio transport already closing holds it on a loop that does not run
        (``transports``); a client, and what its pool holds, only while code on another thread may still close
        it - a thread a broader fixture started, still running, or a running event loop or pool job
        (``closers``). With none of that, or with no other thread that can run, the leaks stand as they
        are: the session's end does not wait for them (a session fixture's client never closed cost every run the
        whole settle)."""
        assert self.table is not None and self.recorder is not None
        if nothing_else_runs():  # no other thread can run: nothing but a finalizer could close any of them
            return False
        pooled: set[Hashable] = set()
        if clients and self.clients is not None:
            identity = socket_identity(self.table.identity_of)
            for client in clients:
                pooled.update(k for k in map(identity, self.clients.sockets_of(client)) if k is not None)
        outside = {e.fd for e in sockets if e.key not in pooled}
        if outside and not outside.issubset(closing_on_stopped_loops(self.recorder.sockets_at(outside))):
            return True
        started = [weakref.ref(t) for t in list(self.recorder.ownership.thread_objects.values())]
        return may_close_elsewhere(started)

    def health(self) -> dict[str, Any]:
        """This process's part of the session summary (a worker sends it to the xdist controller)."""
        leaks: list[dict[str, str]] = []
        try:
            leaks = self.session_leaks()
        except Exception as e:  # noqa: BLE001
            self.problem("checking for session-level leaks", e)
        notices = list(self.notices)
        hooks = self.hooks_notice()
        if hooks:
            notices.append(hooks)
        replaced = self.class_notice()
        if replaced:
            notices.append(replaced)
        degraded = self.table.degradation() if self.table is not None else None
        if degraded:
            notices.append(degraded)
        if self.clients is not None and self.clients.unseen_connects and self.class_replaced is None:
            notices.append(UNSEEN_CONNECTS)  # (a replaced socket class is the reason, said above: not C code)
        peak, limit = self.peak_fds, self.peak_fd_limit
        if peak is None:
            # no test changed this process's fds (the peak is taken only when a look finds them changed): every
            # look counted what the last one did
            limit = fd_limit()
            try:
                peak = self.table.fd_count() if self.table is not None else None
            except Exception:  # noqa: BLE001 - unknown, as before
                peak = None
        return {"leaks": leaks, "peak_fds": peak, "fd_limit": limit, "ports": ephemeral_port_count(),
                "problems": list(self.problems), "notices": notices}

    def abandon_window(self) -> None:
        window, self.window = self.window, None
        if window is not None and self.recorder is not None:
            self.recorder.remove_sink(window)
            if self._threads_at_open is _LOGGED:
                self.recorder.thread_starts.end_log()
            self._threads_at_open = None

    def _without_served_sides(self, entries: list[SocketEntry], held: Mapping[Hashable, int]) -> list[SocketEntry]:
        """``entries`` less the server side of an in-process connection whose other end this process still holds:
        the connection is reported through the side that connected - a test's leak at that test, a fixture's
        among these - and only once, as a test's is (a session server's thread holds the side it accepted for as
        long as the client keeps its own open: listed again as the server fixture's, a run whose tests allowed
        their kept connection failed at its end, found with a FastAPI suite's upstream server)."""
        assert self.table is not None and self.recorder is not None
        ports = {ep[1] for ep in self.recorder.listeners}
        served = {e.key: e.four_tuple for e in entries if e.state in OPEN_STATES and e.four_tuple is not None
                  and e.local is not None and e.local[1] in ports}
        if not served:
            return entries
        # the other ends: among the entries already described, and the held sockets no fixture owns
        described = {e.key for e in entries}
        others = self.table.describe({k: fd for k, fd in held.items() if k not in described})
        ends = {e.four_tuple for e in (*entries, *others) if e.four_tuple is not None}
        gone = {key for key, (local, remote) in served.items() if (remote, local) in ends}
        return [e for e in entries if e.key not in gone] if gone else entries

    # -- ownership: fixtures of broader scope ---------------------------------------------------------------------

    def fixture_setup_begin(self, label: str) -> None:
        """A fixture of broader scope than ``function`` starts its setup: what it creates is its own."""
        if self.table is None or self.recorder is None:
            return
        own = self.recorder.ownership
        own.fixture_stack.append(label)
        own.fixture_depths.append(origin_mod.stack_depth(sys._getframe()))
        try:
            before: Mapping[Hashable, int] | None = self.table.ids()
        except Exception as e:  # noqa: BLE001
            # a plugin problem, and the setup still the fixture's: what its events show is its own (the stack
            # above), and ``fixture_setup_end`` is still owed its pop. Raised from here, the label stayed on the
            # stack and owned every later socket of the run, the tests' leaks included, while the fixture's own
            # server was blamed on the test that set it up.
            self.problem(f"{label} setup", e)
            before = None
        self._fixture_marks.append((label, before, set(threading.enumerate())))

    def fixture_setup_end(self) -> None:
        if not self._fixture_marks or self.recorder is None:
            return
        label, ids_before, threads_before = self._fixture_marks.pop()
        own = self.recorder.ownership
        if own.fixture_stack:  # (popped also where the table was lost meanwhile: the stack names what runs now)
            own.fixture_stack.pop()
        if own.fixture_depths:
            own.fixture_depths.pop()
        if self.table is None:
            return
        if ids_before is not None:  # (None: the first look failed; the fixture's events still name it)
            for key in self.table.ids():
                if key not in ids_before:
                    own.socket_owner.setdefault(key, label)
        for t in threading.enumerate():
            if t not in threads_before and t.ident is not None and own.thread_label(t.ident) is None:
                own.thread_owner[t.ident] = label
                own.thread_objects[t.ident] = t
                self._owned_threads[t.ident] = (t, label)
        # events already recorded from those threads while the fixture was being set up are the fixture's too
        if self.window is not None:
            for ev in self.window.events:
                if ev.owner is None:
                    ev.owner = own.thread_label(ev.thread)

    # -- per-test limits ---------------------------------------------------------------------------------------

    def limits_for(self, nodeid: str, markers: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]) -> Limits:
        if not markers:  # most tests: the session's limits, a frozen value shared by all of them
            return self.settings.limits
        key = _markers_key(markers)
        if key is not None:
            known = self._marker_limits.get(key)
            if known is not None:
                return known
        limits = marker_limits(self.settings.limits, nodeid, markers)  # raises for a bad marker: never cached
        if key is not None:
            if len(self._marker_limits) >= 256:
                self._marker_limits.clear()
            self._marker_limits[key] = limits
        return limits

    @staticmethod
    def runtime_limits(current: Limits, nodeid: str, kwargs: Mapping[str, Any]) -> Limits:
        try:
            return effective_limits(current, parse_overrides(kwargs))
        except ConfigError as e:
            raise ConfigError(f"sockhygiene fixture in {nodeid}: {e}") from None
