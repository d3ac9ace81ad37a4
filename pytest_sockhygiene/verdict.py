"""The verdict: from what a window saw to counts and violations. Pure: no pytest, no syscalls.

Rules (the reasons are in docs/ownership.md):

* Only sockets *new* in the window count, and only those the test owns: a socket created while a fixture of
  broader scope was set up, by a thread such a fixture started, or by the pool of a client created outside the
  test, is that owner's.
* ``established`` and ``close_wait`` count connections this process *initiated*. An accepted (server-side)
  socket belongs to its listener: when the listener is the test's, the LISTEN item carries it; when it is
  someone else's, it is theirs; only when its listener is gone does it count on its own.
* ``time_wait`` counts connections of the test (opened, accepted on its listener, or closed by it) whose own
  side now lingers after an active close: TIME_WAIT, or FIN_WAIT/CLOSING on the way there. Matched by exact
  4-tuple, so rows of other processes and of earlier tests never count; nor does the late close (by the
  garbage collector, or by this test) of a connection an earlier test left open: that test is reported for it.
* ``connections`` counts connects the test initiated.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import (
    Any,
    Callable,
)

from .drops import ASKED_CLOSE, UNREAD
from .endpoints import Endpoint, FourTuple, format_endpoint
from .events import SocketEvent
from .limits import LIMIT_KEYS, Limits
from .origin import MADE_INSIDE, Origin, accepted_origin
from .table import OPEN_STATES, SocketEntry, TcpState
from .transports import NOTE as TRANSPORT_NOTE

KINDS = LIMIT_KEYS
HELD_SOCKET_KINDS = frozenset({"established", "close_wait", "listen"})
"""Violations made of sockets the process still holds (a pool, a server thread or a finalizer may yet close them)."""


@dataclasses.dataclass(frozen=True, init=False)
class Item:
    """One offending socket, connection group or client, ready to print or to serialise.

    Frozen, with an ``__init__`` of its own: a frozen dataclass's generated one sets each field through
    ``object.__setattr__``, a call per field, and a verdict makes several of these per violating test (~3 us each
    where this takes ~1). The fields and their defaults are the ones declared below
    (``tests/test_verdict_unit.py`` checks that the two agree)."""

    state: str
    local: Endpoint | None
    remote: Endpoint | None
    fd: int | None = None
    origin: Origin | None = None
    count: int = 1
    note: str = ""
    server_side: bool = False
    """The server side of a connection whose listener is closed: the client-side advice does not apply."""
    tuples: tuple[FourTuple, ...] = ()
    """A TIME_WAIT group's connections: this process's lingering side of each, (local, remote), so that a user
    can find them in ``ss -tan``."""
    pending: bool = False
    """A live client not closed yet: another thread or task may still close it, so the verdict waits for it
    (window.py ``_may_settle``). Not part of the report."""

    def __init__(self, state: str, local: Endpoint | None, remote: Endpoint | None, fd: int | None = None,
                 origin: Origin | None = None, count: int = 1, note: str = "", server_side: bool = False,
                 tuples: tuple[FourTuple, ...] = (), pending: bool = False) -> None:
        d = self.__dict__
        d["state"] = state
        d["local"] = local
        d["remote"] = remote
        d["fd"] = fd
        d["origin"] = origin
        d["count"] = count
        d["note"] = note
        d["server_side"] = server_side
        d["tuples"] = tuples
        d["pending"] = pending

    def as_dict(self, fmt_origin: Callable[[Origin | None], str]) -> dict[str, object]:
        out: dict[str, object] = {
            "state": self.state,
            "local": format_endpoint(self.local) if self.local else None,
            "remote": format_endpoint(self.remote) if self.remote else None,
            "fd": self.fd,
            "origin": fmt_origin(self.origin) if self.origin else None,
            "count": self.count,
            "note": self.note or None,
        }
        if self.tuples:
            out["tuples"] = [[format_endpoint(local), format_endpoint(remote)] for local, remote in self.tuples]
        return out


@dataclasses.dataclass(frozen=True, init=False)
class Violation:
    """One kind over its limit. Frozen, with an ``__init__`` of its own, as ``Item``."""

    kind: str
    count: int
    limit: int
    items: tuple[Item, ...]
    context: tuple[Item, ...] = ()
    """What explains the count: for time_wait, the clients the test created (a client per request?)."""

    def __init__(self, kind: str, count: int, limit: int, items: tuple[Item, ...],
                 context: tuple[Item, ...] = ()) -> None:
        d = self.__dict__
        d["kind"] = kind
        d["count"] = count
        d["limit"] = limit
        d["items"] = items
        d["context"] = context


@dataclasses.dataclass(frozen=True, init=False)
class Verdict:
    """A window's counts and violations. Frozen, with an ``__init__`` of its own, as ``Item``: one per look."""

    counts: Mapping[str, int]
    violations: tuple[Violation, ...]
    threads: tuple[str, ...] = ()
    """Threads the test started and left running, described (not a limit: reported, never failing)."""

    def __init__(self, counts: Mapping[str, int], violations: tuple[Violation, ...],
                 threads: tuple[str, ...] = ()) -> None:
        d = self.__dict__
        d["counts"] = counts
        d["violations"] = violations
        d["threads"] = threads

    @property
    def clean(self) -> bool:
        return not self.violations

    def violation(self, kind: str) -> Violation | None:
        for v in self.violations:
            if v.kind == kind:
                return v
        return None


CLEAN = Verdict(counts={k: 0 for k in KINDS}, violations=())

EVENT_COUNTS = ("connections", "time_wait")
"""The counts that come from the socket hooks' events: unknown (None) for a window during which other code had
replaced the hooks, never written as 0 (a violation measured anyway still stands: its count is a lower bound)."""


def unmeasured(verdict: Verdict) -> Verdict:
    """The verdict of a window that ran partly without the socket hooks."""
    counts: dict[str, int | None] = dict(verdict.counts)
    for kind in EVENT_COUNTS:
        counts[kind] = None
    return dataclasses.replace(verdict, counts=counts)  # type: ignore[arg-type]


@dataclasses.dataclass
class Observation:
    """Everything a window saw, in plain values."""

    new_entries: list[SocketEntry]
    """Described TCP sockets held at the end that were not held at the start."""
    events: list[SocketEvent]
    owned: Mapping[Hashable, str]
    """Identity -> owner label for sockets that belong to a fixture or to a client created outside the test."""
    listeners: Mapping[Endpoint, Hashable | None]
    """Every listening address of this process known so far -> its identity."""
    held_ids: frozenset[Hashable] = frozenset()
    """Identities of every socket held at the end (to tell an open listener from a closed one)."""
    lingering: set[FourTuple] = dataclasses.field(default_factory=set)
    """Candidate 4-tuples found lingering after an active close (filled by the window after a kernel lookup)."""
    shut_down: set[FourTuple] = dataclasses.field(default_factory=set)
    """4-tuples of held sockets in state CLOSE whose connection this side shut down first (a TIME_WAIT entry of
    theirs found: not a reset), filled by the window; not counted as the test's TIME_WAIT (the socket is held)."""
    vanished: set[FourTuple] = dataclasses.field(default_factory=set)
    """4-tuples of connections held at the start that are gone at the end without a Python close() (garbage
    collection, C code): closed by this process during the window all the same."""
    clients: list[Item] = dataclasses.field(default_factory=list)
    """Unclosed clients of the test (filled by client trackers)."""
    notes: Mapping[Hashable, str] = dataclasses.field(default_factory=dict)
    """Identity -> what a client tracker knows of a socket (the pool of the test's own client)."""
    created_clients: list[Item] = dataclasses.field(default_factory=list)
    """Clients the test created, grouped by kind and origin, with ``count`` and requests in ``note``."""
    earlier: Collection[Hashable] = frozenset()
    """Identities of sockets an earlier test left open: their close in this window is not this test's."""
    unused_clients: list[Item] = dataclasses.field(default_factory=list)
    """Unclosed clients of the test that never opened a connection (no socket to leak)."""
    c_origins: Mapping[Hashable, Origin] = dataclasses.field(default_factory=dict)
    """Origins of held sockets no Python socket call made, from the client that most likely had C code open them
    (``FarEnds.origin_for``): used where no event gives one."""


def _ignored(limits: Limits, local: Endpoint | None, remote: Endpoint | None) -> bool:
    if not limits.ignore:  # nearly always: no generator for nothing
        return False
    return any(p.matches(local) or p.matches(remote) for p in limits.ignore)


def _same_host(a: str, b: str) -> bool:
    return a == b or a in ("0.0.0.0", "::") or b in ("0.0.0.0", "::")


def listening_ports(listeners: Mapping[Endpoint, Hashable | None]) -> set[int]:
    """The ports of ``listeners``: a local endpoint on none of them has no listener (``_listener_for``), and an
    ephemeral port - the local side of nearly every connection a test makes - is on none of them."""
    return {ep[1] for ep in list(listeners)}  # list(): one step; a server thread's listen() may add to it


def _listener_for(local: Endpoint | None, listeners: Mapping[Endpoint, Hashable | None],
                  ports: Collection[int] | None = None) -> Endpoint | None:
    """The listener ``local`` belongs to, if any. ``ports``: ``listening_ports(listeners)``, when the caller asks
    about many endpoints: one set lookup answers for those on no listening port, without the loop."""
    if local is None or (ports is not None and local[1] not in ports):
        return None
    for ep in listeners:
        if ep[1] == local[1] and _same_host(ep[0], local[0]):
            return ep
    return None


