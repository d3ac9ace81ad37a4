"""What opened a violation's connections, and the fix and marker that follow: plain functions, no pytest run."""

from __future__ import annotations

import socket
from typing import Any

from pytest_sockhygiene.drops import timed_out
from pytest_sockhygiene.events import SocketEvent
from pytest_sockhygiene.origin import format_origin
from pytest_sockhygiene.report import allow_marker, violation_lines
from pytest_sockhygiene.verdict import (
    ADVICE,
    CAUSE_ADVICE,
    ONE_OBJECT_AGAIN,
    SERVER_CLOSED_EACH,
    Item,
    Violation,
    cause_of,
    connection_sources,
    made_inside_method,
)

SERVER = ("127.0.0.1", 8080)
LINE = ("/t/test_x.py", 7, "test_x")


class Record:
    """What a tracked client's record offers (``clients.ClientRecord``): kind, creation line, requests, and the
    most of them in flight at once."""

    def __init__(self, kind: str = "httpx.Client", requests: int = 1, origin: Any = ("/t/test_x.py", 6, "test_x"),
                 most_in_flight: int = 0):
        self.kind, self.requests, self.origin = kind, requests, origin
        self.most_in_flight = most_in_flight


def connect(port: int, client: Record | None = None, api: str | None = None,
            fixture: str | None = None) -> SocketEvent:
    return SocketEvent(kind="connect", identity=port, fd=port, local=("127.0.0.1", port), remote=SERVER,
                       origin=LINE, thread=1, owner=None, client=client, api=api, fixture=fixture)


def close(port: int) -> SocketEvent:
    return SocketEvent(kind="close", identity=port, fd=port, local=("127.0.0.1", port), remote=SERVER,
                       origin=None, thread=1, owner=None)


def fmt(origin: Any) -> str:
    return f"{origin[0].rsplit('/', 1)[-1]}:{origin[1]} in {origin[2]}" if origin else "origin unknown"


def test_new_client_per_request():
    events = [connect(40000 + i, Record()) for i in range(10)]
    (item,) = connection_sources(events, events)
    assert (item.state, item.count, item.note) == ("httpx.Client", 10, "1 request each")
    assert cause_of([item]) is None  # the default advice: one client, reused


def test_one_client_reconnecting_one_after_another():
    session = Record("requests.Session", requests=4)
    events: list[SocketEvent] = []
    for i in range(4):
        events += [connect(40000 + i, session), close(40000 + i)]
    connects = [e for e in events if e.kind == "connect"]
    (item,) = connection_sources(connects, events)
    assert item.count == 1
    assert item.note == "4 requests each; its pool opened 4 connections to 127.0.0.1:8080 one after another"
    assert cause_of([item]) == "server_closes"


def test_a_client_of_one_request_whose_pool_connected_twice_is_not_reused():
    """requests' digest auth answers a 401 on the connection, outside ``Session.send``: one request counted, two
    connections one after another. Three such sessions are a new client per request, not a reused client whose
    server ends each connection."""
    events: list[SocketEvent] = []
    for n in range(3):
        session = Record("requests.Session", requests=1)
        for i in range(2):
            port = 40000 + 10 * n + i
            events += [connect(port, session), close(port)]
    (item,) = connection_sources([e for e in events if e.kind == "connect"], events)
    assert (item.count, item.note) == (3, "1 request each")
    assert cause_of([item]) is None  # the default advice: one client, reused


def test_a_clients_line_says_how_many_clients_it_stands_for():
    many = Item(state="requests.Session", local=None, remote=None, origin=LINE, count=3, note="still open")
    one = Item(state="httpx.Client", local=None, remote=None, origin=LINE, count=1, note="still open")
    lines = violation_lines(Violation(kind="clients", count=4, limit=0, items=(many, one)), fmt)
    assert lines[1:3] == ["    3 requests.Session, created at test_x.py:7 in test_x (still open)",
                          "    httpx.Client, created at test_x.py:7 in test_x (still open)"]


def test_concurrent_connections_of_one_client_are_not_reconnects():
    client = Record(requests=4)
    events = [connect(40000 + i, client) for i in range(4)] + [close(40000 + i) for i in range(4)]
    (item,) = connection_sources([e for e in events if e.kind == "connect"], events)
    assert "one after another" not in item.note
    assert cause_of([item]) is None


