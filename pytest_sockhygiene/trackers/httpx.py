"""httpx and httpx2 (the maintained fork the openai and anthropic SDKs use): same API, other import names.

Created: ``Client.__init__`` / ``AsyncClient.__init__`` (subclasses and clients built inside SDK objects
included). Closed: ``close``, ``aclose`` and the context managers (``__exit__`` does not call ``close()``), a
subclass's own ``__exit__`` / ``__aexit__`` included (starlette's ``TestClient``).
Pool: transport -> httpcore(2) pool -> connections -> network stream -> ``get_extra_info("socket")``.
A client whose transports have no connection pool (MockTransport, ASGITransport, WSGITransport, a custom
transport that wraps none of httpx's) cannot leak a socket and is not counted; one that wraps httpx's own
(hishel's ``CacheTransport``, a retrying transport) has the wrapped one's pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import ClassTracker
from .patching import (
    after_init,
    counting_requests,
    counting_requests_async,
    dropping_mid_response,
    dropping_mid_response_async,
    then_closed,
    then_closed_async,
)


def _transports(client: Any) -> Iterator[Any]:
    transport = getattr(client, "_transport", None)
    if transport is not None:
        yield transport
    for t in (getattr(client, "_mounts", None) or {}).values():
        if t is not None:
            yield t


def _pool(transport: Any) -> Any:
    """The transport's httpcore pool (``ConnectionPool``, ``HTTPProxy``, ``SOCKSProxy`` or their async twins), or
    that of a transport it wraps (``_wrapped_pool``); None if none is found.

    ``HTTPTransport._pool`` is the one private name httpx has kept from 0.18 to today."""
    pool = getattr(transport, "_pool", None)
    if pool is not None or transport is None:
        return pool
    return _wrapped_pool(transport, _MAX_WRAPPED)


_MAX_WRAPPED = 3
"""How many transports deep a wrapped pool is looked for: a cache over a retry over httpx's own is two."""


def _wrapped_pool(transport: Any, depth: int) -> Any:
    """The pool of a transport that ``transport`` wraps: one of its attributes that is itself a transport
    (a class with ``handle_request`` or ``handle_async_request``) holding a pool, or is an httpcore pool held
    under a name of its own. Found by what the attributes are, not by their names: hishel's ``CacheClient``
    builds a ``CacheTransport`` around httpx's own (``next_transport``) for every user, with no custom transport
    passed, and its client was not counted, its requests' connections nobody's (found running hishel's suite);
    a retrying or logging transport of a user's own names its inner one as it likes. A mock, ASGI or WSGI
    transport holds no transport (its handler, its app) and stays without a pool. Asked at a client's creation
    when its transport has no ``_pool``, and when its pool is read."""
    try:
        values = list(vars(transport).values())
    except TypeError:  # (no __dict__: slots hold nothing we look for)
        return None
    for value in values:
        cls = type(value)
        if not (hasattr(cls, "handle_request") or hasattr(cls, "handle_async_request")):
            continue
        if hasattr(cls, "connections"):
            return value  # an httpcore pool itself (its ``connections``: every release httpx >= 0.23 can use)
        pool = getattr(value, "_pool", None)
        if pool is None and depth > 1:
            pool = _wrapped_pool(value, depth - 1)
        if pool is not None:
            return pool
    return None


# The pool's own list of connections under the private names httpcore has used: ``_pool`` up to 1.0.2,
# ``_connections`` from 1.0.3 on. Only read where the public ``connections`` property is missing.
_PRIVATE_CONNECTION_LISTS = ("_connections", "_pool")

# How deep connection wrappers nest: ``HTTPConnection`` (or a proxy's ``ForwardHTTPConnection`` /
# ``TunnelHTTPConnection``) -> ``HTTPConnection`` -> ``HTTP11Connection`` / ``HTTP2Connection``.
_MAX_WRAPPERS = 4


def _connections(pool: Any) -> list[Any]:
    """The pool's connections, through httpcore's public ``pool.connections`` where it exists (every httpcore
    and httpcore2 release httpx >= 0.23 can use has it: 0.15 to 1.x), else the private list.

    The tracker is read from the test's thread while the pool may change in another (a request in flight):
    both forms are copied to a list at once, and an error reading them means "no connections we can see"
    rather than a crash inside the check."""
    try:
        conns = getattr(pool, "connections", None)
        if conns is None:
            for name in _PRIVATE_CONNECTION_LISTS:
                conns = getattr(pool, name, None)
                if isinstance(conns, (list, tuple)):
                    break
            else:
                return []
        return list(conns)
    except Exception:  # noqa: BLE001 - a pool in an unexpected state has no sockets we can name
        return []


def _network_stream(conn: Any) -> Any:
    """The connection's network stream: the pool hands out wrappers (``HTTPConnection``, proxies' forwarding and
    tunnelling connections) around the HTTP/1.1 or HTTP/2 connection that holds ``_network_stream``. httpcore has
    no public accessor for it on a connection (only on a response's ``network_stream`` extension)."""
    for _ in range(_MAX_WRAPPERS):
        if conn is None:
            return None
        stream = getattr(conn, "_network_stream", None)
        if stream is not None:
            return stream
        conn = getattr(conn, "_connection", None)
    return None


