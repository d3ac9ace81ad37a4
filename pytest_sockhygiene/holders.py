"""Which value of a fixture of broader scope holds a socket: a bounded walk over references, asked only about the
sockets a test would otherwise be blamed for.

A database or cache client that connects lazily (redis-py, pymongo, a SQLAlchemy engine over a pure-Python
driver) made in a session fixture opens its first connection inside whichever test uses it first, and keeps it in
its pool for the next test: that socket appeared during the test, from the test's own thread, and was its
``established`` leak - "call close() in the fixture's teardown", which the fixture does (found running
redis-py's suite beside a user's session-scoped ``redis.Redis``). The HTTP clients the plugin tracks know their
pools; for any other library, what holds the socket says whose it is: a value a broader fixture returned, still
cached by pytest, whose references lead to it. The walk goes forward from those values through instances, their
attributes and containers - never into modules, classes or functions, whose globals reach everything - and stops
after a bounded number of objects: a socket further away stays the test's, as before.
"""

from __future__ import annotations

import gc
import socket
import types
from collections.abc import Collection, Hashable, Iterable
from typing import Any

MAX_OBJECTS = 20_000
"""Objects visited per look at most: a client's pool is a few levels from the fixture's value, and a walk of a
large value (a whole app) must stay in the milliseconds."""

MAX_DEPTH = 10
"""References followed from a fixture's value at most (redis: client -> pool -> list -> connection -> socket)."""

_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType, types.FrameType,
           types.MethodType, str, bytes, bytearray, int, float, complex, bool, type(None))
"""Never walked into: their references lead to module globals and from there to everything (a function's
``__globals__``, a class's methods), or to nothing. A bound method's ``__self__`` is reached as the attribute
that holds it, not through the method."""


def _fd_of(obj: Any) -> int | None:
    """The fd of a socket module's socket (an asyncio transport's, or its TransportSocket's, is reached as its
    ``_sock``), else None."""
    if not isinstance(obj, socket.socket):
        return None
    try:
        return obj.fileno()
    except OSError:
        return None


def fixture_holders(wanted: dict[int, Hashable], roots: Iterable[tuple[str, Any]]) -> dict[Hashable, str]:
    """``wanted``: fd -> socket identity of the sockets to place; ``roots``: (label, value) of each fixture of
    broader scope still set up. Returns identity -> the label of the first fixture whose value reaches the socket
    (a breadth-first walk, bounded by ``MAX_OBJECTS`` and ``MAX_DEPTH`` over all fixtures together)."""
    found: dict[Hashable, str] = {}
    if not wanted:
        return found
    seen: set[int] = set()
    budget = MAX_OBJECTS
    for label, value in roots:
        level: list[Any] = [value]
        for _ in range(MAX_DEPTH):
            nxt: list[Any] = []
            for obj in level:
                if budget <= 0:
                    break
                if id(obj) in seen or isinstance(obj, _OPAQUE):
                    continue
                seen.add(id(obj))
                budget -= 1
                fd = _fd_of(obj)
                if fd is not None:
                    key = wanted.get(fd)
                    if key is not None and key not in found:
                        found[key] = label
                        if len(found) == len(wanted):
                            return found
                    continue  # a socket holds no other socket
                nxt.append(obj)
            if not nxt or budget <= 0:
                break
            level = _referents(nxt)
        if budget <= 0:
            break
    return found


def _referents(objects: Collection[Any]) -> list[Any]:
    try:
        return list(gc.get_referents(*objects))
    except Exception:  # noqa: BLE001 - an object whose traversal fails holds nothing we can see
        return []


__all__ = ["MAX_DEPTH", "MAX_OBJECTS", "fixture_holders"]