def _to_open_listeners(obs: Observation, initiated: Collection[FourTuple], ports: Collection[int]) -> set[FourTuple]:
    """The server sides (reversed 4-tuples) of the test's connections made to a listener of this process while it
    was open: still held now, or closed by an event later than the connect. ``obs.listeners`` keeps every
    listener ever seen (a closed one's accepted sockets are still told from others by it), so a port a fixture
    reserved with bind-listen-close and handed to a server in another process (``ephemeral_port_reserve``) is
    in it: that server's TIME_WAIT entries are another process's, never the test's."""
    out: set[FourTuple] = set()
    closed: dict[FourTuple, Hashable] = {}  # connection -> its listener, not held now: asked when it was closed
    for a, b in initiated:
        ep = _listener_for(b, obs.listeners, ports)
        if ep is None:
            continue
        ident = obs.listeners[ep]
        if ident is None or ident in obs.held_ids:
            out.add((b, a))  # (the usual case: a server the session or the test still runs)
        else:
            closed[(a, b)] = ident
    if closed:
        listener_ids = set(closed.values())
        closed_at = {ev.identity: i for i, ev in enumerate(obs.events)
                     if ev.kind == "close" and ev.identity in listener_ids}
        # a listener opened in this window and closed where no hook saw it (uvloop's, in C): open all along, as
        # far as anyone knows; one closed unseen and opened before the window: gone before it, as far as known
        unseen_close = len(obs.events)
        listened = {ev.identity for ev in obs.events if ev.kind == "listen" and ev.identity in listener_ids}
        for i, ev in enumerate(obs.events):
            t = ev.four_tuple
            if ev.kind != "connect" or t not in closed:
                continue
            ident = closed[t]
            if closed_at.get(ident, unseen_close if ident in listened else -1) > i:
                out.add((t[1], t[0]))
    return out


def test_connects(obs: Observation, limits: Limits) -> list[SocketEvent]:
    """Connects the test initiated (not a fixture's, not to an ignored endpoint), one per socket."""
    seen: set[Hashable] = set()
    out = []
    owned = obs.owned
    for ev in [ev for ev in obs.events if ev.kind == "connect" and ev.owner is None]:
        if ev.identity is not None and ev.identity in owned:
            continue
        if limits.ignore and _ignored(limits, ev.local, ev.remote):
            continue
        key = (ev.identity, ev.four_tuple) if ev.identity is not None else (ev.fd, ev.four_tuple)
        if key in seen:
            continue
        seen.add(key)
        out.append(ev)
    return out


def time_wait_candidates(obs: Observation, limits: Limits, still_open: Collection[FourTuple],
                         connects: Sequence[SocketEvent] | None = None) -> set[FourTuple]:
    """4-tuples (this process's side) of the test's connections whose TIME_WAIT rows would be the test's.

    ``still_open``: sides still held by anyone in this process (not lingering, whatever the kernel says).
    A connection the test initiated and still holds is a leak counted elsewhere: neither of its ends counts.
    ``connects``: ``test_connects(obs, limits)``, if the caller has it already (a look computes it once for
    this and for ``judge``).
    """
    if connects is None:
        connects = test_connects(obs, limits)
    initiated = {ev.four_tuple for ev in connects if ev.four_tuple}
    if obs.new_entries:
        connect_ids = {ev.identity for ev in connects if ev.identity is not None}
        held_by_test = {e.four_tuple for e in obs.new_entries
                        if e.four_tuple is not None and (e.key in connect_ids or e.four_tuple in initiated)}
    else:
        held_by_test = set()
    reversed_initiated = {(b, a) for (a, b) in initiated}
    # the test's own listeners and the listening ports: worked out only if an event needs them (the events of a
    # test's own connections are settled by ``initiated`` and by the accepts of its connections)
    test_listeners: set[Hashable] | None = None
    ports: set[int] | None = None
    out = initiated | obs.vanished if obs.vanished else set(initiated)
    for ev in obs.events:
        t = ev.four_tuple
        if t is None or t in out or (limits.ignore and _ignored(limits, ev.local, ev.remote)):
            continue  # (a close of the test's own connect: counted already)
        kind = ev.kind
        if kind == "accept":
            if t in reversed_initiated:
                out.add(t)  # the in-process server side of the test's own connection
            elif ev.listener is not None:
                if test_listeners is None:
                    test_listeners = {e.identity for e in obs.events if e.kind == "listen" and e.owner is None
                                      and e.identity is not None and e.identity not in obs.owned}
                if ev.listener in test_listeners:
                    out.add(t)  # the server side of a connection to the test's own server
        elif (kind == "close" and ev.owner is None
              and not (ev.identity is not None and (ev.identity in obs.owned or ev.identity in obs.earlier))
              and ev.remote is not None):
            if ports is None:
                ports = listening_ports(obs.listeners)
            if _listener_for(ev.local, obs.listeners, ports) is None:
                # a connecting socket the test closed, opened before the window - but not by an earlier test:
                # that test left it open and is reported for it, whoever closes it later (docs/ownership.md)
                out.add(t)
    if initiated and obs.listeners:
        # the server side of the test's own connection to a listener of this process whose accept no hook saw
        # (trio's sockets call the ``accept`` they saved at import, uvloop's are C): the server is this process's
        if ports is None:
            ports = listening_ports(obs.listeners)
        out.update(_to_open_listeners(obs, initiated, ports))
    held = set(still_open) | held_by_test
    held.update((b, a) for (a, b) in held_by_test)  # the other end of a connection the test still holds
    return out - held


CAUSE_ADVICE: dict[str, str] = {
    "server_closes": "the client is reused, but the other side ended every connection of its pool: turn "
                     "keep-alive on where that happens - the server (HTTP/1.1 without `Connection: close`), or the "
                     "proxy or middleware in between - or, where the server closes idle connections, give it a "
                     "keep-alive timeout longer than the pauses between requests.",
    "timeouts": "each request that timed out cost a connection: a connection whose response did not come in time "
                "cannot be reused, so the pool closed it and the next request opened a new one. Make the server "
                "answer within the client's timeout; where the test means the timeouts (a test of timeouts or "
                "retries against a slow server), allow it for this test.",
    "unread": "each response closed before its end cost a connection: a connection whose response was not read to "
              "its end cannot carry the next request, so the pool closed it and the next request opened a new one. "
              "Read each response to its end (or let the client read it: no stream) where it ends soon; a stream "
              "that does not end (server-sent events) costs a connection each time it is left: keep one open for "
              "the test, or allow it for this test.",
    "per_request_unread": "a new client per request, each response closed before its end: create one client and "
                          "reuse it, and read each response to its end where it ends soon (a connection whose "
                          "response was not read to its end cannot carry the next request); a stream that does not "
                          "end (server-sent events) costs a connection each time it is left: keep one open for the "
                          "test, or allow it for this test.",
    "asked_close": "the client is reused, but each request asked the server to close its connection (a "
                   "`Connection: close` request header, set by the test or by the code under test), so the pool "
                   "could keep none: drop the header and the next request reuses the connection, or allow it for "
                   "this test.",
    "pool_concurrent": "the client is reused, but its requests ran at the same time, and each one in flight needs "
                       "a connection of its own: its pool opened one per concurrent request, closed those it had no "
                       "room to keep after their request (urllib3's pool_maxsize, 10 by default; httpx's "
                       "max_keepalive_connections, 20) and the rest with the client, and a server that ends "
                       "connections (`Connection: close`, a keep-alive timeout, a limit of requests per connection) "
                       "costs one each - size the pool to the concurrency, or cap the requests in flight (a "
                       "semaphore; httpx's max_connections, aiohttp's connector limit, urllib3's block=True), share "
                       "the client between tests (a fixture of broader scope), keep the server's connections alive, "
                       "or allow it for this test.",
    "api": "an API without a connection pool opens a new connection per call: keep one connection open for many "
           "calls (one websocket session, one database connection), or for HTTP send the requests through one "
           "pooled client (requests.Session, httpx.Client, urllib3.PoolManager). A test of redirects, refused "
           "handshakes or reconnects opens them on purpose: allow it for that test.",
    "fixture": "these connections come from a function-scoped fixture, not from the code under test: give the "
               "fixture a broader scope so that it runs once, or make it connect less (wait on a signal instead "
               "of polling a port).",
}
"""The fix when ``connection_sources`` finds a cause other than a new client per request (``ADVICE``)."""
CAUSE_ADVICE["own_servers"] = (
    "each client talked to a server of its own (a test client per app), so no connection could be reused: each "
    "closed connection leaves an entry - start fewer servers in the test (one app, or a fixture of broader "
    "scope), or allow it for this test.")
"""Clients that each went to a different server: "one client, reused" does not apply (found with pytest-aiohttp's
``aiohttp_client`` called for six app configurations in one test)."""
CAUSE_ADVICE["api_objects"] = (
    "each call went through a new object of its own, which opened a connection of its own: create one and reuse it "
    "for the calls (one httplib2.Http, one websocket session, one database connection), so that it can keep its "
    "connection open between them; where it cannot, for HTTP send the requests through one pooled client "
    "(requests.Session, httpx.Client, urllib3.PoolManager). A test of redirects, refused handshakes or reconnects "
    "opens them on purpose: allow it for that test.")
