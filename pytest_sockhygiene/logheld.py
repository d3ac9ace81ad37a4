"""Sockets that only a traceback pytest keeps for the test holds open: a captured log record's, or an xfail test's
expected failure's.

pytest keeps every log record of a test (``caplog.records``, the report's "Captured log" section) until the test's
teardown is over. A record logged with ``exc_info`` holds its exception, the exception its traceback, the traceback
its frames and the frames their locals: a socket a failed call left in a local (a connect whose handshake then
raised, logged with ``log.exception`` by the caller) stays open until pytest drops the record, after the verdict.
Without pytest the garbage collector closes it as soon as the ``except`` block ends, as it closes any socket
dropped unclosed - which no limit counts. So such a socket is not the test's leak (found running aiosmtplib's
suite: its tests log the failures they provoke). An exception among a record's arguments holds its traceback the
same way: urllib3's "Retrying (...) after connection broken by '%r'" warning passes the exception it retries after,
whose traceback holds the pool that retried, with the idle connection it keeps (a pool a cleared ``PoolManager``
dropped, left to its finalizer: found with a server that closes each connection after its response, unannounced).

An xfail test whose call raised the failure its marker expects is in the same place: pytest keeps that exception
and its traceback (``sys.last_value``, ``sys.last_traceback``, for post-mortem debugging) until the next test's call,
and with them the test's locals. A test written to fail there leaves behind what its failure skipped - a socket it
accepted into a local (paho-mqtt's suite), a connection of a response - which the collector would close without
pytest, as the same test does once it passes. Failing in ``enforce`` over it would turn a test the suite expects to
fail into an error. (A test that fails unexpectedly is judged as before: its own failure is red already, and its
verdict says that pytest keeps its locals.)

Only a socket that nothing else holds is let go: every chain of references to it must end in the records' own
frames, exceptions or the records themselves, or go round in a cycle of garbage. One that a pool, a global, a
class, a running thread's frame or anything the collector cannot see into holds too stays the test's. Asked once
per socket and window, only about sockets a test would otherwise be blamed for, and only when a captured record
carries a traceback; ``gc.get_referrers`` scans the heap, so the questions are bounded (``MAX_CHECKS``).
"""

from __future__ import annotations

import gc
import logging
import sys
import types
import weakref
from collections.abc import Hashable, Iterable
from typing import Any, NamedTuple

import pytest

from .holders import fixture_holders

MAX_CHECKS = 128
"""``gc.get_referrers`` calls per question at most (each one scans every object the collector tracks), one per
object on the way up from the socket: an asyncio transport's socket, logged by the loop's exception handler through
a callback's closure, is 13 objects below the records' frames by the longest way round (aiosmtplib's suite on
Python 3.11 and 3.12)."""

_RUNNER_MODULES = ("_pytest", "pluggy", "pytest")
"""Frames of pytest's runner: a traceback's ``f_back`` chain leads into them from the test function, and their
locals (the item, the session, the config) would use up the walk's budget before a socket a few references
below the test's own frames is reached. No socket of a test's lives there."""

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


def _carried(record: logging.LogRecord) -> list[Any]:
    """What in a record may be an exception: its ``exc_info``'s, its message, its arguments (a tuple, or the one
    mapping ``log.info("%(e)s", {"e": exc})`` passes)."""
    exc_info = getattr(record, "exc_info", None)
    carried = [exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None,
               getattr(record, "msg", None)]
    args = getattr(record, "args", None)
    if isinstance(args, tuple):
        carried.extend(args)
    elif isinstance(args, dict):
        carried.extend(args.values())
    return carried


def _exceptions(records: Iterable[logging.LogRecord], failure: BaseException | None = None) -> list[BaseException]:
    """The exceptions the records carry (``_carried``), and ``failure``, with the ones they were raised from or
    during, and the ones they wrap among their arguments: urllib3 logs ``ProtocolError('Connection aborted.',
    RemoteDisconnected(...))``, which 1.26 made in its ``except`` block and never raised (no traceback of its own):
    only the wrapped one's traceback holds the frames."""
    out: list[BaseException] = []
    seen: set[int] = set()
    for pending in ([failure], *(_carried(record) for record in records)):
        while pending and len(out) < MAX_FRAMES:
            exc = pending.pop(0)
            if not isinstance(exc, BaseException) or id(exc) in seen:
                continue
            seen.add(id(exc))
            out.append(exc)
            pending[:0] = [exc.__cause__ or exc.__context__,
                           *(a for a in getattr(exc, "args", ()) or () if isinstance(a, BaseException))]
    return out


