"""Which value of a fixture of broader scope holds a socket: a bounded walk over references, asked only about the
sockets a test would otherwise be blamed for.

A database or cache client that connects lazily (redis-py, pymongo, a SQLAlchemy engine over a pure-Python
driver) made in a session fixture opens its first connection inside whichever test uses it first, and keeps it in
its pool for the next test: that socket appeared during the test, from the test's own thread, and was its
``established`` leak - "call close() in the fixture's teardown", which the fixture does (found running
redis-py's suite beside a user's session-scoped ``redis.Redis``). The HTTP clients the plugin tracks know their
pools; for any other library, what holds the socket says whose it is: a value a broader fixture returned, still
cached by pytest, whose references lead to it. The walk goes forward from those values through instances, their
attributes and containers - never into modules, classes or functions, whose globals reach everything, nor event
loops, selectors, threads and executors, which reach whatever runs on them - and stops after a bounded number of
objects: a socket further away stays the test's, as before. It runs none of the objects' code (types are read
with ``type()``, not ``__class__``), and a fault in it leaves the sockets the test's (``Window._held_by_fixtures``).
"""

from __future__ import annotations

import collections
import gc
import itertools
import socket
import sys
import types
from collections.abc import Hashable, Iterable
from typing import Any

from .far_ends import Placer

MAX_OBJECTS = 20_000
"""Objects visited per look at most: a client's pool is a few levels from the fixture's value, and a walk of a
large value (a whole app) must stay in the milliseconds."""

MAX_DEPTH = 16
"""References followed from a fixture's value at most: redis-py's socket is 4 attributes below its client (8
references: each attribute goes through the instance's ``__dict__``), a SQLAlchemy engine's 8, a ``sessionmaker``'s
10 and a ``scoped_session``'s 11 (measured with pg8000); the object budget is what bounds the cost."""

MIN_SHARE = 5_000
"""Objects each fixture's value may take of ``MAX_OBJECTS`` at least, however many values there are: a value's
share is ``MAX_OBJECTS`` over their number, so that a large one (a cloud SDK's client and its service models) does
not use up the walk before a small one beside it is looked at (aiobotocore's suite)."""

MAX_CONTAINER = 10_000
"""A dict, list, set or deque larger than this is not walked into: a pool holds a few connections, a data set a
fixture loaded (a vocabulary, a table) holds millions of objects that cannot hold one."""

_CONTAINERS = (dict, list, tuple, set, frozenset, collections.deque)

_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType, types.FrameType,
           types.MethodType, str, bytes, bytearray, int, float, complex, bool, type(None))
"""Never walked into: their references lead to module globals and from there to everything (a function's
``__globals__``, a class's methods), or to nothing. A bound method's ``__self__`` is reached as the attribute
that holds it, not through the method."""


_LIBPQ_PACKAGES = ("psycopg", "psycopg2")
"""Connections whose socket libpq holds in C, not a Python socket: their ``fileno()`` says which fd it is."""


_mro = type.__dict__["__mro__"].__get__
"""A class's real bases, read from the type itself: never ``issubclass``, which for an ABC among the hubs
(``selectors.BaseSelector``) runs the ABC machinery on every class the walk meets - it crashed CPython 3.9 on an
object the walk reached from a logged traceback's frames (``logheld.py``), a builtin type that CPython 3.9 had
not made ready (no ``__mro__`` yet) - and can run a ``__subclasshook__``."""


def _fd_of(obj: Any, cls: type, mro: tuple[type, ...], curl: type | None) -> int | None:
    """The fd of a socket module's socket (an asyncio transport's, or its TransportSocket's, is reached as its
    ``_sock``), of a psycopg / psycopg2 connection (libpq's socket, ``fileno()``) or of a pycurl handle's kept
    connection (``curl``: ``pycurl.Curl``, where pycurl is imported; a subclass's handle too); else None. Asked of
    the real type (``cls``, its bases ``mro``), never of ``obj.__class__``: a lazy proxy (Django's
    ``SimpleLazyObject``) runs code when asked that, and a walk must run none - no other object's ``fileno()`` is
    called either."""
    if socket.socket in mro:
        try:
            return obj.fileno()  # type: ignore[no-any-return]
        except OSError:
            return None
    if cls.__module__.partition(".")[0] in _LIBPQ_PACKAGES and cls.__name__ in ("Connection", "AsyncConnection",
                                                                                 "connection"):
        try:
            fd = obj.fileno()
        except Exception:  # noqa: BLE001 - a closed or broken connection has no socket to find
            return None
        return fd if isinstance(fd, int) else None
    if curl is not None and curl in mro:
        return _curl_socket(obj)
    return None


