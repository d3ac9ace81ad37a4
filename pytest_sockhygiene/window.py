"""A window: the span of one test (fixture setup through teardown), or of a ``measure()`` block.

Opening costs one fd-table scan. Closing costs one more; only when the process gained a socket or a socket
event happened is anything described or looked up in the kernel, so a test that touches no socket pays two scans
and nothing else. A violation that waiting can still change is re-checked with a short, capped backoff before
it is reported, because closes are asynchronous (a server thread closes its side a few milliseconds after the
client, an event loop reaps a transport on its next turn) - the retry-before-report idea of goleak. A violation
that no close can take back (a TIME_WAIT burst, an exceeded connection budget, a client already collected
unclosed) is reported at once: waiting for it would only make a violating test cost many times a clean one.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import re
import socket
import threading
import time
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from typing import Any, Callable

from .closers import may_close_elsewhere, nothing_else_runs
from .endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from .events import OWNER_ATTR, EventSink, Recorder, SocketEvent
from .holders import fixture_holders
from .limits import Limits
from .logheld import held_only_by_tracebacks
from .origin import Origin
from .table import Scan, SocketEntry, SocketTable, TcpState
from .timeouts import settle_within
from .transports import NOTE as TRANSPORT_NOTE
from .transports import closing_on_stopped_loops
from .unraised import filter_facts, shown_not_raised
from .verdict import (
    CLEAN,
    HELD_SOCKET_KINDS,
    POOL_MARK,
    Item,
    Observation,
    Verdict,
    Violation,
    judge,
    listening_ports,
    test_connects,
    time_wait_candidates,
)

ClientProbe = Callable[["Window", bool],
                      tuple[list[Item], dict[Hashable, str], dict[Hashable, str], list[Item], list[Item]]]
"""Asked at close, with whether the pools of clients from outside the window must be read (new sockets are held, or
a connect was not made by the window's own clients): (unclosed clients of this window that opened a connection,
sockets owned by clients created outside it, notes on sockets of this window's clients, clients this window
created, unclosed clients of this window that never opened a connection)."""

_REPR_ADDRESS = re.compile(r"\b(laddr|raddr)=(\([^)]*\))")
"""A socket's addresses in its repr (``laddr=('127.0.0.1', 50658)``), which a ResourceWarning about it quotes."""


def _repr_endpoint(text: str, which: str) -> Endpoint | None:
    """``which`` (laddr or raddr) of the socket repr in ``text``, as an Endpoint; None if absent or unreadable."""
    for name, value in _REPR_ADDRESS.findall(text):
        if name == which:
            try:
                return endpoint_from_sockaddr(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                return None
    return None

SETTLE_FIRST_DELAY = 0.001
SETTLE_MAX_DELAY = 0.05
_PENDING_CLIENT_KINDS = frozenset({"clients"})
"""Violations whose items may be live clients (``Item.pending``): another thread or task may still close them."""


def backoff(deadline: float) -> Iterator[bool]:
    """Sleep 1 ms, then twice as long each time up to 50 ms, until ``deadline``; yield after each sleep.

    goleak's retry-before-report: many tiny retries, capped, so that a close a few milliseconds late is not
    reported and a clean re-check costs almost nothing.
    """
    delay = SETTLE_FIRST_DELAY
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, SETTLE_MAX_DELAY)
        yield True


_NOTHING_NEW: frozenset[Any] = frozenset()


def _take_touched(recorder: Recorder) -> set[int]:
    """The fd numbers of the socket calls since the last look, and a fresh start for the next one."""
    touched, recorder.touched_fds = recorder.touched_fds, set()
    recorder.touched = False
    return touched


def _unexplained(entries: list[SocketEntry], events: list[SocketEvent],
                 listeners: dict[Endpoint, Hashable | None]) -> bool:
    """A connected socket that no connect or accept explains and whose port is no known listener's: it may be
    the server side of a listener this process opened before the hooks were installed."""
    explained = {ev.identity for ev in events if ev.kind in ("connect", "accept")}
    ports = listening_ports(listeners)
    return any(e.state != TcpState.LISTEN and e.local is not None and e.key not in explained
               and e.local[1] not in ports for e in entries)


