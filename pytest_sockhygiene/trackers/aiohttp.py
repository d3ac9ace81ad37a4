"""aiohttp: ``aiohttp.ClientSession``.

Created: ``ClientSession.__init__``. Closed: ``close`` and ``__aexit__`` (async); the ``closed`` property also
sees a session whose connector was closed some other way. Requests: ``ClientSession._request`` (what ``get``,
``post``, ``request`` and ``ws_connect`` run; counted when the request starts).
Pool: ``session.connector`` -> ``_conns`` (connection key -> deque, a list in older versions, of
``(protocol, last-used time)``: the idle connections) and ``_acquired`` (protocols in use, or a placeholder while
connecting) -> ``protocol.transport.get_extra_info("socket")`` (an asyncio ``TransportSocket``).
Busy: the protocols in ``_acquired`` (a request, an unreleased response, a websocket).
Keepalive: the connector's ``_keepalive_timeout`` (15 s by default; None with ``force_close``).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

from ..copies import copied
from .base import ClassTracker
from .patching import after_init, counting_requests_async, then_closed_async


def _copy(collection: Any) -> list[Any]:
    """A list of a dict's values or a set's items, tolerating an event loop in another thread changing it."""
    if collection is None:
        return []
    return copied(collection.values if hasattr(collection, "values") else collection.__iter__) or []


def _protocols(connector: Any) -> list[Any]:
    out: list[Any] = []
    for conns in _copy(getattr(connector, "_conns", None)):
        for entry in _copy(conns):
            out.append(entry[0] if isinstance(entry, tuple) else entry)
    out.extend(_copy(getattr(connector, "_acquired", None)))
    return out


def _sockets_of(protocols: list[Any]) -> list[Any]:
    """The sockets of those protocols that still have one."""
    out = []
    for protocol in protocols:
        sock = _socket_of(protocol)
        if sock is not None:
            out.append(sock)
    return out


def _socket_of(protocol: Any) -> Any:
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None  # a placeholder while connecting, or a protocol whose connection was lost
    try:
        return transport.get_extra_info("socket")
    except Exception:  # noqa: BLE001
        return None


def _counting_websockets(registry: Any) -> Callable[[Any], Any]:
    """A wrapper for ``ClientSession._ws_connect`` (``ws_connect``'s coroutine): the session's record counts its
    websockets. The server ends a websocket's connection first, by the protocol: a burst of new sessions per
    websocket is not "a server that keeps nothing alive" (found with python-socketio's clients)."""

    def make(ws_connect: Any) -> Any:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            try:
                record = registry.record_of(self)
                if record is not None:
                    record.websockets += 1
            except Exception as e:  # noqa: BLE001 - a plugin fault is a plugin problem, never the user's
                registry.on_error(e)
            return await ws_connect(self, *args, **kwargs)

        return wrapper

    return make


class AiohttpTracker(ClassTracker):
    """Tracks ``aiohttp.ClientSession``."""

    module = "aiohttp"

    def _patch(self, registry: Any, mod: Any) -> None:
        session_cls = mod.ClientSession
        self._classes = (session_cls,)

        def kind(client: Any) -> str:
            cls = type(client)
            base = "aiohttp.ClientSession"
            return base if cls is session_cls else f"{cls.__module__}.{cls.__qualname__} ({base})"

        p = self._patches
        p.wrap(session_cls, "__init__", after_init(registry, kind, lambda s: self._connector(s) is not None))
        p.wrap(session_cls, "close", then_closed_async(registry))
        p.wrap(session_cls, "__aexit__", then_closed_async(registry))
        p.wrap(session_cls, "_request", counting_requests_async(registry, self.sockets))
        if hasattr(session_cls, "_ws_connect"):
            p.wrap(session_cls, "_ws_connect", _counting_websockets(registry))

    @staticmethod
    def _connector(session: Any) -> Any:
        return getattr(session, "_connector", None)

    def sockets(self, client: Any) -> list[Any]:
        connector = self._connector(client)
        return _sockets_of(_protocols(connector)) if connector is not None else []

    def busy_sockets(self, client: Any) -> list[Any] | None:
        """The sockets of the connector's acquired connections (``_acquired``): a request under way, a response
        not read to the end nor released, an open websocket - not idle keep-alive ones (found with aiohttp's
        client suite: an open ``ws_connect`` read as an idle pooled connection, ``keepalive_timeout=15s``)."""
        connector = self._connector(client)
        return _sockets_of(_copy(getattr(connector, "_acquired", None))) if connector is not None else None

    def is_closed(self, client: Any) -> bool | None:
        return bool(getattr(client, "closed", False))

    def keepalive(self, client: Any) -> float | None:
        timeout = getattr(self._connector(client), "_keepalive_timeout", None)
        if isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
            return float(timeout)
        return None
