"""httpx and httpx2 (the maintained fork the openai and anthropic SDKs use): same API, other import names.

Created: ``Client.__init__`` / ``AsyncClient.__init__`` (subclasses and clients built inside SDK objects
included). Closed: ``close``, ``aclose`` and the context managers (``__exit__`` does not call ``close()``).
Pool: transport -> httpcore(2) pool -> connections -> network stream -> ``get_extra_info("socket")``.
A client whose transports have no connection pool (MockTransport, ASGITransport, WSGITransport, a custom
transport) cannot leak a socket and is not counted.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional


from .base import ClassTracker
from .patching import after_init, counting_requests, counting_requests_async, then_closed, then_closed_async


def _transports(client: Any) -> Iterator[Any]:
    transport = getattr(client, "_transport", None)
    if transport is not None:
        yield transport
    for t in (getattr(client, "_mounts", None) or {}).values():
        if t is not None:
            yield t


def _pool(transport: Any) -> Any:
    return getattr(transport, "_pool", None)


def _streams(pool: Any) -> Iterator[Any]:
    for conn in list(getattr(pool, "_connections", ()) or ()):
        inner = getattr(conn, "_connection", None) or conn
        stream = getattr(inner, "_network_stream", None)
        if stream is not None:
            yield stream


class HttpxTracker(ClassTracker):
    """Tracks ``<module>.Client`` and ``<module>.AsyncClient`` for module ``httpx`` or ``httpx2``."""

    def __init__(self, module: str) -> None:
        super().__init__()
        self.module = module

    def _patch(self, registry: Any, mod: Any) -> None:
        self._classes = (mod.Client, mod.AsyncClient)
        p = self._patches
        networked = self._networked
        module = self.module

        def kind(client: Any) -> str:
            cls = type(client)
            base = f"{module}.{'AsyncClient' if isinstance(client, mod.AsyncClient) else 'Client'}"
            return base if cls in self._classes else f"{cls.__module__}.{cls.__qualname__} ({base})"

        for cls in self._classes:
            p.wrap(cls, "__init__", after_init(registry, kind, networked))
        p.wrap(mod.Client, "close", then_closed(registry))
        p.wrap(mod.Client, "__exit__", then_closed(registry))
        p.wrap(mod.Client, "send", counting_requests(registry, self.sockets))
        p.wrap(mod.AsyncClient, "aclose", then_closed_async(registry))
        p.wrap(mod.AsyncClient, "__aexit__", then_closed_async(registry))
        p.wrap(mod.AsyncClient, "send", counting_requests_async(registry, self.sockets))

    @staticmethod
    def _networked(client: Any) -> bool:
        return any(_pool(t) is not None for t in _transports(client))

    def sockets(self, client: Any) -> List[Any]:
        out: List[Any] = []
        for transport in _transports(client):
            pool = _pool(transport)
            if pool is None:
                continue
            for stream in _streams(pool):
                try:
                    sock = stream.get_extra_info("socket")
                except Exception:  # noqa: BLE001
                    sock = None
                if sock is not None:
                    out.append(sock)
        return out

    def is_closed(self, client: Any) -> Optional[bool]:
        return bool(getattr(client, "is_closed", False))

    def keepalive(self, client: Any) -> Optional[float]:
        for transport in _transports(client):
            expiry = getattr(_pool(transport), "_keepalive_expiry", None)
            if expiry is not None:
                return float(expiry)
        return None
