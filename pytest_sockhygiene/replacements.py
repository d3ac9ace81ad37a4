"""What other code put on ``socket.socket``'s methods, and whether it still calls the plugin's hooks.

Other code replaces the methods the plugin wraps: pytest-socket writes its saved ``connect`` back at every
teardown, blockbuster wraps them in checks of its own. ``events.Recorder`` re-installs its hooks when that
happens; these helpers tell it what it is looking at - a wrapper that calls the plugin's hook (adopted: nothing
is missed), the original C method written back from a saved copy (the copy is found and re-bound), or a
replacement of another kind (named in the session's notice) - without side effects, since they run inside a
user's test, maybe with no file descriptor left.
"""

from __future__ import annotations

import _socket
import itertools
import socket
import sys
import types
from typing import Any

from .copies import copied

PATCHED = ("connect", "connect_ex", "accept", "listen", "_real_close")
"""The methods of ``socket.socket`` the plugin wraps (``events.Recorder``)."""

MISSING: Any = object()
"""Stands for "no such attribute" where a method is saved to be put back (a class that inherits it)."""


_WRAPPER_DEPTH = 4
"""How many functions deep ``calls_one_of`` looks: a decorator's wrapper, one around that, and so on."""


def calls_one_of(fn: Any, ours: set[Any]) -> bool:
    """Whether ``fn`` is a wrapper around one of ``ours``: reached through ``__wrapped__`` (``functools.wraps``) or
    a function its closure holds (a plain decorator's ``func``, as blockbuster's ``_wrap_blocking`` keeps it), a
    few levels deep. Such a wrapper calls ours, as wrappers do; a replacement that merely keeps ours to restore
    it later would keep it elsewhere (a module global, an object's attribute), which is not looked at."""
    todo = [fn]
    for _ in range(_WRAPPER_DEPTH):
        found = []
        for f in todo:
            try:
                if f in ours:
                    return True
            except TypeError:  # unhashable
                continue
            wrapped = getattr(f, "__wrapped__", None)
            if wrapped is not None:
                found.append(wrapped)
            for cell in getattr(f, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                if callable(value):
                    found.append(value)
        if not found:
            return False
        todo = found
    return False


def _true_socket_class() -> type:
    """``socket.socket`` as the socket module defines it, even if other code has put a subclass in its place
    (pytest-socket's ``--disable-socket`` does, for the span of a test): the class every socket inherits from."""
    mro: tuple[type, ...] = getattr(socket.socket, "__mro__", ())
    for cls in mro:
        if cls.__module__ == "socket" and cls.__name__ == "socket":
            return cls
    return socket.socket


SOCKET_CLASS = _true_socket_class()


def replaced_socket_class() -> str | None:
    """``module.qualname`` of what ``socket.socket`` is now, if it is no longer the standard class nor a subclass of
    it (whose sockets still run the hooked methods): gevent's and eventlet's monkey-patching put a class of their
    own there, which calls ``_socket.socket``'s C methods directly, so the socket hooks see none of its sockets.
    None while it is the standard class (one identity check on the clean path)."""
    cls: Any = socket.socket
    if cls is SOCKET_CLASS:
        return None
    try:
        if issubclass(cls, SOCKET_CLASS):
            return None  # pytest-socket's guard class, for the span of a test: inherits the hooks
    except TypeError:  # not a class at all: a factory function
        pass
    if _keeps_the_real_class(cls):
        return None
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', None) or type(cls).__qualname__}"


def _keeps_the_real_class(cls: Any) -> bool:
    """Whether the module that defines a replacement of ``socket.socket`` keeps the standard class itself as one of
    its globals (httpretty's ``old_socket``): a fake that makes its real connections through the class the hooks
    wrap, so they still run the hooked methods. gevent's and eventlet's keep none (eventlet keeps a copy of the
    socket module of its own). httpretty left enabled between tests was read as gevent, every test's counts
    unknown, though every real connection was seen (found running httpretty's suite)."""
    module = sys.modules.get(str(getattr(cls, "__module__", None) or ""))
    if module is None:
        return False
    try:
        return any(value is SOCKET_CLASS for value in list(vars(module).values()))
    except Exception:  # noqa: BLE001 - a module whose namespace cannot be read: judged as before
        return False
C_METHODS = {name: getattr(_socket.socket, name, None) for name in PATCHED}
"""The C methods as the ``_socket`` module defines them: what a write-back of "the original" puts back."""


def holder_of(obj: Any) -> str | None:
    """``module.name`` of a module-level global that holds ``obj`` (where a restored copy was saved), if any."""
    slot = holder_slot(obj)
    return f"{slot[0].__name__}.{slot[1]}" if slot is not None else None


_LIKELY_HOLDERS = ("pytest_", "conftest")
"""Module names searched first for a saved copy: third-party pytest plugins and conftests (``holder_slot``)."""

_slots: dict[int, tuple[types.ModuleType, str]] = {}
"""id of an object -> the global last found holding it: a description and the rebinding that follows it
(``events.Recorder._rebind_saved_copy``) walk the modules once between them. Used only while it still holds the
object."""


def holder_slot(obj: Any) -> tuple[types.ModuleType, str] | None:
    """The module and global name that hold ``obj``, if a module-level global does. Walks every loaded module
    (unless the global found last time still holds it): run only when a replacement is first met.

    Only plain modules are read: a module subclass may compute its ``__dict__`` (the ``py`` library's lazy
    ``apipkg`` modules import every submodule on that access), and a description must have no side effects -
    it runs in the test's process, maybe with no file descriptor left to import with."""
    found = _slots.get(id(obj))
    if found is not None and found[0].__dict__.get(found[1]) is obj:
        return found
    # pytest plugins and conftests first: they are what saves a copy and writes it back (pytest-socket), and a
    # walk of every module's globals costs ~5 ms (~25,000 of them, pytest_socket among the last 15 of ~680)
    likely: list[tuple[str, Any]] = []
    rest: list[tuple[str, Any]] = []
    for entry in _snapshot(sys.modules):
        (likely if entry[0].startswith(_LIKELY_HOLDERS) or entry[0].endswith("conftest") else rest).append(entry)
    for modname, mod in itertools.chain(likely, rest):
        if type(mod) is not types.ModuleType or modname in ("socket", "_socket") or modname.startswith(
                "pytest_sockhygiene"):
            continue
        try:
            for key, value in _snapshot(mod.__dict__):
                if value is obj and not key.startswith("__"):
                    _slots[id(obj)] = (mod, key)
                    return mod, key
        except Exception:  # noqa: BLE001, S112 - a module with an odd namespace: skip it
            continue
    return None


def _snapshot(d: dict[str, Any]) -> list[tuple[str, Any]]:
    """The items of a dict that may change while they are copied: any allocation may run the garbage collector,
    whose finalizers may warn (``warnings`` adds ``__warningregistry__`` to a module's globals) or import. A copy
    interrupted so is tried again; after a few tries, nothing is searched (the description names no holder)."""
    return copied(d.items, tries=3) or []


_descriptions: dict[int, str] = {}


def describe_replacement(name: str, current: Any) -> str:
    """Who put ``current`` on ``socket.socket.<name>``: a function's ``module.qualname``, or for the original C
    method written back, the global that kept the saved copy (pytest-socket's ``_true_connect``)."""
    if current is MISSING:
        return "deleting it"
    original = current is C_METHODS.get(name) or (getattr(current, "__module__", None) == "socket"
                                                    and getattr(current, "__qualname__", None) == f"socket.{name}")
    key = id(current)
    if original and key in _descriptions:
        return _descriptions[key]
    if original:
        try:
            holder = holder_of(current)
        except Exception:  # noqa: BLE001 - a description must never cost the hooks their re-install
            holder = None
        text = ("the original method written back" + (f" (a copy saved as {holder})" if holder else "")
                + ", bypassing the plugin's hook")
        _descriptions[key] = text
        return text
    module = getattr(current, "__module__", None)
    qualname = getattr(current, "__qualname__", None) or getattr(type(current), "__qualname__", "an object")
    return f"{module}.{qualname}" if module else str(qualname)
