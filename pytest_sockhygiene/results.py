"""Results as plain JSON-ready records: one per checked test, and the session's health.

A record is made where the test ran. In a plain run it goes straight to the reporter; on a pytest-xdist worker it
rides on the test's teardown report (``report.sockhygiene``), which xdist serialises to the controller like any
report attribute, and the controller takes it off there. So the summary and the JSON report are built from the
same records with or without xdist, and verdicts travel with the test results instead of beside them.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Container, Mapping, Sequence
from typing import Any, Callable, Optional

from .baseline import allowed
from .health import peak_time_wait
from .origin import Origin
from .verdict import KINDS, Item, Verdict, Violation

Record = dict[str, Any]


Locate = Callable[[Optional[Origin]], Optional[tuple[str, int]]]


def _item_dict(item: Item, fmt: Callable[[Origin | None], str], locate: Locate | None) -> dict[str, Any]:
    d = item.as_dict(fmt)
    where = locate(item.origin) if locate is not None and item.origin is not None else None
    if where is not None:  # the origin's file and line as values: where a CI annotation points
        d["file"], d["line"] = where
    return d


_Pending = tuple[list[tuple[dict[str, Any], Violation]], Callable[[Optional[Origin]], str], Optional[Locate]]


class Deferred:
    """A violating test's record whose violations' items are made into dicts only when something reads them: the
    JSON report, the baseline, CI annotations, the HTML page, pytest-html, an xdist worker's report (``full``).
    The terminal summary reads only ``head`` - counts, origins, each violation's kind and limit - so a run that
    writes no report never formats its violations' items and contexts (issue 12: a tenth of a violating test's
    check in warn mode). ``full`` fills ``head`` in place, once: the result is the record ``test_record`` made
    before, key for key."""

    __slots__ = ("_pending", "head")

    def __init__(self, head: Record, pending: list[tuple[dict[str, Any], Violation]],
                 fmt: Callable[[Origin | None], str], locate: Locate | None) -> None:
        self.head = head
        self._pending: _Pending | None = (pending, fmt, locate)

    def full(self) -> Record:
        pending = self._pending
        if pending is not None:
            self._pending = None
            entries, fmt, locate = pending
            for d, v in entries:
                d["items"] = [_item_dict(i, fmt, locate) for i in v.items]
                if v.context:
                    d["context"] = [_item_dict(i, fmt, locate) for i in v.context]
        return self.head


def full_record(record: Any) -> Any:
    """A record as ``test_record`` or ``clean_record`` made it, with a ``Deferred`` one made whole."""
    return record.full() if type(record) is Deferred else record


def _head(record: Any) -> Any:
    """A record as stored, with a ``Deferred`` one as its ``head`` (what the summary reads)."""
    return record.head if type(record) is Deferred else record


def _dirty(record: Any) -> bool:
    """A stored record of a test with violations (growth beyond its baseline is one too)."""
    kind = type(record)
    return kind is Deferred or (kind is dict and not record["clean"])


def test_record(nodeid: str, verdict: Verdict, grown: Sequence[tuple[str, int, int]],
                fmt: Callable[[Origin | None], str], when: float, fds: int | None,
                locate: Locate | None = None, location: tuple[str, int] | None = None, doctest: bool = False) -> Any:
    """A dirty test's full record (a dict; a ``Deferred`` one where the verdict has violations, whose items are made
    when read), or a clean test's compact one (a tuple, see ``_Compact``).

    ``locate`` gives each item's origin as (file relative to the rootdir, line); ``location`` is the test
    function's (file, line), where an annotation points when no origin is known. ``doctest``: the test is a doctest,
    which a dirty record says (``"doctest": true``), so that its text tells how a doctest allows it wherever it is
    made again (``report.allow_text``)."""
    if verdict.clean and not grown and not verdict.threads:
        # a verdict's counts are ints, or None where unmeasured (``verdict.unmeasured``): as recorded
        return (nodeid, _IN_ORDER(verdict.counts), when, fds)
    violations: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], Violation]] = []
    for v in verdict.violations:
        d: dict[str, Any] = {"kind": v.kind, "count": v.count, "limit": v.limit}  # + items, context: Deferred.full
        violations.append(d)
        pending.append((d, v))
    for kind, count, base in grown:
        violations.append({"kind": "baseline", "count": count, "limit": allowed(base),
                           "items": [{"state": kind, "local": None, "remote": None, "origin": None,
                                      "count": count, "baseline": base}]})
    origins = {}
    for kind in ("time_wait", "connections"):
        found = verdict.violation(kind)
        if found is not None and found.items and found.items[0].origin is not None:
            origins[kind] = fmt(found.items[0].origin)
    record = {
        "nodeid": nodeid,
        "clean": not violations,
        "counts": {k: verdict.counts.get(k, 0) for k in KINDS},  # ints, or None where unmeasured
        "violations": violations,
        "stop": when,
        "fds": fds,
        "origins": origins,
    }
    if verdict.threads:
        record["threads"] = list(verdict.threads)
    if location is not None:
        record["file"], record["line"] = location
    if doctest:
        record["doctest"] = True
    return Deferred(record, pending, fmt, locate) if pending else record


_ZEROS = (0,) * len(KINDS)

_IN_ORDER: Callable[[Mapping[str, int | None]], tuple[int | None, ...]] = operator.itemgetter(*KINDS)
"""A verdict's counts in ``KINDS`` order, in one C call (a clean test's compact record holds them so)."""


def clean_record(test: Any) -> Any:
    """The record of a test in whose window nothing happened (the clean path's, built without a verdict): the
    test itself. That is its node id, or in the process that reports, the pytest item, whose node id is read
    only when a report is written. Pytest keeps every item for the whole run, so this costs one list slot and
    touches nothing while the suite runs. No time: a test with nothing in its window adds nothing to the
    TIME_WAIT peak, the one use of a record's time."""
    return test


def sampled_clean_record(nodeid: str, when: float, fds: int | None) -> Any:
    """A clean test's record when a report or the HTML page was asked for: they show each test's sample (when it
    ended, this process's open fds then). The compact form of ``_Compact``; its cost is a clock read."""
    return (nodeid, _ZEROS, when, fds)


def public_record(r: Record, finished: Container[str] | None = None) -> Record:
    """The record as the JSON report's schema has it (the transport-only keys dropped). ``finished``: the tests
    whose body ran to the end (their call phase passed), if known: each record then says whether it is one
    (``python -m pytest_sockhygiene baseline`` takes only those, as ``--sockhygiene-baseline-update`` does)."""
    out = {"nodeid": r["nodeid"], "clean": r["clean"], "counts": r["counts"], "violations": r["violations"]}
    if finished is not None:
        out["finished"] = r["nodeid"] in finished
    if r.get("file") is not None:
        out["file"], out["line"] = r["file"], r["line"]
    if r.get("stop"):
        out["sample"] = {"time": r["stop"], "fds": r.get("fds")}
    if r.get("threads"):
        out["threads"] = r["threads"]
    if r.get("doctest"):
        out["doctest"] = True
    return out


_Compact = tuple[str, tuple[int, ...], float, Optional[int]]
"""A clean test's record as kept for the session when its window saw something (connections within limits):
nodeid, counts in KINDS order, end time, open fds then (None unless a report or the HTML page was asked for)
(~100 bytes, where the dict would take ~1.8 KB: a 10,000-test run must
not grow by megabytes). A test whose window saw nothing is kept as ``clean_record`` made it."""


def _compact(r: Any) -> Any:
    if isinstance(r, str):  # a clean test's node id
        return r
    if not isinstance(r, dict):
        return (*r[:1], tuple(r[1]), *r[2:4])  # as sent (xdist may turn tuples into lists)
    if r["clean"] and not r.get("origins") and not r.get("threads"):
        return (r["nodeid"], tuple(r["counts"][k] for k in KINDS), r["stop"], r.get("fds"))
    return r


_CARRIES_COUNTS = frozenset({dict, tuple, list, Deferred})
"""The types of a stored record that carries counts (``test_record``'s, ``_compact``'s, ``Deferred``): any other is
``clean_record``'s, a node id or a pytest item, and counts nothing. Asked as ``type(r) in``, never ``isinstance``:
the session's end reads every record of the run, and ``isinstance`` of a pytest item looks up its ``__class__``
for each class that does not match - most of the ~10k instructions per test the summary cost a clean suite."""


def _nodeid(r: Any) -> str:
    """The node id of a stored record, whatever its form (``_compact``, ``clean_record``, a dict, ``Deferred``).
    Each record is asked once at the session's end (``keep_last_attempts``): types compared, not ``isinstance``."""
    kind = type(r)
    if kind is str:
        return str(r)
    if kind is tuple or kind is list:
        return str(r[0])
    if kind is dict:
        return str(r["nodeid"])
    if kind is Deferred:
        return str(r.head["nodeid"])
    return str(r.nodeid)  # clean_record's pytest item


def _expand(r: Any) -> Record:
    if isinstance(r, dict):
        return r
    if type(r) is Deferred:
        return r.full()
    fds = None
    if isinstance(r, tuple):
        nodeid, counts, stop = r[:3]
        fds = r[3] if len(r) > 3 else None
    else:  # clean_record's: a node id, or the item
        nodeid, counts, stop = (r if isinstance(r, str) else r.nodeid), _ZEROS, 0.0
    return {"nodeid": nodeid, "clean": True, "counts": dict(zip(KINDS, counts)), "violations": [], "stop": stop,
            "fds": fds, "origins": {}}


CHECKS_OFF = "socket checks are off for this session"


def _notice_key(notice: str) -> str:
    """A notice as compared across xdist's workers: each says it once, and one that names its process (psutil's
    errors do: ``(pid=1234)``) is the same notice from every worker - shown once, as any other."""
    return _PID.sub("pid=", notice)


_PID = re.compile(r"pid=\d+")
"""How the notice of a session (or an xdist worker) whose socket table could not be read begins: the summary,
which sees only the merged notices, then says why no test was checked instead of calling nothing "all clean"."""

HOOKS_REWRAPPED = "socket hooks replaced by other code were wrapped again before any fixture or test code ran"
"""How the notice begins when other code replaced the plugin's socket hooks and nothing was missed: pytest-socket
writes its saved ``connect`` back at every test's teardown, installed and unused alike. Nothing to act on, so the
terminal shows it only with ``-v``; the JSON report always has it."""


def _violated(record: Any) -> bool:
    """Whether a stored record is one of a test that broke its limits (a clean record of any form is not)."""
    if type(record) not in _CARRIES_COUNTS:
        return False
    return bool(_expand(_head(record)).get("violations"))


@dataclasses.dataclass
class SessionResults:
    _stored: list[Any] = dataclasses.field(default_factory=list)
    _counted_records: list[Any] = dataclasses.field(default_factory=list)
    """The stored records that carry counts (``_CARRIES_COUNTS``), kept as they are added: the summary's passes run
    over these alone, not over every clean test of the run."""
    leaks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Session-level leaks: sockets and clients a broader-scope fixture left open at session end."""
    peak_fds: int | None = None
    fd_limit: int | None = None
    ports: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)
    interrupted: list[str] = dataclasses.field(default_factory=list)
    """Tests the run was interrupted in (Ctrl-C): checked when the run stopped, never failed."""
    rerun_after_violations: list[str] = dataclasses.field(default_factory=list)
    """Tests whose earlier attempt broke its limits and that a rerun plugin ran again (``keep_last_attempts``):
    the record kept is the last attempt's, so a leak of the first would otherwise leave no trace."""

    stood: set[str] = dataclasses.field(default_factory=set)
    """Tests run again whose failed attempt still stands in the run's result (``stands``)."""

    repeats: bool = False
    """A test may have been recorded more than once (``keep_last_attempts`` then keeps its last): records came from
    elsewhere (xdist workers, forked children), or the process that reports saw one item judged twice in a row
    (pytest-rerunfailures, flaky) or was told to keep duplicate paths. Else nothing is looked for at the session's
    end, where each record's node id cost a clean suite ~3k instructions per test."""

    def add(self, record: Any) -> None:
        """A record as received from anywhere (an xdist worker's may have turned tuples into lists)."""
        self.repeats = True
        self._keep(_compact(record))

    def add_local(self, record: Any) -> None:
        """A record made in this process by ``test_record`` or ``clean_record`` (kept as it is)."""
        self._keep(_compact(record) if type(record) is dict else record)

    def _keep(self, record: Any) -> None:
        self._stored.append(record)
        if type(record) in _CARRIES_COUNTS:  # (not clean_record's node id)
            self._counted_records.append(record)

    def stands(self, nodeid: str) -> None:
        """An attempt of the test failed at its teardown and that failure was reported as the test's, not as a
        rerun: flaky runs a failed call again but lets the attempt's teardown error through (in ``enforce`` mode a
        leak is that error), where pytest-rerunfailures reports the attempts it reruns as ``rerun``. The run failed
        on that attempt, so its record is the test's (``keep_last_attempts``), not the last attempt's."""
        self.stood.add(nodeid)
        self.repeats = True

    def clean_adder(self) -> Callable[[Any], None]:
        """``add_local`` for ``clean_record``'s records, as one C call: the list's own append (the clean path of every
        test; ``keep_last_attempts`` replaces the list only at the session's end, after the last test)."""
        return self._stored.append

    def keep_last_attempts(self) -> int:
        """Keep one record per test: its last. pytest-rerunfailures runs a failing test again under the same node
        id (each attempt is checked, and a leak in enforce mode is itself a failure it retries); only the attempt
        whose outcome stands is the test's (an earlier one whose failure stands as well, with flaky: ``stands``), as
        in ``merge`` of reports that share a test. Called once, before the
        summary and the report are made; one pass over node ids, nothing kept per test while the suite runs.
        Returns how many earlier attempts were dropped."""
        if not self.repeats:
            return 0
        stored = self._stored
        # (map, not a comprehension: a loop run once a session runs unspecialised bytecode, in which every global
        # name read is a dictionary lookup)
        ids = list(map(_nodeid, stored))
        if len(set(ids)) == len(ids):
            return 0
        last = {nodeid: i for i, nodeid in enumerate(ids)}
        # tests whose record is an earlier attempt's, one whose failure stands (``stands``): their violation is
        # counted, so they are not among those run again after breaking their limits
        earlier: set[str] = set()
        if self.stood:  # the last violating attempt of such a test is its record, if it is not its last attempt
            kept = {}
            for i, nodeid in enumerate(ids):
                if nodeid in self.stood and _violated(stored[i]):
                    kept[nodeid] = i
            earlier = {nodeid for nodeid, i in kept.items() if i != last[nodeid]}
            last.update(kept)
        violated = dict.fromkeys(ids[i] for i, r in enumerate(stored)
                                 if last[ids[i]] != i and _violated(r) and ids[i] not in earlier)
        self.rerun_after_violations.extend(n for n in violated if n not in self.rerun_after_violations)
        self._stored = [r for i, r in enumerate(stored) if last[ids[i]] == i]
        self._counted_records = [r for r in self._stored if type(r) in _CARRIES_COUNTS]
        return len(stored) - len(self._stored)

    @property
    def records(self) -> list[Record]:
        return [_expand(r) for r in self._stored]

    def measured(self) -> list[Record]:
        """The records that can have a count above zero: not those ``clean_record`` made (a test whose window saw
        nothing), which the summary would otherwise expand into a dict each, for every test of the run. A
        ``Deferred`` record as its ``head``: what the summary reads (counts, origins, violations' kinds and limits)."""
        return [_expand(_head(r)) for r in self._counted_records]

    @property
    def checked(self) -> int:
        return len(self._stored)

    def add_process_health(self, health: Mapping[str, Any]) -> None:
        """Merge one process's (a worker's) health: leaks, fd peak, problems, notices."""
        self.leaks.extend(health.get("leaks", []))
        fds = health.get("peak_fds")
        if fds is not None:
            self.peak_fds = max(self.peak_fds or 0, int(fds))
        self.fd_limit = health.get("fd_limit") or self.fd_limit
        self.ports = health.get("ports") or self.ports
        self.problems.extend(p for p in health.get("problems", []) if p not in self.problems)
        known = {_notice_key(n) for n in self.notices}
        for n in health.get("notices", []):
            if _notice_key(n) not in known:
                known.add(_notice_key(n))
                self.notices.append(n)
        self.interrupted.extend(health.get("interrupted", []))

    @property
    def dirty(self) -> list[Record]:
        """The records of tests with violations, whole (CI annotations read their items)."""
        return [full_record(r) for r in self._counted_records if _dirty(r)]

    def _dirty_heads(self) -> list[Record]:
        """``dirty``, with ``Deferred`` records as their ``head``: enough for counting violations by kind."""
        return [_head(r) for r in self._counted_records if _dirty(r)]

    def violations_by_kind(self, dirty: Sequence[Record] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.dirty if dirty is None else dirty:
            for kind in {v["kind"] for v in r["violations"]}:
                out[kind] = out.get(kind, 0) + 1
        return out

    def threads_left(self) -> list[tuple[str, str]]:
        """(node id, thread description) of every thread a test left running."""
        return [
            (r["nodeid"], t) for r in map(_head, self._counted_records) if type(r) is dict for t in r.get("threads", ())
        ]

    def worst(self, kind: str, n: int = 5, records: Sequence[Record] | None = None) -> list[Record]:
        """The ``n`` tests with the highest count of ``kind``. ``records``: ``measured()``, if the caller has it
        (the summary asks for several rankings and the session's figures: one expansion of the records, not one
        each)."""
        if records is None:
            records = self.measured()
        ranked = sorted((r for r in records if (r["counts"].get(kind) or 0) > 0),
                        key=lambda r: (-r["counts"][kind], r["nodeid"]))
        return ranked[:n]

    def session(self, records: Sequence[Record] | None = None) -> dict[str, Any]:
        """The session's figures. ``records``: ``measured()``, if the caller has it (see ``worst``)."""
        if records is None:
            records = self.measured()
        peak_tw = peak_time_wait((r["stop"], r["counts"]["time_wait"] or 0) for r in records)
        # no test's counts measured (gevent's sockets bypass the hooks): unknown, as the summary says, not 0
        unknown = bool(records) and all(r["counts"]["connections"] is None for r in records)
        dirty = self._dirty_heads()
        return {
            "tests_checked": len(self._stored),
            "tests_with_violations": len(dirty),
            "violations_by_kind": self.violations_by_kind(dirty),
            "connections_opened": None if unknown else sum(r["counts"]["connections"] or 0 for r in records),
            "peak_time_wait": None if unknown else peak_tw,
            "ephemeral_ports": self.ports,
            "peak_open_fds": self.peak_fds,
            "fd_limit": self.fd_limit,
            "session_leaks": list(self.leaks),
            "plugin_problems": len(self.problems),
            "notices": list(self.notices),
            "rerun_after_violations": list(self.rerun_after_violations),
        }

    def document(self, finished: Container[str] | None = None) -> dict[str, Any]:
        """The JSON report. ``finished``: see ``public_record``."""
        return {"version": 1, "tests": [public_record(r, finished) for r in self.records],
                "session": self.session()}