"""The API is a method called on a new object each time (``NEW_OBJECT_EACH``): "an API without a connection pool"
would be wrong of an object that keeps its connection alive when reused (httplib2's ``Http``)."""
CAUSE_ADVICE["api_one_object"] = (
    "one object made every call and opened a new connection for each: its connection was closed between the calls "
    "- by a close() between them, by the server (keep-alive off), or by the object itself (no keep-alive; "
    "urllib.request asks the server to close every connection): keep it open across the calls; where it cannot "
    "keep one, for HTTP send the requests through one pooled client (requests.Session, httpx.Client, "
    "urllib3.PoolManager). A test of reconnects opens them on purpose: allow it for that test.")
"""The API is a method, and one object made every connection one after another (``ONE_OBJECT_AGAIN``). Chosen
whichever side closed first: the server ends each connection first when the object asked it to (an SDK built on
``urllib.request``, slack_sdk's ``WebClient``), and which side closes first is a race there - the same test got
this fix in one run and the server-first one in the next."""
CAUSE_ADVICE["api_concurrent"] = (
    "these connections were all open at once: concurrent calls through a pool filled to hold them (at its start, or "
    "as the calls came), and closing the pool left an entry for each - share one pool between tests (a fixture of "
    "broader scope), cap the pool's size, or allow it for this test.")
"""A pool no tracked client owns, filled for concurrent calls (redis-py's as they came, asyncpg's at its start), closed
(found with redis-py's ``test_can_run_concurrent_commands``): not a connection per call."""
CAUSE_ADVICE["api_objects_at_once"] = (
    "these connections were open at the same time, each through a new object of its own (no pool held them), and "
    "closing them left an entry for each: where the code under test makes concurrent calls, send them through one "
    "pooled client with a cap on its size (requests.Session, httpx.Client(limits=...), "
    "urllib3.PoolManager(maxsize=...)) shared between tests (a fixture of broader scope); a test of concurrency "
    "itself opens them on purpose: allow it for that test.")
"""Objects of an API without a pool (``http.client.HTTPConnection``), one per connection, all open at once
(``NEW_OBJECTS_AT_ONCE``): "a pool grown for concurrent calls" and "share one pool, cap its size" were told of a
test that had no pool (found running waitress's suite)."""
CAUSE_ADVICE["api_server_first"] = CAUSE_ADVICE["api"] + (
    " The server ended each connection first, as a redirect or a refused handshake does, or as a server does when "
    "the client asks it to (urllib.request sends `Connection: close` with every request: a pooled client is the "
    "fix there) - or as a server that keeps no connection alive does (`Connection: close`, an HTTP/1.0 server): a "
    "pool the calls already go through (httpcore's or urllib3's, used directly) could not reuse them either, until "
    "the server keeps them alive.")
"""The redirect hint is in the ``api`` fix whichever side closed first: over TLS a websocket client's redirect
loop closes each connection itself (websockets' suite: the same test over plain TCP and TLS got different fixes).
Where the server ended them all, that is said too: the likelier reading. So is a server that keeps nothing alive:
an untracked pool (httpcore's ``ConnectionPool`` used directly, found with hypercorn) reconnects for every call
then, and "use a pooled client" alone changes nothing."""

CAUSE_ADVICE["per_transfer"] = (
    "FTP opens a new data connection for every transfer (a listing, a download, an upload) and ends it to mark the "
    "end of the data, so no client or pool can reuse it: keep one FTP object, whose control connection stays open, "
    "and make fewer transfers, or allow it for a test of many transfers.")
"""ftplib's transfer calls (pyftpdlib's suite: six listings on one ``ftplib.FTP`` read "its connection was closed
between the calls" and "send the requests through one pooled client", neither of which an FTP client can do)."""

CAUSE_ADVICE["api_pool_again"] = (
    "one connection pool made every call and opened a new connection for each, one after another: the other side "
    "ended every connection (an HTTP/1.0 server, `Connection: close`, a limit on requests per connection, an idle "
    "timeout shorter than the pauses): turn keep-alive on where that happens, or allow it for this test.")
"""A pool no tracked client owns, used directly (httpcore's ``ConnectionPool``, urllib3's ``HTTPConnectionPool``:
sentry-sdk's HTTP/2 and async transports), that reconnected for every call: it was told "send the requests
through one pooled client", which it is."""

_POOL_API = re.compile(r"opened by (?:httpcore2?|urllib3)\.")
"""The context state of connections a pool library's own API opened (no tracked client's request under way)."""

_PER_TRANSFER = re.compile(r"opened by ftplib\.(?:FTP(?:_TLS)?\.)?(?:retrlines|retrbinary|storlines|storbinary|nlst|"
                           r"dir|mlsd|transfercmd|ntransfercmd)\(\)$")
"""The context state of connections an ``ftplib.FTP`` transfer opened (a method is named with its class on every
version since ``origin._qualname``; the pattern still reads a name without it, as an older report has)."""

ADVICE: dict[str, str] = {
    "established": "close the client or socket when done: use `with` / `async with`, or call close() in the "
                   "fixture's teardown.",
    "close_wait": "the server closed first and your client kept the connection: close the client (and a response "
                  "you streamed, once read: `with client.stream(...)`, `with requests.get(url, stream=True) as "
                  "r`), or set the client's idle limit (httpx: keepalive_expiry, aiohttp: keepalive_timeout) below "
                  "the server's keep-alive timeout.",
    "listen": "shut the server down when the test ends: close the listening socket, or stop the server in the "
              "fixture's teardown.",
    "time_wait": "each closed connection leaves a TIME_WAIT entry for about 60 seconds: reuse connections - one "
                 "client, with keep-alive, for many requests - instead of a new connection per request.",
    "connections": "the test opened more connections than its budget: reuse a client (and its connection pool) "
                   "instead of connecting per request.",
    "clients": "close clients when done: `with` / `async with`, close() / aclose(), or create them in a fixture "
               "of broader scope.",
    "unused_clients": "these clients never opened a connection; close them anyway (`with` / `async with`), or "
                      "lift the limit: unused_clients=None.",
}

CAUSE_ADVICE["per_request_closed_in_request"] = ADVICE["time_wait"] + (
    " Each connection ended with its response (`Connection: close`, an HTTP/1.0 server, a response with no length; "
    "werkzeug's development server ends every one): one reused client would still open a connection per request, "
    "until the server keeps them alive - where it cannot, allow it for this test.")

CAUSE_ADVICE["server_side_only"] = (
    "each closed connection leaves a TIME_WAIT entry for about 60 seconds, and these are the in-process server's: "
    "it ended every connection first, so its clients, outside this process, opened one per request - keep "
    "connections alive in the server (HTTP/1.1, a length for every response, no `Connection: close`), or allow it "
    "for this test where the server cannot.")

CAUSE_ADVICE["per_request_server_first"] = ADVICE["time_wait"] + (
    " The server ended each connection first, so it keeps none alive (`Connection: close`, an HTTP/1.0 server, a "
    "response with no length): one reused client would still open a connection per request, until the server "
    "keeps them alive.")

SERVER_SIDE_ADVICE: dict[str, str] = {
    "close_wait": "the client closed first and the server kept its accepted connection: close each accepted "
                  "connection when its handler is done, or stop the server with its connections, not only its "
                  "listening socket, in the fixture's teardown.",
}
"""For the server side of a connection (accepted, its listener closed): ADVICE's close_wait line is about a
client's pool and keepalive_expiry, which a server socket has not."""


BUSY_NOTE = "held by a request, a response not yet read to the end or closed, or an open websocket"
"""A pooled connection's note when the client's tracker says it is not idle (``client_busy_sockets``)."""

_UNREAD_CONTROL_BYTES = 64
"""Unread bytes a closing server sends without any response in them: a TLS close_notify alert (~24-31 bytes), an
HTTP/2 GOAWAY frame. An idle HTTPS connection the server's keep-alive ended holds that much unread; more is the
rest of a response nobody read. (A connection a pool lists as idle keeps the idle diagnosis whatever it holds.)"""

OUT_OF_POOL_NOTE = ("opened by a request of a {kind}, and in none of its pools now: held by a response not yet read "
                    "to the end or closed, or idle in a pool the client dropped (closed or evicted) that a kept "
                    "response still references")
"""A held connection's note when a tracked client's request opened it and no pool lists it (``_held_items``)."""
_OUT_OF_POOL_MARK = OUT_OF_POOL_NOTE.split("{", 1)[0]
_OUT_OF_POOL_TAIL = OUT_OF_POOL_NOTE.split("}", 1)[1]

UNREAD_NOTE = "a response never read to the end: {n} byte(s) the server sent before it closed still wait unread"
"""A CLOSE_WAIT item's note when data waits unread in the socket (``SocketEntry.unread``)."""
_UNREAD_MARK = UNREAD_NOTE.split(":", 1)[0]

UNREAD_ADVICE = ("the server answered and closed, and the response was never read to the end nor closed: read it "
                 "to the end, or close it (`with client.stream(...)`, `response.close()`; requests: `with "
                 "requests.get(url, stream=True) as r`).")
"""The fix when every CLOSE_WAIT item has a response waiting unread in it: the pool's keep-alive is not the
cause, and closing the client alone leaves a requests response's connection open."""


RESPONSE_ADVICE = ("a response still holds the connection: read it to the end, or close it (`with "
                   "client.stream(...)`, `response.close()`; requests: `with requests.get(url, stream=True) as r`; a "
                   "streamed body: read() or close() it).")