def test_a_connection_per_concurrent_request_is_the_concurrency_not_a_new_connection_per_request():
    """Four requests in flight at once on one client, four connections open at once: as many connections as
    requests, and the concurrency made them (``ClientRecord.most_in_flight``), not a new connection per request.
    Requests that overlapped but whose connections came one after another keep the server's reading."""
    client = Record(requests=4, most_in_flight=4)
    events = [connect(40000 + i, client) for i in range(4)] + [close(40000 + i) for i in range(4)]
    (item,) = connection_sources([e for e in events if e.kind == "connect"], events)
    assert item.note == ("4 requests each; its pool opened 4 connections to 127.0.0.1:8080 for 4 requests, some at "
                         "the same time (up to 4 in flight at once)")
    assert cause_of([item]) == "pool_concurrent"
    session = Record("requests.Session", requests=4, most_in_flight=2)
    in_turn: list[SocketEvent] = []
    for i in range(4):
        in_turn += [connect(41000 + i, session), close(41000 + i)]
    (item,) = connection_sources([e for e in in_turn if e.kind == "connect"], in_turn)
    assert cause_of([item]) == "server_closes"


def test_api_and_fixture_sources_and_their_order():
    events = ([connect(40000 + i, api="urllib.request.urlopen") for i in range(3)]
              + [connect(41000 + i, fixture="function-scoped fixture 'ready'") for i in range(5)]
              + [connect(42000, api=None)])
    items = connection_sources(events, events)
    assert [(i.state, i.count) for i in items] == [
        ("opened by function-scoped fixture 'ready'", 5),
        ("opened by urllib.request.urlopen()", 3),
        ("opened by socket.socket.connect()", 1),
    ]
    assert cause_of(items) == "fixture"
    assert cause_of(items[1:]) == "api"
    # every TIME_WAIT entry the in-process server's (it ended each connection): the fix adds that a redirect or
    # refusal test opens them on purpose; one entry of the client's own and it does not
    server_first = Item(state="TIME_WAIT", local=None, remote=SERVER, origin=LINE, count=3, note=SERVER_CLOSED_EACH)
    assert cause_of(items[1:], [server_first]) == "api_server_first"
    # but not for websockets, whose connection the server ends first by the protocol (websocket-client's suite)
    websockets = Item(state="opened by websocket.create_connection()", local=None, remote=None, origin=LINE, count=8,
                      note="no tracked client: each call opened a connection of its own")
    assert cause_of([websockets], [server_first]) == "api"
    assert CAUSE_ADVICE["api_server_first"].startswith(CAUSE_ADVICE["api"] + " The server ended each connection")
    assert "A test of redirects, refused handshakes or reconnects opens them on purpose" in CAUSE_ADVICE["api"]
    client_first = Item(state="TIME_WAIT", local=None, remote=SERVER, origin=LINE, count=1)
    assert cause_of(items[1:], [server_first, client_first]) == "api"
    assert cause_of(items, [server_first]) == "fixture"


def test_the_kind_of_source_that_made_the_most_connections_picks_the_fix():
    """Five requests on five lines of the test (one group each) outweigh one readiness probe of a fixture: the fix
    is the API's, not "these connections come from a function-scoped fixture" (werkzeug's test_http_proxy: 2
    fixture connects against 4 of the test's). On a tie the fixture's plumbing goes last."""
    lines = [("/t/test_x.py", 10 + i, "test_x") for i in range(5)]
    probe = [connect(41000, fixture="function-scoped fixture 'ready'")]
    events = [*probe, *(SocketEvent(kind="connect", identity=40000 + i, fd=40000 + i, local=("127.0.0.1", 40000 + i),
                                    remote=SERVER, origin=line, thread=1, owner=None, api="urllib.request.urlopen")
                        for i, line in enumerate(lines))]
    items = connection_sources(events, events)
    assert [(i.state, i.count) for i in items] == [("opened by urllib.request.urlopen()", 1)] * 5 + [
        ("opened by function-scoped fixture 'ready'", 1)]
    assert cause_of(items) == "api"
    tie = [*probe, connect(40000, api="urllib.request.urlopen")]
    assert cause_of(connection_sources(tie, tie)) == "api"
    more = [*(connect(41000 + i, fixture="function-scoped fixture 'ready'") for i in range(2)), *tie[1:]]
    assert cause_of(connection_sources(more, more)) == "fixture"


def test_unattributed_created_clients_are_kept_but_unused_ones_are_not():
    created = [Item(state="aiohttp.ClientSession", local=None, remote=None, origin=LINE, count=2,
                    note="1 request each"),
               Item(state="httpx.Client", local=None, remote=None, origin=LINE, count=1, note="0 requests each")]
    items = connection_sources([], [], created)
    assert [i.state for i in items] == ["aiohttp.ClientSession"]


