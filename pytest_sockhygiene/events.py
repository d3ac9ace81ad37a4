"""What this process did with TCP sockets while a window was open: connects, accepts, listens and closes.

The socket table says what is held at the end; events say what happened in between. They give a connection its
origin (the user's line), its exact 4-tuple even after the socket is gone (so its TIME_WAIT row can be found and
attributed), the listener of an accepted socket, and a count of connections opened.

Events come from thin wrappers installed on ``socket.socket`` (``connect``, ``connect_ex``, ``accept``,
``listen`` and ``_real_close``, the one place a socket's fd is really released, through ``close()``, a
``makefile()`` object or an ``SSLSocket``). They are installed for the session, record only while a window is
open, and cost one attribute check otherwise. A patch of these methods is cheaper than an audit hook (which would
see every event of every kind) and, unlike an audit hook, can be removed.

What stays invisible: sockets opened and closed entirely by C code (libpq, some drivers, uvloop) and
``_socket.socket`` used directly. The fd-table scan still sees what they *hold* at the end of a window.
"""

from __future__ import annotations

import _socket
import contextlib
import contextvars
import errno
import inspect
import operator
import socket
import sys
import threading
import types
import weakref
from collections.abc import Collection, Hashable
from typing import TYPE_CHECKING, Any, Callable

from . import origin as origin_mod
from .c_loops import UvloopConnections, UvloopServers
from .drops import dropping, iterator_left, timed_out
from .endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from .far_ends import FarEnds
from .pools import JobOrigins, ThreadPoolJobOrigins, ToThreadJobOrigins, TrioToThreadJobOrigins, is_pool_worker
from .replacements import C_METHODS, MISSING, PATCHED, SOCKET_CLASS, calls_one_of, describe_replacement, holder_slot
from .trackers.patching import RecorderPatch
from .unraised import shown_not_raised

if TYPE_CHECKING:
    from .logheld import Kept

_INET = (socket.AF_INET, socket.AF_INET6)
_request_state = origin_mod.request_state  # [1]: the client whose request is under way; [3]: the test's app request
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_threads_by_ident: dict[int, threading.Thread] | None = getattr(threading, "_active", None)
"""threading's own ident -> Thread map (what ``current_thread`` reads, in Python): read directly where a thread's
owner is looked up at every socket event. Private, but present in every CPython the plugin supports; None
elsewhere, and ``current_thread`` is used."""
_task_owner: contextvars.ContextVar[str | None] = contextvars.ContextVar("sockhygiene_task_owner", default=None)
"""The owner of an asyncio task a fixture of broader scope created (``TaskOrigins``): the task copies it at its
creation, and so do the tasks it creates in turn (a server's per-connection handlers)."""
_IN_PROGRESS = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


class SocketEvent:
    """One thing done to a TCP/IP socket. ``owner`` is None when the test did it, else a fixture's label.

    One is made for every connect, accept and close of a window, and the verdict reads each of its fields dozens
    of times: a class with ``__slots__`` and an ``__init__`` of its own, which also computes ``four_tuple``. Slots
    are read as fast as an instance dict (faster than a named tuple's fields, by half) and need no dict per
    event. Its parameters are ``FIELDS`` but ``four_tuple``, in order (``tests/test_verdict_unit.py`` checks)."""

    FIELDS = ("kind", "identity", "fd", "local", "remote", "origin", "thread", "owner", "listener", "listener_local",
              "client", "api", "fixture", "api_self", "dropped", "four_tuple")
    """The fields, in order (the slots, the constructor's parameters, the repr)."""
    __slots__ = FIELDS

    kind: str  # "connect" | "accept" | "listen" | "close"; FAILED_CONNECT once a non-blocking connect is known failed
    identity: Hashable | None
    fd: int
    local: Endpoint | None
    remote: Endpoint | None
    origin: origin_mod.Origin | None
    thread: int
    owner: str | None
    listener: Hashable | None  # accept: the listening socket's identity
    listener_local: Endpoint | None  # accept: the listening socket's address
    client: Any
    """connect: the record (``clients.ClientRecord``) of the tracked client whose request opened this connection
    (``origin.request_state[1]``: the innermost recorded client's request under way, the one whose pool opens
    it), None for a connection no tracked client's request made (raw sockets, ``http.client``, a client outside
    tracking, an app reached through a mock or ASGI transport). The record is
    hashable by identity and stays the same object for the client's life: group connections by it.
    close: the record of the client whose request was under way as the socket closed - its pool closed it
    within a request, as a response with ``Connection: close`` asks - else None (closed with its client, by
    ``close()`` or ``with``)."""
    api: str | None
    """connect with no tracked client's request under way: the library call the user's line made
    (``origin.capture_call``: ``urllib.request.urlopen``, ``socket.create_connection``), None if the user's line
    called ``connect`` itself or no user line is on the stack."""
    fixture: str | None
    """connect: the function-scoped fixture being set up when it was made (``Ownership.function_fixture``), if
    any: such connections are the test's, but plumbing (a readiness probe), not the code under test."""
    api_self: Any
    """connect with ``api`` a method: a weak reference to the object it was called on (``origin.capture_call``),
    else None. Told apart by identity: the same reference object for one object, a new one for each new object, even
    at a reused address (a new ``httplib2.Http`` per request, each dropped at once)."""
    dropped: str | None
    """close: why the client's pool dropped the connection, where the reason is the client's (``drops.py``): the
    class name of the timeout being handled within its request (``ReadTimeoutError``, ``ReadTimeout``), or
    ``drops.UNREAD`` for a response closed before its end; else None (closed with its client, or because the
    server ended it). Such a connection could not carry the next request: the pool opens another."""
    four_tuple: FourTuple | None
    """``(local, remote)``, None unless both are known. Computed once, at creation: the verdict asks each event for
    it dozens of times."""

    def __init__(self, kind: str, identity: Hashable | None, fd: int, local: Endpoint | None,
                 remote: Endpoint | None, origin: origin_mod.Origin | None, thread: int, owner: str | None,
                 listener: Hashable | None = None, listener_local: Endpoint | None = None, client: Any = None,
                 api: str | None = None, fixture: str | None = None, api_self: Any = None,
                 dropped: str | None = None) -> None:
        self.kind = kind
        self.identity = identity
        self.fd = fd
        self.local = local
        self.remote = remote
        self.origin = origin
        self.thread = thread
        self.owner = owner
        self.listener = listener
        self.listener_local = listener_local
        self.client = client
        self.api = api
        self.fixture = fixture
        self.api_self = api_self
        self.dropped = dropped
        self.four_tuple = None if local is None or remote is None else (local, remote)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS[:-1])
        return f"SocketEvent({fields})"


