"""The TCP endpoints each pyzmq socket was told to connect to, recorded as ``connect()`` is called.

libzmq connects in its own I/O thread, some time after ``connect()`` returns, and connects again whenever a
connection drops: a socket a session fixture connected opens its TCP connection during whichever test runs at
that moment - the first test using it failed with an ``established`` leak of ``origin unknown`` in two runs of
three. A zmq socket cannot be asked which endpoints it connected to (``LAST_ENDPOINT`` names only the last, and
asking means a ``getsockopt`` from the plugin's thread on a socket another thread may be using, which libzmq does
not allow), so ``connect()`` of pyzmq's socket class is wrapped to note each endpoint on its way in, in the
caller's thread. The walk over broader fixtures' values (``holders.py``) then places a held connection to one of
them as the socket's (``far_ends.py``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from . import origin as origin_mod
from .copies import copied
from .endpoints import Address, Endpoint, parse_address
from .trackers.patching import PatchOnImport


def endpoint_address(endpoint: Any) -> Address | None:
    """``tcp://host:port`` (also ``tcp://[v6]:port`` and ``tcp://source;host:port``) as an address; None for any
    other transport (``ipc``, ``inproc``, ``pgm``...) or a form this does not read."""
    if isinstance(endpoint, bytes):
        endpoint = endpoint.decode("utf-8", "replace")
    if not isinstance(endpoint, str):
        return None
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme.lower() != "tcp":
        return None
    return parse_address(rest.rpartition(";")[2])  # (a source address before ';' is the local end's)


class ZmqConnects(PatchOnImport):
    """``zmq.Socket.connect`` (pyzmq's socket class, which ``zmq.asyncio``'s and others subclass): each TCP
    endpoint is noted for the socket it was given to, once the connect call returned."""

    MODULE, CLASS, METHOD = "zmq.sugar.socket", "Socket", "connect"

    def __init__(self, on_error: Any) -> None:
        super().__init__(on_error)
        self.endpoints: weakref.WeakKeyDictionary[Any, list[Address]] = weakref.WeakKeyDictionary()
        """Socket -> the TCP addresses it was told to connect to (kept only as long as the socket)."""
        self.lines: weakref.WeakKeyDictionary[Any, dict[Address, origin_mod.Origin | None]] = (
            weakref.WeakKeyDictionary())
        """Socket -> the user's line that first connected it to each address (the origin of a connection libzmq
        made for a socket the test left open: ``FarEnds.origin_for``)."""

    def wrapper(self, original: Any) -> Any:
        endpoints = self.endpoints
        lines = self.lines
        on_error = self._on_error

        def connect(self: Any, addr: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            result = original(self, addr, *args, **kwargs)
            try:
                address = endpoint_address(addr)
                if address is not None:
                    endpoints.setdefault(self, []).append(address)
                    lines.setdefault(self, {}).setdefault(address, origin_mod.capture(skip=1))
            except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's socket
                on_error(e)
            return result

        return connect

    def addresses(self, sock: Any) -> list[Address]:
        try:
            return list(self.endpoints.get(sock, ()))
        except TypeError:  # not weakly referenceable: never recorded
            return []

    def first_connected(self, remote: Endpoint,
                        matches: Callable[[Address, Endpoint], bool]) -> origin_mod.Origin | None:
        """The user's line that first connected a socket not closed to where ``remote`` is (``matches``)."""
        for sock, noted in reversed(copied(self.lines.items) or []):  # (connected meanwhile: tried again)
            if getattr(sock, "closed", False) is True:  # (a field of pyzmq's C socket, read without asking libzmq)
                continue
            for address, first in tuple(noted.items()):
                if first is not None and matches(address, remote):
                    found: origin_mod.Origin = first
                    return found
        return None


__all__ = ["ZmqConnects", "endpoint_address"]