def _maybe_open(events: list[SocketEvent]) -> set[int]:
    """The fd numbers of ``events`` whose last event is not a close: the only ones a look need ``fstat``. A
    close is recorded before the fd is released, and whatever reuses the number later is recorded after it, so
    an fd whose last event is a close was closed - or reopened where no hook saw it, which the look's fd count
    then catches (``SocketTable.rescan`` falls back to a full scan). A burst of connections that were all
    closed costs no ``fstat`` at all, and none of the GIL hand-offs to a server thread that each would invite."""
    last = {ev.fd: ev.kind for ev in events}  # the last one wins
    return {fd for fd, kind in last.items() if kind != "close"}


def discover_listeners(table: SocketTable, held: dict[Hashable, int], recorder: Recorder) -> None:
    """Describe held sockets not described before and remember the listening ones. Each socket is described
    at most once per session, and only on this (dirty) path."""
    seen = recorder.described
    todo = {k: fd for k, fd in held.items() if k not in seen}
    for e in table.describe(todo):
        if e.state == TcpState.LISTEN and e.local is not None:
            recorder.listeners.setdefault(e.local, e.key)
    seen.update(todo)


def _no_collection(generation: int = 2) -> int:
    """``gc.collect``'s stand-in where the check must not free the user's objects (``Window._close``)."""
    return 0


def _may_settle(verdict: Verdict) -> bool:
    """Whether a violation still has a part that waiting can change: a socket the process still holds, or a
    live client not yet closed. Everything else is final: a client collected unclosed stays unclosed, TIME_WAIT
    entries only expire after about 60 s, connections made are made, an unused client is a count (and any kind
    not named here is final too). A mix waits only while such a part remains."""
    for v in verdict.violations:
        if v.kind in HELD_SOCKET_KINDS and v.items:
            return True
        if v.kind in _PENDING_CLIENT_KINDS and any(i.pending for i in v.items):
            return True
    return False


_NO_FDS: frozenset[int] = frozenset()


def _held_outside_pools(verdict: Verdict) -> set[int]:
    """The fds of the sockets a violation lists that the process still holds other than idle in a live client's
    pool: a listener or a connection another thread may close just after the test (-1 for one of no known fd). A
    pooled one goes only when its client is closed, which is what ``closers`` is asked about."""
    return {i.fd if i.fd is not None else -1 for v in verdict.violations if v.kind in HELD_SOCKET_KINDS
            for i in v.items if not i.note.startswith(POOL_MARK)}


def _with_note(verdict: Verdict, note: str, noted: Callable[[Violation, Item], bool]) -> Verdict:
    """``note`` added to the items for which ``noted(violation, item)`` holds."""
    violations = tuple(
        dataclasses.replace(v, items=tuple(
            dataclasses.replace(i, note="; ".join(filter(None, [i.note, note]))) if noted(v, i) else i
            for i in v.items))
        for v in verdict.violations)
    return dataclasses.replace(verdict, violations=violations)


def _held(v: Violation, i: Item) -> bool:
    """A held socket's item (``_with_note``)."""
    return v.kind in HELD_SOCKET_KINDS


def _with_stuck_notes(verdict: Verdict, stuck: Collection[int]) -> Verdict:
    """The items of sockets a closing asyncio transport holds on a loop that is not running, noted so (their fix
    follows from the note: ``verdict._advice``)."""
    return _with_note(verdict, TRANSPORT_NOTE, lambda v, i: v.kind in HELD_SOCKET_KINDS and i.fd in stuck)


def _with_fd_exhaustion(verdict: Verdict, table: SocketTable) -> Verdict:
    """A test that left sockets open while the process had no fd left: say so on each of them, with the count
    and the limit in force (the test's own errors - EMFILE - most likely came from there)."""
    for v in verdict.violations:  # (a loop, not any() over a generator: at every violating test)
        if v.kind in HELD_SOCKET_KINDS:
            break
    else:
        return verdict
    exhausted = table.fds_exhausted()
    if exhausted is None:
        return verdict
    return _with_note(verdict, "the process ran out of file descriptors ({} in use of a limit of {})".format(
        *exhausted), _held)