def _curl_socket(handle: Any) -> int | None:
    """The connection a pycurl handle keeps for its next transfer (libcurl's ``CURLINFO_ACTIVESOCKET``, or
    ``LASTSOCKET`` where pycurl does not name the first): a handle a
    session fixture made connects on its first ``perform()``, in a test, and keeps the connection alive."""
    pycurl = sys.modules.get("pycurl")
    # (ACTIVESOCKET where pycurl names it, 7.49; LASTSOCKET, the same fd for a kept connection, before: 7.45)
    info = getattr(pycurl, "ACTIVESOCKET", None) or getattr(pycurl, "LASTSOCKET", None)
    if info is None:
        return None
    try:
        fd = handle.getinfo(info)
    except Exception:  # noqa: BLE001 - a closed handle, or a libcurl too old to say
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def fixture_holders(wanted: dict[int, Hashable], roots: Iterable[tuple[str, Any]],
                    objects: dict[int, Hashable] | None = None,
                    keep: dict[Hashable, Any] | None = None,
                    far_ends: tuple[frozenset[type], Placer] | None = None) -> dict[Hashable, str]:
    """``wanted``: fd -> socket identity of the sockets to place; ``roots``: (label, value) of each fixture of
    broader scope still set up. Returns identity -> the label of the fixture whose value reaches the socket in the
    fewest references: one breadth-first walk over all the values at once, bounded by ``MAX_OBJECTS`` and
    ``MAX_DEPTH`` together (every object met counts, and a container larger than ``MAX_CONTAINER`` - a data set,
    not a pool - is not walked into), so that a large value (a cloud SDK's client, its service models) cannot use
    up the budget before a small one next to it is looked at.
    ``objects``: ``id()`` -> key of live objects to place the same way (clients a lazily built client made: a
    session fixture's aiobotocore client makes its aiohttp session on its first request, in a test).
    ``keep``: if given, gets identity -> the socket object found for each wanted fd (``logheld.py`` asks what
    else holds it).
    ``far_ends``: (classes, placer): the objects of those classes (or subclasses) met on the walk place the wanted
    connections they hold by their far end once the walk is over, all together (``far_ends.py``: a gRPC channel, a
    zmq socket, a curl_cffi session - C code holds their connections, with no fd to ask for; together, because
    whether a pool's connection is its own depends on what else the fixtures hold)."""
    found: dict[Hashable, str] = {}
    if not wanted and not objects:
        return found
    far_met: list[tuple[str, Any]] = []
    _walk(found, wanted, roots, objects or {}, keep, far_ends[0] if far_ends is not None else frozenset(), far_met)
    if far_ends is not None and far_met and len(found) < len(wanted) + len(objects or {}):
        for key, label in far_ends[1](far_met, wanted, found).items():
            found.setdefault(key, label)
    return found


def _walk(found: dict[Hashable, str], wanted: dict[int, Hashable], roots: Iterable[tuple[str, Any]],
          objects: dict[int, Hashable], keep: dict[Hashable, Any] | None, far_types: frozenset[type],
          far_met: list[tuple[str, Any]]) -> None:
    """``fixture_holders``' walk: fills ``found``, and ``far_met`` with the objects of ``far_types`` met."""
    total = len(wanted) + len(objects)
    seen: set[int] = set()
    budget = MAX_OBJECTS
    opaque = frozenset(_OPAQUE + _hubs())
    curl = getattr(sys.modules.get("pycurl"), "Curl", None)  # (the walk imports nothing)
    curl = curl if isinstance(curl, type) else None
    level: list[tuple[str, Any]] = list(roots)
    # each value's share of the budget: a large value stops at its share, and the others go on being walked
    share = max(MAX_OBJECTS // max(len(level), 1), MIN_SHARE)
    spent: dict[str, int] = collections.defaultdict(int)
    for _ in range(MAX_DEPTH + 1):  # (the values themselves, then up to MAX_DEPTH references away)
        nxt: list[tuple[str, Any]] = []
        for label, obj in level:
            if spent[label] >= share:
                continue
            spent[label] += 1
            budget -= 1
            if budget < 0:
                return
            cls = type(obj)
            mro = _mro(cls)
            if id(obj) in seen or mro is None or not opaque.isdisjoint(mro):  # (None: a type not made ready)
                continue
            seen.add(id(obj))
            if objects:
                key = objects.get(id(obj))
                if key is not None and key not in found:
                    found[key] = label
                    if len(found) == total:
                        return
            fd = _fd_of(obj, cls, mro, curl)
            if fd is not None:
                key = wanted.get(fd)
                if key is not None and key not in found:
                    found[key] = label
                    if keep is not None:
                        keep[key] = obj
                    if len(found) == total:
                        return
                continue  # a socket holds no other socket
            if far_types and not far_types.isdisjoint(mro):
                far_met.append((label, obj))
                continue  # its connections are in C: nothing further to walk
            if cls in _CONTAINERS and len(obj) > MAX_CONTAINER:
                continue
            nxt.append((label, obj))
        if not nxt:
            break
        level = _referents(_interleaved(nxt), budget)


def _interleaved(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``items`` taken from each fixture's value in turn: where a level is cut short by the budget, what is cut is
    the tail of the largest values, not every object of the values that come after a large one."""
    by_label: dict[str, list[tuple[str, Any]]] = {}
    for item in items:
        by_label.setdefault(item[0], []).append(item)
    if len(by_label) < 2:
        return items
    return [item for group in itertools.zip_longest(*by_label.values()) for item in group if item is not None]


_HUBS = (("asyncio", "AbstractEventLoop"), ("selectors", "BaseSelector"), ("threading", "Thread"),
         ("concurrent.futures", "Executor"))
"""Objects that reference whatever runs on them, not what a fixture made: an event loop reaches every transport
and server on it (a test's own listener on the session's loop, through a future the fixture returned), a selector
every registered socket, a thread and an executor their jobs. Looked up where their modules are imported already:
the walk imports nothing."""


def _hubs() -> tuple[type, ...]:
    out = []
    for module, name in _HUBS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            out.append(cls)
    return tuple(out)


def _referents(objects: Iterable[tuple[str, Any]], budget: int) -> list[tuple[str, Any]]:
    """What ``objects`` refer to, each with the label of the value it was reached from, until there are more than
    ``budget`` of them (the walk stops there anyway)."""
    out: list[tuple[str, Any]] = []
    for label, obj in objects:
        try:
            out.extend([(label, ref) for ref in gc.get_referents(obj)])
        except Exception:  # noqa: BLE001, S112 - an object whose traversal fails holds nothing we can see
            continue
        if len(out) > budget:
            break
    return out


__all__ = ["MAX_CONTAINER", "MAX_DEPTH", "MAX_OBJECTS", "MIN_SHARE", "fixture_holders"]
