"""Sockets an asyncio transport is already closing, on an event loop that is not running.

``writer.close()`` (``transport.close()``) only starts a stream's close: the loop closes the socket on one of its
next turns, and a TLS transport first sends its close_notify and waits for the peer's. Code that does not await
``writer.wait_closed()`` returns with the socket still open, and where the loop then does not run - a
session-scoped loop between two tests (pytest-asyncio's ``loop_scope="session"``), a loop closed at once - it stays
open, in CLOSE_WAIT once the peer has closed, until the loop runs again. Nothing running can close it while the
check settles, so the check does not wait for it, and the fix it is given is the awaited close (found running
python-socks' suite: a TLS connection through a proxy, closed with ``transport.close()`` only, waited the whole
settle in every such test and was told to "close the connection").

Found from the socket object: the transport (or its ``__dict__``, where the interpreter keeps it apart) refers to it
(``gc.get_referrers``, one pass over the heap for all the sockets asked about). Only asked for a violating test's
sockets, after the first looks found them still held.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Sequence
from typing import Any

NOTE = ("held by an asyncio transport already closing, whose event loop is not running: the socket closes when the "
        "loop runs again")
"""The item's note for such a socket (``verdict._advice`` reads it for the fix)."""


def _transport_of(referrer: Any, sock: Any) -> Any:
    """The asyncio transport ``referrer`` is, or whose attributes it holds, if it holds ``sock`` as its socket."""
    if isinstance(referrer, dict):
        if id(referrer.get("_sock")) != id(sock):  # (by id: ``is not`` would narrow ``sock`` to Optional for mypy)
            return None
        # the transport's loop is a slot of its (Python 3.9, 3.13: ``get_referrers`` gives the dict, not the
        # transport): found through its protocol, which knows the loop (streams, TLS) or the transport
        protocol = referrer.get("_protocol")
        loop = referrer.get("_loop") or getattr(protocol, "_loop", None)
        transports: Any = getattr(loop, "_transports", None)  # (selector loops: fd -> transport)
        if transports is not None:
            try:
                return transports.get(sock.fileno())
            except Exception:  # noqa: BLE001 - a mapping of another kind: not a transport we know
                return None
        transport = getattr(protocol, "_transport", None)
        return transport if getattr(transport, "_sock", None) is sock else None
    if getattr(referrer, "_sock", None) is sock and hasattr(referrer, "is_closing"):
        return referrer
    return None


def _closing(transport: Any) -> bool:
    """Whether the transport, or the TLS transport over it, was asked to close: a TLS stream's ``close()`` closes
    the transport the code holds (``SSLProtocol``'s app transport), which first sends its close_notify through
    the socket's transport, still open until the loop finishes the shutdown."""
    if transport.is_closing():
        return True
    app = getattr(transport.get_protocol(), "_app_transport", None)
    return app is not None and bool(app.is_closing())


def _parked_here(loop: Any) -> bool:
    """Whether ``loop`` is running in the calling thread: then it cannot run while the check does, which waits in
    this thread without yielding to it. pytest-twisted parks its asyncio reactor in a greenlet inside
    ``run_forever`` between tests: ``is_running()`` says True all along (found with Scrapy's suite, where each
    such socket waited the whole settle and got the advice of an unread response)."""
    return getattr(loop, "_thread_id", None) == threading.get_ident()


def closing_on_stopped_loops(socks: Sequence[Any]) -> set[int]:
    """The fds of ``socks`` that an asyncio transport already closing holds, whose loop is not running (or is
    closed, or runs parked in this thread: ``_parked_here``). Empty where asyncio was never imported, and for a
    socket no transport holds."""
    if not socks or "asyncio" not in sys.modules:
        return set()
    wanted: dict[int, Any] = {id(s): s for s in socks}
    found: set[int] = set()
    for referrer in gc.get_referrers(*socks):
        try:
            held = referrer.get("_sock") if isinstance(referrer, dict) else getattr(referrer, "_sock", None)
            sock: Any = wanted.get(id(held))  # (by id: the socket objects asked about are alive, ids unique)
            if sock is None:
                continue
            transport = _transport_of(referrer, sock)
            if transport is None:
                continue
            loop = transport._loop
            if _closing(transport) and (loop.is_closed() or not loop.is_running() or _parked_here(loop)):
                found.add(sock.fileno())
        except Exception:  # noqa: BLE001 - an object we cannot read (a proxy's __getattr__): it may still close it
            continue
    return found


__all__ = ["NOTE", "closing_on_stopped_loops"]