def _with_cut_settle(verdict: Verdict, waited: float, settle: float) -> Verdict:
    """A verdict that waiting could still have changed, judged after a wait cut short by a test timeout about to fire
    (``timeouts.settle_within``): its held sockets and live clients say so - a close just after the wait was not
    seen, and the way to let it be seen is more time (pytest-timeout's ``timeout``), not a fix of the code."""
    if not _may_settle(verdict):
        return verdict
    when = "at once" if waited <= 0 else f"after {waited:.2f} s"
    note = (f"judged {when}, not after the {settle:g} s settle: the test's timeout was about to fire, so a close "
            "just after this look was not waited for")
    return _with_note(verdict, note, lambda v, i: v.kind in HELD_SOCKET_KINDS or (v.kind in _PENDING_CLIENT_KINDS
                                                                                and i.pending))


class Window(EventSink):
    __slots__ = ("after_scan", "before", "before_scan", "blind", "client_probe", "closed", "exact", "log_held",
                 "opened_at", "recorder", "stuck", "table", "walked")

    def __init__(self, table: SocketTable, recorder: Recorder, client_probe: ClientProbe | None = None,
                 before: Scan | None = None, since: Scan | None = None, exact: bool = False) -> None:
        """``before``: the first look, already taken (the last window's final one, no socket call since). Else
        ``since``: that final look, which the socket calls made since (``Recorder.touched_fds``) may be enough
        to bring up to date (``SocketTable.rescan``); else a full scan. ``exact``: sockets may be made where no
        hook sees them (gevent's), so every look is a full scan: the quick looks' rule, "no socket call seen and
        the same fd numbers open, so the same sockets", does not hold (a socket closed and another opened on its
        number went unseen, and was blamed on a later test)."""
        self.events = []  # EventSink's one attribute, set here: a window is made per test
        self.table = table
        self.recorder = recorder
        self.client_probe = client_probe
        self.exact = exact
        recorder.add_sink(self)  # record first, then look: a socket connected in between is seen both ways
        if before is None:
            touched = _take_touched(recorder)
            before = (table.rescan(since, touched) if since is not None else None) or table.scan()
        self.before_scan = before
        self.before = self.before_scan.ids
        self.after_scan: Scan | None = None
        self.closed = False
        self.blind = False
        """The socket hooks were replaced by other code for part of the window: connects may have gone unseen."""
        self.opened_at = time.monotonic()  # (a test timeout's time left is counted from here: timeouts.py)
        self.walked: Collection[Hashable] = _NOTHING_NEW
        """Sockets and clients already looked for in broader fixtures' values (``holders.py``, ``mark_walked``): a
        set made at the first, as few windows walk any."""
        self.log_held: dict[Hashable, bool] | None = None
        """Sockets asked about in this window: whether only a traceback pytest keeps for the test holds each (a
        captured log record's, an xfail test's expected failure's: logheld.py)."""
        self.stuck: Collection[int] = _NO_FDS
        """fds of held sockets an asyncio transport is closing on a loop that is not running (``transports.py``):
        nothing can close them while the check settles, and their note says so."""

    def mark_walked(self, keys: Iterable[Hashable]) -> None:
        """Remember these as looked for in broader fixtures' values (``walked``)."""
        walked = self.walked
        if not isinstance(walked, set):
            walked = self.walked = set()
        walked.update(keys)

    def close_quiet(self) -> bool:
        """The clean path in one call, for a session with no tracked client alive: no socket event and the same fds
        as at the start (``SocketTable.unchanged``, the quick look) -> the window is closed and clean. False
        otherwise, with nothing changed: ``close`` then judges (and looks again)."""
        if self.events or self.after_scan is not None or self.exact:
            return False
        recorder = self.recorder
        recorder.touched = False  # any socket call from here on invalidates this look for the next window
        if recorder.touched_fds:  # (the clean path: inline, and no new set when there is nothing to forget)
            recorder.touched_fds = set()
        scan = self.table.unchanged(self.before_scan)
        if scan is not self.before_scan or self.events:
            return False
        self.after_scan = scan
        self.closed = True
        recorder.remove_sink(self)
        return True

    def observe(self, limits: Limits) -> Verdict:
        """Look once and judge."""
        quiet = self.after_scan is None and not self.events
        _take_touched(self.recorder)  # any socket call from here on invalidates this scan for the next window
        if self.exact:
            scan = None
        elif quiet:
            scan = self.table.unchanged(self.before_scan)
        else:  # the hooks saw sockets used: only their fd numbers need a new look, if the same numbers are open
            scan = self.table.rescan(self.before_scan, _maybe_open(self.events))
        scan = scan or self.table.scan()
        self.after_scan = scan
        after = scan.ids
        same = scan is self.before_scan  # the same sockets as at the start, provably (see SocketTable.unchanged)
        new_ids = _NOTHING_NEW if same else after.keys() - self.before.keys()  # (set operations: in C)
        clients: list[Item] = []
        client_owned: dict[Hashable, str] = {}
        notes: dict[Hashable, str] = {}
        created: list[Item] = []
        unused: list[Item] = []
        if self.client_probe is not None:
            clients, client_owned, notes, created, unused = self.client_probe(
                self, bool(new_ids) or self._connects_outside_own_clients())
        vanished = self._vanished(after)
        if not new_ids and not self.events and not clients and not unused and not vanished:
            return CLEAN
        owned = dict(self.recorder.ownership.socket_owner)
        owned.update(client_owned)
        entries: list[SocketEntry] = []
        if new_ids:
            fixtures = {ev.identity for ev in self.events if ev.owner is not None}  # a fixture's thread's (events.py)
            if fixtures:
                self._remember_fixtures_sockets(new_ids, client_owned)
            # neither is the test's (verdict.owned_ids): not described, which costs a handful of system calls each
            # (a session server's thread still closing the side it accepted, at every test)
            entries = self.table.describe({k: after[k] for k in new_ids if k not in owned and k not in fixtures
                                           and not self._owned_in_flight(after[k])})
            if entries and self.recorder.ownership.fixture_values:
                entries = self._held_by_fixtures(entries, owned)
            if entries and self.recorder.ownership.kept_tracebacks is not None:
                entries = self._held_by_kept_tracebacks(entries)
        if _unexplained(entries, self.events, self.recorder.listeners):
            discover_listeners(self.table, after, self.recorder)
        c_origins = self._c_origins(entries) if entries else {}
        obs = Observation(
            new_entries=entries,
            events=list(self.events),
            owned=owned,
            listeners=dict(self.recorder.listeners),
            held_ids=frozenset(after),
            vanished=vanished,
            earlier=self.recorder.left_by_tests,
            clients=clients,
            notes=notes,
            created_clients=created,
            unused_clients=unused,
            c_origins=c_origins,
        )
        tuples = self.recorder.tuples
        for e in entries:  # (described: not a fixture's thread's socket)
            if e.four_tuple is not None and e.state != TcpState.LISTEN:
                tuples[e.key] = e.four_tuple
        # (comprehensions, not generator expressions: one frame per look, not a resumed one per event)
        still_open = {e.four_tuple for e in entries if e.four_tuple is not None}
        held_by_events = {ev.four_tuple for ev in obs.events
                          if ev.identity is not None and ev.identity in after and ev.four_tuple is not None}
        still_open.update(held_by_events)
        if entries and any(e.state == TcpState.CLOSE for e in entries):
            obs.shut_down = self._shut_down_here(entries)
        connects = test_connects(obs, limits)  # once, for both
        candidates = time_wait_candidates(obs, limits, still_open, connects)
        if candidates:  # measured whatever the limit: the report and the baseline need the count
            obs.lingering = self._look_up(candidates, held_by_events)
        return judge(obs, limits, connects)

    def _remember_fixtures_sockets(self, held: Collection[Hashable], client_owned: Mapping[Hashable, str]) -> None:
        """Sockets a broader fixture's thread made in this window and still holds are that fixture's from now on
        (``socket_owner``), as those made while it was set up: if it still holds them when the session ends, they
        are its session-level leak. Left out of the test's verdict only, they were nobody's (a session
        ``ThreadPoolExecutor`` or anyio ``BlockingPortal`` connecting for a test: found with anyio's suite).
        The thread that made a socket says whose it is over the time it appeared: a session server's thread that
        accepts a fixture's connection just after that fixture's setup ended (the accepted fd in the table, the
        event not yet recorded) made the server's side, not a second leak of the connecting fixture's.

        Not a connection a tracked client's pool opened (``ev.client``, ``client_owned``): it is its client's, and
        the client's owner answers for it - an app's module-level ``requests.Session`` that a session server's
        handler thread used is the module's, no fixture's leak (pytest-django's live_server)."""
        ownership = self.recorder.ownership
        own = ownership.socket_owner
        for ev in self.events:
            if ev.owner is not None and ev.identity is not None and ev.identity in held and ev.client is None \
                    and ev.identity not in client_owned and ev.kind in ("connect", "accept", "listen"):
                own[ev.identity] = ev.owner
                if ev.four_tuple is not None:
                    ownership.peers[ev.identity] = ev.four_tuple

    def _shut_down_here(self, entries: list[SocketEntry]) -> set[FourTuple]:
        """The connections of held sockets in state CLOSE that ended with this side's TIME_WAIT entry: shut down by
        this process (``shutdown()``, websocket-client's ``abort()``) and then closed by the peer - not reset, which
        leaves no entry. Their 4-tuples from the connects seen (the kernel knows no peer of a CLOSE socket); asked
        only for a test that holds such a socket."""
        connected = {ev.identity: ev.four_tuple for ev in self.events
                     if ev.kind == "connect" and ev.four_tuple is not None}
        tuples = {connected[e.key] for e in entries if e.state == TcpState.CLOSE and e.key in connected}
        return self.table.lingering(tuples) if tuples else set()

    def _look_up(self, candidates: set[FourTuple], held: set[FourTuple]) -> set[FourTuple]:
        """The lingering candidates, asking about the second end of an in-process connection only when its first
        end does not linger: the two ends count once (verdict.py), and the end that closed first - the one the
        test's own connect made, nearly always - is enough. Halves the kernel's work for a burst against an
        in-process server, whose ends each appear once as the test's.

        A candidate's other end that this process still holds (``held``: an in-process server's thread that ended
        the connection first and has not closed its fd yet) is asked about too when the candidate does not
        linger: once both sides have sent their FIN, the kernel keeps that end's TIME_WAIT entry whether or not
        the fd is closed yet, and the entry is this test's (a server thread slow to close under load made a
        burst of 12 count 11)."""
        initiated = {ev.four_tuple for ev in self.events if ev.kind == "connect"}
        first: set[FourTuple] = set()
        second: set[FourTuple] = set()
        for t in candidates:
            other = (t[1], t[0])
            if other in candidates and t not in initiated and (other in initiated or other < t):
                second.add(t)  # asked only if its other end does not linger
            else:
                first.add(t)
        found = self.table.lingering(first)
        rest = {t for t in second if (t[1], t[0]) not in found}
        if held:
            rest.update({(t[1], t[0]) for t in first - found if (t[1], t[0]) in held})
        if rest:
            found |= self.table.lingering(rest)
        return found

    def _held_by_fixtures(self, entries: list[SocketEntry], owned: dict[Hashable, str]) -> list[SocketEntry]:
        """The entries no value of a broader fixture holds; those it holds are that fixture's from now on (a lazily
        connecting client it made opened them during this test: ``holders.py``). Each socket is looked for once
        per window."""
        wanted = {e.fd: e.key for e in entries if e.key not in self.walked and e.fd is not None}
        if not wanted:
            return entries
        self.mark_walked(wanted.values())
        own = self.recorder.ownership
        try:
            peers = {e.fd: e.remote for e in entries if e.fd is not None}
            held = self.after_scan.ids if self.after_scan is not None else {}
            far = own.far_ends
            found = fixture_holders(wanted, list(own.fixture_values.values()),
                                    far_ends=(far.types(), far.placer(peers, held, self.opened_at)) if far is not None
                                    else None)
        except Exception:  # noqa: BLE001 - a value the walk cannot read: the sockets stay the test's, as before
            return entries
        if not found:
            return entries
        for key, label in found.items():
            own.socket_owner.setdefault(key, label)
            owned[key] = label
        return [e for e in entries if e.key not in found]

    def _c_origins(self, entries: list[SocketEntry]) -> dict[Hashable, Origin]:
        """For the test's held sockets no event explains (C code opened them), the line of the client that most
        likely had them opened (``FarEnds.origin_for``: a curl_cffi session or zmq socket still open that was sent
        there)."""
        far = self.recorder.ownership.far_ends
        if far is None or not far.noted_any():
            return {}
        seen = {ev.identity for ev in self.events if ev.identity is not None}
        out: dict[Hashable, Origin] = {}
        try:
            for e in entries:
                if e.key not in seen and e.state != TcpState.LISTEN:
                    origin = far.origin_for(e.remote)
                    if origin is not None:
                        out[e.key] = origin
        except Exception:  # noqa: BLE001 - a session the look cannot read: the socket's origin stays unknown
            return out
        return out

    def _held_by_kept_tracebacks(self, entries: list[SocketEntry]) -> list[SocketEntry]:
        """The entries that something besides a traceback pytest keeps for the test holds (a captured log record's,
        or an xfail test's expected failure's): one that only such a traceback holds is not left open by the test
        (``logheld.py``: the garbage collector closes it when pytest drops the traceback, as it would have closed
        it without pytest). It is still the test's connection, for the connection budget and TIME_WAIT alike: only
        its being open is not counted. Each socket is asked about once per window (a question can scan the heap
        many times)."""
        answers = self.log_held
        if answers is None:
            answers = self.log_held = {}
        provider = self.recorder.ownership.kept_tracebacks
        wanted = {e.fd: e.key for e in entries if e.fd is not None and e.key not in answers}
        if provider is not None and wanted:
            for key in wanted.values():
                answers[key] = False
            try:
                kept = provider()
                held = held_only_by_tracebacks(wanted, kept) if kept.records or kept.failure is not None else set()
            except Exception:  # noqa: BLE001 - records or references the check cannot read: the sockets stay the test's
                held = set()
            for key in held:
                answers[key] = True
        return [e for e in entries if not answers.get(e.key, False)]

    def _owned_in_flight(self, fd: int) -> bool:
        """A socket whose connect is under way in a thread that is not the test's (a fixture's, or one an earlier
        test left running): connected in the kernel, its event not recorded yet when this look was taken."""
        ident = self.recorder.connecting.get(fd)
        if ident is None:
            return False
        own = self.recorder.ownership
        if own.thread_label(ident) is not None or (own.fixture_stack and ident == own.fixture_thread):
            return True
        # a thread an owned thread started (events.ThreadStarts): rare, so looked for the slow way
        return any(t.ident == ident and getattr(t, OWNER_ATTR, None) is not None for t in threading.enumerate())

    def _vanished(self, after: dict[Hashable, int]) -> set[FourTuple]:
        """Connections held at the start, gone now, that no Python close() in this window explains."""
        tuples = self.recorder.tuples
        if not tuples:
            return set()
        gone = (self.before.keys() - after.keys()) & tuples.keys()
        if not gone:
            return set()
        closed = {ev.identity for ev in self.events if ev.kind == "close"}
        owned = self.recorder.ownership.socket_owner
        left = self.recorder.left_by_tests  # an earlier test's leak, collected now: that test's, not this one's
        return {tuples[k] for k in gone if k not in closed and k not in owned and k not in left}

    def remember_left(self) -> None:
        """Once a test's window is judged: remember the sockets it left open (new in the window, still held), so
        that their late close is never counted against a later test (docs/ownership.md)."""
        scan = self.after_scan
        if scan is None or scan is self.before_scan:
            return
        before = self.before
        owned = self.recorder.ownership.socket_owner
        self.recorder.left_by_tests.update(scan.ids.keys() - before.keys() - owned.keys())

    def _final(self, verdict: Verdict) -> Verdict:
        if not verdict.violations:
            return verdict
        if self.stuck:
            verdict = _with_stuck_notes(verdict, self.stuck)
        return _with_fd_exhaustion(verdict, self.table)

    def forget_vanished(self) -> None:
        """Drop the cached 4-tuples of sockets that are gone (called once, when the window is judged)."""
        tuples = self.recorder.tuples
        if tuples and self.after_scan is not None:
            held = self.after_scan.ids
            # a set difference: made in one step (in C), while socket hooks in other threads (a server
            # accepting) may add entries
            for k in tuples.keys() - held.keys():
                tuples.pop(k, None)
        left = self.recorder.left_by_tests
        if left and self.after_scan is not None:
            left.intersection_update(self.after_scan.ids.keys())

    def _connects_outside_own_clients(self) -> bool:
        """A connect in this window that no client created in it made (raw sockets, an untracked library, a
        fixture's or a session client's pool): the pools of clients from outside the window must then be read,
        since such a connection may sit in one of them (``owned``: not the test's). When every connect was made by
        the window's own clients and no new socket is held, the other clients' pools cannot hold anything of
        this window's: a session's shared clients are not asked about at every look."""
        for ev in self.events:
            if ev.kind == "connect":
                client = ev.client  # (``SocketEvent.client``: the client's record)
                if client is None or not client.created_in(self):
                    return True
        return False

    def _collect_first(self, limits: Limits) -> bool:
        """Whether to collect the young generation before the first look, not after it: when that look would
        find a violation that makes ``close`` collect anyway, and a look less is all that changes.

        The case: a connection a client of the test's opened in this window has no close, and the client was not
        closed - most often a client the test dropped unclosed, whose pool's socket is young garbage in a
        reference cycle. While that socket is held it is an ESTABLISHED or CLOSE_WAIT socket of the test's, a
        violation under limits of 0 for both (the defaults) that waiting can change: ``close`` would collect and
        look again. Under any other limits the first look stands as it always did (a test allowed a socket must
        see it counted). A session client's new connection is not the case: its socket is the client's owner's."""
        if limits.settle <= 0 or limits.ignore or limits.established != 0 or limits.close_wait != 0:
            return False
        # (``SocketEvent.client``, the client's record: the one whose request opened the connection)
        opened = [ev.identity for ev in self.events if ev.kind == "connect"
                  and ev.client is not None and not ev.client.closed and ev.client.created_in(self)]
        if not opened:
            return False
        closed = {ev.identity for ev in self.events if ev.kind == "close"}
        return any(identity not in closed for identity in opened)

    def close(self, limits: Limits, test_location: Callable[[], tuple[str, int] | None] | None = None) -> Verdict:
        """Judge; re-check a violation while waiting can still change it (``_may_settle``), for at most
        ``limits.settle`` seconds. A test whose violations are all final is judged by its first look.

        An unreachable client or socket in a reference cycle is closed (or marked collected) only by a garbage
        collection; the check collects, so the verdict does not depend on when the collector happens to run (a
        pool connection of an httpx client dropped unclosed is such a cycle). The young generations at once:
        microseconds, and that is where a test's own garbage nearly always is. A full collection costs tens to
        hundreds of milliseconds on a test run's heap, so it waits until half the settle has passed with
        something still pending (a socket a server thread closes a few milliseconds late never pays for it), and
        runs before the last look at the latest: whatever was pending then is judged after a full collection.

        Where ResourceWarning is an error (``filterwarnings = error``) nothing is collected: a socket the user left
        in a cycle warns as a collection frees it, and that error belongs where the collector would have run
        without the plugin (``unraised.py``); such a socket is then the test's leak, held by garbage. All of it
        runs with warnings shown, not raised. A ResourceWarning a collection sets off is shown at the line that
        opened the socket (``place_warning``), else at ``test_location()``, not at the collection's line in this
        file."""
        def place(message: Any) -> tuple[str, int] | None:
            return self.place_warning(message) or (test_location() if test_location is not None else None)

        # where a ResourceWarning is an error, nothing is collected: the user's own check of unclosed sockets must
        # fail where it would without the plugin, neither in this test's teardown nor nowhere (``unraised.py``;
        # asked before the error filters are set aside)
        facts = filter_facts()
        collect = gc.collect if not facts.resource_raised else _no_collection
        with shown_not_raised(place, facts):
            return self._close(limits, collect)

    def place_warning(self, message: Any) -> tuple[str, int] | None:
        """The user's line that opened the socket a ResourceWarning is about (``message.source``), if this window
        saw it connect or listen. Asked once the collection is over, when the socket is closed: its addresses
        are read from the warning's text, the repr it had while it warned
        (``unclosed <socket.socket fd=17, ..., laddr=('127.0.0.1', 50658), raddr=('127.0.0.1', 8000)>``)."""
        if not isinstance(message.source, socket.socket):
            return None
        text = str(message.message)
        local, remote = _repr_endpoint(text, "laddr"), _repr_endpoint(text, "raddr")
        if local is None:
            return None
        for ev in reversed(self.events):
            if ev.local == local and ev.remote == remote and ev.kind in ("connect", "listen"):
                origin = ev.origin
                return (origin[0], origin[1]) if origin is not None and origin[0] else None
        return None

    def _others_may_close(self) -> bool:
        """Whether code on another thread may still close the window's live clients (``closers``)."""
        starts = self.recorder.thread_starts
        return may_close_elsewhere(starts.log if starts.logging else None)

    def _close(self, limits: Limits, collect: Callable[..., int]) -> Verdict:
        try:
            if self._collect_first(limits):
                collect(0)  # one look after it, instead of one before and one after
            verdict = self.observe(limits)
            if not _may_settle(verdict) or limits.settle <= 0:
                return self._final(verdict)
            settle = settle_within(limits.settle, self.opened_at)  # never past a running test timeout
            if settle <= 0:
                return _with_cut_settle(self._final(verdict), 0.0, limits.settle)
            start = time.monotonic()
            deadline = start + settle
            for generation in (0, 1):
                collect(generation)
                verdict = self.observe(limits)
                if not _may_settle(verdict):
                    return self._final(verdict)
            outside = _held_outside_pools(verdict)
            if outside:
                # a socket a closing asyncio transport holds, whose loop does not run, closes when the loop runs
                # again - not while this check waits (but for a loop in another thread: asked below)
                self.stuck = closing_on_stopped_loops(self.recorder.sockets_at(outside))
            if (outside.issubset(self.stuck) and not self._others_may_close()) or nothing_else_runs():
                # only live clients left (and their pools), or sockets waiting on a loop that does not run, and no
                # code running that could close one - or no other thread that can run, so nothing but a
                # finalizer can close anything: a full collection decides whether each is garbage or still held,
                # as the end of the wait would have
                collect()
                return self._final(self.observe(limits))
            full_at = start + settle / 2
            collected = False
            sleeps = backoff(deadline)
            while _may_settle(verdict):
                if not collected and time.monotonic() >= full_at:
                    collected = True
                    collect()
                elif not next(sleeps, False):
                    if collected:
                        break
                    collected = True
                    collect()  # the deadline came first: the last look follows a full collection all the same
                verdict = self.observe(limits)
                if _may_settle(verdict) and nothing_else_runs():
                    # a thread that was still on its way into ``accept`` (a server the test just started) waits for
                    # a connection now: nothing is left that can close a socket, as above
                    if not collected:
                        collect()
                    return self._final(self.observe(limits))
            if settle < limits.settle:
                return _with_cut_settle(self._final(verdict), time.monotonic() - start, limits.settle)
            return self._final(verdict)
        finally:
            self.recorder.remove_sink(self)
            self.closed = True
            if self.after_scan is not self.before_scan:
                self.forget_vanished()
