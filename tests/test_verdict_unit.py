"""The verdict from plain values: ownership, accepted sockets, ignore globs, TIME_WAIT grouping. No sockets."""

from __future__ import annotations

import dataclasses

from pytest_sockhygiene.endpoints import IgnorePattern
from pytest_sockhygiene.events import SocketEvent
from pytest_sockhygiene.limits import Limits
from pytest_sockhygiene.table import SocketEntry, TcpState
from pytest_sockhygiene.verdict import (
    ADVICE,
    SIDE_UNKNOWN_CLOSE_WAIT_ADVICE,
    SIDE_UNKNOWN_NOTE,
    UNPOOLED_CLOSE_WAIT_ADVICE,
    Observation,
    advice,
    judge,
    time_wait_candidates,
)

SERVER = ("127.0.0.1", 8000)


def entry(key, state, local, remote=None, fd=10):
    return SocketEntry(key=key, fd=fd, state=state, local=local, remote=remote)


def event(kind, identity, local, remote=None, owner=None, listener=None, origin=("t.py", 3, "test_x")):
    return SocketEvent(kind=kind, identity=identity, fd=10, local=local, remote=remote, origin=origin,
                       thread=1, owner=owner, listener=listener)


def obs(entries=(), events=(), owned=None, listeners=None, lingering=(), held=None):
    entries = list(entries)
    return Observation(new_entries=entries, events=list(events),
                       owned=owned or {}, listeners=listeners or {},
                       held_ids=frozenset(held if held is not None else [e.key for e in entries]),
                       lingering=set(lingering))


def test_clean_when_nothing_new():
    v = judge(obs(), Limits())
    assert v.clean and v.counts["established"] == 0


def test_established_leak_carries_origin():
    c = entry(1, TcpState.ESTABLISHED, ("127.0.0.1", 40000), SERVER)
    v = judge(obs([c], [event("connect", 1, c.local, SERVER)]), Limits())
    (viol,) = v.violations
    assert (viol.kind, viol.count, viol.limit) == ("established", 1, 0)
    assert viol.items[0].origin == ("t.py", 3, "test_x")


def test_fixture_owned_socket_is_not_the_tests():
    c = entry(1, TcpState.ESTABLISHED, ("127.0.0.1", 40000), SERVER)
    assert judge(obs([c], owned={1: "session-scoped fixture 'db'"}), Limits()).clean


def test_socket_touched_by_fixture_thread_is_owned():
    c = entry(1, TcpState.ESTABLISHED, ("127.0.0.1", 40000), SERVER)
    ev = event("connect", 1, c.local, SERVER, owner="session-scoped fixture 'poller'")
    v = judge(obs([c], [ev]), Limits())
    assert v.clean and v.counts["connections"] == 0


def test_accepted_socket_of_a_foreign_listener_is_never_the_tests():
    accepted = entry(2, TcpState.CLOSE_WAIT, SERVER, ("127.0.0.1", 40000))
    v = judge(obs([accepted], listeners={SERVER: 99}, held=[2, 99]), Limits())
    assert v.clean


def test_accepted_socket_of_the_tests_listener_rides_on_the_listen_item():
    listener = entry(3, TcpState.LISTEN, SERVER)
    accepted = entry(4, TcpState.ESTABLISHED, SERVER, ("127.0.0.1", 40000))
    v = judge(obs([listener, accepted]), Limits())
    assert [x.kind for x in v.violations] == ["listen"]
    assert "1 accepted connection" in v.violations[0].items[0].note


def test_accepted_socket_whose_listener_closed_counts():
    accepted = entry(4, TcpState.ESTABLISHED, SERVER, ("127.0.0.1", 40000))
    ev = event("accept", 4, SERVER, ("127.0.0.1", 40000), listener=3)
    v = judge(obs([accepted], [ev], listeners={SERVER: 3}, held=[4]), Limits())
    assert v.counts["established"] == 1
    assert "listener is already closed" in v.violations[0].items[0].note