def _idle(conn: Any) -> bool:
    """Whether a pool's connection is idle (httpcore's public ``is_idle()``, on every connection class); in doubt,
    idle (the diagnosis then stays the idle connection's, as before it was asked)."""
    try:
        return bool(conn.is_idle())
    except Exception:  # noqa: BLE001
        return True


_CORES = {"httpx": "httpcore", "httpx2": "httpcore2"}
"""The connection library each client library is built on (imported by it)."""


class HttpxTracker(ClassTracker):
    """Tracks ``<module>.Client`` and ``<module>.AsyncClient`` for module ``httpx`` or ``httpx2``."""

    def __init__(self, module: str) -> None:
        super().__init__()
        self.module = module
        self._subclasses: set[type] = set()

    def _own_exits(self, registry: Any, cls: type) -> None:
        """A subclass's own ``__exit__`` / ``__aexit__`` ends the client's use as the base's does, also when it
        does not call the base's: starlette's ``TestClient.__exit__`` stops its app's portal and never closes the
        httpx client, so every ``with TestClient(app) as client:`` was an unused client "still open", told to use
        ``with``. Wrapped once per class, on the first client made of it; undone with the rest."""
        if cls in self._subclasses:
            return
        self._subclasses.add(cls)
        for klass in cls.__mro__:
            if klass in self._classes:
                break
            own = vars(klass)
            if "__exit__" in own:
                self._patches.wrap(klass, "__exit__", then_closed(registry))
            if "__aexit__" in own:
                self._patches.wrap(klass, "__aexit__", then_closed_async(registry))

    def _patch(self, registry: Any, mod: Any) -> None:
        self._classes = (mod.Client, mod.AsyncClient)
        p = self._patches
        networked = self._networked
        module = self.module

        def kind(client: Any) -> str:
            cls = type(client)
            base = f"{module}.{'AsyncClient' if isinstance(client, mod.AsyncClient) else 'Client'}"
            if cls in self._classes:
                return base
            self._own_exits(registry, cls)  # (asked once per client made: a subclass's first client wraps it)
            return f"{cls.__module__}.{cls.__qualname__} ({base})"

        for cls in self._classes:
            p.wrap(cls, "__init__", after_init(registry, kind, networked))
        p.wrap(mod.Client, "close", then_closed(registry))
        p.wrap(mod.Client, "__exit__", then_closed(registry))
        p.wrap(mod.Client, "send", counting_requests(registry, self.sockets))
        p.wrap(mod.AsyncClient, "aclose", then_closed_async(registry))
        p.wrap(mod.AsyncClient, "__aexit__", then_closed_async(registry))
        p.wrap(mod.AsyncClient, "send", counting_requests_async(registry, self.sockets))
        core = _CORES.get(module)
        if core is not None:  # (imported by the client library only when its first transport is made)
            registry.when_imported(core, self._patch_core)

    def _patch_core(self, core: Any) -> None:
        """A response closed before its end makes the pool drop its connection: said so at the close
        (``drops.py``)."""
        for name, make in (("HTTP11Connection", dropping_mid_response),
                           ("AsyncHTTP11Connection", dropping_mid_response_async)):
            conn_cls = getattr(core, name, None)
            if conn_cls is not None and callable(getattr(conn_cls, "_response_closed", None)):
                self._patches.wrap(conn_cls, "_response_closed", make)

    @staticmethod
    def _networked(client: Any) -> bool:
        """Whether a transport of the client has a pool. Asked at every client's creation: the usual client's
        own transport answers it, without the generators of ``_transports``."""
        transport = getattr(client, "_transport", None)
        if transport is not None and _pool(transport) is not None:
            return True
        return any(_pool(t) is not None for t in _transports(client))

    def sockets(self, client: Any) -> list[Any]:
        return self._sockets(client, busy_only=False)

    def busy_sockets(self, client: Any) -> list[Any] | None:
        """The sockets of connections that are not idle (httpcore's ``is_idle()``): a request under way, or a
        streamed response never read to the end nor closed, holds them."""
        return self._sockets(client, busy_only=True)

    def _sockets(self, client: Any, busy_only: bool) -> list[Any]:
        out: list[Any] = []
        for transport in _transports(client):
            pool = _pool(transport)
            if pool is None:
                continue
            for conn in _connections(pool):
                if busy_only and _idle(conn):
                    continue
                stream = _network_stream(conn)
                if stream is None:
                    continue
                try:
                    sock = stream.get_extra_info("socket")
                except Exception:  # noqa: BLE001
                    sock = None
                if sock is not None:
                    out.append(sock)
        return out

    def is_closed(self, client: Any) -> bool | None:
        return bool(getattr(client, "is_closed", False))

    def keepalive(self, client: Any) -> float | None:
        for transport in _transports(client):
            expiry = getattr(_pool(transport), "_keepalive_expiry", None)
            if expiry is not None:
                return float(expiry)
        return None