class EventSink:
    """Receives events; a window, or a ``measure()`` block of the fixture."""

    __slots__ = ("events",)  # one is made per test: small and quick to fill

    def __init__(self) -> None:
        self.events: list[SocketEvent] = []

    def add(self, event: SocketEvent) -> None:
        self.events.append(event)  # list.append is atomic under the GIL: events come from any thread


class Ownership:
    """Who owns what outside the test: fixtures of broader scope, and the threads they started.

    Sockets created while such a fixture is set up, or later by a thread it started (a server's accept loop),
    belong to the fixture for the rest of the session, never to whichever test happened to trigger them.
    """

    def __init__(self) -> None:
        self.fixture_stack: list[str] = []
        self.fixture_depths: list[int] = []
        """Beside ``fixture_stack``: how deep the stack was when each setup began. A task is a fixture's only if the
        user's line that created it runs deeper: inside the fixture's own code, not in code that runs pytest (a
        script calling ``pytest.main()``, a pytester run) while a test runner makes its task (anyio's runs every
        later test)."""
        self.fixture_thread: int | None = None
        self.function_fixture: str | None = None
        """The function-scoped fixture whose setup is running on the fixture thread (a label, not an owner)."""
        self.thread_owner: dict[int, str] = {}
        self.thread_objects: dict[int, threading.Thread] = {}
        """The thread each ``thread_owner`` ident was given for: an ended thread's ident is reused by the next
        thread started, and a fixture's short-lived threads (a server's handler per connection) end within
        milliseconds, so an ident alone would give a test's new thread (a pool's worker) to the fixture."""
        self.socket_owner: dict[Hashable, str] = {}
        self.peers: dict[Hashable, FourTuple] = {}
        """Owned sockets seen connected (a fixture's connect or accept) -> their 4-tuple: one still held in state
        CLOSE at the session's end was reset by its peer, and is a leaked fd all the same, whose peer the kernel
        no longer knows (``Controller._session_leaks_once``)."""
        self.fixture_values: dict[int, tuple[str, Any]] = {}
        """id of a fixture of broader scope still set up -> (its label, the value it returned): what a lazily
        connecting client it made holds is its own (``holders.py``)."""
        self.kept_tracebacks: Callable[[], Kept] | None = None
        """What pytest keeps for the test being judged that can hold a traceback (its log records, an xfail test's
        expected failure: ``logheld.py``), where the plugin can read it."""
        self.far_ends: FarEnds | None = None
        """Connections C code holds for a broader fixture's gRPC channel or zmq socket, placed by their far end
        (``far_ends.py``); set by the recorder, which installs its zmq patch."""
        self.tasks_owned = False
        """Some asyncio task carries an owner (``_task_owner``): a fixture of broader scope created it."""
        self.inherited = False
        """Some thread carries an owner passed on at its start (kept on the thread object, not by ident: idents
        of ended threads are reused, and a server starts a short-lived thread per connection)."""
        self.main_thread = threading.main_thread().ident
        """The main thread never carries an inherited owner (no ``Thread.start`` started it), and it is where tests
        run: its events skip the thread object's lookup."""

    def thread_label(self, ident: int) -> str | None:
        """The owner ``thread_owner`` gives the thread ``ident``, if that thread is still the one it was given for
        (an ended thread's ident goes to the next thread started: ``thread_objects``)."""
        owner = self.thread_owner.get(ident)
        if owner is not None and _threads_by_ident is not None:
            given = self.thread_objects.get(ident)
            if given is not None and _threads_by_ident.get(ident) is not given:
                return None  # that thread has ended, and a new one was given its ident
        return owner

    def current(self, tasks: bool = True) -> str | None:
        """The owner of what the calling thread (or asyncio task, unless ``tasks`` is False) does now, or None: the
        test's."""
        ident = _get_ident()
        owner = self.thread_owner.get(ident)  # (``thread_label``, inline: asked at every socket event)
        if owner is not None and _threads_by_ident is not None:
            given = self.thread_objects.get(ident)
            if given is not None and _threads_by_ident.get(ident) is not given:
                owner = None  # that thread has ended, and a new one was given its ident
        if owner is None:
            if self.fixture_stack and ident == self.fixture_thread:
                return self.fixture_stack[-1]
            if self.inherited and ident != self.main_thread:  # a thread started by an owned thread (ThreadStarts)
                thread = _threads_by_ident.get(ident) if _threads_by_ident is not None else _current_thread()
                owner = getattr(thread, _OWNER_ATTR, None)
            if owner is None and tasks and self.tasks_owned:  # a task a fixture created (its server), run later
                owner = _task_owner.get()
        if owner is not None and _request_state.get()[3]:
            # the test's own request to an app through a session fixture's test client, run on a thread the
            # client started (starlette's TestClient: its portal, and the worker threads that runs sync endpoints
            # in): what the app does for it is the test's
            return None
        return owner


_OWNER_ATTR = "_sockhygiene_owner"
FIRST_EVENT_ATTR = "_sockhygiene_first_event"
"""On a thread started while a window logs them: how many events the window had then. Events of the thread's
ident before that index are another thread's: an ident is reused once its thread has ended (paramiko's suite)."""
OWNER_ATTR = _OWNER_ATTR  # (window.py reads it too)


