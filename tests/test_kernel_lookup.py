"""Exact TCP state lookups (``pytest_sockhygiene.table.kernel``) against real kernel states on loopback.

Every state here is produced for real: connections over 127.0.0.1 / ::1, closed in the order that leaves the
state under test. State changes are asynchronous (the peer's FIN and ACK cross the loopback in softirq), so
tests poll for a condition with a bounded deadline instead of sleeping.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
import time
from collections.abc import Iterator
from typing import Callable

import pytest

from pytest_sockhygiene.endpoints import FourTuple, endpoint_from_sockaddr
from pytest_sockhygiene.table import TcpState, kernel
from pytest_sockhygiene.table.kernel import NetlinkUnavailable, SockDiag, lookup_states, proc_net_lookup

DEADLINE = 10.0
LINGERING = {TcpState.TIME_WAIT, TcpState.FIN_WAIT2}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def ep(addr: object) -> tuple[str, int]:
    e = endpoint_from_sockaddr(addr)
    assert e is not None
    return e


def sides(sock: socket.socket) -> FourTuple:
    """``(local, remote)`` of a connected socket, normalised."""
    return (ep(sock.getsockname()), ep(sock.getpeername()))


def flip(t: FourTuple) -> FourTuple:
    return (t[1], t[0])


def free_port() -> int:
    """A port nothing listens on or connects from right now (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
    except OSError:
        return False
    finally:
        s.close()
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_works(), reason="::1 is not available here")


