"""Sockets an event loop written in C opens: uvloop's listeners and connections, recorded as events.

uvloop (libuv) creates, connects and listens on its sockets in C, so the wrappers on ``socket.socket`` never see
them: a uvicorn server started in a session fixture's thread (``loop="auto"`` is uvloop wherever uvicorn[standard]
is installed) had a listener no thread owned, blamed on the test during which it appeared; its connections'
TIME_WAIT entries on the server's side were never looked for (its listener was unknown); and an async client on
uvloop opened connections no count included. uvloop's ``Loop`` is a Python subclass of its C loop, so its
``create_server`` and ``create_connection`` can be wrapped like any Python method: once the C code has made the
sockets, they are recorded as a ``listen()`` or a ``connect()`` would have been, on the thread and with the line
that asked for them. Accepts and closes stay unseen; the socket table still sees what is held.
"""

from __future__ import annotations

from typing import Any

from .trackers.patching import RecorderPatch


class UvloopServers(RecorderPatch):
    """``uvloop.Loop.create_server``: each TCP listener of the server it returns is recorded as listening."""

    MODULE, CLASS, METHOD = "uvloop", "Loop", "create_server"

    def wrapper(self, original: Any) -> Any:
        rec = self._recorder

        async def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            server = await original(self, *args, **kwargs)
            try:
                for sock in server.sockets or ():
                    rec.c_listening(sock)
            except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's server
                rec._on_error(e)
            return server

        return create_server


class UvloopConnections(RecorderPatch):
    """``uvloop.Loop.create_connection``: the connection it made is recorded as connected (not when the caller
    handed it a socket of its own: that socket's connect, if any, was Python's)."""

    MODULE, CLASS, METHOD = "uvloop", "Loop", "create_connection"

    def wrapper(self, original: Any) -> Any:
        rec = self._recorder

        async def create_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            transport, protocol = await original(self, *args, **kwargs)
            if kwargs.get("sock") is None and rec.sinks:
                try:
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        rec.c_connected(sock)
                except Exception as e:  # noqa: BLE001
                    rec._on_error(e)
            return transport, protocol

        return create_connection