"""The fix when every connection left open is held by a response (``BUSY_NOTE``, ``OUT_OF_POOL_NOTE``)."""
BUSY_ADVICE = RESPONSE_ADVICE + (" A websocket open on it (aiohttp's `ws_connect`, a socket.io client never "
                                 "disconnected): close it (`await ws.close()`, or disconnect the client built on it).")
"""Where the client says the connection is busy (``BUSY_NOTE``): an acquired aiohttp connection is a request, an
unreleased response or a websocket alike (found with python-socketio's ``AsyncClient`` left connected: told to
read a response)."""


OUT_OF_POOL_ADVICE = ("a response, or the connection pool a kept response references, holds the connection: read "
                      "each response to the end and close it (`with requests.get(url, stream=True) as r`, "
                      "`response.close()`; a streamed body: read() or close() it), and do not keep responses once "
                      "their client is closed (a urllib3 response references its pool, and the pool its idle "
                      "connections).")
"""The fix when every connection left open was opened by a client's request and is in none of its pools:
checked out by a response, or idle in a pool the client dropped (urllib3's ``clear()`` and eviction drop pools
without closing them) that a response still references - the plugin cannot tell which."""


SIDE_UNKNOWN_NOTE = ("no connect() or accept() of it was seen, so which end of the connection it is is not known; "
                     "{n} byte(s) its peer sent still wait unread")
"""A CLOSE_WAIT item's note when data waits unread in a socket no hook saw made (gevent's sockets, C code): the
unread bytes may be a response (this process the client) or a request (a server's handler that never read it)."""
_SIDE_UNKNOWN_MARK = SIDE_UNKNOWN_NOTE.split(",", 1)[0]

SIDE_UNKNOWN_CLOSE_WAIT_ADVICE = (
    "the other end closed first and this process kept its end of the connection open: close it when done - a "
    "client's with `with` or close(), a server's accepted connection in its handler, which a handler still running "
    "(asleep, or waiting on a request it never read) keeps open past the test.")
"""CLOSE_WAIT's fix when no socket listed was seen connected or accepted: either end may be this process's."""

UNPOOLED_CLOSE_WAIT_ADVICE = (
    "the server closed first and the test kept its end of the connection open: close the connection when done "
    "(`with` / `async with` around it - a websocket's `connect(...)`, a socket, a database connection - or close() "
    "in the fixture's teardown).")
"""CLOSE_WAIT's fix when no connection left is in a client's pool: idle limits and streamed responses are a pooled
HTTP client's (found with a websocket a test left open to a uvicorn server its fixture shut down)."""

CLOSING_TRANSPORT_ADVICE = (
    "the code closed the asyncio stream or transport but did not wait for the close: after writer.close() (or "
    "transport.close()), await writer.wait_closed(), so that the loop closes the socket before the code goes on - "
    "a loop that does not run again for a while (a session-scoped loop between tests) keeps it open till then.")
"""The fix when every socket listed is held by an asyncio transport already closing on a loop that is not running
(``transports.NOTE``): it was closed, but not to the end (found with python-socks' suite)."""

_POOL_MARK = "in the pool of "
"""How a connection's note starts when a tracked client's pool holds it (``clients.py``)."""
POOL_MARK = _POOL_MARK  # (window.py reads it too)


def _out_of_pool(note: str) -> bool:
    return note.startswith(_OUT_OF_POOL_MARK) and _OUT_OF_POOL_TAIL in note


def _held_by_a_response(note: str) -> bool:
    return BUSY_NOTE in note or _UNREAD_MARK in note or _out_of_pool(note)


MADE_INSIDE_ADVICE = (
    " A client made inside a library's call is closed by closing what that call made or returned (its close(), "
    "disconnect() or `with`); where the library drops it unclosed all the same, hand the library a client of your "
    "own and close that, if it takes one (an `http_session=`, `http_client=` or `session=` argument).")
"""Added to the clients fix when a client was made by library code inside the call the user's line made
(``origin.MADE_INSIDE``): "close it" names nothing the user holds (engineio's ``requests.Session``)."""


def _how(origin: Any) -> str:
    """How a socket or client came to be, as its origin says (the tuple's fourth part, or its formatted string as
    the JSON report keeps it, which starts with it); "" for a plain line."""
    if isinstance(origin, str):
        return origin
    return str(origin[3]) if origin and len(origin) > 3 else ""


def _made_inside(origin: Any) -> bool:
    """The client's origin says library code made it inside a call."""
    return _how(origin).startswith(MADE_INSIDE)


def made_inside_method(origin: Any) -> tuple[str, str] | None:
    """``(call, class)`` when library code made the client inside a call that is a method (``made_inside``:
    "opened inside slack_sdk.web.async_client.AsyncWebClient.api_test(), called at"): the user's object was
    asked, and it made a new client for the call. None for a function (``requests.get``: a client of the user's
    own replaces it) or a client made by the user's line. A method is told by its class's name, which is
    CapWords (PEP 8), as the dotted name ``_call_name`` gives has no other mark of it."""
    how = _how(origin)
    if not how.startswith(MADE_INSIDE):
        return None
    call, sep, _ = how[len(MADE_INSIDE):].partition("(), called at")
    parts = call.split(".")
    if not sep or len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return call, parts[-2]


CLEAR_ADVICE = " A urllib3 PoolManager or ProxyManager has no close(): call its clear(), or use it in a `with`."
"""Added to a fix that says close() when one of the clients is urllib3's (found running vcrpy's suite: a test that
followed the fix got an AttributeError)."""

_URLLIB3_MANAGERS = ("urllib3.PoolManager", "urllib3.ProxyManager")


def _clears(v: Violation) -> bool:
    """A client of the violation is urllib3's manager: an unclosed one, or the pool holding a connection."""
    if v.kind in ("clients", "unused_clients"):
        return any(i.state.startswith(_URLLIB3_MANAGERS) for i in v.items)
    return any(i.note.startswith(_POOL_MARK + m) for i in v.items for m in _URLLIB3_MANAGERS)


def advice(v: Violation) -> str:
    """The fix line of a violation (``_advice``), with how to close a urllib3 manager where one is involved."""
    text = _advice(v)
    return text + CLEAR_ADVICE if "close()" in text and _clears(v) else text


def _advice(v: Violation) -> str:
    """The fix line of a violation: the kind's, or the server side's where every item is a server socket, or
    both where the items are mixed; for CLOSE_WAIT where each connection still holds a response unread, closing
    that response; for clients a library made inside a call, what closes those."""
    if v.kind == "clients" and any(_made_inside(i.origin) for i in v.items):
        return ADVICE["clients"] + MADE_INSIDE_ADVICE
    if v.kind in ("close_wait", "established") and v.items and all(TRANSPORT_NOTE in i.note for i in v.items):
        return CLOSING_TRANSPORT_ADVICE
    if v.kind in ("close_wait", "established") and v.items and all(_held_by_a_response(i.note) for i in v.items):
        if any(_out_of_pool(i.note) for i in v.items):
            return OUT_OF_POOL_ADVICE
        if v.kind == "close_wait":
            return UNREAD_ADVICE
        return BUSY_ADVICE if any(BUSY_NOTE in i.note for i in v.items) else RESPONSE_ADVICE
    if v.kind == "close_wait" and v.items and all(_SIDE_UNKNOWN_MARK in i.note for i in v.items):
        return SIDE_UNKNOWN_CLOSE_WAIT_ADVICE
    if v.kind == "close_wait" and v.items and all(not i.server_side and _POOL_MARK not in i.note for i in v.items):
        return UNPOOLED_CLOSE_WAIT_ADVICE
    special = SERVER_SIDE_ADVICE.get(v.kind)
    servers = sum(1 for i in v.items if i.server_side)
    if special is None or not servers:
        return ADVICE[v.kind]
    if servers == len(v.items):
        return special
    return f"{ADVICE[v.kind]} Server side: {special}"


OPENED_BY = "opened by "
"""How a context item that is not a client starts its ``state``: the API or fixture that opened connections."""

RECONNECTED = "one after another"
"""In a client context item's note: its pool reopened connections to one host, never two at once."""

AFTER_TIMEOUTS = "each dropped as its request timed out"
"""In a client context item's note: every connection those clients' pools reopened for was dropped as a timeout
was being handled (``SocketEvent.dropped``): the timeouts, not the server or keep-alive, made the connections
(``CAUSE_ADVICE["timeouts"]``)."""

PER_CLIENT_UNREAD = "each response closed before its end"
"""In a client context item's note: clients of one request each (a new client per request) whose every
connection was dropped as its response was closed unread: both are the cause (``CAUSE_ADVICE["per_request_unread"]``):
one reused client would still drop each connection, and reading each response to its end alone would still leave a
connection per client."""

UNREAD_EACH = "each dropped as its response was closed before its end"
"""In a client context item's note: every connection those clients' pools reopened for was dropped as its response
was closed unread (``drops.UNREAD``: a stream left early): the client's doing (``CAUSE_ADVICE["unread"]``)."""

RESET_HELD = "connection already reset by the peer; the socket is still open"
"""The note of a held socket in state CLOSE whose connection was reset: a leaked fd all the same (a test's here,
a broader fixture's at the session's end: ``Controller._session_leaks_once``)."""

ASKED_EACH = "each " + ASKED_CLOSE
"""In a client context item's note: every connection a reused client's pool reopened for was closed because its
request asked for it (``drops.ASKED_CLOSE``): the client's doing, not the server's (``CAUSE_ADVICE["asked_close"]``)."""