class ThreadStarts:
    """A thread started by an owned thread (a fixture's server spawning a handler per connection) has the same
    owner: ``threading.Thread.start`` is wrapped to pass it on, before the thread runs, as an attribute of the
    thread. Costs an attribute check per thread start.

    The same wrapper logs the threads started while a window is open (``logging``), so that a window in which
    no thread was started needs no look at the running threads at all (the clean path of every test)."""

    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership
        self._fn: Any = None
        self._saved: Any = None
        self.logging = False
        self.events: list[Any] = []
        """The logging window's events (set once it exists): each thread started is marked with their count then."""
        self.log: list[Any] = []
        """Weak references to the threads started since ``begin_log`` (list.append is atomic: any thread may start
        one). Weak: a thread that has finished must be free to go, with what it holds, before the window closes -
        anyio's worker holds its event loop, and a test that checks the loop is gone after ``asyncio.run`` failed
        while a list of ours kept it."""

    def begin_log(self) -> bool:
        """Log the threads started from now on, if every thread start goes through the wrapper: it is the one on
        ``threading.Thread`` (under another wrapper that must call it, not provably: False, and the caller
        compares snapshots instead). The caller then hands over the window's ``events``."""
        if self._fn is None or threading.Thread.start is not self._fn:
            return False
        if self.log:  # left by a window whose check failed half-way
            self.log = []
        self.logging = True
        return True

    def end_log(self) -> list[threading.Thread]:
        """The threads started since ``begin_log`` that still exist; logging stops."""
        self.logging = False
        self.events = []
        log = self.log
        if not log:  # the clean path: no thread started
            return log
        self.log = []
        return [t for t in (ref() for ref in log) if t is not None]

    def install(self) -> None:
        if self._fn is not None:
            return
        own = self._ownership
        cls = threading.Thread
        orig = cls.start
        starts = self
        capture, STARTED_AT = origin_mod.capture, origin_mod.STARTED_AT_ATTR  # noqa: N806
        request_state = origin_mod.request_state

        def start(self: threading.Thread) -> None:
            __tracebackhide__ = True  # (an error of the start is the caller's: pytest shows their line)
            # (a task's owner is not passed on: a thread an owned task starts during a test may be a pool's worker
            # that runs every later test's jobs - the loop's default executor, anyio's to_thread)
            owner = own.current(tasks=False) if own.thread_owner or own.fixture_stack or own.inherited else None
            if owner is None and starts.logging:
                # started inside a request of a broader fixture's client: its pool's thread (urllib3-future's idle
                # connection watcher, started at a pool's first request), the fixture's like the pool
                client = request_state.get()[1]
                owner = client.owner if client is not None else None
            owned = False
            if owner is not None:
                try:
                    setattr(self, _OWNER_ATTR, owner)
                    own.inherited = True
                    owned = True
                except Exception:  # noqa: BLE001 - a Thread subclass with __slots__: not passed on
                    pass
            if starts.logging and not owned:
                # before it runs: a thread that ends at once is still one the window saw start. A thread given an
                # owner (a fixture's server's handler per connection) is never the test's: not logged
                try:
                    starts.log.append(weakref.ref(self))
                except TypeError:  # a Thread subclass with __slots__ and no __weakref__: kept until the window closes
                    starts.log.append(lambda thread=self: thread)
                # (a Thread subclass with __slots__ takes no mark: every event of its ident is counted as its own)
                with contextlib.suppress(Exception):
                    setattr(self, FIRST_EVENT_ATTR, len(starts.events))
                if not is_pool_worker(self):  # (a pool's worker runs later tests' jobs: JobOrigins names those)
                    try:
                        started_at = capture(skip=1)
                        if started_at is not None:
                            setattr(self, STARTED_AT, started_at[:3])
                    except Exception:  # noqa: BLE001 - a Thread subclass with __slots__: no line for its sockets
                        pass
            return orig(self)

        start.__qualname__ = "Thread.start"
        start.__doc__ = orig.__doc__
        self._saved, self._fn = cls.__dict__.get("start", MISSING), start
        cls.start = start  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._fn is not None and threading.Thread.__dict__.get("start") is self._fn:
            threading.Thread.start = self._saved  # type: ignore[method-assign]
        self._fn = None


def peer_endpoint(sock: Any) -> Endpoint | None:
    """The remote address of a connected socket (or socket-like object), None if it has none."""
    try:
        return endpoint_from_sockaddr(sock.getpeername())
    except OSError:
        return None


def local_endpoint(sock: Any) -> Endpoint | None:
    """The local address of a socket (or socket-like object), None if it cannot say."""
    try:
        return endpoint_from_sockaddr(sock.getsockname())
    except OSError:
        return None


_WILDCARDS = frozenset({"0.0.0.0", "::"})


def _ip_literal(address: Any) -> bool:
    """Whether a connect address's host is a numeric IP (no name to resolve): then it is the peer's address."""
    if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str):
        return False
    host = address[0]
    try:
        if ":" in host:
            _socket.inet_pton(_socket.AF_INET6, host.split("%", 1)[0])
        else:
            _socket.inet_pton(_socket.AF_INET, host)
    except (OSError, ValueError):
        return False
    return True


_literal_endpoints: dict[Any, Endpoint | None] = {}
"""Connect address -> its endpoint if its host is an IP literal, else None: a suite connects to a few addresses,
thousands of times each."""


def _literal_endpoint(address: Any) -> Endpoint | None:
    """The peer's endpoint when a connect address's host is a numeric IP (``_ip_literal``), else None. Cached.

    Not a wildcard address: a connect to ``0.0.0.0`` or ``::`` reaches this host (hypercorn's own tests connect
    to ``http://0.0.0.0:1234``), and the connection's peer is ``127.0.0.1`` or ``::1``, which only
    ``getpeername`` tells. Recorded as the wildcard, its TIME_WAIT entry would never be found."""
    try:
        return _literal_endpoints[address]
    except (KeyError, TypeError):  # new, or unhashable (not a sockaddr tuple: then not a literal either)
        pass
    endpoint = endpoint_from_sockaddr(address) if _ip_literal(address) else None
    if endpoint is not None and endpoint[0] in _WILDCARDS:  # (normalised: "0:0::0" is "::")
        endpoint = None
    try:
        if len(_literal_endpoints) >= 1024:  # a client of many hosts: keep the table small
            _literal_endpoints.clear()
        _literal_endpoints[address] = endpoint
    except TypeError:
        pass
    return endpoint


_RAW_FAMILY = _socket.socket.family
_RAW_TYPE = _socket.socket.type


def _is_tcp_inet(sock: socket.socket) -> bool:
    """Read through ``_socket.socket``'s own descriptors: ``socket.socket.family`` and ``.type`` convert the number
    to an enum member in Python on every read, and this runs on every connect, accept and close."""
    try:
        return _RAW_FAMILY.__get__(sock) in _INET and _RAW_TYPE.__get__(sock) == socket.SOCK_STREAM
    except TypeError:  # not a _socket.socket underneath: ask it the slow way
        try:
            return sock.family in _INET and sock.type == socket.SOCK_STREAM
        except OSError:
            return False
    except OSError:
        return False


