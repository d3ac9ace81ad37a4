"""urllib3 (1.26 and 2.x): ``PoolManager`` and its subclasses (``ProxyManager``, ``SOCKSProxyManager``).

Created: ``PoolManager.__init__`` and ``ProxyManager.__init__``. Closed: ``clear()`` (``__exit__`` calls it).
Requests: ``PoolManager.urlopen`` (``ProxyManager.urlopen`` calls it; a redirect hop counts as a request), and
``HTTPConnectionPool.urlopen`` of a pool the manager handed out, called directly (botocore asks its manager for
``connection_from_url`` and sends through the pool): counted on that manager.
Pool: ``pools`` (a ``RecentlyUsedContainer``, read under its lock without touching its LRU order) -> each
``HTTPConnectionPool``'s idle queue ``pool.pool.queue`` -> ``conn.sock``. A connection checked out by a response
still being read is not in the queue and is not listed.

urllib3-future (niquests' urllib3, which installs itself under the name ``urllib3``, over a real urllib3 too)
keeps both the manager's pools and a pool's connections in a ``TrafficPolice`` instead: its ``_registry`` (every
pool it administers) and ``_container`` (the connections available), under its ``_lock``. Read as a queue, every
pool was empty, and every idle connection "held by a response not yet read" - a real ``requests.Session``'s
too, once niquests was installed beside it.

A request whose own headers carry ``Connection: close`` marks its connection (``HTTPConnectionPool._make_request``),
and the close that follows says so wherever urllib3 makes it (``marking_asked_close``): requests' too, since a
``requests.Session`` sends through urllib3's pools.

A PoolManager built inside another tracked client's constructor (the one in every ``requests.Session``'s
``HTTPAdapter``) is that client's and is not recorded on its own.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import weakref
from typing import Any, Callable

from .. import origin
from ..copies import copied
from ..drops import ASKED_CLOSE, body_unread, dropping, headers_ask_close
from .base import ClassTracker
from .patching import _enter_request, _leave_request, after_init, counting_requests, dropping_when, then_closed

_LOCK_TIMEOUT = 1.0


def _copy_values(container: Any) -> list[Any]:
    """``list(container.values())``, tolerating a mapping another thread is changing."""
    return copied(container.values) or []


def _locked_values(container: Any, lock: Any) -> list[Any]:
    """The values of a mapping (or the items of a deque) read under ``lock`` where it can be had in time."""
    values = container.values if hasattr(container, "values") else None
    if lock is not None and lock.acquire(timeout=_LOCK_TIMEOUT):
        try:
            return list(values() if values is not None else container)
        finally:
            lock.release()
    return _copy_values(container) if values is not None else list(container)


def manager_pools(manager: Any) -> list[Any]:
    """The connection pools a PoolManager holds now. Never calls ``pools[key]``: that would reorder the LRU."""
    pools = getattr(manager, "pools", None)
    if pools is None:
        return []
    registry = getattr(pools, "_registry", None)  # urllib3-future's TrafficPolice: every pool, checked out or not
    if isinstance(registry, dict):
        return _locked_values(registry, getattr(pools, "_lock", None))
    container = getattr(pools, "_container", None)
    if container is None:
        return _copy_values(pools) if hasattr(pools, "values") else []
    return _locked_values(container, getattr(pools, "lock", None))


def pool_sockets(pool: Any) -> list[Any]:
    """Sockets of a connection pool's idle (pooled) connections; none when the pool is closed."""
    q = getattr(pool, "pool", None)  # HTTPConnectionPool.pool: a LifoQueue, None once the pool is closed
    items = getattr(q, "queue", None)
    if items is not None:
        conns = _locked_values(items, getattr(q, "mutex", None))
    else:
        available = getattr(q, "_container", None)  # urllib3-future's TrafficPolice: the connections available
        if not isinstance(available, dict):
            return []
        conns = _locked_values(available, getattr(q, "_lock", None))
    out = []
    for conn in conns:
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            out.append(sock)
    return out


def manager_sockets(manager: Any) -> list[Any]:
    out: list[Any] = []
    for pool in manager_pools(manager):
        out.extend(pool_sockets(pool))
    return out


