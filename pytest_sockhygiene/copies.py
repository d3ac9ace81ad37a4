"""A copy of a collection another thread (or a finalizer the garbage collector runs) may change meanwhile.

Iterating a dict or a set while it changes size raises ``RuntimeError``. What the plugin reads of a library's
state - a pool's connections, a session's adapters, the modules' globals, the sessions and sockets it noted - is
changed by the user's threads and event loops at any time, so each read is a copy, tried again a few times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def copied(read: Callable[[], Iterable[T]], tries: int = 5) -> list[T] | None:
    """``list(read())`` (``read``: a bound ``values``, ``items`` or ``__iter__``), tried again while the collection
    changes under it; None if it never held still for ``tries`` tries (the caller says what that means)."""
    for _ in range(tries):
        try:
            return list(read())
        except RuntimeError:  # changed size during iteration
            continue
    return None


__all__ = ["copied"]