def _nothing(obj: Any) -> tuple[Any, ...]:
    return ()


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The attributes ``names`` of an object, as a tuple, in one C call (``operator.attrgetter`` returns a bare
    value for a single name)."""
    if not names:
        return _nothing
    if len(names) == 1:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return operator.attrgetter(*names)


class Recorder:
    """Installs the socket wrappers once and fans events out to the open sinks."""

    def __init__(self, identity_of: Callable[[int, Endpoint | None, Endpoint | None], Hashable | None],
                 on_error: Callable[[BaseException], None], early_identity: bool = False) -> None:
        self.sinks: tuple[EventSink, ...] = ()
        self.touched = True
        """A socket call happened since the last scan was taken: a window must look afresh, not reuse it.
        Cleared right before each scan; set by every hooked call, recorded or not."""
        self.touched_fds: set[int] = set()
        """The fd numbers of those calls: a window's first look asks only about them when it can
        (``SocketTable.rescan``). Emptied with ``touched``."""
        self.connecting: dict[int, int] = {}
        """fd -> thread ident of each connect under way in a window, until its event is recorded: a look taken
        meanwhile sees a connected socket with no event yet, and must still know whose thread made it."""
        self.ownership = Ownership()
        self.listeners: dict[Endpoint, Hashable | None] = {}
        self.listener_origins: dict[Hashable, origin_mod.Origin | None] = {}
        """Listener identity -> the line that called listen(): an accepted socket's origin names it."""
        self.described: set[Hashable] = set()  # sockets already searched for listeners (window.discover_listeners)
        self.tuples: dict[Hashable, FourTuple] = {}
        """Identity -> 4-tuple of every connection seen held or connected: when such a socket later vanishes
        without a Python close() (garbage collection, C code), its TIME_WAIT row can still be found."""
        self._known: dict[weakref.ref[Any], tuple[int, Hashable | None, Endpoint | None, Endpoint | None]] = {}
        """A socket connected or accepted in a window -> (fd, identity, local, remote) as that event recorded them;
        a listener -> the same, remote None. Its close (and each accept, for a listener) reuses them instead of
        asking again: three system calls fewer per event. Keyed by a weak reference whose callback drops the entry
        when the socket goes: a ``WeakKeyDictionary`` by hand, without its Python-level method calls on every
        connect, accept and close (a weak reference to a live socket equals any other one to it)."""
        known = self._known

        def forget_known(ref: weakref.ref[Any]) -> None:
            known.pop(ref, None)

        self._forget_known = forget_known
        self._pending: dict[weakref.ref[Any], SocketEvent] = {}
        """A non-blocking connect's event (asyncio, anyio, trio: connect() answered EINPROGRESS), until its socket is
        closed: a connect refused later is then told from one that connected (``_never_connected``), and stops
        counting as a connection. Keyed like ``_known``."""
        pending = self._pending

        def forget_pending(ref: weakref.ref[Any]) -> None:
            pending.pop(ref, None)

        self._forget_pending = forget_pending
        self.left_by_tests: set[Hashable] = set()
        """Sockets new in a test's window and still held when it closed: what that test left behind (reported
        there). Whatever later closes them - the garbage collector, another test - it is not a later test's
        connection, so it never counts towards that test's ``time_wait``. Pruned as they disappear."""
        self._identity_of = identity_of
        self._early_identity = early_identity
        """``identity_of`` needs the fd alone (``SocketTable.identity_from_fd``): the connect hook asks it before
        the real connect(). After it, the peer's thread is runnable (an in-process server's accept() returns), and
        the system call (``fstat``) hands it the GIL that the test's thread then waits to get back."""
        self._on_error = on_error
        self._saved: dict[str, Any] = {}
        self._installed: dict[str, Any] = {}
        self._expected: tuple[Callable[[Any], tuple[Any, ...]], tuple[Any, ...]] = (_nothing, ())
        """``_installed`` as (a getter of those names, the wrappers), kept in step with it: what ``in_place``
        compares in one C call."""
        self._ours: set[Any] = set()
        """Every wrapper this recorder made (other code may save one and write it back later)."""
        self._wrappers: dict[tuple[str, int], tuple[Any, Any]] = {}
        """(method, id of what was wrapped) -> (that object, our wrapper of it): pytest-socket writes the same saved
        method back at every test's teardown, and wrapping it again reuses the wrapper made the first time instead
        of building (and keeping) a new one per test. Bounded: cleared when it grows past a few entries."""
        self._rebound: list[tuple[types.ModuleType, str, Any, Any]] = []
        """Module globals that held an original method and now hold our wrapper of it (``_rebind_saved_copy``)."""
        self._rewritten: dict[str, tuple[Any, Any, str]] = {}
        """method -> (what other code wrote over our wrapper, the wrapper of it we put back, who did it): the one
        replacement ``reinstall`` meets at every test, undone without a new description or wrapper lookup."""
        self._active = threading.local()
        """Per thread: inside a recording wrapper (an inner wrapper of ours then only passes the call on)."""
        self.tasks = TaskOrigins(self)
        self.trio_tasks = TrioTaskOrigins(self)
        self.ownership.far_ends = far_ends = FarEnds(self._on_error)
        self.c_patches = (UvloopServers(self), UvloopConnections(self), *far_ends.patches)
        """Patches for sockets C code makes: uvloop's servers and connections (``c_loops.py``), pyzmq's connects and
        ``grpc.aio``'s channel targets (``far_ends.py``)."""
        self.jobs = tuple(kind(self.recording, self._on_error)
                          for kind in (JobOrigins, ThreadPoolJobOrigins, ToThreadJobOrigins, TrioToThreadJobOrigins))
        self.thread_starts = ThreadStarts(self.ownership)

    # -- sinks -----------------------------------------------------------------------------------------------

    def add_sink(self, sink: EventSink) -> None:
        self.sinks = (*self.sinks, sink)

    def remove_sink(self, sink: EventSink) -> None:
        sinks = self.sinks
        self.sinks = () if len(sinks) == 1 and sinks[0] is sink else tuple(s for s in sinks if s is not sink)

    def recording(self) -> bool:
        """Whether a window is open (a sink listens): what the pool-job wrappers ask before walking a stack."""
        return bool(self.sinks)

    def _emit_listen(self, sock: socket.socket, local: Endpoint | None) -> None:
        """Record a listen for the open sinks, with the user's line that made it. (Connects, accepts and closes
        have paths of their own, ``_on_connect``, ``_on_accept`` and ``_emit_close``: they run at every
        connection, some on a server's threads, and each does only what its kind needs.)"""
        self.touched = True
        fd = sock.fileno()
        self.touched_fds.add(fd)
        identity = self._identity_of(fd, local, None)
        origin = origin_mod.request_origin_now() or origin_mod.capture(skip=3)
        if origin is None:  # no line of the user's on the stack: the library's that made the call
            origin = origin_mod.capture_library(skip=3)
        self._deliver(SocketEvent("listen", identity, fd, local, None, origin, _get_ident(),
                                  self.ownership.current()))

    def _deliver(self, event: SocketEvent) -> None:
        """Hand a connect, accept or listen ``event`` to the open sinks. A connection of the test's own keeps its
        4-tuple in ``tuples``, so that its TIME_WAIT row can be found if it vanishes unclosed (a listen has no
        4-tuple). Only the test's own: a fixture's server accepting a neighbour process's connections must never
        have them looked up as the test's when they vanish (a neighbour reuses its ports, and an older TIME_WAIT
        row of the same 4-tuple would be blamed on the test). A close never comes here (``_emit_close``): it is
        no connection."""
        if event.owner is None and event.identity is not None and event.four_tuple is not None:
            self.tuples[event.identity] = event.four_tuple
        for sink in self.sinks:
            sink.events.append(event)  # (EventSink.add, without a call per event)

    def _emit_close(self, fd: int, identity: Hashable | None, local: Endpoint | None,
                    remote: Endpoint | None) -> None:
        """Record a close: no origin, no listener (what the verdict reads of a close is its socket, addresses and
        owner, and the client whose request was under way: ``SocketEvent.client``). Straight to the sinks:
        ``_deliver``'s 4-tuple rule is for connections."""
        self.touched = True
        self.touched_fds.add(fd)
        client = _request_state.get()[1]
        if client is not None:  # (within a request: a timeout, or a response whose request asked for the close)
            dropped = timed_out() or dropping.get()
        else:  # (``drops.py``: a response closed before its end, by its close, or by its body's iterator left)
            dropped = dropping.get()
            if dropped is None and sys.exc_info()[0] is GeneratorExit:
                dropped = iterator_left()
        event = SocketEvent("close", identity, fd, local, remote, None, _get_ident(), self.ownership.current(),
                            None, None, client, None, None, None, dropped)
        for sink in self.sinks:
            sink.events.append(event)

    # -- the wrappers' bodies: never let a plugin fault reach the user's socket call ---------------------------

    def _identity_before_connect(self, fd: int) -> Hashable | None:
        """A TCP socket's identity, if it can be known before connect() (``_early_identity``); else None, and
        ``_on_connect`` asks after it."""
        if not self._early_identity or fd < 0:
            return None
        try:
            return self._identity_of(fd, None, None)
        except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's connect
            self._on_error(e)
            return None

    def _connecting_again(self, sock: socket.socket, fd: int, result: int) -> bool:
        """Whether a ``connect_ex`` is a repeated call for a non-blocking connect already recorded and still under
        way: the same connection, asked whether it is done (0 once it is, then no longer pending; EALREADY while
        not). Twisted's ``doConnect`` calls ``connect_ex`` twice for every connection: each was recorded as two
        connects, and ten connections one after another read "all open at once" (treq)."""
        ref = weakref.ref(sock)
        event = self._pending.get(ref)
        if event is None or event.fd != fd:
            return False
        if result == 0:
            self._pending.pop(ref, None)
        return True

    def _on_connect(self, sock: socket.socket, fd: int, address: Any, identity: Hashable | None,
                    pending: bool = False, method: str | None = None) -> None:
        """Record a connect of a TCP socket (the wrapper checked the kind) for the open sinks, with the user's line
        that made it and the client whose request made it. ``identity``: the socket's, taken before connect(), or
        None to ask here. ``method``: the socket method called, when the user's line called it itself and it is not
        ``connect`` (the report names ``connect_ex`` as what opened the connections). Called by the wrapper
        (``capture_call``'s ``skip``: this frame and the wrapper's)."""
        try:
            # an address given as an IP literal (create_connection resolves first) is the peer's: no getpeername
            remote = _literal_endpoint(address) or peer_endpoint(sock)
            try:
                local = endpoint_from_sockaddr(sock.getsockname())
            except OSError:
                local = None
            if remote is None:  # a non-blocking connect still under way: the address asked for
                remote = endpoint_from_sockaddr(address)
                if remote is not None and remote[0] in _WILDCARDS and local is not None:
                    # Linux connects a wildcard to this host: to the source address it picks (``::1`` for ``::``)
                    remote = (local[0], remote[1])
            self.touched = True
            self.touched_fds.add(fd)
            client = _request_state.get()[1]
            if client is not None:
                client.connections += 1  # the client opened a real connection (see origin.request_state)
                if client.part_of is not None:  # (its transport's own client: the user's client opened it)
                    client.part_of.connections += 1
            if identity is None:
                identity = self._identity_of(fd, local, remote)
            try:  # noqa: SIM105 - (``_remember``, inline: once per connect)
                self._known[weakref.ref(sock, self._forget_known)] = (fd, identity, local, remote)
            except TypeError:
                pass
            api: str | None = None
            api_self: Any = None
            origin = origin_mod.request_origin_now()
            if origin is None:
                origin, api, api_self = origin_mod.capture_call_on(skip=2)
                if origin is None:  # no line of the user's on the stack: the library's that made the call
                    origin = origin_mod.capture_library(skip=2)
                elif api is None:
                    api = method
            thread = _get_ident()
            ownership = self.ownership
            event = SocketEvent("connect", identity, fd, local, remote, origin, thread, ownership.current(),
                                None, None, client, api,
                                ownership.function_fixture if thread == ownership.fixture_thread else None, api_self)
            if pending:
                try:  # noqa: SIM105 - (once per non-blocking connect)
                    self._pending[weakref.ref(sock, self._forget_pending)] = event
                except TypeError:
                    pass
            self._deliver(event)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def _on_accept(self, listener: socket.socket, conn: socket.socket, address: Any) -> None:
        try:
            seen = self._known.get(weakref.ref(listener))
            if seen is not None and seen[0] == listener.fileno():
                # a listener an earlier accept described (``_listener``): TCP, as is what it accepts
                listener_identity, listening = seen[1], seen[2]
            else:
                if not _is_tcp_inet(conn):
                    return
                listener_identity, listening = self._listener(listener)
            # the peer is what accept() returned; the local side is the listener's, unless it listens on a wildcard
            local = listening if listening is not None and listening[0] not in _WILDCARDS else local_endpoint(conn)
            remote = endpoint_from_sockaddr(address) or peer_endpoint(conn)
            self.touched = True
            fd = conn.fileno()
            self.touched_fds.add(fd)
            identity = self._identity_of(fd, local, remote)
            try:  # noqa: SIM105 - (``_remember``, inline: once per accept)
                self._known[weakref.ref(conn, self._forget_known)] = (fd, identity, local, remote)
            except TypeError:
                pass
            origin = origin_mod.accepted_origin(listening, self.listener_origins.get(listener_identity))
            self._deliver(SocketEvent("accept", identity, fd, local, remote, origin, _get_ident(),
                                      self.ownership.current(), listener_identity, listening))
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def _listener(self, listener: socket.socket) -> tuple[Hashable | None, Endpoint | None]:
        """A TCP listening socket's (identity, local address), asked once per listener: kept in ``_known``, where
        ``_on_accept`` finds it at the next accept."""
        lfd = listener.fileno()
        local = local_endpoint(listener)
        identity = self._identity_of(lfd, local, None)
        self._remember(listener, (lfd, identity, local, None))
        return identity, local

    def _on_listen(self, sock: socket.socket) -> None:
        try:
            if not _is_tcp_inet(sock):
                return
            local = local_endpoint(sock)
            if local is not None:
                identity = self.listeners[local] = self._identity_of(sock.fileno(), local, None)
                if identity is not None:  # listen() is rare: its line is kept for the sockets it will accept
                    self.listener_origins[identity] = (origin_mod.request_origin_now() or origin_mod.capture(skip=2)
                                                       or origin_mod.capture_library(skip=2))
            if self.sinks:
                self._emit_listen(sock, local)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def c_listening(self, sock: Any) -> None:
        """A TCP listener C code made (uvloop's ``create_server``: ``c_loops.py``), recorded as a ``listen()`` would
        be - unless Python's ``listen()`` on that very socket was seen (a socket handed to the server)."""
        try:
            local = local_endpoint(sock)
            if local is not None and local in self.listeners and _is_tcp_inet(sock) \
                    and self.listeners[local] == self._identity_of(sock.fileno(), local, None):
                return
            self._on_listen(sock)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def c_connected(self, sock: Any) -> None:
        """A TCP connection C code made (uvloop's ``create_connection``), recorded as a ``connect()`` would be."""
        if _is_tcp_inet(sock):
            fd = sock.fileno()
            if fd >= 0:
                self._on_connect(sock, fd, None, None)

    def _remember(self, sock: Any, what: tuple[int, Hashable | None, Endpoint | None, Endpoint | None]) -> None:
        try:  # noqa: SIM105 - on every connect and accept: no context manager's cost
            self._known[weakref.ref(sock, self._forget_known)] = what
        except TypeError:  # an object that cannot be weakly referenced: asked again at its close
            pass

    def _on_close(self, sock: socket.socket) -> None:
        try:
            fd = sock.fileno()
            if fd < 0:
                return
            if self._pending:
                event = self._pending.pop(weakref.ref(sock), None)
                if event is not None and _never_connected(sock):
                    # refused, unreachable or given up on: no connection was made, none is counted (as a blocking
                    # connect that raises is never recorded), and its client opened none
                    event.kind = FAILED_CONNECT
                    if event.client is not None:
                        event.client.connections -= 1
                        if event.client.part_of is not None:
                            event.client.part_of.connections -= 1
            known = self._known.pop(weakref.ref(sock), None)
            if known is not None and known[0] == fd:  # what its connect or accept recorded, asked no more
                self._emit_close(fd, known[1], known[2], known[3])
                return
            if not _is_tcp_inet(sock):
                return
            local, remote = local_endpoint(sock), peer_endpoint(sock)
            self._emit_close(fd, self._identity_of(fd, local, remote), local, remote)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    # -- install / uninstall --------------------------------------------------------------------------------

    def _wrapper(self, name: str, orig: Any) -> Any:
        """A wrapper of ``orig`` (whatever ``socket.socket.<name>`` was) that records while a window is open.

        Wrappers may end up nested (ours, wrapped by other code, wrapped by ours again when we re-install): only
        the outermost one that records does, so a call is one event whatever the depth."""
        rec = self
        active = self._active

        if name == "connect":
            def wrapper(self: socket.socket, address: Any) -> Any:
                __tracebackhide__ = True  # (an error of the call is the caller's: pytest shows their line)
                if not rec.sinks:
                    rec.touched = True
                    rec.touched_fds.add(self.fileno())
                    return orig(self, address)
                if getattr(active, "on", False) or not _is_tcp_inet(self):  # Unix sockets, UDP: never recorded
                    return orig(self, address)
                active.on = True
                fd = self.fileno()
                rec.connecting[fd] = _get_ident()
                early = rec._identity_before_connect(fd)
                try:
                    try:
                        orig(self, address)
                    except (BlockingIOError, InterruptedError):
                        # non-blocking connect under way (asyncio, anyio, trio): judged at its close if it failed
                        rec._on_connect(self, fd, address, early, pending=True)
                        raise
                    finally:
                        active.on = False
                    rec._on_connect(self, fd, address, early)
                finally:
                    rec.connecting.pop(fd, None)
        elif name == "connect_ex":
            def wrapper(self: socket.socket, address: Any) -> Any:
                __tracebackhide__ = True
                if not rec.sinks:
                    rec.touched = True
                    rec.touched_fds.add(self.fileno())
                    return orig(self, address)
                if getattr(active, "on", False) or not _is_tcp_inet(self):  # Unix sockets, UDP: never recorded
                    return orig(self, address)
                active.on = True
                fd = self.fileno()
                rec.connecting[fd] = _get_ident()
                early = rec._identity_before_connect(fd)
                try:
                    try:
                        result = orig(self, address)
                    finally:
                        active.on = False
                    if result in _IN_PROGRESS and not (rec._pending and rec._connecting_again(self, fd, result)):
                        rec._on_connect(self, fd, address, early, result != 0, "socket.socket.connect_ex")
                    return result
                finally:
                    rec.connecting.pop(fd, None)
        elif name == "accept":
            def wrapper(self: socket.socket) -> Any:  # type: ignore[misc]
                __tracebackhide__ = True
                if not rec.sinks or getattr(active, "on", False):
                    rec.touched = True
                    accepted = orig(self)
                    rec.touched_fds.add(accepted[0].fileno())
                    return accepted
                active.on = True
                try:
                    conn, addr = orig(self)
                finally:
                    active.on = False
                rec._on_accept(self, conn, addr)
                return conn, addr
        elif name == "listen":
            def wrapper(self: socket.socket, *args: Any) -> Any:  # type: ignore[misc]
                __tracebackhide__ = True
                if getattr(active, "on", False):
                    return orig(self, *args)
                active.on = True
                try:
                    orig(self, *args)
                finally:
                    active.on = False
                if not rec.sinks:
                    rec.touched = True
                    rec.touched_fds.add(self.fileno())
                rec._on_listen(self)
        else:  # _real_close
            def wrapper(self: socket.socket, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                __tracebackhide__ = True
                if not rec.sinks:
                    rec.touched = True
                    rec.touched_fds.add(self.fileno())
                    return orig(self, *args, **kwargs)
                if getattr(active, "on", False):
                    return orig(self, *args, **kwargs)
                rec._on_close(self)
                active.on = True
                try:
                    return orig(self, *args, **kwargs)
                finally:
                    active.on = False

        wrapper.__name__ = name  # (code that names the method it finds there - a guard's own check - reads its name)
        wrapper.__qualname__ = f"socket.{name}"
        wrapper.__doc__ = getattr(orig, "__doc__", None)
        self._ours.add(wrapper)
        return wrapper

    def _wrap(self, name: str) -> None:
        """Put a wrapper of ours on ``socket.socket.<name>``, around whatever is there now."""
        cls = SOCKET_CLASS
        orig = getattr(cls, name)
        key = (name, id(orig))
        known = self._wrappers.get(key)
        if known is not None and known[0] is orig:
            fn = known[1]
        else:
            fn = self._wrapper(name, orig)
            if len(self._wrappers) >= 32:  # a patcher making a new function per test: keep the newest only
                self._wrappers.clear()
            self._wrappers[key] = (orig, fn)
        self._saved[name] = cls.__dict__.get(name, MISSING)
        setattr(cls, name, fn)
        self._set_installed(name, fn)

    def install(self) -> None:
        if self._installed:
            return
        for name in PATCHED:
            self._wrap(name)
        self.tasks.install()
        self.trio_tasks.install()
        for patch in self.c_patches:
            patch.install()
        for jobs in self.jobs:
            jobs.install()
        self.thread_starts.install()

    def _set_installed(self, name: str, fn: Any) -> None:
        """The one way a wrapper is recorded as in place: ``_installed`` and its copy for ``in_place`` together."""
        self._installed[name] = fn
        self._expected = (_getter(tuple(self._installed)), tuple(self._installed.values()))

    def sockets_at(self, fds: Collection[int]) -> list[Any]:
        """The socket objects of a connect or accept seen (``_known``) that still hold one of ``fds``: for the few
        sockets of a violation a closer look asks about (``transports.py``)."""
        out = []
        for ref, seen in list(self._known.items()):  # (a copy: other threads' hooks add to it meanwhile)
            sock = ref()
            if sock is not None and seen[0] in fds:
                try:
                    if sock.fileno() == seen[0]:
                        out.append(sock)
                except Exception:  # noqa: BLE001 - closed since, or an object that cannot say
                    continue
        return out

    def in_place(self) -> bool:
        """Our wrappers are still what ``socket.socket`` has: one dict lookup per method (run at every window
        open and at the phase boundaries of a test, so it must stay this cheap)."""
        get, fns = self._expected
        # attribute lookups, not ``SOCKET_CLASS.__dict__``: a mapping proxy made at each call costs 4x more. A
        # wrapper deleted from the class reads as the C method behind it: not ours either
        return get(SOCKET_CLASS) == fns  # functions compare by identity

    def reinstall(self) -> list[str]:
        """Wrap again whatever other code put in place of our wrappers, and say who did (one text per method
        replaced). The other code's function stays in the chain, so its guard still runs, and since we remember
        it as what we replaced, its own restore (which writes its saved copy back) still works: we wrap that
        copy at the next check. Raises if a wrapper cannot be put back."""
        if not self._installed:
            return []
        get, fns = self._expected
        # the methods whose attribute is not our wrapper, found as ``in_place`` looks (one C call), so that only
        # those are read from the class's namespace: the check before this one already paid for the look
        names = [name for name, now, fn in zip(self._installed, get(SOCKET_CLASS), fns) if now is not fn]
        if len(self._installed) != len(PATCHED):  # an install that stopped half-way: wrap the rest now
            names += [name for name in PATCHED if name not in self._installed]
        d = SOCKET_CLASS.__dict__
        replaced = []
        for name in names:
            current = d.get(name, MISSING)
            installed = self._installed.get(name)
            if current is installed:
                continue
            if current in self._ours or calls_one_of(current, self._ours):
                # a wrapper of ours that other code saved and has now written back, or other code's wrapper
                # around ours (blockbuster's, a decorator's), through which every call still reaches ours: it
                # records as well as a new one would, so adopt it - no connect is missed, nothing to re-wrap
                self._set_installed(name, current)
                continue
            last = self._rewritten.get(name)
            if last is not None and last[0] is current and last[1] is installed:
                # the same object written back over the same wrapper of ours as the last time (pytest-socket
                # restores its saved ``connect`` at every test's teardown): put that wrapper back, and that is all
                self._saved[name] = current
                setattr(SOCKET_CLASS, name, installed)
                replaced.append(last[2])
                continue
            # (describing a replacement walks every module: a collection may run, and a socket it frees warns
            # at the line of an open window's that opened it, not in this package)
            with shown_not_raised(self._place_warning):
                text = f"socket.socket.{name} by {describe_replacement(name, current)}"
            replaced.append(text)
            self._wrap(name)
            self._rewritten[name] = (current, self._installed[name], text)
            if current is C_METHODS.get(name):
                self._rebind_saved_copy(current, self._installed[name])
        return replaced

    def _place_warning(self, message: Any) -> tuple[str, int] | None:
        """Where a ResourceWarning set off by the plugin's own work is shown: the open windows' answer
        (``Window.place_warning``: the line that opened the socket), else where it was raised."""
        for sink in self.sinks:
            place = getattr(sink, "place_warning", None)
            where = place(message) if place is not None else None
            if where is not None:
                return where  # type: ignore[no-any-return]
        return None

    def _rebind_saved_copy(self, original: Any, wrapper: Any) -> None:
        """The original C method was written back over our wrapper from a module global that saved it at import
        (pytest-socket's ``_true_connect``, written back at every test's teardown): that global now holds our
        wrapper of the original, which calls it, so the next write-back puts our hook back itself, and the copy
        the other code calls through (pytest-socket's guard) records as the method does. Undone at uninstall."""
        slot = holder_slot(original)
        if slot is None:
            return
        module, key = slot
        try:
            setattr(module, key, wrapper)
        except Exception:  # noqa: BLE001, S110 - a module that refuses: we wrap again at each write-back instead
            return
        self._rebound.append((module, key, original, wrapper))

    def uninstall(self) -> None:
        cls = SOCKET_CLASS
        for name, fn in self._installed.items():
            if cls.__dict__.get(name) is not fn or fn not in self._ours:
                # someone patched over us, or we adopted their wrapper of ours: leave it (it calls ours, which
                # is now inert)
                continue
            saved = self._saved[name]
            if saved is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, saved)
        for module, key, original, wrapper in self._rebound:
            if getattr(module, key, None) is wrapper:
                setattr(module, key, original)
        self._rebound.clear()
        self._installed.clear()
        self._expected = (_nothing, ())
        self._saved.clear()
        self._rewritten.clear()
        self.tasks.uninstall()
        self.trio_tasks.uninstall()
        for patch in self.c_patches:
            patch.uninstall()
        for jobs in self.jobs:
            jobs.uninstall()
        self.thread_starts.uninstall()
        self.sinks = ()


