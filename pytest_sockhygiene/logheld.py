"""Sockets that only a traceback in a captured log record keeps open.

pytest keeps every log record of a test (``caplog.records``, the report's "Captured log" section) until the test's
teardown is over. A record logged with ``exc_info`` holds its exception, the exception its traceback, the traceback
its frames and the frames their locals: a socket a failed call left in a local (a connect whose handshake then
raised, logged with ``log.exception`` by the caller) stays open until pytest drops the record, after the verdict.
Without pytest the garbage collector closes it as soon as the ``except`` block ends, as it closes any socket
dropped unclosed - which no limit counts. So such a socket is not the test's leak (found running aiosmtplib's
suite: its tests log the failures they provoke).

Only a socket that nothing else holds is let go: every chain of references to it must end in the records' own
frames, exceptions or the records themselves. One that a pool, a global, a running event loop or any other object
also holds stays the test's. Asked only about sockets a test would otherwise be blamed for, and only when a
captured record carries a traceback; ``gc.get_referrers`` scans the heap, so the chains are bounded
(``MAX_DEPTH``, ``MAX_CHECKS``).
"""

from __future__ import annotations

import gc
import logging
import sys
import types
from collections.abc import Hashable, Iterable
from typing import Any

from .holders import fixture_holders

MAX_DEPTH = 6
"""Referrers followed up from a socket at most: a socket in a local (1), in a client object's attribute (2 or 3:
the instance and its ``__dict__``), in a connection inside that client (5)."""

MAX_CHECKS = 64
"""``gc.get_referrers`` calls per look at most (each one scans every object the collector tracks)."""

MAX_FRAMES = 256
"""Frames taken from the records' tracebacks at most."""


def _caplog_records_key() -> Any:
    """pytest's own stash key for a test's records (pytest 7.0 and later), or None where it keeps them elsewhere
    (then nothing is let go). Read once, at import: an import in a look costs microseconds."""
    try:
        from _pytest.logging import caplog_records_key
    except ImportError:  # pragma: no cover
        return None
    return caplog_records_key


_CAPLOG_RECORDS_KEY = _caplog_records_key()


def captured_records(item: Any) -> list[logging.LogRecord]:
    """The log records pytest holds for ``item``: its setup's and call's (``caplog``'s, kept in the item's stash
    until the teardown is over) and those of the phase running now. Empty where pytest keeps them elsewhere."""
    records: list[logging.LogRecord] = []
    if _CAPLOG_RECORDS_KEY is None:
        return records
    try:
        phases = item.stash.get(_CAPLOG_RECORDS_KEY, None)
    except Exception:  # noqa: BLE001 - an item without a stash (a custom Item): no records to look at
        return records
    if isinstance(phases, dict):
        for phase in phases.values():
            if isinstance(phase, list):
                records.extend(phase)
    return records


def _exceptions(records: Iterable[logging.LogRecord]) -> list[BaseException]:
    """The exceptions the records carry, with the ones they were raised from or during."""
    out: list[BaseException] = []
    seen: set[int] = set()
    for record in records:
        exc_info = getattr(record, "exc_info", None)
        exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
        while isinstance(exc, BaseException) and id(exc) not in seen and len(out) < MAX_FRAMES:
            seen.add(id(exc))
            out.append(exc)
            exc = exc.__cause__ or exc.__context__
    return out


def _frames(exceptions: Iterable[BaseException]) -> list[types.FrameType]:
    """The frames of the exceptions' tracebacks, and the frames that called them (a traceback keeps its first
    frame's callers alive through ``f_back``), never a frame still running in any thread: a thread that logged
    the failure and carries on holds its locals itself (found with paho-mqtt's network thread)."""
    running = _running_frames(all_threads=True)
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    for exc in exceptions:
        tb = exc.__traceback__
        while tb is not None and len(frames) < MAX_FRAMES:
            frame: types.FrameType | None = tb.tb_frame
            while frame is not None and id(frame) not in seen and id(frame) not in running:
                seen.add(id(frame))
                frames.append(frame)
                frame = frame.f_back
            tb = tb.tb_next
    return frames


class _Referrers:
    """Whether every chain of references to an object ends in ``allowed`` (ids of the records, their exceptions and
    their frames), within ``MAX_DEPTH`` references and ``MAX_CHECKS`` heap scans."""

    def __init__(self, allowed: set[int], ignored: set[int]) -> None:
        self.allowed = allowed
        self.ignored = ignored
        """Containers of this module's own that hold the objects asked about."""
        self.checks = MAX_CHECKS

    def only_allowed(self, obj: Any, depth: int = 0, path: frozenset[int] = frozenset()) -> bool:
        if depth >= MAX_DEPTH or self.checks <= 0:
            return False
        self.checks -= 1
        referrers = gc.get_referrers(obj)
        running = _running_frames()
        path = path | {id(obj)}
        ignored = self.ignored | {id(referrers)}
        try:
            for ref in referrers:
                rid = id(ref)
                if rid in self.allowed or rid in ignored or rid in running or rid in path:
                    continue  # the records' own, this module's own, or a cycle back to the chain
                if isinstance(ref, types.FrameType):
                    return False  # a frame still running somewhere, or one no record holds
                self.ignored.add(id(referrers))
                if not self.only_allowed(ref, depth + 1, path):
                    return False
            return True
        finally:
            self.ignored.discard(id(referrers))
            del referrers


def _running_frames(all_threads: bool = False) -> set[int]:
    """Ids of the frames running on this thread's stack (the check's own, which hold what it asks about), or on
    every thread's."""
    tops = list(sys._current_frames().values()) if all_threads else [sys._getframe()]
    frames = set()
    for top in tops:
        frame: types.FrameType | None = top
        while frame is not None and id(frame) not in frames:
            frames.add(id(frame))
            frame = frame.f_back
    return frames


def _locals_of(frames: list[types.FrameType]) -> list[tuple[str, Any]]:
    """The frames' local values, as roots of a walk (a list the caller drops: it must not stay a referrer)."""
    roots: list[tuple[str, Any]] = []
    for frame in frames:
        try:
            roots.extend([("log", value) for value in frame.f_locals.values()])
        except Exception:  # noqa: BLE001, S112 - a frame whose locals cannot be read holds nothing we can see
            continue
    return roots


def held_only_by_records(wanted: dict[int, Hashable], records: list[logging.LogRecord]) -> set[Hashable]:
    """``wanted``: fd -> identity of the sockets a test would be blamed for. Returns the identities of those that
    only the records' tracebacks hold (the module's docstring)."""
    exceptions = _exceptions(records)
    if not exceptions:
        return set()
    frames = _frames(exceptions)
    if not frames:
        return set()
    kept: dict[Hashable, Any] = {}
    found = fixture_holders(wanted, _locals_of(frames), keep=kept)
    if not found:
        return set()
    allowed = {id(r) for r in records} | {id(e) for e in exceptions} | {id(f) for f in frames}
    allowed.update(id(getattr(r, "exc_info", None)) for r in records)
    allowed.update(id(getattr(r, "__dict__", None)) for r in records)
    check = _Referrers(allowed, {id(kept), id(frames), id(exceptions), id(records)})
    return {key for key in list(kept) if check.only_allowed(kept[key])}


__all__ = ["MAX_CHECKS", "MAX_DEPTH", "captured_records", "held_only_by_records"]