def _frames(exceptions: Iterable[BaseException]) -> list[types.FrameType]:
    """The frames of the exceptions' tracebacks, and the frames that called them (a traceback keeps its first
    frame's callers alive through ``f_back``), never a frame still running in any thread: a thread that logged
    the failure and carries on holds its locals itself (found with paho-mqtt's network thread)."""
    running = _running_frames()
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    for exc in exceptions:
        tb = exc.__traceback__
        while tb is not None and len(frames) < MAX_FRAMES:
            frame: types.FrameType | None = tb.tb_frame
            while frame is not None and id(frame) not in seen and id(frame) not in running:
                if str(frame.f_globals.get("__name__", "")).partition(".")[0] in _RUNNER_MODULES:
                    break  # pytest's runner from here up (see _RUNNER_MODULES)
                seen.add(id(frame))
                frames.append(frame)
                frame = frame.f_back
            tb = tb.tb_next
    return frames


class _Referrers:
    """Whether every chain of references to an object ends in ``allowed`` (ids of the records, their exceptions and
    their frames) or goes round in a cycle (garbage the collector would free), within ``MAX_CHECKS`` heap scans."""

    def __init__(self, allowed: set[int], ignored: set[int]) -> None:
        self.allowed = allowed
        self.ignored = ignored
        """Containers of this module's own that hold the objects asked about."""
        self.done: set[int] = set()
        """Objects found to be held only that way already (each is asked about once)."""
        self.checks = MAX_CHECKS

    def only_allowed(self, obj: Any, path: frozenset[int] = frozenset()) -> bool:
        """Every referrer of ``obj`` is allowed, or leads back into the chain, or is itself only held that way;
        anything that may be held from outside the heap the collector sees - a frame running or not a record's, a
        module, a class, an object nothing tracked refers to - is not."""
        if id(obj) in self.done:
            return True
        if self.checks <= 0:
            return False
        self.checks -= 1
        referrers = gc.get_referrers(obj)
        path = path | {id(obj)}
        ignored = self.ignored
        ignored.add(id(referrers))  # (it holds what is asked about next, until this call returns)
        held = False
        try:
            for ref in referrers:
                rid = id(ref)
                if rid in ignored:
                    continue  # this module's own containers
                if isinstance(ref, types.FrameType) and ref.f_code in _OWN_CODE:
                    continue  # this check's own frames (a finished one a reference cycle keeps until collected)
                held = True
                if rid in self.allowed or rid in path or rid in self.done:
                    continue  # the records' own, a cycle back into the chain, or shown already
                if isinstance(ref, (types.FrameType, types.ModuleType, type)):
                    return False  # a frame running or no record's; a module or a class: held from outside
                if type(ref) is _FINALIZER_INFO:
                    # a weakref.finalize's arguments (urllib3's pool's queue of idle connections, which the pool's
                    # finalizer closes): held while the finalizer's object lives, and by nothing else of it
                    target = _finalized_object(ref)
                    if target is None or not (id(target) in path or self.only_allowed(target, path)):
                        return False
                    continue
                if not self.only_allowed(ref, path):
                    return False
            if held:
                self.done.add(id(obj))
            return held  # nothing the collector tracks refers to it: something outside the heap holds it
        finally:
            ignored.discard(id(referrers))
            del referrers


_FINALIZER_INFO = getattr(weakref.finalize, "_Info", None)
"""The record of a ``weakref.finalize`` (CPython's): its function and arguments, in the class's ``_registry``
until the object it watches is collected or it is called."""


def _finalized_object(info: Any) -> Any:
    """The object whose collection calls the finalizer ``info`` is the record of; None once it is gone."""
    ref = getattr(info, "weakref", None)
    return ref() if isinstance(ref, weakref.ref) else None


def _running_frames() -> set[int]:
    """Ids of the frames running now, in every thread."""
    frames = set()
    for top in list(sys._current_frames().values()):
        frame: types.FrameType | None = top
        while frame is not None and id(frame) not in frames:
            frames.add(id(frame))
            frame = frame.f_back
    return frames


def _locals_of(frames: list[types.FrameType]) -> list[tuple[str, Any]]:
    """The frames' local values, as roots of a walk (a list the caller drops: it must not stay a referrer), each
    frame's under a label of its own: the walk shares its budget among labels, so that a frame with large locals
    does not use it up before a socket a few references below another frame's is reached."""
    roots: list[tuple[str, Any]] = []
    for i, frame in enumerate(frames):
        label = f"frame {i}"
        try:
            roots.extend([(label, value) for value in frame.f_locals.values()])
        except Exception:  # noqa: BLE001, S112 - a frame whose locals cannot be read holds nothing we can see
            continue
    return roots


