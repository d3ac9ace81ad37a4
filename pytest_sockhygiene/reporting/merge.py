"""One report from several: the shards of a suite (matrix jobs, pytest-split, several machines) add up to the
report one run of the whole suite would have written, as far as that can be known from the parts.

Tests are the union, in the order first seen; a test found in several reports takes the last one's record (a
re-run shard replaces the failed one) and is named in a warning. The session's figures are combined: counts
summed, peaks as maxima (each with the limit of the run that had it: a shard on another machine has other
limits), leaks and notices united. ``tests_with_violations`` and ``violations_by_kind`` describe the merged
tests list; ``tests_checked`` is the shards' sum, so it counts a test checked twice twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Callable

from .reports import VERSION, Document


def _united(lists: Sequence[Sequence[Any]]) -> list[Any]:
    out: list[Any] = []
    for items in lists:
        for x in items:
            if x not in out:
                out.append(x)
    return out


def _sum_known(values: Iterable[int | None]) -> int | None:
    """The sum of the known values; None if none is (every shard's tests unmeasured: gevent's sockets)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _peak(sessions: Sequence[dict[str, Any]], key: str, limit_key: str) -> tuple[int | None, int | None]:
    """The largest ``key`` and the ``limit_key`` of the session that had it (or the first known limit)."""
    best: dict[str, Any] | None = None
    for s in sessions:
        if s.get(key) is not None and (best is None or s[key] > best[key]):
            best = s
    limit = best.get(limit_key) if best is not None else None
    if limit is None:
        limit = next((s[limit_key] for s in sessions if s.get(limit_key) is not None), None)
    return (best[key] if best is not None else None), limit


def violations_by_kind(tests: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many tests broke each kind (a test counts once per kind), as ``SessionResults`` counts them."""
    out: dict[str, int] = {}
    for t in tests:
        if t.get("clean", True):
            continue
        for kind in {v["kind"] for v in t.get("violations", [])}:
            out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items()))


def sources(documents: Sequence[tuple[str, Document]], merged: Document) -> list[int]:
    """For each test of ``merged`` (``merge(documents)``), the index of the document whose record it kept: the
    last one that has the test."""
    last = {t["nodeid"]: i for i, (_, doc) in enumerate(documents) for t in doc["tests"]}
    return [last[t["nodeid"]] for t in merged["tests"]]


def merge(documents: Sequence[tuple[str, Document]], warn: Callable[[str], None]) -> Document:
    """``documents``: (name, report) in the order given. ``warn`` is told of each test found more than once."""
    tests: dict[str, dict[str, Any]] = {}
    seen_in: dict[str, str] = {}
    for name, doc in documents:
        for t in doc["tests"]:
            nodeid = t["nodeid"]
            if nodeid in tests:
                warn(f"{nodeid}: in {seen_in[nodeid]} and {name}; keeping {name}'s (the last given)")
            tests[nodeid] = t  # a dict keeps the position of the first insertion
            seen_in[nodeid] = name
    merged = list(tests.values())
    sessions = [doc["session"] for _, doc in documents]
    peak_tw, ports = _peak(sessions, "peak_time_wait", "ephemeral_ports")
    peak_fds, fd_limit = _peak(sessions, "peak_open_fds", "fd_limit")
    session = {
        "tests_checked": sum(s["tests_checked"] for s in sessions),
        "tests_with_violations": sum(1 for t in merged if not t.get("clean", True)),
        "violations_by_kind": violations_by_kind(merged),
        "connections_opened": _sum_known(s.get("connections_opened") for s in sessions),
        "peak_time_wait": peak_tw,
        "ephemeral_ports": ports,
        "peak_open_fds": peak_fds,
        "fd_limit": fd_limit,
        "session_leaks": _united([s["session_leaks"] for s in sessions]),
        "plugin_problems": sum(s["plugin_problems"] for s in sessions),
        "notices": _united([s["notices"] for s in sessions]),
        "rerun_after_violations": _united([s.get("rerun_after_violations", []) for s in sessions]),
    }
    return {"version": VERSION, "tests": merged, "session": session}