def test_server_side_close_wait_gets_server_advice_not_keepalive_expiry():
    """A server socket has no pool and no keepalive_expiry: its CLOSE_WAIT fix speaks of the handler; a mix of
    client and server sockets gets both lines."""
    accepted = entry(4, TcpState.CLOSE_WAIT, SERVER, ("127.0.0.1", 40000))
    ev = event("accept", 4, SERVER, ("127.0.0.1", 40000), listener=3)
    v = judge(obs([accepted], [ev], listeners={SERVER: 3}, held=[4]), Limits())
    (cw,) = v.violations
    assert cw.items[0].server_side
    assert "keepalive_expiry" not in advice(cw) and "accepted connection" in advice(cw)
    client = entry(5, TcpState.CLOSE_WAIT, ("127.0.0.1", 40001), ("127.0.0.1", 9000))
    mixed = judge(obs([accepted, client], [ev], listeners={SERVER: 3}, held=[4, 5]), Limits()).violations[0]
    assert advice(mixed).startswith(ADVICE["close_wait"]) and "Server side: " in advice(mixed)
    # a client socket no pool holds (a websocket, a raw socket): close it - there is no idle limit to set
    connected = event("connect", 5, ("127.0.0.1", 40001), ("127.0.0.1", 9000))
    only_client = judge(obs([client], [connected]), Limits()).violations[0]
    assert advice(only_client) == UNPOOLED_CLOSE_WAIT_ADVICE and "keepalive_expiry" not in advice(only_client)
    # one no hook saw connected nor accepted (gevent's sockets, C code): either end may be this process's, and
    # bytes unread in it may be a request its handler never read as well as a response (geventhttpclient's suite)
    unseen = judge(obs([dataclasses.replace(client, unread=80)]), Limits()).violations[0]
    assert advice(unseen) == SIDE_UNKNOWN_CLOSE_WAIT_ADVICE
    assert unseen.items[0].note == SIDE_UNKNOWN_NOTE.format(n=80) and "response" not in unseen.items[0].note
    pooled = dataclasses.replace(only_client, items=tuple(
        dataclasses.replace(i, note="in the pool of httpx.Client created at t.py:1 in f") for i in only_client.items))
    assert advice(pooled) == ADVICE["close_wait"]


def test_ignore_matches_local_or_remote():
    c = entry(1, TcpState.ESTABLISHED, ("127.0.0.1", 40000), ("127.0.0.1", 6379))
    assert judge(obs([c]), Limits(ignore=(IgnorePattern("*:6379"),))).clean
    assert not judge(obs([c]), Limits(ignore=(IgnorePattern("*:5432"),))).clean


def test_limits_none_is_unlimited():
    cs = [entry(i, TcpState.ESTABLISHED, ("127.0.0.1", 40000 + i), SERVER) for i in range(3)]
    assert judge(obs(cs), Limits(established=None)).clean
    assert judge(obs(cs), Limits(established=3)).clean
    assert judge(obs(cs), Limits(established=2)).violations[0].count == 3


def test_time_wait_candidates_and_grouping():
    connects = [event("connect", i, ("127.0.0.1", 40000 + i), SERVER) for i in range(8)]
    foreign = event("connect", 50, ("127.0.0.1", 50000), SERVER, owner="session-scoped fixture 's'")
    server_side = event("accept", 60, SERVER, ("127.0.0.1", 40000), listener=99)
    o = obs(events=[*connects, foreign, server_side], listeners={SERVER: 99})
    cands = time_wait_candidates(o, Limits(), still_open=set())
    assert ((("127.0.0.1", 50000), SERVER)) not in cands  # a fixture's connection
    assert (SERVER, ("127.0.0.1", 40000)) in cands  # the in-process server side of the test's connection
    # both sides of connection 0 linger (simultaneous close): still one connection
    o.lingering = {ev.four_tuple for ev in connects} | {(SERVER, ("127.0.0.1", 40000))}
    v = judge(o, Limits())
    tw = v.violation("time_wait")
    assert tw is not None and tw.count == 8 and tw.limit == 5
    assert tw.items[0].remote == SERVER and tw.items[0].count == 8


