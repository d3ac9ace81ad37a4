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

import dataclasses
import errno
import socket
import sys
import threading
from typing import Any, Callable, Dict, Hashable, List, Optional, Set, Tuple

from . import origin as origin_mod
from .endpoints import Endpoint, FourTuple, endpoint_from_sockaddr

_INET = (socket.AF_INET, socket.AF_INET6)
_IN_PROGRESS = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


@dataclasses.dataclass
class SocketEvent:
    """One thing done to a TCP/IP socket. ``owner`` is None when the test did it, else a fixture's label."""

    kind: str  # "connect" | "accept" | "listen" | "close"
    identity: Optional[Hashable]
    fd: int
    local: Optional[Endpoint]
    remote: Optional[Endpoint]
    origin: Optional[origin_mod.Origin]
    thread: int
    owner: Optional[str]
    listener: Optional[Hashable] = None  # accept: the listening socket's identity
    listener_local: Optional[Endpoint] = None  # accept: the listening socket's address
    client: Any = None
    """connect: the record (``clients.ClientRecord``) of the tracked client whose request opened this connection
    (``origin.request_client``: the outermost tracked client's request under way), None for a connection no
    tracked client's request made (raw sockets, ``http.client``, a client outside tracking). The record is
    hashable by identity and stays the same object for the client's life: group connections by it."""

    @property
    def four_tuple(self) -> Optional[FourTuple]:
        if self.local is None or self.remote is None:
            return None
        return (self.local, self.remote)


class EventSink:
    """Receives events; a window, or a ``measure()`` block of the fixture."""

    __slots__ = ("events",)  # one is made per test: small and quick to fill

    def __init__(self) -> None:
        self.events: List[SocketEvent] = []

    def add(self, event: SocketEvent) -> None:
        self.events.append(event)  # list.append is atomic under the GIL: events come from any thread


class Ownership:
    """Who owns what outside the test: fixtures of broader scope, and the threads they started.

    Sockets created while such a fixture is set up, or later by a thread it started (a server's accept loop),
    belong to the fixture for the rest of the session, never to whichever test happened to trigger them.
    """

    def __init__(self) -> None:
        self.fixture_stack: List[str] = []
        self.fixture_thread: Optional[int] = None
        self.thread_owner: Dict[int, str] = {}
        self.socket_owner: Dict[Hashable, str] = {}

    def current(self) -> Optional[str]:
        ident = threading.get_ident()
        owner = self.thread_owner.get(ident)
        if owner is not None:
            return owner
        if self.fixture_stack and ident == self.fixture_thread:
            return self.fixture_stack[-1]
        return None


def peer_endpoint(sock: Any) -> Optional[Endpoint]:
    """The remote address of a connected socket (or socket-like object), None if it has none."""
    try:
        return endpoint_from_sockaddr(sock.getpeername())
    except OSError:
        return None


def local_endpoint(sock: Any) -> Optional[Endpoint]:
    """The local address of a socket (or socket-like object), None if it cannot say."""
    try:
        return endpoint_from_sockaddr(sock.getsockname())
    except OSError:
        return None


def _is_tcp_inet(sock: socket.socket) -> bool:
    try:
        return sock.family in _INET and sock.type == socket.SOCK_STREAM
    except OSError:
        return False


_PATCHED = ("connect", "connect_ex", "accept", "listen", "_real_close")