class TaskOrigins(RecorderPatch):
    """Gives every asyncio task created while a window is open the user's line that created it
    (``origin.task_origin``), and, if a fixture of broader scope created it, that fixture as its owner
    (``_task_owner``: a session fixture's ``asyncio.create_task(server.serve())``, whose listener comes up during
    the first test, is the fixture's), by wrapping ``BaseEventLoop.create_task``: the one place asyncio's
    ``create_task``, ``ensure_future``, ``TaskGroup`` and anyio's task groups create tasks. Installed once asyncio
    is imported; costs one attribute check per task outside windows."""

    MODULE, CLASS, METHOD = "asyncio.base_events", "BaseEventLoop", "create_task"

    def wrapper(self, original: Any) -> Any:
        rec = self._recorder
        task_start = origin_mod.task_start
        var = origin_mod.task_origin
        own = rec.ownership
        copy_context = contextvars.copy_context
        origins = origin_mod.task_origins

        def create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if not rec.sinks or kwargs.get("context") is not None:
                return original(self, coro, *args, **kwargs)
            started = task_start(rec._on_error)
            if started is None:  # (a test runner's own task - anyio's, pytest-asyncio's - has no line of the user's)
                return original(self, coro, *args, **kwargs)
            # the task is created in a copy of the caller's context with the line in it, and copies that: the
            # caller's own context is left as it was. A set and reset in it would leave a new mapping there (two
            # new gc-tracked objects), which a test that diffs gc.get_objects() around a loop's run sees
            # (grpclib's test_memory failed in warn mode)
            ctx = copy_context()
            ctx.run(var.set, started)
            if own.fixture_depths and _get_ident() == own.fixture_thread:
                # created by the code of a fixture of broader scope being set up: the task's sockets are its own
                # (a task in a fixture's thread is that thread's already: owned by the thread)
                frame = origin_mod.user_frame(sys._getframe(1))
                if frame is not None and origin_mod.stack_depth(frame) > own.fixture_depths[-1]:
                    ctx.run(_task_owner.set, own.fixture_stack[-1])
                    own.tasks_owned = True
            task = ctx.run(original, self, coro, *args, **kwargs)
            try:  # noqa: SIM105 - (once per task: no context manager's cost)
                origins[task] = started  # (for a task it starts in a context copied elsewhere: origin.py)
            except TypeError:
                pass
            return task

        return create_task

    def patched(self) -> None:
        events_mod = sys.modules.get("asyncio.events")
        handle = getattr(events_mod, "Handle", None)
        run = getattr(handle, "_run", None)
        if run is not None and hasattr(run, "__code__"):
            origin_mod.set_task_boundary(run.__code__)

    def uninstall(self) -> None:
        super().uninstall()
        origin_mod.set_task_boundary(None)