class Net:
    """Opens listeners and connections and closes whatever a test left open."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def listen(self, family: int = socket.AF_INET, host: str = "127.0.0.1", dual_stack: bool = False) -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        self.socks.append(s)
        if dual_stack:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((host, 0))
        s.listen(512)
        return s

    def connect(self, listener: socket.socket, host: str | None = None) -> tuple[socket.socket, socket.socket]:
        """``(client, server)`` of one connection to ``listener``, at ``host`` (default: its own address)."""
        port = listener.getsockname()[1]
        host = host or listener.getsockname()[0]
        client = socket.create_connection((host, port), timeout=DEADLINE)
        self.socks.append(client)
        listener.settimeout(DEADLINE)
        server, _ = listener.accept()
        self.socks.append(server)
        return client, server

    def close_all(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    yield n
    n.close_all()


@pytest.fixture
def diag() -> Iterator[SockDiag]:
    d = SockDiag()
    yield d
    d.close()


@pytest.fixture
def fresh_shared(monkeypatch: pytest.MonkeyPatch) -> kernel._Shared:
    """A process-wide state of its own for this test, so the real one is neither used nor switched to /proc."""
    shared = kernel._Shared()
    monkeypatch.setattr(kernel, "_shared", shared)
    return shared


def states(diag: SockDiag, *tuples: FourTuple) -> dict[FourTuple, TcpState]:
    return diag.lookup(tuples)


# --- ESTABLISHED, LISTEN, absent ---------------------------------------------------------------------------------


def test_established_both_sides_and_listener(diag: SockDiag, net: Net) -> None:
    listener = net.listen()
    client, server = net.connect(listener)
    c, s = sides(client), sides(server)
    assert s == flip(c)
    # A listener has no remote endpoint: the kernel's row (and /proc) shows the unspecified address, port 0,
    # and that is the 4-tuple that names it.
    lkey = (ep(listener.getsockname()), ("0.0.0.0", 0))
    assert states(diag, c, s, lkey) == {c: TcpState.ESTABLISHED, s: TcpState.ESTABLISHED, lkey: TcpState.LISTEN}


def test_unknown_tuples_are_absent(diag: SockDiag, net: Net) -> None:
    listener = net.listen()
    client, _server = net.connect(listener)
    local = ep(listener.getsockname())
    nowhere = (("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
    # The kernel answers a tuple it does not have with the listener on the same local endpoint (the lookup is
    # the receive path's: established, then listeners). Such an answer must not count as "found".
    to_listener = (local, ("127.0.0.1", free_port()))
    port_only = (local, ("0.0.0.0", 9))  # the listener's row differs from this only by the remote port
    # The right ports, the wrong peer address: does not exist either.
    wrong_peer = (ep(client.getsockname()), ("127.0.0.2", local[1]))
    # Mixed families name no socket at all.
    mixed = (local, ("::", 0))
    assert states(diag, nowhere, to_listener, port_only, wrong_peer, mixed) == {}
    assert states(diag, (local, ("0.0.0.0", 0))) == {(local, ("0.0.0.0", 0)): TcpState.LISTEN}


def test_empty_and_duplicate_input(diag: SockDiag, net: Net) -> None:
    client, _server = net.connect(net.listen())
    c = sides(client)
    assert diag.lookup([]) == {}
    assert diag.lookup(iter([c, c, c])) == {c: TcpState.ESTABLISHED}


# --- closing orders -------------------------------------------------------------------------------------------------


def test_client_closes_first_time_wait(diag: SockDiag, net: Net) -> None:
    client, server = net.connect(net.listen())
    c, s = sides(client), sides(server)
    client.close()
    # The server has not closed: the client waits in FIN_WAIT2, the server in CLOSE_WAIT.
    wait_for(
        lambda: states(diag, c, s) == {c: TcpState.FIN_WAIT2, s: TcpState.CLOSE_WAIT},
        "client FIN_WAIT2 / server CLOSE_WAIT",
    )
    server.close()
    # Now the client's row is TIME_WAIT (no process owns it) and the server's row goes away after LAST_ACK.
    wait_for(lambda: states(diag, c, s) == {c: TcpState.TIME_WAIT}, "client TIME_WAIT, server gone")


def test_server_closes_first(diag: SockDiag, net: Net) -> None:
    client, server = net.connect(net.listen())
    c, s = sides(client), sides(server)
    server.close()
    wait_for(
        lambda: states(diag, c, s) == {c: TcpState.CLOSE_WAIT, s: TcpState.FIN_WAIT2},
        "client CLOSE_WAIT / server FIN_WAIT2",
    )
    client.close()
    wait_for(lambda: states(diag, c, s) == {s: TcpState.TIME_WAIT}, "server TIME_WAIT, client gone")


# --- IPv6 and dual stack --------------------------------------------------------------------------------------------


@needs_ipv6
def test_ipv6(diag: SockDiag, net: Net) -> None:
    listener = net.listen(socket.AF_INET6, "::1")
    client, server = net.connect(listener)
    c, s = sides(client), sides(server)
    assert c[0][0] == "::1"
    lkey = (ep(listener.getsockname()), ("::", 0))
    assert states(diag, c, s, lkey) == {c: TcpState.ESTABLISHED, s: TcpState.ESTABLISHED, lkey: TcpState.LISTEN}
    client.close()
    server.close()
    wait_for(lambda: states(diag, c, s) == {c: TcpState.TIME_WAIT}, "IPv6 client TIME_WAIT")


@needs_ipv6
def test_ipv4_client_to_dual_stack_listener(diag: SockDiag, net: Net) -> None:
    listener = net.listen(socket.AF_INET6, "::", dual_stack=True)
    client, server = net.connect(listener, host="127.0.0.1")
    assert server.family == socket.AF_INET6 and server.getsockname()[0] == "::ffff:127.0.0.1"
    c, s = sides(client), sides(server)
    assert s == (("127.0.0.1", c[1][1]), ("127.0.0.1", c[0][1]))  # folded to IPv4 like every Endpoint
    port = listener.getsockname()[1]
    lkey = (("::", port), ("::", 0))
    # The listener is AF_INET6 on "::": it is named so, not as 0.0.0.0 (which would be a different socket).
    assert states(diag, c, s, lkey, (("0.0.0.0", port), ("0.0.0.0", 0))) == {
        c: TcpState.ESTABLISHED,
        s: TcpState.ESTABLISHED,
        lkey: TcpState.LISTEN,
    }
    # The accepted (IPv4-mapped AF_INET6) side closes first; its TIME_WAIT row is found by the IPv4 tuple too.
    server.close()
    client.close()
    wait_for(lambda: states(diag, c, s) == {s: TcpState.TIME_WAIT}, "mapped server side TIME_WAIT")


@needs_ipv6
def test_mapped_form_query_finds_dual_stack_socket(diag: SockDiag, net: Net) -> None:
    # lookup() asks again in ::ffff: form when the AF_INET query misses. On current Linux the AF_INET query
    # already finds mapped sockets, so that retry never runs for real: check the query it would send.
    listener = net.listen(socket.AF_INET6, "::", dual_stack=True)
    _client, server = net.connect(listener, host="127.0.0.1")
    s = sides(server)
    q = kernel._query(s)
    assert q is not None and q[1] == socket.AF_INET
    mapped = kernel._as_mapped(q)
    assert mapped[1] == socket.AF_INET6
    wire = kernel._encode_request(mapped, 1)
    assert wire[28:44] == socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")  # sockid.src, after the ports
    found: dict[FourTuple, TcpState] = {}
    assert diag._sock is not None
    missed = diag._run(diag._sock, [mapped], found)
    assert missed == [] and found == {s: TcpState.ESTABLISHED}


# --- batches --------------------------------------------------------------------------------------------------------


def close_many_client_first(net: Net, n: int) -> list[FourTuple]:
    listener = net.listen()
    tuples = []
    pairs = []
    for _ in range(n):
        client, server = net.connect(listener)
        tuples.append(sides(client))
        pairs.append((client, server))
    for client, server in pairs:
        client.close()
        server.close()
    return tuples


def test_batch_of_300_closed_by_client(diag: SockDiag, net: Net) -> None:
    tuples = close_many_client_first(net, 300)
    wait_for(
        lambda: set(diag.lookup(tuples).values()) <= LINGERING and len(diag.lookup(tuples)) == 300,
        "300 client sides in TIME_WAIT/FIN_WAIT2",
    )
    result = diag.lookup(tuples)
    assert set(result) == set(tuples)
    assert set(result.values()) <= LINGERING


def test_batch_of_3000_mostly_unknown(diag: SockDiag, net: Net) -> None:
    # More tuples than one batch: the request is split so replies never overflow the receive buffer, and the
    # 2,700 misses also go through the ::ffff: retry.
    real = close_many_client_first(net, 300)
    wait_for(lambda: len(diag.lookup(real)) == 300, "300 rows")
    base = free_port()
    unknown = [(("127.0.0.1", base), ("127.0.0.3", 1 + i)) for i in range(2700)]
    result = diag.lookup(unknown + real)
    assert set(result) == set(real)


def test_recovers_when_replies_are_dropped(diag: SockDiag, net: Net) -> None:
    # Force what the batch sizing prevents: a tiny receive buffer and one huge batch, so the kernel drops replies
    # (ENOBUFS). The lost lookups must be asked again in smaller batches, and every tuple still answered.
    tuples = close_many_client_first(net, 200)
    assert diag._sock is not None
    diag._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    diag._chunk = 10_000
    wait_for(lambda: len(diag.lookup(tuples)) == 200, "200 rows despite ENOBUFS")
    assert diag._chunk < 200


# --- /proc agrees ---------------------------------------------------------------------------------------------------


def test_proc_net_lookup_agrees_with_netlink(diag: SockDiag, net: Net) -> None:
    listener = net.listen()
    lkey = (ep(listener.getsockname()), ("0.0.0.0", 0))
    est_c, est_s = net.connect(listener)
    tw_c, tw_s = net.connect(listener)
    cw_c, cw_s = net.connect(listener)
    keys = {
        "est": sides(est_c),
        "est_peer": sides(est_s),
        "tw": sides(tw_c),
        "cw": sides(cw_c),
        "fw2": sides(cw_s),
    }
    tw_c.close()
    tw_s.close()
    cw_s.close()  # the client side stays in CLOSE_WAIT, the server side in FIN_WAIT2
    expected = {
        keys["est"]: TcpState.ESTABLISHED,
        keys["est_peer"]: TcpState.ESTABLISHED,
        keys["tw"]: TcpState.TIME_WAIT,
        keys["cw"]: TcpState.CLOSE_WAIT,
        keys["fw2"]: TcpState.FIN_WAIT2,
        lkey: TcpState.LISTEN,
    }
    if ipv6_loopback_works():
        l6 = net.listen(socket.AF_INET6, "::", dual_stack=True)
        v6c, v6s = net.connect(l6, host="::1")
        _m_c, m_s = net.connect(l6, host="127.0.0.1")
        expected[sides(v6c)] = TcpState.ESTABLISHED
        expected[sides(v6s)] = TcpState.ESTABLISHED
        expected[sides(m_s)] = TcpState.ESTABLISHED  # in /proc/net/tcp6 as ::ffff:127.0.0.1
        expected[(("::", l6.getsockname()[1]), ("::", 0))] = TcpState.LISTEN
    absent = [(("127.0.0.1", free_port()), ("127.0.0.1", 9)), (lkey[0], ("127.0.0.1", 9))]
    query = list(expected) + absent
    wait_for(lambda: diag.lookup(query) == expected, "settled states")
    assert proc_net_lookup(query) == expected
    assert proc_net_lookup(query) == diag.lookup(query)


def test_proc_hex_encoding() -> None:
    # What /proc/net/tcp{,6} prints on this machine's byte order: 32-bit words as host-order integers.
    q4 = kernel._query((("127.0.0.1", 8080), ("10.1.2.3", 443)))
    q6 = kernel._query((("::1", 1), ("fe80::1", 2)))
    assert q4 is not None and q6 is not None
    little = socket.htonl(1) != 1
    keys4 = dict(kernel._proc_keys(q4))
    keys6 = dict(kernel._proc_keys(q6))
    if little:
        assert keys4["tcp"] == (b"0100007F:1F90", b"0302010A:01BB")
        assert keys4["tcp6"] == (b"0000000000000000FFFF00000100007F:1F90", b"0000000000000000FFFF00000302010A:01BB")
        assert keys6 == {"tcp6": (b"00000000000000000000000001000000:0001", b"000080FE000000000000000001000000:0002")}
    else:
        assert keys4["tcp"] == (b"7F000001:1F90", b"0A010203:01BB")


# --- lookup_states and the fallback ---------------------------------------------------------------------------------


def test_lookup_states_uses_netlink(fresh_shared: kernel._Shared, net: Net) -> None:
    client, server = net.connect(net.listen())
    c, s = sides(client), sides(server)
    assert lookup_states(iter([c, s])) == {c: TcpState.ESTABLISHED, s: TcpState.ESTABLISHED}
    assert isinstance(fresh_shared.diag, SockDiag) and not fresh_shared.use_proc
    fresh_shared.close()


def test_lookup_states_falls_back_to_proc(
    fresh_shared: kernel._Shared, monkeypatch: pytest.MonkeyPatch, net: Net
) -> None:
    # Netlink being refused (seccomp, an LSM, a sandbox) is a fault we cannot cause for real here, so
    # SockDiag's construction is made to fail the way it would.
    attempts: list[int] = []

    def refuse() -> SockDiag:
        attempts.append(1)
        raise NetlinkUnavailable("refused for the test")

    monkeypatch.setattr(kernel, "SockDiag", refuse)
    listener = net.listen()
    client, server = net.connect(listener)
    c, s = sides(client), sides(server)
    client.close()
    server.close()
    wait_for(lambda: proc_net_lookup([c]) == {c: TcpState.TIME_WAIT}, "TIME_WAIT in /proc")
    lkey = (ep(listener.getsockname()), ("0.0.0.0", 0))
    assert lookup_states([c, s, lkey]) == {c: TcpState.TIME_WAIT, lkey: TcpState.LISTEN}
    assert fresh_shared.use_proc
    assert lookup_states([c]) == {c: TcpState.TIME_WAIT}
    assert attempts == [1], "netlink is not retried once it failed"


def test_lookup_states_falls_back_when_a_lookup_fails(
    fresh_shared: kernel._Shared, monkeypatch: pytest.MonkeyPatch, net: Net
) -> None:
    # Likewise simulated: netlink opens but a lookup fails (e.g. EACCES from an LSM on the request).
    class Failing:
        closed = False

        def lookup(self, tuples: object) -> dict[FourTuple, TcpState]:
            raise NetlinkUnavailable("lookup refused for the test")

        def close(self) -> None:
            Failing.closed = True

    monkeypatch.setattr(kernel, "SockDiag", Failing)
    client, _server = net.connect(net.listen())
    c = sides(client)
    assert lookup_states([c]) == {c: TcpState.ESTABLISHED}
    assert fresh_shared.use_proc and fresh_shared.diag is None and Failing.closed


# --- the socket itself ----------------------------------------------------------------------------------------------


def test_netlink_socket_stays_out_of_the_way(diag: SockDiag) -> None:
    sock = diag._sock
    assert sock is not None
    assert type(sock) is _socket.socket and not isinstance(sock, socket.socket)
    assert sock.family == socket.AF_NETLINK
    diag.close()
    diag.close()
    with pytest.raises(NetlinkUnavailable):
        diag.lookup([(("127.0.0.1", 1), ("127.0.0.1", 2))])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_netlink_socket(diag: SockDiag, net: Net) -> None:
    # A netlink socket shared across fork would hand replies to whichever process reads first.
    client, _server = net.connect(net.listen())
    c = sides(client)
    assert diag.lookup([c]) == {c: TcpState.ESTABLISHED}
    parent_sock = diag._sock
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            ok = all(diag.lookup([c]) == {c: TcpState.ESTABLISHED} for _ in range(50))
            code = 0 if ok and diag._sock is not parent_sock else 1
        finally:
            os._exit(code)
    for _ in range(50):
        assert diag.lookup([c]) == {c: TcpState.ESTABLISHED}
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert diag._sock is parent_sock


def test_errno_names_used_exist() -> None:
    # The reply parser compares against these; a platform lacking one would make the module fail to import.
    assert errno.ENOENT and errno.ENOBUFS and errno.EAGAIN