AT_THE_SAME_TIME = "some at the same time"
"""In a client context item's note: its pool opened more than one connection to a host, some of them open at once,
while its requests ran at the same time (several threads or tasks: ``ClientRecord.most_in_flight``), or were more
than its connections: the client is reused, and its pool needed a connection per request in flight; keep-alive
was lost to the concurrency or to the server (``CAUSE_ADVICE["pool_concurrent"]``)."""

WEBSOCKETS = "websockets among them, whose connection the server ends first"
"""In a client context item's note: its clients opened websockets (``ClientRecord.websockets``). The server ends a
websocket's TCP connection first by the protocol, so its side holding every entry says nothing of keep-alive."""

CLOSED_IN_REQUEST = "each connection ended with its response"
"""In a client context item's note: every connection of those clients of one request each was closed by the
client's own pool while its request was under way (``SocketEvent.client`` of the close), as a response with
``Connection: close`` or from an HTTP/1.0 server asks - not when the client was closed. One reused client would
reconnect for every request all the same (pytest-httpserver's werkzeug closes every connection: "create one
client and reuse it" changed nothing), and the client usually closes first, so the server's side holds no entry
to say so."""

OWN_SERVERS = "each to a server of its own"
"""In a client context item's note: no two of the test's clients connected to the same server (an aiohttp test
client per app, each bound to the server it started): there was nothing to reuse, so no "new client per
request"."""

AT_ONCE = "all open at once"
"""In an API context item's note: every connection of the group was open at the same time (a pool grown for
concurrent calls), not one per call opened and closed in turn."""


NEW_OBJECT_EACH = "each call made on a new object of its own, which opened a connection of its own"
"""In an API context item's note: the API is a method, and every connection was opened through a different object
(a new ``httplib2.Http`` per request, a new websocket client per message): the object may well keep its
connection alive, so reusing one is the fix, not "a pooled client" (found running httplib2's suite)."""


NEW_OBJECTS_AT_ONCE = "each on a new object of its own"
"""In an API context item's note, after ``AT_ONCE``: every connection of the group was open at the same time, each
made by a method of a different object (fifty ``http.client.HTTPConnection`` objects of waitress's
``test_many_clients``): concurrent calls, but no pool that grew - there was none
(``CAUSE_ADVICE["api_objects_at_once"]``)."""


ONE_OBJECT_AGAIN = "every call made on one object, which opened a new connection for each"
"""In an API context item's note: the API is a method, and one object made every connection, one after another
(found with pymemcache: a test that closed its client after each call): something closed its connection between
the calls, not "an API without a pool"."""


def _merge_methods_of_one_object(apis: dict[tuple[str, Origin | None], int],
                                 api_conns: dict[tuple[str, Origin | None], list[Hashable]],
                                 api_objects: dict[tuple[str, Origin | None], list[Any]]) -> None:
    """Calls of several methods of one object, each opening a connection, as one group: one SDK client whose every
    call reconnects (slack_sdk's ``WebClient`` on urllib.request, a method per line in its coverage test) read as
    24 lines of "each call opened a connection of its own", and the fix of an API without a pool. Grouped, they
    read as that object's, with its fix (``ONE_OBJECT_AGAIN``). Groups are (API, line); a merged one is keyed by
    its first call's line, its API "calls of N methods on one <class>"."""
    of_object: dict[int, list[tuple[str, Origin | None]]] = {}
    for group, objects in api_objects.items():
        first = objects[0]
        if _PER_TRANSFER.match(f"{OPENED_BY}{group[0]}()"):
            continue  # an FTP transfer's data connections: the protocol's, with a fix of their own
        if first is not None and all(o is first for o in objects):
            of_object.setdefault(id(first), []).append(group)
    for groups in of_object.values():
        methods = list(dict.fromkeys(api.rsplit(".", 1)[-1] for api, _ in groups))
        if len(methods) < 2:
            continue
        owner = groups[0][0].rsplit(".", 1)[0]
        named = ", ".join(f"{m}()" for m in methods[:3]) + (", ..." if len(methods) > 3 else "")
        merged = (f"calls of {len(methods)} methods on one {owner} ({named})", groups[0][1])
        for group in groups:
            apis[merged] = apis.get(merged, 0) + apis.pop(group)
            api_conns[merged] = api_conns.get(merged, []) + api_conns.pop(group)
            api_objects[merged] = api_objects.get(merged, []) + api_objects.pop(group)


def _objects_called_on(objects: Sequence[Any]) -> int | None:
    """How many objects the connections' calls were methods of (``SocketEvent.api_self``: weak references, one per
    object, told apart by identity), None if any call was no method call."""
    return None if None in objects else len({id(o) for o in objects})


_WEBSOCKET_API = re.compile("websocket", re.IGNORECASE)
"""An untracked API that opens websockets (websocket-client's ``create_connection``, websockets' ``connect``,
tornado's ``websocket_connect``): the server ends a websocket's TCP connection first by the protocol (RFC 6455
7.1.1), so its side holding every entry says nothing of keep-alive, as for a tracked client's (``WEBSOCKETS``).
The server-first fix's HTTP sentence came and went with which side won the close race (found with
websocket-client's suite)."""


_CLIENT_NOTE_CAUSES = (
    (AFTER_TIMEOUTS, "timeouts"),
    (UNREAD_EACH, "unread"),
    (PER_CLIENT_UNREAD, "per_request_unread"),
    (ASKED_EACH, "asked_close"),
    (RECONNECTED, "server_closes"),
    (AT_THE_SAME_TIME, "pool_concurrent"),
    (OWN_SERVERS, "own_servers"),
)
"""A client context item's note mark -> its ``CAUSE_ADVICE`` key, the first found winning: the client's own pool
dropping each connection (a timeout, a response left unread) before the server's or the concurrency's readings."""


def cause_of(context: Sequence[Item], items: Sequence[Item] = ()) -> str | None:
    """The ``CAUSE_ADVICE`` key for a violation's context (its first item explains the most connections), None
    for the default advice. Read from the items alone: the JSON report's records rebuild the same text.
    ``items``: the violation's own (TIME_WAIT groups): where the in-process server closed every connection first,
    the fix adds that, as a redirect or a refused handshake does (a websocket server ends the connection it
    redirects or refuses). Only adds: an HTTP server also closes first when the client asked it to (``urlopen``
    sends ``Connection: close``), and which side closes first is a race there. The same for new
    clients per request: one reused client would still open a connection per request while the server ends each
    one (Django's development server does for a response with no length), so the fix says that too."""
    if not context:
        # no connect of this process's made them: its server accepted them from clients outside it (a subprocess,
        # another service), and where it closed every one first, the fix is its keep-alive (dulwich's suite: git
        # in a subprocess against an HTTP/1.0 server in the test, told to "reuse connections - one client")
        if items and all(i.note == SERVER_CLOSED_EACH for i in items):
            return "server_side_only"
        return None
    first = context[0]
    if first.state.startswith(OPENED_BY + "function-scoped fixture"):
        return "fixture"
    if first.state.startswith(OPENED_BY):
        if _PER_TRANSFER.match(first.state):
            return "per_transfer"
        if ONE_OBJECT_AGAIN in first.note and _POOL_API.match(first.state):
            return "api_pool_again"  # (whichever side closed first: a pool's fix is the keep-alive either way)
        if AT_ONCE in first.note:
            return "api_objects_at_once" if NEW_OBJECTS_AT_ONCE in first.note else "api_concurrent"
        if NEW_OBJECTS_AT_ONCE in first.note:  # (most of them at once, not all)
            return "api_objects_at_once"
        if ONE_OBJECT_AGAIN in first.note:  # (whichever side closed first: its fix names the server's part too)
            return "api_one_object"
        if items and all(i.note == SERVER_CLOSED_EACH for i in items) and not _WEBSOCKET_API.search(first.state):
            return "api_server_first"
        if NEW_OBJECT_EACH in first.note:
            return "api_objects"
        return "api"
    for mark, cause in _CLIENT_NOTE_CAUSES:
        if mark in first.note:
            return cause
    if items and all(i.note == SERVER_CLOSED_EACH for i in items) and WEBSOCKETS not in first.note:
        return "per_request_server_first"  # new clients per request, and the server ended every connection
    if CLOSED_IN_REQUEST in first.note:  # the same, seen from the client: it closed each as its response ended
        return "per_request_closed_in_request"
    return None


def _connection_key(ev: SocketEvent) -> Hashable:
    """What tells one connection's events from another's: the socket's identity, or (fd, 4-tuple) without one."""
    return ev.identity if ev.identity is not None else (ev.fd, ev.four_tuple)


def _most_open_at_once(conns: Sequence[Hashable], events: Sequence[SocketEvent]) -> int:
    """The most of ``conns`` (connect identities) open at the same time, 0 if none of them was seen closed
    (connections no Python close ended, or none yet, say nothing of it): all of them, where every one was connected
    before the first was closed."""
    wanted = set(conns)
    open_now = most = 0
    closed = False
    for ev in events:
        key = _connection_key(ev)
        if key not in wanted:
            continue
        if ev.kind == "connect":
            open_now += 1
            most = max(most, open_now)
        elif ev.kind == "close":
            open_now -= 1
            closed = True
    return most if closed else 0


def _closed_in_requests(events: Sequence[SocketEvent]) -> tuple[dict[Hashable, Any], dict[Hashable, str]]:
    """Connection -> the client whose request was under way as it closed; and connection -> why its client's pool
    dropped it (``SocketEvent.dropped``), for those dropped so."""
    closed_in: dict[Hashable, Any] = {}
    dropped: dict[Hashable, str] = {}
    for ev in events:
        if ev.kind == "close":
            if ev.client is not None:
                closed_in[_connection_key(ev)] = ev.client
            if ev.dropped is not None:
                dropped[_connection_key(ev)] = ev.dropped
    return closed_in, dropped