def test_every_violation_ends_with_its_marker_and_the_fix_follows_the_cause():
    source = Item(state="opened by http.client.HTTPConnection.request()", local=None, remote=None, origin=LINE,
                  count=4, note="no tracked client: each call opened a connection of its own")
    v = Violation(kind="connections", count=4, limit=2,
                  items=(Item(state="CONNECT", local=None, remote=SERVER, origin=LINE, count=4),), context=(source,))
    lines = violation_lines(v, fmt)
    assert lines[-2] == "    fix: " + CAUSE_ADVICE["api"]
    assert lines[-1] == "    to allow it: @pytest.mark.sockhygiene(connections=4)"
    assert "4 connection(s) opened by http.client.HTTPConnection.request(), at test_x.py:7 in test_x" in lines[2]
    plain = Violation(kind="established", count=2, limit=0, items=())
    assert violation_lines(plain, fmt)[-2:] == ["    fix: " + ADVICE["established"],
                                                "    to allow it: @pytest.mark.sockhygiene(established=2)"]
    assert allow_marker({"time_wait": 31, "connections": 40}) == \
        "@pytest.mark.sockhygiene(time_wait=31, connections=40)"


def test_a_socket_with_no_known_origin_is_never_opened_at_origin_unknown():
    """A connection C code opened has no line: the item says so on its own, never "opened at origin unknown"
    (found on a pytest-django project)."""
    v = Violation(kind="established", count=1, limit=0,
                  items=(Item(state="ESTABLISHED", local=("127.0.0.1", 40000), remote=("127.0.0.1", 5432), fd=9),))
    line = violation_lines(v, format_origin)[1]
    assert line == ("    ESTABLISHED 127.0.0.1:40000 -> 127.0.0.1:5432 fd=9, origin unknown (opened by library or C "
                    "code outside Python's socket module)")


def _sources_of(events: list[SocketEvent]) -> Item:
    (item,) = connection_sources([e for e in events if e.kind == "connect"], events)
    return item


def test_an_asyncio_clients_late_close_is_still_one_after_another():
    """asyncio closes an ended connection's socket a turn of the loop after ``transport.close()``, once the next
    request's connect has begun: a reused aiohttp session against a server that ends each connection records
    connect A, connect B, close A, connect C, close B, ... - it was taken for concurrent requests, and told to stop
    making a new client per request (found running aiohttp beside the plugin)."""
    session = Record("aiohttp.ClientSession", requests=8)
    events = [connect(40000, session)]
    for i in range(1, 8):
        events += [connect(40000 + i, session), close(40000 + i - 1)]
    events.append(close(40007))
    item = _sources_of(events)
    assert item.note == "8 requests each; its pool opened 8 connections to 127.0.0.1:8080 one after another"
    assert cause_of([item]) == "server_closes"


def test_concurrent_connections_are_not_one_after_another():
    """Two open at once with nothing after them may be two concurrent requests; three open at once are; a late
    close that never comes before the next connect is an overlap too."""
    pair = Record("aiohttp.ClientSession", requests=2)
    both = [connect(40000, pair), connect(40001, pair), close(40000), close(40001)]
    three = Record("aiohttp.ClientSession", requests=3)
    at_once = [connect(40010, three), connect(40011, three), connect(40012, three), close(40010), close(40011),
               close(40012)]
    kept = Record("aiohttp.ClientSession", requests=3)
    unresolved = [connect(40020, kept), connect(40021, kept), close(40021), connect(40022, kept), close(40020),
                  close(40022)]
    for events in (both, at_once, unresolved):
        item = _sources_of(events)
        assert "one after another" not in item.note, events
        assert cause_of([item]) is None


def test_an_untracked_pool_grown_for_concurrent_calls_is_not_a_connection_per_call():
    """redis-py's pool opening ten connections for ten concurrent commands, closed together by the fixture: "each
    call opened a connection of its own" and "an API without a connection pool" were both untrue (found running
    redis-py's suite). Connections opened and closed in turn keep the per-call reading."""
    concurrent = [connect(40000 + i, api="redis.asyncio.connection.Connection.connect") for i in range(10)]
    events = concurrent + [close(40000 + i) for i in range(10)]
    (item,) = connection_sources(concurrent, events)
    assert "all open at once, a pool filled for concurrent calls (at its start or as they came) and closed together" \
        in item.note
    assert cause_of([item]) == "api_concurrent"
    assert CAUSE_ADVICE["api_concurrent"].startswith("these connections were all open at once")
    in_turn: list[SocketEvent] = []
    for i in range(10):
        in_turn += [connect(41000 + i, api="urllib.request.urlopen"), close(41000 + i)]
    (item,) = connection_sources([e for e in in_turn if e.kind == "connect"], in_turn)
    assert item.note == "no tracked client: each call opened a connection of its own"
    assert cause_of([item]) == "api"