class Recorder:
    """Installs the socket wrappers once and fans events out to the open sinks."""

    def __init__(self, identity_of: Callable[[int, Optional[Endpoint], Optional[Endpoint]], Optional[Hashable]],
                 on_error: Callable[[BaseException], None]) -> None:
        self.sinks: Tuple[EventSink, ...] = ()
        self.touched = True
        """A socket call happened since the last scan was taken: a window must look afresh, not reuse it.
        Cleared right before each scan; set by every hooked call, recorded or not."""
        self.ownership = Ownership()
        self.listeners: Dict[Endpoint, Optional[Hashable]] = {}
        self.described: Set[Hashable] = set()  # sockets already searched for listeners (window.discover_listeners)
        self.tuples: Dict[Hashable, FourTuple] = {}
        """Identity -> 4-tuple of every connection seen held or connected: when such a socket later vanishes
        without a Python close() (garbage collection, C code), its TIME_WAIT row can still be found."""
        self._identity_of = identity_of
        self._on_error = on_error
        self._saved: Dict[str, Any] = {}
        self._installed: Dict[str, Any] = {}

    # -- sinks -----------------------------------------------------------------------------------------------

    def add_sink(self, sink: EventSink) -> None:
        self.sinks = self.sinks + (sink,)

    def remove_sink(self, sink: EventSink) -> None:
        sinks = self.sinks
        self.sinks = () if len(sinks) == 1 and sinks[0] is sink else tuple(s for s in sinks if s is not sink)

    def _emit(self, kind: str, sock: socket.socket, local: Optional[Endpoint], remote: Optional[Endpoint],
              with_origin: bool, listener: Optional[socket.socket] = None) -> None:
        self.touched = True
        fd = sock.fileno()
        listener_identity = None
        listener_local = None
        if listener is not None:
            listener_local = local_endpoint(listener)
            listener_identity = self._identity_of(listener.fileno(), listener_local, None)
        client = origin_mod.request_client.get() if kind == "connect" else None
        if client is not None:
            client.connections += 1  # the client opened a real connection (see origin.request_client)
        event = SocketEvent(
            kind=kind,
            identity=self._identity_of(fd, local, remote),
            fd=fd,
            local=local,
            remote=remote,
            origin=(origin_mod.request_origin.get() or origin_mod.capture(skip=3)) if with_origin else None,
            thread=threading.get_ident(),
            owner=self.ownership.current(),
            listener=listener_identity,
            listener_local=listener_local,
            client=client,
        )
        if kind in ("connect", "accept") and event.identity is not None and event.four_tuple is not None:
            self.tuples[event.identity] = event.four_tuple
        for sink in self.sinks:
            sink.add(event)

    # -- the wrappers' bodies: never let a plugin fault reach the user's socket call ---------------------------

    def _on_connect(self, sock: socket.socket, address: Any) -> None:
        try:
            if not _is_tcp_inet(sock):
                return
            remote = peer_endpoint(sock) or endpoint_from_sockaddr(address)
            self._emit("connect", sock, local_endpoint(sock), remote, with_origin=True)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def _on_accept(self, listener: socket.socket, conn: socket.socket) -> None:
        try:
            if not _is_tcp_inet(conn):
                return
            self._emit("accept", conn, local_endpoint(conn), peer_endpoint(conn), with_origin=False, listener=listener)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def _on_listen(self, sock: socket.socket) -> None:
        try:
            if not _is_tcp_inet(sock):
                return
            local = local_endpoint(sock)
            if local is not None:
                self.listeners[local] = self._identity_of(sock.fileno(), local, None)
            if self.sinks:
                self._emit("listen", sock, local, None, with_origin=True)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    def _on_close(self, sock: socket.socket) -> None:
        try:
            if sock.fileno() < 0 or not _is_tcp_inet(sock):
                return
            self._emit("close", sock, local_endpoint(sock), peer_endpoint(sock), with_origin=False)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)

    # -- install / uninstall --------------------------------------------------------------------------------

    def install(self) -> None:
        if self._installed:
            return
        cls = socket.socket
        rec = self
        orig_connect = cls.connect
        orig_connect_ex = cls.connect_ex
        orig_accept = cls.accept
        orig_listen = cls.listen
        orig_real_close = cls._real_close  # type: ignore[attr-defined]

        def connect(self: socket.socket, address: Any) -> None:
            if not rec.sinks:
                rec.touched = True
                return orig_connect(self, address)
            try:
                orig_connect(self, address)
            except (BlockingIOError, InterruptedError):
                rec._on_connect(self, address)  # non-blocking connect under way: asyncio, anyio, trio
                raise
            rec._on_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            result = orig_connect_ex(self, address)
            if not rec.sinks:
                rec.touched = True
            elif result in _IN_PROGRESS:
                rec._on_connect(self, address)
            return result

        def accept(self: socket.socket) -> Tuple[socket.socket, Any]:
            conn, addr = orig_accept(self)
            if rec.sinks:
                rec._on_accept(self, conn)
            else:
                rec.touched = True
            return conn, addr

        def listen(self: socket.socket, *args: Any) -> None:
            orig_listen(self, *args)
            rec.touched = rec.touched or not rec.sinks
            rec._on_listen(self)

        def _real_close(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if rec.sinks:
                rec._on_close(self)
            else:
                rec.touched = True
            return orig_real_close(self, *args, **kwargs)

        for name, fn in (("connect", connect), ("connect_ex", connect_ex), ("accept", accept),
                         ("listen", listen), ("_real_close", _real_close)):
            fn.__qualname__ = f"socket.{name}"
            fn.__doc__ = getattr(cls, name).__doc__
            self._saved[name] = cls.__dict__.get(name, _MISSING)
            setattr(cls, name, fn)
            self._installed[name] = fn

    def uninstall(self) -> None:
        cls = socket.socket
        for name, fn in self._installed.items():
            if cls.__dict__.get(name) is not fn:
                continue  # someone patched over us; leave their wrapper (it calls ours, which is now inert)
            saved = self._saved[name]
            if saved is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, saved)
        self._installed.clear()
        self._saved.clear()
        self.sinks = ()


_MISSING: Any = object()

if sys.version_info < (3, 9):  # pragma: no cover
    raise ImportError("pytest-sockhygiene needs Python 3.9+")