class TrioTaskOrigins(RecorderPatch):
    """``TaskOrigins`` for trio: every task started while a window is open gets the user's line that started it, by
    wrapping ``Runner.spawn_impl``, the one place trio creates tasks (``nursery.start_soon``, ``start``, the main
    task). ``trio.open_tcp_stream`` races its connection attempts in child tasks of a nursery of its own: their
    stacks hold no line of the user's, and the walk went on past the run loop to the line that called
    ``trio.run`` (or, in a test run by trio's own ``trio_test`` or pytest-trio, to no line at all); now it stops at
    the loop and takes the line that called ``open_tcp_stream`` (found with trio's suite). System tasks, and a task
    given a context of its own, are left alone. Costs one attribute check per task outside windows."""

    MODULE, CLASS, METHOD = "trio._core._run", "Runner", "spawn_impl"

    def wrapper(self, original: Any) -> Any:
        rec = self._recorder
        task_start = origin_mod.task_start
        var = origin_mod.task_origin
        copy_context = contextvars.copy_context

        def spawn_impl(self: Any, async_fn: Any, args: Any, nursery: Any, name: Any, *rest: Any,
                       **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if not rec.sinks or rest or kwargs.get("system_task") or kwargs.get("context") is not None:
                return original(self, async_fn, args, nursery, name, *rest, **kwargs)
            started = task_start(rec._on_error)
            if started is None:
                return original(self, async_fn, args, nursery, name, **kwargs)
            # the task runs in a copy of the caller's context with the line in it, as trio would have copied it
            ctx = copy_context()
            ctx.run(var.set, started)
            kwargs["context"] = ctx
            return original(self, async_fn, args, nursery, name, **kwargs)

        return spawn_impl

    def _patch(self, module: Any) -> None:
        # trio before 0.20 has no ``context`` parameter to hand the task its context through: left unwrapped
        runner = getattr(module, "Runner", None)
        try:
            takes = "context" in inspect.signature(runner.spawn_impl).parameters  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            takes = False
        if takes:
            super()._patch(module)

    def patched(self) -> None:
        code = getattr(getattr(sys.modules.get(self.MODULE), "unrolled_run", None), "__code__", None)
        if code is not None:
            origin_mod.set_trio_task_boundary(code)

    def uninstall(self) -> None:
        super().uninstall()
        origin_mod.set_trio_task_boundary(None)


FAILED_CONNECT = "connect-failed"
"""The kind a non-blocking connect's event takes once its socket is closed without ever having connected."""

_TCP_INFO = getattr(socket, "TCP_INFO", None)


def _never_connected(sock: socket.socket) -> bool:
    """Whether a socket whose non-blocking connect was recorded never completed its handshake. Connected now: no.
    Not connected now is also a connection the peer reset, or one both sides shut down: those completed the
    handshake, which leaves its mark in ``TCP_INFO`` (an RTT sample from the SYN-ACK, the options it agreed);
    a refused or abandoned connect has neither. Where ``TCP_INFO`` cannot be read (not Linux), it counts, as
    before."""
    try:
        sock.getpeername()
        return False
    except OSError:
        pass
    if _TCP_INFO is None:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 72)
    except OSError:
        return False
    if len(info) < 72:
        return False
    options, rtt = info[5], int.from_bytes(info[68:72], sys.byteorder)
    return options == 0 and rtt == 0
