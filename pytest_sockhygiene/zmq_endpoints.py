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
from typing import Any

from . import origin as origin_mod
from .endpoints import Address, parse_address
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
        self.endpoints: weakref.WeakKeyDictionary[Any, dict[Address, origin_mod.Origin | None]] = (
            weakref.WeakKeyDictionary())
        """Socket -> the TCP addresses it was told to connect to, in the order first told, each with the user's line
        that first connected it there (the origin of a connection libzmq made for a socket the test left open:
        ``FarEnds.origin_for``); kept only as long as the socket."""

    def wrapper(self, original: Any) -> Any:
        endpoints = self.endpoints
        on_error = self._on_error

        def connect(self: Any, addr: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            result = original(self, addr, *args, **kwargs)
            try:
                address = endpoint_address(addr)
                if address is not None:
                    noted = endpoints.setdefault(self, {})
                    if address not in noted:  # (the stack walked once per address)
                        noted[address] = origin_mod.capture(skip=1)
            except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's socket
                on_error(e)
            return result

        return connect

    @staticmethod
    def is_closed(sock: Any) -> bool:
        """(A field of pyzmq's C socket, read without asking libzmq.)"""
        return getattr(sock, "closed", False) is True

    def addresses(self, sock: Any) -> list[Address]:
        """Where ``sock`` was told to connect; none once it is closed (what goes there now is someone else's)."""
        if self.is_closed(sock):
            return []
        try:
            return list(self.endpoints.get(sock, ()))
        except TypeError:  # not weakly referenceable: never recorded
            return []


__all__ = ["ZmqConnects", "endpoint_address"]
