"""Wrapping methods of a library's classes, and putting them back: the one mechanism every tracker uses, and the
plugin's own wrappers of standard-library methods (``PatchOnImport``)."""

from __future__ import annotations

import functools
import os
import socket
import stat
import sys
from typing import Any, Callable

from .. import origin
from ..drops import ASKED_CLOSE, MID_RESPONSE, UNREAD, dropping, request_asked_close
from ..imports import ImportWatcher

_MISSING: Any = object()


_PROXIED = "__wrapped__ of a proxy"
"""``Patches._done``'s name for a wrapper installed beneath another's proxy."""


def _is_proxy(value: Any) -> bool:
    """A wrapt ``ObjectProxy`` (``FunctionWrapper``: OpenTelemetry's, ddtrace's), told by its class's name so that
    wrapt need not be imported: what ``wrapt.unwrap`` recognises and undoes."""
    try:
        return any(k.__name__ in ("ObjectProxy", "BaseObjectProxy") for k in type(value).__mro__) \
            and hasattr(value, "__wrapped__")
    except Exception:  # noqa: BLE001 - an object that cannot say: not one
        return False


class Patches:
    """Method wrappers installed on classes, removable in reverse order (leaving alone any patched over us)."""

    def __init__(self) -> None:
        self._done: list[tuple[type, str, Any, Any]] = []

    def wrap(self, cls: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``cls.name`` (a class's method, or a module's function) with ``make(current)``.

        Where ``cls.name`` is a wrapt proxy other code installed (OpenTelemetry's instrumentations, set up as an app
        or a conftest is imported, before the plugin's trackers patch), the wrapper goes beneath it, as the
        proxy's ``__wrapped__``: that code's ``unwrap`` puts back what its proxy wraps, and replaced from outside
        its proxy was no proxy any more - its ``uninstrument()`` did nothing, and spans went on."""
        original = cls.__dict__.get(name, _MISSING)
        if original is not _MISSING and _is_proxy(original):
            inner = original.__wrapped__
            beneath = make(inner)
            functools.update_wrapper(beneath, inner)
            original.__wrapped__ = beneath
            self._done.append((cls, name, inner, beneath))  # (once that code unwrapped it: ours, put back as inner)
            self._done.append((original, _PROXIED, inner, beneath))
            return
        current = getattr(cls, name)
        wrapper = make(current)
        if isinstance(current, (staticmethod, classmethod)):  # pragma: no cover - not used for methods we wrap
            raise TypeError(name)
        functools.update_wrapper(wrapper, current)
        inner = getattr(current, "__wrapped__", None)
        if inner is not None:
            # the wrapper stands in for a decorated function: one level of ``__wrapped__`` still reaches what its
            # decorator wraps, as without the plugin (aiobotocore's suite hashes the source of botocore's
            # ``BaseClient._make_api_call.__wrapped__``, and failed when it was botocore's decorator instead)
            wrapper.__wrapped__ = inner
        setattr(cls, name, wrapper)
        self._done.append((cls, name, original, wrapper))

    def __bool__(self) -> bool:
        """Whether any wrapper is installed."""
        return bool(self._done)

    def undo(self) -> None:
        while self._done:
            cls, name, original, wrapper = self._done.pop()
            if name is _PROXIED:  # beneath another's proxy: its ``__wrapped__`` back, if it is still ours
                if getattr(cls, "__wrapped__", None) is wrapper:
                    cls.__wrapped__ = original  # type: ignore[attr-defined]
                continue
            if cls.__dict__.get(name) is not wrapper:
                continue
            if original is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)


class PatchOnImport:
    """One method of one class (or one function of a module) wrapped as soon as its module is imported (at once, if
    it already is), and put back at ``uninstall`` with the watch for the import: how the socket recorder wraps
    asyncio's ``create_task``, ``ThreadPoolExecutor.submit`` and the ``to_thread.run_sync`` of anyio and trio. A
    subclass names the method (``MODULE``, ``CLASS``, ``METHOD``; ``CLASS`` empty for a module's function) and
    makes the wrapper from the one it wraps (``wrapper``). ``METHODS`` names several methods of the class that take
    the same wrapper (the ways into ``multiprocessing.pool.Pool``)."""

    MODULE = ""
    CLASS = ""
    METHOD = ""
    METHODS: tuple[str, ...] = ()

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        self._patches = Patches()
        self._watcher: ImportWatcher | None = None

    def install(self) -> None:
        if self._watcher is None:
            self._watcher = ImportWatcher(self._on_error)
            self._watcher.when_imported(self.MODULE, self._patch)

    def _patch(self, module: Any) -> None:
        if self._watcher is not None and not self._patches:  # (not after an uninstall, nor twice)
            owner = getattr(module, self.CLASS) if self.CLASS else module
            for name in self.METHODS or (self.METHOD,):
                self._patches.wrap(owner, name, self.wrapper)
            self.patched()

    def wrapper(self, original: Any) -> Any:
        raise NotImplementedError

    def patched(self) -> None:
        """Called once the wrapper is in place."""

    def uninstall(self) -> None:
        if self._watcher is not None:
            self._watcher.close()  # (a watch still waiting for the import leaves sys.meta_path with it)
            self._watcher = None
        self._patches.undo()


class RecorderPatch(PatchOnImport):
    """A ``PatchOnImport`` whose wrapper reports to the socket recorder (``events.Recorder``): asyncio's
    ``create_task`` (task origins and owners), uvloop's ``create_server`` and ``create_connection``."""

    def __init__(self, recorder: Any) -> None:
        super().__init__(recorder._on_error)
        self._recorder = recorder


def after_init(registry: Any, kind_of: Callable[[Any], str], networked: Callable[[Any], bool],
               only_if: Callable[[Any], bool] | None = None) -> Callable[[Any], Any]:
    """A wrapper for ``__init__`` that records the client once it is fully built; clients built inside it
    (a library's own nested clients) are the outer client's. ``only_if(client)`` false: not recorded (a client
    class whose instances this tracker cannot read, such as another library's subclass)."""

    def make(init: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - it stands in for __init__
            __tracebackhide__ = True  # (pytest shows the caller's line, not the wrapper)
            with registry.constructing():
                init(self, *args, **kwargs)
                try:
                    if only_if is not None and not only_if(self):
                        return
                    net = networked(self)
                except Exception:  # noqa: BLE001 - an unusual client is judged as a networked one
                    net = True
                try:
                    registry.created(self, kind=kind_of(self), networked=net)
                except Exception as e:  # noqa: BLE001 - a plugin fault is a plugin problem, never the user's
                    registry.on_error(e)

        return __init__

    return make


def building_parts(registry: Any) -> Callable[[Any], Any]:
    """A wrapper for a method that builds a client's parts (a requests ``HTTPAdapter``'s PoolManager, a botocore
    session's): the clients built inside it are not recorded on their own."""

    def make(method: Any) -> Any:
        def building(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with registry.constructing():
                return method(self, *args, **kwargs)

        return building

    return make


def then_closed(registry: Any) -> Callable[[Any], Any]:
    def make(method: Any) -> Any:
        def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # (pytest shows the caller's line, not the wrapper)
            try:
                return method(self, *args, **kwargs)
            finally:
                registry.closed(self)

        return closing

    return make


def then_closed_async(registry: Any) -> Callable[[Any], Any]:
    def make(method: Any) -> Any:
        async def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # (pytest shows the caller's line, not the wrapper)
            try:
                return await method(self, *args, **kwargs)
            finally:
                registry.closed(self)

        return closing

    return make


def _closing_unread(original: Any, self: Any, args: Any, kwargs: Any, why: str = UNREAD) -> Any:
    """``original(self, ...)``, a response's close, run with ``drops.dropping`` set: the connection it closes is
    dropped as its response was closed before its end (or, ``why``, as its request asked)."""
    __tracebackhide__ = True
    token = dropping.set(why)
    try:
        return original(self, *args, **kwargs)
    finally:
        origin.reset_quietly(dropping, token)


def dropping_when(unread: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """A wrapper of a method that closes a response (httpcore's ``HTTP11Connection._response_closed``, urllib3's
    ``HTTPResponse.close``), run with ``drops.dropping`` set where ``unread(self)`` says the response is closed
    before its end: the pool closes the connection then, and the close's event says why (``SocketEvent.dropped``).
    A response read to its end (the usual, at every request) pays one state read."""

    def make(original: Any) -> Any:
        def close_response(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if not unread(self):
                return original(self, *args, **kwargs)
            return _closing_unread(original, self, args, kwargs)

        return close_response

    return make


def dropping_mid_response(original: Any) -> Any:
    """``dropping_when`` for httpcore's ``HTTP11Connection._response_closed``, with its check inline (is the
    server's side of h11 still mid-response: ``drops.MID_RESPONSE``): it runs at every request of every httpx
    client (a response read to its end is closed too), where a predicate's call cost more than the rest of it."""

    def _response_closed(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            h11 = self._h11_state
            kept = h11._cstate.keep_alive
            mid = h11.their_state.__name__ in MID_RESPONSE
        except AttributeError:  # (another protocol, or another version of httpcore: not known to be unread)
            return original(self, *args, **kwargs)
        if kept:
            if not mid:  # (the usual: read to its end, the connection goes back to the pool)
                return original(self, *args, **kwargs)
            return _closing_unread(original, self, args, kwargs)
        # no keep-alive - HTTP/1.0, ``Connection: close``, a body the server's close delimits: the connection could
        # not have been kept, read to the end or not: the server's doing, unless the request asked for it
        if request_asked_close(sys._getframe(1)):
            return _closing_unread(original, self, args, kwargs, ASKED_CLOSE)
        return original(self, *args, **kwargs)

    return _response_closed


def dropping_mid_response_async(original: Any) -> Any:
    """``dropping_mid_response`` for ``AsyncHTTP11Connection._response_closed``: the event loop closes the socket in a
    callback, which runs in a copy of the context that scheduled it, ``dropping`` set."""

    async def _response_closed(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            h11 = self._h11_state
            kept = h11._cstate.keep_alive
            mid = h11.their_state.__name__ in MID_RESPONSE
        except AttributeError:
            return await original(self, *args, **kwargs)
        if kept and not mid:
            return await original(self, *args, **kwargs)
        why = UNREAD if kept else ASKED_CLOSE if request_asked_close(sys._getframe(1)) else None
        if why is None:
            return await original(self, *args, **kwargs)
        token = dropping.set(why)
        try:
            return await original(self, *args, **kwargs)
        finally:
            origin.reset_quietly(dropping, token)

    return _response_closed


def _enter_request(registry: Any, client: Any, sync: bool = False) -> tuple[Any, Any, Any]:
    """Count a request, and set ``origin.request_state`` for it: the user's line unless an outer tracked request set
    it (the outermost wins: the user's line) or this client has no pool, and this client's record as the client
    whose request it is (the innermost recorded client wins: the connection is opened in *its* pool). Returns the
    token to reset (None: nothing set) and the client's record.

    Innermost, because a client's request can run another client's: a user's PoolManager used by a custom
    adapter mounted in a ``requests.Session``, an app under test reached through ``ASGITransport`` that calls
    out with its own client. The pool that holds the connection is the inner client's. A client not recorded
    (the urllib3 PoolManager built inside a Session's adapter) leaves the outer one in place. A client whose
    transport has no pool (mock, ASGI, WSGI: ``networked`` False) sets None: what its handler connects (an app's
    Redis connection) is not through a pool of its own.

    The third value is the record whose request is now in flight, for ``_leave_request`` to end
    (``ClientRecord.in_flight``): None for a request sent from within one of the same client's (a redirect hop
    requests and urllib3 send through the method wrapped), which is the same request, not a concurrent one."""
    record = registry.request(client)
    line, pooled, requesting, app = origin.request_state.get()
    flying = None
    if record is not None and requesting is not record:
        # one more of its own in flight, and the most so far kept (``ClientRecord.in_flight``; inline: every request)
        in_flight = record.in_flight
        in_flight.append(None)
        if len(in_flight) > record.most_in_flight:
            record.most_in_flight = len(in_flight)
        flying = record
    # a client with no pool (ASGI, WSGI: the app runs inside its request) sets no line: the app's own connects are
    # named by the app's line that made them, and a client the app uses sets its own
    if line is None and (record is None or record.networked):
        # sync: the sender's frame, walked only if a connect needs its line (origin.request_origin_now)
        # (async, failing a user's line: the library's that sent it, ``origin.sender_of``)
        line = sys._getframe(2) if sync else (origin.capture(skip=2) or origin.sender_of(sys._getframe(2)))
    elif record is None:
        return None, None, None  # an outer request's line stands, and this client is not recorded: nothing to set
    if record is not None:
        pooled = record if record.networked else None
        requesting = record
        if not record.networked and not app and registry.owner_now() is None:
            # the test's request to an app (no pool: the app runs inside it), whoever entered the client
            app = True
    return origin.request_state.set((line, pooled, requesting, app)), record, flying


def holds_connection(sock: Any) -> bool:
    """Whether an object a client's pool holds as its connection's socket is one: a socket module's socket (or one
    wrapped, asyncio's TransportSocket: ``_sock``), or an object whose fd is a socket (uvloop's PseudoSocket, a C
    library's). A mock library's stand-in is not (vcrpy's ``VCRFakeSocket`` answers ``fileno()`` with 0, stdin,
    while it replays a cassette): its client never opened a connection. Standard streams never hold a pool's
    connection, so fds 0-2 are refused without a system call."""
    if isinstance(getattr(sock, "_sock", sock), socket.socket):
        return True
    try:
        fd = sock.fileno()
        return isinstance(fd, int) and fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode)
    except Exception:  # noqa: BLE001 - anything that cannot say what it is holds no connection we can see
        return False


def _leave_request(registry: Any, tokens: tuple[Any, Any, Any], client: Any,
                   sockets: Callable[[Any], list[Any]] | None) -> None:
    """Reset the request's state; and, for a client not yet known to have opened a connection, look into its pool once
    the request is done: a connect the socket recorder could not see (made by C code such as uvloop, or while
    another library had replaced ``socket.socket.connect``) still leaves its socket there.

    The tracker's own ``sockets`` is asked, not the ``pytest_sockhygiene_client_sockets`` hook, if it gives one: a
    hook call's arguments may be kept by whoever records hook calls (pytester does, for a whole in-process run),
    and a client kept alive by the plugin would never be seen garbage-collected."""
    token, mine, flying = tokens
    if flying is not None:
        flying.in_flight.pop()  # (the entry its own start added: never on an empty list)
    if token is None:
        return
    # (the client the context names now, normally this one's record: None for a client with no pool)
    record = origin.request_state.get()[1] if mine is not None else None
    if record is not None and not record.used:
        if sockets is None:
            registry.used(record)
        else:
            try:
                found = [s for s in sockets(client) if holds_connection(s)]
                if found:
                    record.mark_pooled()
                    if any(not isinstance(getattr(s, "_sock", s), socket.socket) for s in found):
                        # not a socket module's socket (asyncio's TransportSocket wraps one: ``_sock``): C code
                        # made it and connected it - uvloop's PseudoSocket, a C library's - and no hook saw it
                        registry.unseen_connects += 1
            except Exception:  # noqa: BLE001 - a pool that cannot be read must not break the user's request
                pass
    origin.reset_quietly(origin.request_state, token)


def counting_requests(registry: Any, sockets: Callable[[Any], list[Any]] | None = None) -> Callable[[Any], Any]:
    """Count a client's requests, and remember the user's line that sent them and the client whose request it is
    (``origin.request_state``): the connects made meanwhile are that client's.
    ``sockets(client)``, the tracker's own reading of a client's pool, is asked after a request until the client
    is known to have opened a connection (without it, the ``pytest_sockhygiene_client_sockets`` hook is)."""

    def make(method: Any) -> Any:
        def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # (pytest shows the caller's line, not the wrapper)
            tokens = _enter_request(registry, self, sync=True)
            try:
                return method(self, *args, **kwargs)
            finally:
                _leave_request(registry, tokens, self, sockets)

        return send

    return make


def counting_requests_async(registry: Any,
                            sockets: Callable[[Any], list[Any]] | None = None) -> Callable[[Any], Any]:
    def make(method: Any) -> Any:
        async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            tokens = _enter_request(registry, self)
            try:
                return await method(self, *args, **kwargs)
            finally:
                _leave_request(registry, tokens, self, sockets)

        return send

    return make
