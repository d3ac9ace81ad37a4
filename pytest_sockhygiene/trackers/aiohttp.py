"""aiohttp: ``aiohttp.ClientSession``.

Created: ``ClientSession.__init__``. Closed: ``close`` and ``__aexit__`` (async); the ``closed`` property also
sees a session whose connector was closed some other way. Requests: ``ClientSession._request`` (what ``get``,
``post``, ``request`` and ``ws_connect`` run; counted when the request starts).
Pool: ``session.connector`` -> ``_conns`` (connection key -> deque, a list in older versions, of
``(protocol, last-used time)``: the idle connections) and ``_acquired`` (protocols in use, or a placeholder while
connecting) -> ``protocol.transport.get_extra_info("socket")`` (an asyncio ``TransportSocket``).
Keepalive: the connector's ``_keepalive_timeout`` (15 s by default; None with ``force_close``).
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable, List, Optional

import pytest

from .patching import Patches, after_init, counting_requests_async, then_closed_async


def _copy(collection: Any) -> List[Any]:
    """A list of a dict's values or a set's items, tolerating an event loop in another thread changing it."""
    if collection is None:
        return []
    for _ in range(5):
        try:
            return list(collection.values()) if hasattr(collection, "values") else list(collection)
        except RuntimeError:  # changed size during iteration
            continue
    return []


def _protocols(connector: Any) -> List[Any]:
    out: List[Any] = []
    for conns in _copy(getattr(connector, "_conns", None)):
        for entry in _copy(conns):
            out.append(entry[0] if isinstance(entry, tuple) else entry)
    out.extend(_copy(getattr(connector, "_acquired", None)))
    return out


def _socket_of(protocol: Any) -> Any:
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None  # a placeholder while connecting, or a protocol whose connection was lost
    try:
        return transport.get_extra_info("socket")
    except Exception:  # noqa: BLE001
        return None


class AiohttpTracker:
    """Tracks ``aiohttp.ClientSession``."""

    module = "aiohttp"

    def __init__(self) -> None:
        self._patches = Patches()
        self._classes: tuple = ()

    @pytest.hookimpl
    def pytest_sockhygiene_install_tracker(self, registry: Any) -> None:
        registry.when_imported(self.module, lambda mod: self._patch(registry, mod))

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
        p.wrap(session_cls, "_request", counting_requests_async(registry))

    @pytest.hookimpl
    def pytest_sockhygiene_uninstall_tracker(self, registry: Any) -> None:
        self._patches.undo()

    def _mine(self, client: Any) -> bool:
        return bool(self._classes) and isinstance(client, self._classes)

    @staticmethod
    def _connector(session: Any) -> Any:
        return getattr(session, "_connector", None)

    @pytest.hookimpl
    def pytest_sockhygiene_client_sockets(self, client: Any) -> Optional[Iterable[Any]]:
        if not self._mine(client):
            return None
        connector = self._connector(client)
        if connector is None:
            return []
        out = []
        for protocol in _protocols(connector):
            sock = _socket_of(protocol)
            if sock is not None:
                out.append(sock)
        return out

    @pytest.hookimpl
    def pytest_sockhygiene_client_is_closed(self, client: Any) -> Optional[bool]:
        if not self._mine(client):
            return None
        return bool(getattr(client, "closed", False))

    @pytest.hookimpl
    def pytest_sockhygiene_client_keepalive(self, client: Any) -> Optional[float]:
        if not self._mine(client):
            return None
        timeout = getattr(self._connector(client), "_keepalive_timeout", None)
        if isinstance(timeout, numbers.Real) and not isinstance(timeout, bool):
            return float(timeout)
        return None