_MANAGER_ATTR = "_sockhygiene_manager"
"""On a connection pool a recorded PoolManager made: a weak reference to that manager."""


def tagging_new_pools(registry: Any) -> Callable[[Any], Any]:
    """``PoolManager._new_pool``: mark each pool a recorded manager makes with its manager (weakly), so that a
    request sent through the pool itself is the manager's (``pool_requests``). Once per pool, not per request."""

    def make(method: Any) -> Any:
        def _new_pool(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            pool = method(self, *args, **kwargs)
            try:
                if registry.record_of(self) is not None:
                    setattr(pool, _MANAGER_ATTR, weakref.ref(self))
            except Exception:  # noqa: BLE001, S110 - an unmarked pool is what it was before: uncounted
                pass
            return pool

        return _new_pool

    return make


def pool_requests(registry: Any, sockets: Callable[[Any], list[Any]]) -> Callable[[Any], Any]:
    """``HTTPConnectionPool.urlopen``: a request sent through a pool its recorded manager handed out, without the
    manager's ``urlopen`` (botocore: ``connection_from_url``, then the pool's ``urlopen``), is counted on that
    manager and its connects are the manager's - it used the network, and a dropped one is a leak, not an unused
    client. Inside the manager's own ``urlopen`` (which calls this one), or for a pool no recorded manager made
    (a requests.Session's adapter's: the Session's own request is under way), nothing is added."""

    def make(method: Any) -> Any:
        def urlopen(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            ref = getattr(self, _MANAGER_ATTR, None)
            manager = ref() if ref is not None else None
            if manager is None:
                return method(self, *args, **kwargs)
            record = registry.record_of(manager)
            if record is None or origin.request_state.get()[2] is record:
                return method(self, *args, **kwargs)
            tokens = _enter_request(registry, manager, sync=True)
            try:
                return method(self, *args, **kwargs)
            finally:
                _leave_request(registry, tokens, manager, sockets)

        return urlopen

    return make


_ASKED_ATTR = "_sockhygiene_asked_close"
"""On a urllib3 connection: whether the last request sent on it carried ``Connection: close``."""


def _as_asked(close: Any) -> Any:
    """``close`` (a method that closes a connection's socket), run with ``drops.dropping`` set to ``ASKED_CLOSE``."""

    def closing(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        token = dropping.set(ASKED_CLOSE)
        try:
            return close(*args, **kwargs)
        finally:
            origin.reset_quietly(dropping, token)

    return closing


def marking_asked_close(method: Any) -> Any:
    """``HTTPConnectionPool._make_request``: a request whose own headers ask for ``Connection: close`` (a
    ``requests.Session``'s ``headers``, a PoolManager's ``headers=``) marks its connection, so that the close that
    follows says so (``SocketEvent.dropped``) and the advice is the header's, not the server's keep-alive. urllib3
    closes such a connection at any of three places, all covered: within this call (a preloaded body the server's
    close delimits), as a streamed body is read to the close the response announced (http.client's
    ``_close_conn``, which a requests ``Session`` reads within its request), or - a server that closed without
    saying so in its response - at the next request, which finds it dropped, or with the pool
    (``HTTPConnection.close``, ``closing_if_asked``). One look at the request's few headers per request."""

    def _make_request(self: Any, conn: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # (an error of the request is the caller's: pytest shows their line)
        headers = kwargs.get("headers", args[3] if len(args) > 3 else None)
        asked = bool(headers) and headers_ask_close(headers)
        try:
            setattr(conn, _ASKED_ATTR, asked)
        except Exception:  # noqa: BLE001 - a connection that takes no mark is judged as before: the server's reading
            asked = False
        if not asked:
            return method(self, conn, *args, **kwargs)
        response = _as_asked(method)(self, conn, *args, **kwargs)
        # urllib3 2 returns its own response over http.client's; 1.26 returns http.client's itself
        raw = getattr(response, "_original_response", None) or response
        if raw is not None and getattr(raw, "fp", None) is not None and getattr(raw, "will_close", False):
            _closing_body_as_asked(raw)
        return response

    return _make_request


def _closing_body_as_asked(raw: Any) -> None:
    """http.client's response ``raw``, whose body ends where its connection closes, says so as it closes its
    socket: its own ``_close_conn`` (what http.client calls as the body ends, or as it is closed) made an instance
    attribute that runs the class's as asked. The response is held weakly: a bound method kept on it would be a
    reference cycle, and a response dropped unread would keep its socket open until a garbage collection."""
    close_conn = getattr(type(raw), "_close_conn", None)
    if close_conn is None:
        return
    with contextlib.suppress(Exception):  # (a response that takes neither: its close reads as the server's)
        ref = weakref.ref(raw)

        def _close_conn() -> Any:
            __tracebackhide__ = True
            response = ref()
            return None if response is None else _as_asked(close_conn)(response)

        raw._close_conn = _close_conn


def closing_if_asked(method: Any) -> Any:
    """urllib3's ``HTTPConnection.close``: a connection whose last request asked for ``Connection: close``
    (``marking_asked_close``) is closed as its request asked."""

    def close(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        if not getattr(self, _ASKED_ATTR, False):
            return method(self, *args, **kwargs)
        return _as_asked(method)(self, *args, **kwargs)

    return close


class Urllib3Tracker(ClassTracker):
    """Tracks ``urllib3.PoolManager`` and its subclasses."""

    module = "urllib3"

    def _patch(self, registry: Any, mod: Any) -> None:
        poolmanager = importlib.import_module(f"{self.module}.poolmanager")
        pool_manager, proxy_manager = poolmanager.PoolManager, poolmanager.ProxyManager
        self._classes = (pool_manager,)
        known = (pool_manager, proxy_manager)

        def kind(client: Any) -> str:
            cls = type(client)
            base = f"urllib3.{'ProxyManager' if isinstance(client, proxy_manager) else 'PoolManager'}"
            return base if cls in known else f"{cls.__module__}.{cls.__qualname__} ({base})"

        p = self._patches
        # ProxyManager.__init__ calls PoolManager.__init__: the inner one is nested and not recorded twice
        p.wrap(pool_manager, "__init__", after_init(registry, kind, lambda c: True))
        p.wrap(proxy_manager, "__init__", after_init(registry, kind, lambda c: True))
        p.wrap(pool_manager, "clear", then_closed(registry))  # __exit__ calls clear()
        p.wrap(pool_manager, "urlopen", counting_requests(registry, self.sockets))  # ProxyManager.urlopen calls it
        if hasattr(pool_manager, "_new_pool"):  # (urllib3 1.26 and 2.x)
            connectionpool = importlib.import_module(f"{self.module}.connectionpool")
            p.wrap(pool_manager, "_new_pool", tagging_new_pools(registry))
            p.wrap(connectionpool.HTTPConnectionPool, "urlopen", pool_requests(registry, self.sockets))
            if callable(getattr(connectionpool.HTTPConnectionPool, "_make_request", None)):
                # a request's own ``Connection: close`` (requests' and urllib3's): said so at the close (``drops.py``)
                p.wrap(connectionpool.HTTPConnectionPool, "_make_request", marking_asked_close)
                p.wrap(importlib.import_module(f"{self.module}.connection").HTTPConnection, "close",
                       closing_if_asked)
        response = getattr(importlib.import_module(f"{self.module}.response"), "HTTPResponse", None)
        if response is not None and callable(getattr(response, "close", None)):
            # a response closed before its end takes its connection with it (requests' ``Response.close()`` of a
            # stream left early): said so at the close (``drops.py``)
            p.wrap(response, "close", dropping_when(body_unread))
        default_pool = getattr(mod, "_DEFAULT_POOL", None)
        if isinstance(default_pool, pool_manager):
            # urllib3.request() uses a module-level PoolManager created at import, before these patches: a
            # process-wide shared client, whose pooled connections are never a test's leak
            registry.adopt(default_pool, kind="urllib3.PoolManager", owner="urllib3's module-level default pool")

    def sockets(self, client: Any) -> list[Any]:
        return manager_sockets(client)

    def is_closed(self, client: Any) -> bool | None:
        return False  # a PoolManager has no closed state: only a clear() call (recorded) closes it

    def keepalive(self, client: Any) -> float | None:
        return None  # urllib3 keeps idle connections until they are reused or the pool is closed
