"""requests: ``requests.Session`` (and so ``requests.get`` and friends, which create and close one per call); and
niquests' ``niquests.Session``, which keeps requests' API, adapters and all, over urllib3-future.

Created: ``Session.__init__``. Closed: ``Session.close`` (``__exit__`` calls it). Requests: ``Session.send``
(a redirect hop counts as a request).
Pool: ``session.adapters`` -> each ``HTTPAdapter``'s ``poolmanager`` and ``proxy_manager`` values (urllib3
PoolManagers) -> their pools -> idle connections -> ``conn.sock`` (see ``urllib3.py``).

The urllib3 PoolManagers inside a session are the session's: the one an ``HTTPAdapter`` builds in its
constructor (also for an adapter the user builds and mounts) and the ProxyManagers it builds on the first request
through a proxy are not recorded on their own; ``Session.close`` closes them all.
A session none of whose adapters is an ``HTTPAdapter`` (only mock or custom adapters) is not counted; asked again at
each ``mount``.

niquests' ``Session`` builds three adapters, each with a PoolManager of its own: untracked as a session, it read as
a ``urllib3.PoolManager`` to be cleared, and two unused ones more. Its ``AsyncSession`` is not tracked.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any, Callable

from ..copies import copied
from .base import ClassTracker
from .patching import after_init, building_parts, counting_requests, then_closed
from .urllib3 import manager_sockets


def _adapters(session: Any) -> list[Any]:
    adapters = getattr(session, "adapters", None) or {}
    return copied(adapters.values) or []  # (mounted while we looked: tried again)


def _managers(adapter: Any) -> Iterator[Any]:
    manager = getattr(adapter, "poolmanager", None)
    if manager is not None:
        yield manager
    proxies = getattr(adapter, "proxy_manager", None) or {}
    try:
        yield from list(proxies.values())
    except (RuntimeError, AttributeError):
        return


def _remounting(registry: Any, networked: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """A wrapper for ``Session.mount``: whether the session can hold a socket is asked again once its adapters
    change. Asked at ``__init__`` alone, a session whose in-process adapter was mounted after it (DRF's
    ``RequestsClient`` mounts its ``DjangoTestAdapter`` in its own ``__init__``, after ``Session.__init__``) kept
    the default adapters' answer: the connections the application behind it made were the session's, and the
    session an unclosed client that opened connections (found on django-rest-framework's suite)."""

    def make(mount: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            result = mount(self, *args, **kwargs)
            try:
                record = registry.record_of(self)
                if record is not None:  # (None while Session.__init__ mounts the defaults: recorded after)
                    record.networked = networked(self)
            except Exception as e:  # noqa: BLE001 - a plugin fault is a plugin problem, never the user's
                registry.on_error(e)
            return result

        return wrapper

    return make


class RequestsTracker(ClassTracker):
    """Tracks ``<module>.Session`` and its subclasses for module ``requests`` or ``niquests``."""

    def __init__(self, module: str = "requests") -> None:
        super().__init__()
        self.module = module

    def _patch(self, registry: Any, mod: Any) -> None:
        session_cls = mod.Session
        adapter_cls = importlib.import_module(f"{self.module}.adapters").HTTPAdapter
        self._classes = (session_cls,)

        def kind(client: Any) -> str:
            cls = type(client)
            base = f"{self.module}.Session"
            return base if cls is session_cls else f"{cls.__module__}.{cls.__qualname__} ({base})"

        def networked(session: Any) -> bool:
            adapters = _adapters(session)
            return not adapters or any(isinstance(a, adapter_cls) for a in adapters)

        p = self._patches
        p.wrap(session_cls, "__init__", after_init(registry, kind, networked))
        if "__setstate__" in vars(session_cls):  # an unpickled copy is built without __init__: a client all the same
            p.wrap(session_cls, "__setstate__", after_init(registry, kind, networked))
        p.wrap(session_cls, "mount", _remounting(registry, networked))
        p.wrap(session_cls, "close", then_closed(registry))  # __exit__ calls close()
        p.wrap(session_cls, "send", counting_requests(registry, self.sockets))
        # an adapter's PoolManager (built in its constructor, or rebuilt when unpickled) and its ProxyManagers
        # (built on the first request through a proxy) are parts of the session that mounts it
        for name in ("__init__", "__setstate__", "proxy_manager_for"):
            if hasattr(adapter_cls, name):
                p.wrap(adapter_cls, name, building_parts(registry))

    def sockets(self, client: Any) -> list[Any]:
        out: list[Any] = []
        for adapter in _adapters(client):
            for manager in _managers(adapter):
                out.extend(manager_sockets(manager))
        return out

    def is_closed(self, client: Any) -> bool | None:
        return False  # a Session has no closed state: only a close() call (recorded) closes it

    def keepalive(self, client: Any) -> float | None:
        return None  # urllib3 keeps idle connections until they are reused or the pool is closed