def test_one_lines_connections_to_several_ports_of_one_host_are_one_line():
    """An FTP client's data connections go to a new port each: one line per host and line of code, the ports
    listed; other hosts, other lines and other notes stay lines of their own. Text only: the items are kept."""
    other = ("/t/test_x.py", 9, "test_x")
    items = [Item("TIME_WAIT", None, ("::1", port), origin=LINE, count=1) for port in (4002, 4001, 4003)]
    items += [Item("TIME_WAIT", None, ("::1", 5000), origin=other, count=2),
              Item("TIME_WAIT", None, ("127.0.0.1", 4004), origin=LINE, count=1),
              Item("TIME_WAIT", None, ("::1", 4005), origin=LINE, count=1, note=SERVER_CLOSED_EACH)]
    v = Violation("time_wait", 7, 5, items)
    lines = violation_lines(v, format_origin)
    assert lines[1:5] == [
        "    3 connection(s) to [::1] (ports 4001, 4002, 4003) were opened and closed by this test, at "
        "/t/test_x.py:7 in test_x",
        "    2 connection(s) to [::1]:5000 were opened and closed by this test, at /t/test_x.py:9 in test_x",
        "    1 connection(s) to 127.0.0.1:4004 were opened and closed by this test, at /t/test_x.py:7 in test_x",
        f"    1 connection(s) to [::1]:4005 were opened and closed by this test, at /t/test_x.py:7 in test_x "
        f"({SERVER_CLOSED_EACH})",
    ]
    assert len(v.items) == 6
    many = Violation("connections", 12, 1, [Item("connection", None, ("127.0.0.1", p), origin=LINE) for p in range(12)])
    assert violation_lines(many, format_origin)[1] == (
        "    12 connection(s) to 127.0.0.1 (ports 0, 1, 2, 3, 4, 5, 6, 7 and 4 more), at /t/test_x.py:7 in test_x")


def test_ftp_transfers_have_a_fix_of_their_own():
    for state in ("opened by ftplib.FTP.retrlines()", "opened by ftplib.retrbinary()",
                  "opened by ftplib.FTP_TLS.storbinary()"):
        assert cause_of([Item(state, None, SERVER, origin=LINE, count=6)]) == "per_transfer", state
    # the control connection, one FTP object per call: a new client per call, not the protocol
    assert cause_of([Item("opened by ftplib.FTP.connect()", None, SERVER, origin=LINE, count=6)]) != "per_transfer"


def test_a_pool_libraries_own_api_that_reconnected_gets_the_keep_alive_fix():
    for state in ("opened by httpcore._sync.interfaces.RequestInterface.request()",
                  "opened by urllib3.connectionpool.HTTPConnectionPool.urlopen()"):
        item = Item(state, None, SERVER, origin=LINE, count=8, note=f"no tracked client: {ONE_OBJECT_AGAIN}")
        assert cause_of([item]) == "api_pool_again", state
    other = Item("opened by pymemcache.Client.get()", None, SERVER, origin=LINE, count=8,
                 note=f"no tracked client: {ONE_OBJECT_AGAIN}")
    assert cause_of([other]) == "api_one_object"


def test_one_object_that_reconnected_gets_its_fix_whichever_side_closed_first():
    """slack_sdk's WebClient, on urllib.request (which asks the server to close every connection): the same test
    read the one-object fix in one run and the server-first one in the next, as the close race fell."""
    item = Item("opened by sdk.WebClient.api_call()", None, SERVER, origin=LINE, count=8,
                note=f"no tracked client: {ONE_OBJECT_AGAIN}")
    server_first = Item(state="TIME_WAIT", local=None, remote=SERVER, origin=LINE, count=8, note=SERVER_CLOSED_EACH)
    assert cause_of([item], [server_first]) == cause_of([item]) == "api_one_object"
    assert "urllib.request asks the server to close every connection" in CAUSE_ADVICE["api_one_object"]
    assert "urllib.request sends `Connection: close`" in CAUSE_ADVICE["api_server_first"]