def test_a_tie_between_time_wait_groups_names_the_tests_line_before_a_fixtures_probe():
    """One connection per line: every group has one entry. The summary takes the first group's line - the test's
    own code, not the readiness probe of its function-scoped fixture, made first (found on werkzeug's suite)."""
    probe = event("connect", 1, ("127.0.0.1", 40001), SERVER, origin=("t.py", 29, "ready"))
    probe.fixture = "function-scoped fixture 'ready'"
    burst = [event("connect", 2 + i, ("127.0.0.1", 40002 + i), SERVER, origin=("t.py", 34 + i, "test_burst"))
             for i in range(6)]
    o = obs(events=[probe, *burst], lingering={ev.four_tuple for ev in [probe, *burst]})
    tw = judge(o, Limits()).violation("time_wait")
    assert tw is not None and tw.count == 7
    assert tw.items[0].origin == ("t.py", 34, "test_burst")
    assert tw.items[-1].origin == ("t.py", 29, "ready")


def test_the_server_side_counts_only_while_its_listener_was_open():
    """A connection to a port this process listened on: its server side is this process's while that listener is
    open (held at the look, or closed by a later event); a listener closed before the connect (a port reserved by
    bind-listen-close and handed to another process's server) makes nothing of it this process's."""
    client = ("127.0.0.1", 40000)
    listen = event("listen", 99, SERVER)
    closed = event("close", 99, SERVER)
    connect = event("connect", 1, client, SERVER)
    server_side = (SERVER, client)
    before = obs(events=[listen, closed, connect], listeners={SERVER: 99}, held=[])
    assert server_side not in time_wait_candidates(before, Limits(), still_open=set())
    after = obs(events=[listen, connect, closed], listeners={SERVER: 99}, held=[])
    assert server_side in time_wait_candidates(after, Limits(), still_open=set())
    still_held = obs(events=[connect], listeners={SERVER: 99}, held=[99])
    assert server_side in time_wait_candidates(still_held, Limits(), still_open=set())
    gone_before_the_window = obs(events=[connect], listeners={SERVER: 99}, held=[])
    assert server_side not in time_wait_candidates(gone_before_the_window, Limits(), still_open=set())
    # opened in the window and closed where no hook saw it (a uvloop server's listener, closed in C)
    closed_unseen = obs(events=[listen, connect], listeners={SERVER: 99}, held=[])
    assert server_side in time_wait_candidates(closed_unseen, Limits(), still_open=set())


def test_connections_budget():
    connects = [event("connect", i, ("127.0.0.1", 40000 + i), SERVER) for i in range(3)]
    v = judge(obs(events=connects), Limits(connections=2))
    assert v.violation("connections").count == 3
    assert judge(obs(events=connects), Limits()).counts["connections"] == 3


def test_held_server_side_of_a_fixture_does_not_hide_the_tests_time_wait():
    client = (("127.0.0.1", 40000), SERVER)
    server_side = entry(2, TcpState.CLOSE_WAIT, SERVER, client[0])  # the fixture's server has not closed yet
    o = obs([server_side], [event("connect", 1, client[0], SERVER),
                            event("accept", 2, SERVER, client[0], owner="session-scoped fixture 's'")])
    assert client in time_wait_candidates(o, Limits(), still_open={(SERVER, client[0])})
    # ...but a connection the test itself still holds is a leak, counted elsewhere: neither end lingers for it
    held = entry(1, TcpState.ESTABLISHED, client[0], SERVER)
    o = obs([held], [event("connect", 1, client[0], SERVER)])
    assert not time_wait_candidates(o, Limits(), still_open={client})