def _dropped_by_the_client(chosen: Iterable[Any], conns_of_client: Mapping[Any, Sequence[Hashable]],
                           dropped: Mapping[Hashable, str], reconnects: bool) -> str | None:
    """The note that says why the ``chosen`` clients' connections were made, if their own pools' drops explain them
    all (``SocketEvent.dropped``): with ``reconnects`` (a reused client's pool reopening), every connection but each
    client's last was dropped (the last may be open still, or closed with its client); else every one was. None
    otherwise."""
    if not dropped:
        return None
    reasons: collections.Counter[str] = collections.Counter()
    for c in chosen:
        keys = conns_of_client[c]
        why = [dropped[k] for k in keys if k in dropped]
        if not why or len(why) < len(keys) - (1 if reconnects else 0):
            return None
        reasons.update(why)
    most = max(reasons, key=lambda r: reasons[r])
    if most == UNREAD:
        return UNREAD_EACH if reconnects else PER_CLIENT_UNREAD
    if most == ASKED_CLOSE:
        # (clients of one request each: a connection per client whatever the header says - that reading stands)
        return ASKED_EACH if reconnects else None
    return f"{AFTER_TIMEOUTS} ({most})"


def _most_used_host(chosen: Iterable[Any], per_client: Mapping[Any, Mapping[Endpoint | None, int]]) -> str:
    """The server the ``chosen`` clients opened the most connections to (``per_client``: client -> remote ->
    connections), as a note names it."""
    remotes: dict[Endpoint | None, int] = collections.Counter()
    for c in chosen:
        remotes.update(per_client[c])
    return format_endpoint(max(remotes, key=lambda r: remotes[r]))


def _requests_each(requests: Sequence[int]) -> str:
    per = sorted(set(requests))
    if len(per) == 1:
        return f"{per[0]} request{'s' if per[0] != 1 else ''} each"
    return f"{min(per)}-{max(per)} requests each"


def _each_to_its_own_server(groups: Iterable[Mapping[Hashable, Mapping[Endpoint | None, int]]]) -> bool:
    """Whether the test's clients (two or more, across ``groups``: client -> remote -> connections) never shared a
    server: every remote known, and each one only one client's."""
    seen: set[Endpoint] = set()
    clients = 0
    for per_client in groups:
        for remotes in per_client.values():
            clients += 1
            for remote in remotes:
                if remote is None or remote in seen:
                    return False
                seen.add(remote)
    return clients >= 2


def _concurrent(client: Any, connections: int) -> bool:
    """Whether a reused client's requests ran at the same time: more than one of its own was ever in flight at once
    (``ClientRecord.most_in_flight``), or, for a client whose tracker cannot say, it made more requests than
    connections that overlapped. Each request in flight needs a connection of its own: one ``httpx.AsyncClient``
    whose twenty ``gather``-ed requests opened twenty connections made as many connections as requests, and was
    told to stop making "a new connection per request"."""
    return getattr(client, "most_in_flight", 0) >= 2 or getattr(client, "requests", 0) > connections


def _one_after_another(connects: Sequence[SocketEvent], events: Sequence[SocketEvent]) -> set[Hashable]:
    """Clients (records) whose connections to one host in this window never overlapped, with at least two of
    them: the pool reopened a connection after each one was ended. A client that opened several at once
    (concurrent requests) is not one of them.

    An asyncio client's ended connection closes its socket one turn of the loop later (``transport.close()``
    schedules it), after the next request's connect has begun: aiohttp's sequence is connect A, connect B,
    close A, connect C, close B. So at a connect, one connection still open is forgiven if it closes before the
    group's next connect, and only where there are three connections or more (two connections open at once with
    nothing after them may be two concurrent requests); two still open at a connect are concurrency."""
    key_of: dict[Hashable, tuple[Hashable, Endpoint | None]] = {}
    for ev in connects:
        if ev.client is not None:
            key_of[_connection_key(ev)] = (ev.client, ev.remote)
    if len(set(key_of.values())) == len(key_of):
        return set()  # no client connected twice to one host (a new client per request): nothing to follow
    opened: dict[tuple[Hashable, Endpoint | None], int] = collections.defaultdict(int)
    open_now: dict[tuple[Hashable, Endpoint | None], set[Hashable]] = collections.defaultdict(set)
    overlapped: set[tuple[Hashable, Endpoint | None]] = set()
    late: dict[tuple[Hashable, Endpoint | None], Hashable] = {}  # the one still open at the last connect
    forgiven: set[tuple[Hashable, Endpoint | None]] = set()
    for ev in events:
        ident = _connection_key(ev)
        group = key_of.get(ident)
        if group is None:
            continue
        if ev.kind == "connect":
            still = open_now[group]
            if len(still) > 1 or group in late:  # two open at once, or the last one's late close never came
                overlapped.add(group)
            elif still:
                late[group] = next(iter(still))
                forgiven.add(group)
            still.add(ident)
            opened[group] += 1
        elif ev.kind == "close":
            open_now[group].discard(ident)
            if late.get(group) == ident:
                del late[group]
    return {client for (client, remote), n in opened.items()
            if n >= 2 and (client, remote) not in overlapped
            and ((client, remote) not in forgiven or (n >= 3 and (client, remote) not in late))}