def test_a_client_made_inside_a_method_names_the_method_and_its_class():
    inside = "opened inside slack_sdk.web.async_client.AsyncWebClient.api_test(), called at"
    assert made_inside_method(("/t/test_x.py", 7, "test_x", inside)) == (
        "slack_sdk.web.async_client.AsyncWebClient.api_test", "AsyncWebClient")
    assert made_inside_method(inside + " test_x.py:7 in test_x") == (  # the JSON report's form
        "slack_sdk.web.async_client.AsyncWebClient.api_test", "AsyncWebClient")
    # a function, the user's own line, no origin: none
    assert made_inside_method(("/t/test_x.py", 7, "test_x", "opened inside requests.get(), called at")) is None
    assert made_inside_method(LINE) is None
    assert made_inside_method(None) is None
    many = Item(state="aiohttp.ClientSession", local=None, remote=None,
                origin=("/t/test_x.py", 7, "test_x", inside), count=8, note="1 request each")
    lines = violation_lines(Violation(kind="time_wait", count=8, limit=5, items=(), context=(many,)),
                            lambda o: "inside ..., called at test_x.py:7 in test_x")
    assert ("slack_sdk.web.async_client.AsyncWebClient.api_test() made a new one for each call: give the "
            "AsyncWebClient one aiohttp.ClientSession to reuse") in lines[1], lines
    assert "Create one client" not in "\n".join(lines)


def test_calls_of_several_methods_on_one_object_are_that_objects():
    """One SDK client, a method per line, each call reconnecting: one group of the object's, not one per method."""
    import weakref

    class Sdk:
        pass

    sdk, other = Sdk(), Sdk()
    ref = weakref.ref(sdk)
    events = [SocketEvent(kind="connect", identity=40000 + i, fd=40000 + i, local=("127.0.0.1", 40000 + i),
                          remote=SERVER, origin=("/t/test_x.py", 10 + i, "test_x"), thread=1, owner=None,
                          api=f"sdk.WebClient.{name}", api_self=ref)
              for i, name in enumerate(["auth_test", "chat_post", "users_list", "chat_post"])]
    events.append(SocketEvent(kind="connect", identity=41000, fd=41000, local=("127.0.0.1", 41000), remote=SERVER,
                              origin=("/t/test_x.py", 20, "test_x"), thread=1, owner=None,
                              api="sdk.WebClient.auth_test", api_self=weakref.ref(other)))
    items = connection_sources(events, events)
    assert [(i.state, i.count, i.origin[1]) for i in items] == [
        ("opened by calls of 3 methods on one sdk.WebClient (auth_test(), chat_post(), users_list())", 4, 10),
        ("opened by sdk.WebClient.auth_test()", 1, 20),  # another object's call: not merged
    ]
    assert items[0].note == f"no tracked client: {ONE_OBJECT_AGAIN}"
    assert cause_of(items) == "api_one_object"


class ReadTimeoutError(Exception):
    """urllib3's shape: a library's own class, named for the timeout, not a TimeoutError."""


class ProtocolError(Exception):
    pass


def test_a_close_under_a_timeout_names_it_and_any_other_close_names_none() -> None:
    """``drops.timed_out``: the exception being handled as a pool closes a socket, if it is a timeout or was raised from
    or while handling one (its own name, the one the caller sees); None outside an ``except`` and for any other
    error (a reset is the server's doing, not a timeout)."""
    assert timed_out() is None
    for exc, name in ((socket.timeout("timed out"), type(socket.timeout()).__name__),
                      (ReadTimeoutError("read timed out"), "ReadTimeoutError")):
        try:
            raise exc
        except (OSError, ReadTimeoutError):
            assert timed_out() == name
    try:
        try:
            raise TimeoutError
        except TimeoutError as inner:
            raise ProtocolError("gave up") from inner
    except ProtocolError:
        assert timed_out() == "ProtocolError"  # (raised from a timeout: the timeout made it)
    try:
        raise ConnectionResetError
    except ConnectionResetError:
        assert timed_out() is None


def test_an_established_violation_of_ended_connections_alone_is_titled_by_what_leaks() -> None:
    """Sockets in state CLOSE (reset, or shut down both ways) hold an fd, not a connection: a violation of only
    those says so; one that also holds a live connection keeps the usual title."""
    ended = Item("CLOSE", ("127.0.0.1", 5000), SERVER, fd=9, origin=LINE)
    live = Item("ESTABLISHED", ("127.0.0.1", 5001), SERVER, fd=10, origin=LINE)
    only_ended = violation_lines(Violation(kind="established", count=1, limit=0, items=(ended,)), format_origin)
    assert only_ended[0] == "established: 1 > limit 0 - socket(s) left open after their connection ended"
    mixed = violation_lines(Violation(kind="established", count=2, limit=0, items=(ended, live)), format_origin)
    assert mixed[0] == "established: 2 > limit 0 - open connection(s) left behind"