def test_hand_written_inits_take_the_declared_fields_and_defaults():
    """Item, Violation, Verdict and SocketEvent set their fields in an ``__init__`` of their own (a frozen
    dataclass's is three times slower; SocketEvent, a class with slots, computes ``four_tuple`` in it): each must
    take exactly the declared fields, in order, with the declared defaults, and the verdict's values must stay
    frozen."""
    import dataclasses
    import inspect

    import pytest

    from pytest_sockhygiene.verdict import Item, Verdict, Violation

    for cls in (Item, Violation, Verdict):
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        fields = [f for f in dataclasses.fields(cls) if f.init]
        assert [p.name for p in params] == [f.name for f in fields], cls
        for p, f in zip(params, fields):
            expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            assert p.default == expected, (cls, f.name)
    params = list(inspect.signature(SocketEvent.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [*SocketEvent.FIELDS[:-1]] and SocketEvent.FIELDS[-1] == "four_tuple"
    assert SocketEvent.__slots__ == SocketEvent.FIELDS
    assert [p.name for p in params if p.default is inspect.Parameter.empty] == [
        "kind", "identity", "fd", "local", "remote", "origin", "thread", "owner"]
    assert all(p.default is None for p in params[8:])
    full = SocketEvent("accept", 1, 3, ("127.0.0.1", 50000), SERVER, None, 1, "f", 2, SERVER, "c", "a", "x")
    assert not hasattr(full, "__dict__") and "fixture='x'" in repr(full)
    item = Item("CONNECT", None, SERVER, count=3, note="n")
    assert dataclasses.replace(item, note="m") == Item("CONNECT", None, SERVER, count=3, note="m")
    assert hash(item) == hash(Item("CONNECT", None, SERVER, count=3, note="n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.count = 4  # type: ignore[misc]
    verdict = Verdict(counts={}, violations=(Violation("time_wait", 7, 5, (item,)),))
    assert verdict.violation("time_wait").context == () and not verdict.clean
    ev = SocketEvent("close", 1, 3, ("127.0.0.1", 50000), SERVER, None, 1, None)
    assert ev.four_tuple == (("127.0.0.1", 50000), SERVER) and ev.listener is None
    assert SocketEvent("listen", 1, 3, SERVER, None, None, 1, None).four_tuple is None


def test_unread_bytes_tell_an_unread_response_from_an_idle_connection():
    """A CLOSE_WAIT socket with the server's bytes unread is a response nobody read to the end - unless a pool
    lists it as idle, or all it holds is what a closing server sends with no response in it (a TLS close_notify,
    ~24-31 bytes; an HTTP/2 GOAWAY): an idle HTTPS connection whose keep-alive the server ended keeps the idle
    diagnosis (found reviewing the change; checked with an asyncio TLS server: 24 bytes unread)."""
    def close_wait(unread, pooled):
        e = SocketEntry(key=1, fd=10, state=TcpState.CLOSE_WAIT, local=("127.0.0.1", 40000), remote=SERVER,
                        unread=unread)
        o = obs([e], [event("connect", 1, e.local, SERVER)])
        if pooled:
            o.notes = {1: "in the pool of httpx.Client created at t.py:2 in test_x, keepalive_expiry=5s"}
        (v,) = judge(o, Limits()).violations
        return v.items[0].note, advice(v)

    note, fix = close_wait(unread=32768, pooled=False)
    assert note.startswith("a response never read to the end: 32768 byte(s)") and fix.startswith("the server answered")
    for unread, pooled in ((24, False), (32768, True), (24, True)):
        note, fix = close_wait(unread, pooled)
        assert "never read to the end" not in note, (unread, pooled, note)
        assert not fix.startswith("the server answered"), (unread, pooled)
    note, _ = close_wait(unread=24, pooled=True)
    assert "the server closed this idle pooled connection first" in note
