"""Hook specifications: a client tracker for any library is a pluggy plugin.

Hook names start with ``pytest_`` because pytest's plugin manager only looks at such attributes.

A tracker tells the registry when a client of its library is created and closed, and which sockets a live
client holds in its connection pool. The built-in trackers (httpx, httpx2, requests, urllib3, aiohttp, botocore) use
exactly these hooks; see docs/writing-a-tracker.md for a worked example.

Register a tracker like any pytest plugin: in a ``conftest.py`` (``pytest_plugins``), through an entry point, or
with ``config.pluginmanager.register(MyTracker())`` in ``pytest_configure``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .clients import ClientRegistry

hookspec = pluggy.HookspecMarker("pytest")


@hookspec(historic=True)
def pytest_sockhygiene_install_tracker(registry: ClientRegistry) -> None:
    """Start tracking: patch the library so that it calls ``registry.created(client, kind=..., networked=...)``
    when a client is created and ``registry.closed(client)`` when it is closed. Use
    ``registry.when_imported("lib", callback)`` to patch only once the suite imports the library (at once if it
    already has). Called once per session at session start, only in ``enforce`` and ``warn`` modes; historic, so a
    tracker registered later (in a conftest.py found during collection) is installed when it registers."""


@hookspec
def pytest_sockhygiene_uninstall_tracker(registry: ClientRegistry) -> None:
    """Undo what ``pytest_sockhygiene_install_tracker`` did (called at the end of the session)."""


@hookspec(firstresult=True)
def pytest_sockhygiene_client_sockets(client: Any) -> Iterable[Any] | None:
    """The sockets (objects with ``fileno()``) that a live client of your library holds now, e.g. its pool's
    connections; None if ``client`` is not one of yours. Used to tell a reused client's pooled connection (the
    good pattern) from a leak, and to explain a pooled CLOSE_WAIT."""


@hookspec(firstresult=True)
def pytest_sockhygiene_client_is_closed(client: Any) -> bool | None:
    """Whether a live client of your library is closed; None if ``client`` is not one of yours. Lets a tracker
    see closes that bypass the methods it patched."""


@hookspec(firstresult=True)
def pytest_sockhygiene_client_busy_sockets(client: Any) -> Iterable[Any] | None:
    """Of the sockets ``pytest_sockhygiene_client_sockets`` gives, those a request or a response not yet read to
    the end or closed holds now (not idle in the pool); None if unknown or not yours. Tells a streamed response
    left open from an idle connection whose keep-alive the server ended, for the CLOSE_WAIT diagnosis."""


@hookspec(firstresult=True)
def pytest_sockhygiene_client_keepalive(client: Any) -> float | None:
    """How long (seconds) the client keeps an idle pooled connection, for the CLOSE_WAIT diagnosis; None if
    unknown or not yours."""