def connection_sources(connects: Sequence[SocketEvent], events: Sequence[SocketEvent],
                       created: Sequence[Item] = ()) -> list[Item]:
    """What opened these connections, grouped so that the cause shows: the kind of source that made the most
    connections first, and in it the group that made the most (the first group's cause picks the fix,
    ``cause_of``):

    * connections a function-scoped fixture made while being set up, by fixture and line: plumbing (a readiness
      probe), not the code under test;
    * clients (tracked, ``SocketEvent.client``) by kind and creation line, with how many requests each made:
      many clients of one request each is a new client per request; a client whose pool reopened connections
      to one host one after another was reused, and the server (or something between) ends each connection;
    * connections no tracked client made, by the library call that opened them (``urllib.request.urlopen``,
      ``http.client.HTTPConnection.request``, ``socket.create_connection``) and line;
    * clients the test created that made requests but none of these connections is attributed to (``created``,
      as the client probe grouped them), as before attribution existed.
    """
    reconnecting = _one_after_another(connects, events)
    # (connections made by the item's kind of source, that kind's place on a tie, the item's connections, the item)
    ranked: list[tuple[int, int, int, Item]] = []
    # (defaultdict(int) where Counter's extras are not needed: a Counter costs a Python-level __init__ each)
    fixtures: dict[tuple[str, Origin | None], int] = collections.defaultdict(int)
    apis: dict[tuple[str, Origin | None], int] = collections.defaultdict(int)
    api_conns: dict[tuple[str, Origin | None], list[Hashable]] = collections.defaultdict(list)
    api_objects: dict[tuple[str, Origin | None], list[Any]] = collections.defaultdict(list)
    clients: dict[tuple[str, Origin | None], dict[Hashable, dict[Endpoint | None, int]]] = {}
    conns_of_client: dict[Any, list[Hashable]] = collections.defaultdict(list)
    for ev in connects:
        if ev.fixture is not None:
            fixtures[(ev.fixture, ev.origin)] += 1
        elif ev.client is not None:
            per_client = clients.setdefault((ev.client.kind, ev.client.origin), {})
            remotes = per_client.get(ev.client)
            if remotes is None:
                remotes = per_client[ev.client] = collections.defaultdict(int)
            remotes[ev.remote] += 1
            conns_of_client[ev.client].append(_connection_key(ev))
        elif ev.origin is not None:  # no user line at all: the item's own origin says so already
            group = (ev.api or "socket.socket.connect", ev.origin)
            apis[group] += 1
            api_conns[group].append(_connection_key(ev))
            api_objects[group].append(ev.api_self)
    _merge_methods_of_one_object(apis, api_conns, api_objects)
    by_fixtures, by_apis = sum(fixtures.values()), sum(apis.values())
    for (label, origin), n in fixtures.items():
        ranked.append((by_fixtures, 2, n, Item(state=OPENED_BY + label, local=None, remote=None, origin=origin, count=n,
                                            note="while it was set up for this test: plumbing, not the code under "
                                                 "test")))
    for (api, origin), n in apis.items():
        note = "no tracked client: each call opened a connection of its own"
        if n >= 2:
            conns = api_conns[(api, origin)]
            most = _most_open_at_once(conns, events)  # (one walk over the events: "all" and "most" read from it)
            called_on = _objects_called_on(api_objects[(api, origin)])
            if most and most >= len(set(conns)):
                if called_on == n:
                    note = f"no tracked client; {AT_ONCE}, {NEW_OBJECTS_AT_ONCE}"
                else:
                    note = (f"no tracked client; {AT_ONCE}, a pool filled for concurrent calls (at its start or as "
                            "they came) and closed together")
            elif called_on in (n, 1):
                note = f"no tracked client: {NEW_OBJECT_EACH if called_on == n else ONE_OBJECT_AGAIN}"
                if called_on == n and most >= 3 and most * 2 >= n:
                    # most of them at the same time, after a call or two alone (cherrypy's test_antistampede: one
                    # call, then a hundred threads): not "create one and reuse it", which cannot serve concurrent
                    # calls
                    note = f"no tracked client; {most} of them open at once, {NEW_OBJECTS_AT_ONCE}"
        state = f"{OPENED_BY}{api}" + ("" if api.startswith("calls of ") else "()")
        ranked.append((by_apis, 0, n, Item(state=state, local=None, remote=None, origin=origin, count=n, note=note)))
    conns_of = {group: sum(sum(r.values()) for r in per_client.values()) for group, per_client in clients.items()}
    by_clients = sum(conns_of.values())
    own_servers = _each_to_its_own_server(clients.values())
    closed_in: dict[Hashable, Any] | None = None  # connection -> the client whose request was under way at its close
    dropped: dict[Hashable, str] = {}  # connection -> why its client's pool dropped it (``SocketEvent.dropped``)
    for (kind, origin), per_client in clients.items():
        n_conns = conns_of[(kind, origin)]
        requests = [getattr(c, "requests", 0) for c in per_client]
        note = _requests_each(requests)
        if own_servers:
            note += f"; {OWN_SERVERS}"
        # reused clients, or a client per call: many clients for few connections each (httpie's suite: a Session
        # per call, two of them following a redirect - 4 clients, 6 connections - were told "the client is
        # reused"). A client per call is the reading where there is at least one client for every two connections
        per_call = len(per_client) >= 2 and len(per_client) * 2 >= n_conns
        if per_call:
            if closed_in is None:
                closed_in, dropped = _closed_in_requests(events)
            why = _dropped_by_the_client(per_client, conns_of_client, dropped, reconnects=False)
            if why is not None:
                note += f"; {why}"
            elif all(closed_in.get(key) is c for c in per_client for key in conns_of_client[c]):
                note += f"; {CLOSED_IN_REQUEST}"
        if any(getattr(c, "websockets", 0) for c in per_client):
            note += f"; {WEBSOCKETS}"
        # a client that made one request is not reused, whatever its pool did: an auth handler that retries on the
        # connection (requests' digest auth answers a 401 outside Session.send) opens a second one for it
        again = [c for c in per_client if c in reconnecting and getattr(c, "requests", 0) >= 2] if not per_call else []
        pool = "its pool" if len(per_client) == 1 else "their pools"
        if again:
            if closed_in is None:
                closed_in, dropped = _closed_in_requests(events)
            why = _dropped_by_the_client(again, conns_of_client, dropped, reconnects=True)
            host = _most_used_host(again, per_client)
            note += (f"; {pool} opened {n_conns} connections to {host} {RECONNECTED}" if why is None
                     else f"; {pool} opened {n_conns} connections to {host}, {why}")
        elif not per_call:
            # two connections or more to one host, not one after another (``_one_after_another``): some overlapped
            busy = [c for c in per_client if c not in reconnecting and max(per_client[c].values()) >= 2
                    and _concurrent(c, sum(per_client[c].values()))]
            if busy:
                # a reused client whose connections overlapped (requests from several threads or tasks): not "one
                # after another", and not a new client per request either (found with cheroot's suite: one
                # session, 1,000 requests from 50 threads, told to "reuse connections - one client")
                asked = sum(getattr(c, "requests", 0) for c in busy)
                most = max(getattr(c, "most_in_flight", 0) for c in busy)
                note += (f"; {pool} opened {n_conns} connections to {_most_used_host(busy, per_client)} for {asked} "
                         f"requests, {AT_THE_SAME_TIME}" + (f" (up to {most} in flight at once)" if most >= 2 else ""))
        ranked.append((by_clients, 1, n_conns, Item(state=kind, local=None, remote=None, origin=origin,
                                                 count=len(per_client), note=note)))
    for item in created:
        if (item.state, item.origin) not in clients and not item.note.startswith("0 requests"):
            ranked.append((0, 3, 0, item))
    # the kind of source that made the most connections first (its first item picks the fix): five requests on
    # five lines outweigh one readiness probe, though each line made one; on a tie the fixture's plumbing is
    # last, since its fix says the connections are not the code under test's
    ranked.sort(key=lambda entry: (-entry[0], entry[1], -entry[2]))
    return [entry[3] for entry in ranked]


def owned_ids(obs: Observation) -> dict[Hashable, str]:
    """Sockets that are not the test's: the window's ownership map plus whatever a fixture's thread touched."""
    owned = dict(obs.owned)
    for ev in obs.events:
        if ev.owner is not None and ev.identity is not None:
            owned.setdefault(ev.identity, ev.owner)
    return owned


def _held_by_test(obs: Observation, limits: Limits) -> list[SocketEntry]:
    """The new sockets held at the end that are the test's: not a fixture's or another client's, not ignored."""
    if not obs.new_entries:
        return []
    owned = owned_ids(obs)
    return [e for e in obs.new_entries
            if e.key not in owned and not (limits.ignore and _ignored(limits, e.local, e.remote))]


def _held_items(obs: Observation, mine: list[SocketEntry]) -> tuple[list[Item], list[Item], list[Item]]:
    """The items of the sockets the test still holds (``mine``, not empty): ESTABLISHED and the like, CLOSE_WAIT,
    and the test's own listeners, with what the events say of each (origin, peer, listener)."""
    origins: dict[Hashable, Origin | None] = {}
    accepted: dict[Hashable, Hashable | None] = {}  # accepted socket (identity or 4-tuple) -> its listener
    peers: dict[Hashable, Endpoint | None] = {}
    requested: dict[Hashable, Any] = {}  # socket identity -> the record of the client whose request opened it
    for ev in obs.events:
        if ev.kind == "connect" and ev.identity is not None:  # (the last connect on an identity: its socket's)
            requested[ev.identity] = ev.client
        if ev.kind in ("connect", "accept"):
            # (fd, local) too: under psutil a reset socket loses its peer address, and with it its identity
            for key in (ev.identity, (ev.fd, ev.local)):
                if key is not None:
                    peers[key] = ev.remote
        if ev.kind in ("connect", "listen", "accept") and ev.identity is not None:
            origins.setdefault(ev.identity, ev.origin)
            origins.setdefault((ev.fd, ev.local), ev.origin)
        if ev.kind == "connect" and ev.four_tuple is not None:
            origins.setdefault(ev.four_tuple, ev.origin)
        elif ev.kind == "listen" and ev.local is not None:
            origins.setdefault(("listen", ev.local), ev.origin)
        elif ev.kind == "accept":
            accepted.update((k, ev.listener) for k in (ev.identity, ev.four_tuple) if k is not None)

    def origin_of(e: SocketEntry) -> Origin | None:
        for key in (e.key, e.four_tuple, ("listen", e.local) if e.state == TcpState.LISTEN else None,
                    (e.fd, e.local)):
            if key is not None and origins.get(key) is not None:
                return origins[key]
        return obs.c_origins.get(e.key) if obs.c_origins else None

    test_listeners = {e.local: e for e in mine if e.state == TcpState.LISTEN and e.local is not None}
    listeners: dict[Endpoint, Hashable | None] = dict(obs.listeners)
    listeners.update({ep: e.key for ep, e in test_listeners.items()})
    accepted_counts: dict[Endpoint, int] = collections.defaultdict(int)
    established: list[Item] = []
    close_wait: list[Item] = []
    for e in mine:
        note = ""
        server_side = False
        peer_key = e.key if e.key in peers else (e.fd, e.local)
        if e.state == TcpState.CLOSE and peer_key in peers:
            # a connection that was reset (its server went away) while the test still holds the socket: the fd
            # is leaked all the same; its peer is no longer known to the kernel, so take it from the connect
            e = dataclasses.replace(e, remote=e.remote or peers[peer_key])
            if (e.local, e.remote) in obs.shut_down:  # (this side's TIME_WAIT entry: no reset leaves one)
                note = "connection already shut down by this process and closed by the peer; the socket is still open"
            else:
                note = RESET_HELD
        elif e.state not in OPEN_STATES and e.state != TcpState.CLOSE_WAIT:
            continue
        listener_ep = _listener_for(e.local, listeners)
        if listener_ep is not None or e.key in accepted or e.four_tuple in accepted:
            # the server side of a connection: it belongs to its listener while that listener is open
            if listener_ep in test_listeners:
                accepted_counts[listener_ep] += 1
                continue
            if listener_ep is not None:
                listener_id = listeners.get(listener_ep)
            else:
                listener_id = accepted.get(e.key, accepted.get(e.four_tuple))
            if (listener_ep is not None and listener_id is None) or (listener_id is not None
                                                                       and listener_id in obs.held_ids):
                continue
            note = "; ".join(filter(None, [note, "server side of a connection whose listener is already closed"]))
            server_side = True
        pool_note = obs.notes.get(e.key, "")
        client = requested.get(e.key) if not pool_note and not server_side else None
        if client is not None:
            # a client's request opened it, and it is in no pool now: a response checked it out (urllib3 and
            # requests list only idle connections; a closed client's pool holds none)
            pool_note = OUT_OF_POOL_NOTE.format(kind=client.kind)
        elif BUSY_NOTE in pool_note:
            pass  # a response holds it: not idle (the note says so; the fix is the response's)
        elif e.state == TcpState.CLOSE_WAIT and not server_side and not pool_note and peer_key not in peers:
            # made where no hook saw it (gevent's sockets, C code): a client's end or a server's, nothing says which
            pool_note = SIDE_UNKNOWN_NOTE.format(n=e.unread or 0)
        elif (e.state == TcpState.CLOSE_WAIT and (e.unread or 0) > _UNREAD_CONTROL_BYTES and not server_side
              and not pool_note):
            # what the server sent before it closed is still in the socket: a response nobody read to the end
            # (a stream never consumed nor closed), not an idle connection whose keep-alive ran out
            pool_note = "; ".join(filter(None, [pool_note, UNREAD_NOTE.format(n=e.unread)]))
        elif pool_note and e.state == TcpState.CLOSE_WAIT:
            pool_note += ("; the server closed this idle pooled connection first (its keep-alive timeout ran out "
                          "before the client's own idle limit, or it shut down), and the pool only notices on "
                          "its next request")
        note = "; ".join(filter(None, [pool_note, note]))
        origin = origin_of(e)
        if origin is None and server_side and listener_ep is not None:
            # no accept of it was seen (trio's sockets call the ``accept`` trio saved at import, uvloop's are C):
            # its listener is known, and with it the line that opened it, if the listen was in this window
            origin = accepted_origin(listener_ep, origins.get(("listen", listener_ep)))
        item = Item(state=e.state.label, local=e.local, remote=e.remote, fd=e.fd, origin=origin, note=note,
                    server_side=server_side)
        (close_wait if e.state == TcpState.CLOSE_WAIT else established).append(item)

    listen_items: list[Item] = []
    for ep, e in test_listeners.items():
        n = accepted_counts.get(ep, 0)
        note = f"with {n} accepted connection(s) still open" if n else ""
        listen_items.append(Item(state="LISTEN", local=e.local, remote=None, fd=e.fd, origin=origin_of(e), note=note))
    if any(i.server_side for i in established) or any(i.server_side for i in close_wait):
        established, close_wait = _one_per_connection(established, close_wait)
    return established, close_wait, listen_items