def _locals_dicts(frames: list[types.FrameType]) -> list[dict[str, Any]]:
    """The dicts of the frames' locals that the frames themselves keep (Python 3.11 and 3.12 keep the one
    ``f_locals`` made, which ``_locals_of`` read): each holds what its frame holds, and nothing else holds it. Not
    a module's or a class's namespace, nor 3.13's proxy, made anew at each read."""
    out = []
    for frame in frames:
        try:
            values = frame.f_locals
        except Exception:  # noqa: BLE001, S112 - (as in _locals_of)
            continue
        if type(values) is dict and frame.f_code.co_flags & _FUNCTION_FRAME:
            out.append(values)
    return out


_FUNCTION_FRAME = 0x02  # CO_NEWLOCALS: a function's frame, whose locals are its own (a module's and a class's are not)


class Kept(NamedTuple):
    """What pytest keeps for the test being judged that can hold a traceback."""

    records: list[logging.LogRecord]
    """The test's captured log records (``captured_records``)."""
    failure: BaseException | None = None
    """The exception of the test's call, where it is the failure the test's xfail marker expects
    (``expected_failure``)."""


def expected_failure(item: Any, exc: BaseException | None) -> bool:
    """Whether ``exc``, raised by ``item``'s call, is the failure its ``xfail`` marker expects: the test is reported
    ``XFAIL``, as pytest's skipping plugin decides (not under ``--runxfail``; any exception unless the marker names
    ``raises``). False wherever pytest keeps its evaluation elsewhere, or anything cannot be read: the test is then
    judged as any failed test is."""
    if exc is None or _XFAILED_KEY is None or isinstance(exc, _SKIPPED):
        return False
    try:
        if getattr(item.config.option, "runxfail", False):
            return False
        xfailed = item.stash.get(_XFAILED_KEY, None)
        if xfailed is None:
            return False
        raises = xfailed.raises
        if raises is None:
            return True
        if isinstance(raises, (type, tuple)):
            return isinstance(exc, raises)
        matches = getattr(raises, "matches", None)  # pytest 8.4+: pytest.RaisesExc, pytest.RaisesGroup
        return bool(matches(exc)) if callable(matches) else False
    except Exception:  # noqa: BLE001 - an item or a marker of an unusual kind: judged as a failed test
        return False


def _xfailed_key() -> Any:
    """pytest's own stash key for a test's evaluated ``xfail`` marker (pytest 7.0 and later), or None."""
    try:
        from _pytest.skipping import xfailed_key
    except ImportError:  # pragma: no cover
        return None
    return xfailed_key


_XFAILED_KEY = _xfailed_key()
_SKIPPED = getattr(pytest.skip, "Exception", ())
"""A ``pytest.skip()`` in the call is a skip, never an expected failure."""


def held_only_by_tracebacks(wanted: dict[int, Hashable], kept: Kept) -> set[Hashable]:
    """``wanted``: fd -> identity of the sockets a test would be blamed for. Returns the identities of those that
    only the tracebacks pytest keeps for the test hold (the module's docstring)."""
    records = kept.records
    exceptions = _exceptions(records, kept.failure)
    if not exceptions:
        return set()
    frames = _frames(exceptions)
    if not frames:
        return set()
    found_objects: dict[Hashable, Any] = {}
    found = fixture_holders(wanted, _locals_of(frames), keep=found_objects)
    if not found:
        return set()
    allowed = {id(r) for r in records} | {id(e) for e in exceptions} | {id(f) for f in frames}
    allowed.update(id(getattr(r, "exc_info", None)) for r in records)
    allowed.update(id(getattr(r, "__dict__", None)) for r in records)
    allowed.update(id(r.args) for r in records if isinstance(getattr(r, "args", None), tuple))  # (logging's own)
    allowed.update(id(d) for d in _locals_dicts(frames))
    check = _Referrers(allowed, {id(found_objects), id(frames), id(exceptions), id(records)})
    return {key for key in list(found_objects) if check.only_allowed(found_objects[key])}


_OWN_CODE = frozenset({_Referrers.only_allowed.__code__, held_only_by_tracebacks.__code__, _locals_of.__code__,
                       _finalized_object.__code__})
"""The frames of this check itself, which hold what it asks about."""

__all__ = ["MAX_CHECKS", "Kept", "captured_records", "expected_failure", "held_only_by_tracebacks"]