SERVER_END_TOO = "its server end, accepted in this process by a listener already closed, is held too"
"""A client end's note when the server end of the same connection is held as well: one leak, counted once."""


def _one_per_connection(established: list[Item], close_wait: list[Item]) -> tuple[list[Item], list[Item]]:
    """Both ends of one in-process connection, the client's and the server's of a listener already closed (a
    function-scoped server fixture closes its listener before the check): the client end counts, with a note,
    and the server end does not - one leak is one count, as when the listener is still open (found with hishel's
    and httplib2's suites: ``established: 2`` and ``established=2`` to allow it, for one connection)."""
    clients = {(i.local, i.remote) for i in (*established, *close_wait) if not i.server_side and i.local is not None}
    paired = {(i.remote, i.local) for i in (*established, *close_wait)
              if i.server_side and (i.remote, i.local) in clients}
    if not paired:
        return established, close_wait

    def keep(items: list[Item]) -> list[Item]:
        out = []
        for i in items:
            if i.server_side and (i.remote, i.local) in paired:
                continue
            if not i.server_side and (i.local, i.remote) in paired:
                i = dataclasses.replace(i, note="; ".join(filter(None, [i.note, SERVER_END_TOO])))
            out.append(i)
        return out

    return keep(established), keep(close_wait)


def judge(obs: Observation, limits: Limits, connects: Sequence[SocketEvent] | None = None) -> Verdict:
    """Counts and violations for one window. ``connects``: ``test_connects(obs, limits)``, if known already."""
    mine = _held_by_test(obs, limits)
    # what the events say about the sockets the test still holds: nothing to read when it holds none new - the
    # usual case, a test whose connections were all closed
    established, close_wait, listen_items = _held_items(obs, mine) if mine else ([], [], [])
    if connects is None:
        connects = test_connects(obs, limits)
    grouped: dict[str, list[Item]] = {
        "established": established,
        "close_wait": close_wait,
        "listen": listen_items,
        "time_wait": [],
        "clients": list(obs.clients),
        "connections": [],
        "unused_clients": list(obs.unused_clients),
    }
    counts = {kind: sum(i.count for i in items) if items else 0 for kind, items in grouped.items()}
    # time_wait's and connections' items are groups (by server and line) of what their counts count: built only
    # for a kind over its limit, the one place they are read (most tests with connections are within both)
    # a connection's key is ``frozenset(four_tuple)``: both ends of an in-process connection have the same one
    counts["time_wait"] = len({frozenset(t) for t in obs.lingering}) if obs.lingering else 0
    counts["connections"] = len(connects)
    violations = []
    for kind in KINDS:
        limit = getattr(limits, kind)  # (``Limits.limit``, without a call per kind)
        if limit is not None and counts[kind] > limit:
            if kind == "time_wait":
                grouped[kind] = time_wait_items(obs, connects)
            elif kind == "connections":
                grouped[kind] = connection_items(connects)
            context: tuple[Item, ...] = ()
            if kind == "connections":
                context = tuple(connection_sources(connects, obs.events, obs.created_clients))
            elif kind == "time_wait":
                lingering = {frozenset(t) for t in obs.lingering}
                closed = [ev for ev in connects if ev.four_tuple is not None
                          and frozenset(ev.four_tuple) in lingering]
                context = tuple(connection_sources(closed, obs.events, obs.created_clients))
            violations.append(Violation(kind=kind, count=counts[kind], limit=limit, items=tuple(grouped[kind]),
                                        context=context))
    return Verdict(counts=counts, violations=tuple(violations))


def time_wait_items(obs: Observation, connects: Iterable[SocketEvent]) -> list[Item]:
    """Lingering connections grouped by server endpoint and origin: the shape of a burst, not 30 lines."""
    origin_by_conn: dict[frozenset[Endpoint], Origin | None] = {}
    initiated: set[FourTuple] = set()
    # keyed by connection, ``frozenset(four_tuple)``: both ends of an in-process connection are one
    plumbing: set[frozenset[Endpoint]] = set()  # made by a function-scoped fixture's setup (a readiness probe)
    for ev in connects:
        if ev.four_tuple is not None:
            origin_by_conn[frozenset(ev.four_tuple)] = ev.origin
            initiated.add(ev.four_tuple)
            if ev.fixture is not None:
                plumbing.add(frozenset(ev.four_tuple))
    # the server side of a connection no connect of the test explains: its listener's line (looked for only when
    # such a connection lingers: a burst's connections are all the test's own)
    if any(frozenset(t) not in origin_by_conn for t in obs.lingering):
        for ev in obs.events:
            if ev.kind == "accept" and ev.four_tuple is not None:
                origin_by_conn.setdefault(frozenset(ev.four_tuple), ev.origin)
    seen: set[frozenset[Endpoint]] = set()
    groups: dict[tuple[Endpoint | None, Origin | None], list[FourTuple]] = collections.defaultdict(list)
    servers_first: dict[tuple[Endpoint | None, Origin | None], int] = collections.defaultdict(int)
    ports = listening_ports(obs.listeners)
    for local, remote in sorted(obs.lingering):
        key = frozenset((local, remote))
        if key in seen:
            continue  # both sides of one in-process connection: one connection
        seen.add(key)
        # name the group by the server's address: the side that is not our ephemeral port
        server_side = (remote, local) in initiated or (local[1] in ports  # (no call for an ephemeral port)
                                                       and _listener_for(local, obs.listeners, ports) is not None)
        server = local if server_side else remote
        group = (server, origin_by_conn.get(key))
        groups[group].append((local, remote))
        if server_side:
            servers_first[group] += 1
    # the largest group first (the summary names its line), counting together one line's connections to several
    # ports of one host (an FTP client's data connections: the report prints them as one line); on a tie, the
    # test's own code before a fixture's plumbing - else a burst of one connection per line was named by the
    # fixture's probe, the earliest
    def host_and_line(group: tuple[Endpoint | None, Origin | None]) -> tuple[str | None, Origin | None]:
        return (group[0][0] if group[0] is not None else None, group[1])

    per_host: dict[tuple[str | None, Origin | None], int] = collections.defaultdict(int)
    for where, rows in groups.items():
        per_host[host_and_line(where)] += len(rows)
    return [Item(state="TIME_WAIT", local=None, remote=server, origin=o, count=len(rows), tuples=tuple(rows),
                 note=_server_first_note(servers_first.get((server, o), 0), len(rows)))
            for (server, o), rows in sorted(groups.items(), key=lambda kv: (
                -per_host[host_and_line(kv[0])], -len(kv[1]),
                bool(plumbing) and all(frozenset(r) in plumbing for r in kv[1])))]


SERVER_CLOSED_EACH = "each entry is the in-process server's side: the server closed each connection first"
"""The note of a TIME_WAIT group all of whose entries the in-process server left (``cause_of`` reads it)."""


def _server_first_note(server_side: int, rows: int) -> str:
    """Where the entries are the in-process server's side, the server closed those connections first (a
    websocket server does, by the protocol; an HTTP server with ``Connection: close``): the reader should know
    that the churn is the connections, not the client's way of closing them."""
    if not server_side:
        return ""
    if server_side == rows:
        return SERVER_CLOSED_EACH
    if server_side == 1:
        return "1 of the entries is the in-process server's side: it closed that connection first"
    return f"{server_side} of the entries are the in-process server's side: it closed those connections first"


def connection_items(connects: Iterable[SocketEvent]) -> list[Item]:
    groups: dict[tuple[Endpoint | None, Origin | None], int] = collections.defaultdict(int)
    for ev in connects:
        groups[(ev.remote, ev.origin)] += 1
    return [Item(state="CONNECT", local=None, remote=r, origin=o, count=n)
            for (r, o), n in sorted(groups.items(), key=lambda kv: -kv[1])]
