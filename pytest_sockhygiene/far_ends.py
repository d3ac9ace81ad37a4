"""Connections C code holds for an object, placed by their far end: gRPC channels, pyzmq sockets, pylibmc clients,
curl_cffi sessions.

A client whose C library opens its connections (gRPC's core, libzmq's I/O thread, libmemcached, libcurl) gives no
file descriptor to find them by, and connects lazily: made in a session fixture, it opens its connection during a
later test, which was that test's ``established`` leak of ``origin unknown``. What such an object does know is where
it connects - a gRPC channel its target (``grpc_channels.py``), a zmq socket the endpoints it was told
(``zmq_endpoints.py``), a memcached client its servers (``memcached_clients.py``), a curl_cffi session the origins
it sent requests to (``curl_cffi_sessions.py``) - so the walk over broader fixtures' values (``holders.py``) gives
it the held connections that go there: one per address, or all of them for a pool (``Claims``).
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any

from . import grpc_channels, memcached_clients
from .copies import copied
from .curl_cffi_sessions import CurlCffiRequests
from .endpoints import LOCALHOST_NAMES, Address, Endpoint
from .zmq_endpoints import ZmqConnects


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def names(addresses: Collection[Address], remote: Endpoint | None) -> bool:
    """Whether a connection to ``remote`` is one ``addresses`` name. An IP literal must be that address;
    ``localhost`` any loopback address; any other name is not resolved here (the look must not wait on DNS), so
    its port alone decides."""
    if remote is None:
        return False
    host, port = remote
    for name, wanted_port in addresses:
        if wanted_port != port:
            continue
        if name == host:
            return True
        if _ip(name) is not None:
            continue  # another address
        if name in LOCALHOST_NAMES:
            remote_ip = _ip(host)
            if remote_ip is not None and remote_ip.is_loopback:
                return True
            continue
        return True
    return False


CURL_CFFI_HOW = "opened by C code (libcurl, most likely for a curl_cffi session not closed) first sent here at"
"""How a held connection of no Python socket call reads when a curl_cffi session still open was sent to its far
end (``FarEnds.origin_for``)."""
ZMQ_HOW = "opened by C code (libzmq, most likely for a zmq socket not closed) connected here at"


def _latest_line(noted_by: Mapping[Any, Mapping[Address, Any]], is_closed: Callable[[Any], bool],
                 remote: Endpoint) -> tuple[Any, ...] | None:
    """The user's line noted for the latest address that names ``remote``, of the latest object not closed among
    ``noted_by`` (object -> address -> the line that first sent it there): what most likely opened a connection
    there that no Python socket call made."""
    for obj, noted in reversed(copied(noted_by.items) or []):  # (noted meanwhile: tried again)
        if is_closed(obj):
            continue
        for address, first in reversed(tuple(noted.items())):  # (a copy made in one step)
            if first is not None and names((address,), remote):
                return tuple(first)
    return None


Placer = Callable[[list[tuple[str, Any]], Mapping[int, Hashable], Collection[Hashable]], dict[Hashable, str]]
"""``([(fixture label, object) met on the walk, nearest first], wanted fd -> key, keys placed already)`` -> key ->
the label of the fixture whose object holds that connection."""


class Claims:
    """The connections each broader fixture's objects were given, per address, for the whole session.

    A gRPC channel keeps one connection to an address (its default policy, ``pick_first``), a zmq socket one per
    endpoint, a memcached client one per server, and each opens another when that one ends. So in a later test a
    fixture takes a new connection to the address only while it holds fewer there than the most it held at once in
    an earlier test - a reconnection, not one more - and in the test that first uses it, one per object of the
    fixture: a test that leaks a channel of its own to the server a session stub talks to is still told, unless the
    session's channel had not connected yet, or its connection ended in this test, and the two new connections
    cannot be told apart (then the one opened first is the fixture's, and the count stays right).

    Per object within the first test, per fixture across tests: a fixture's ``ClientPool`` of pylibmc clones opens
    one connection per clone to the same server, in the test that first uses them together, and a clone that
    reconnects later takes one again; a ``ThreadMappedPool`` reaches a master client that never connects beside
    its clone, and that master must take neither the connection a later test opened and left open itself nor, when
    the clone's connection ended and it opened another, a second one (ci53: a clone whose connection ended under
    load let the master take the test's). Known limit: a fixture whose objects connect one by one over several
    tests (a pool used by one thread, then by two) gives the later connections to the tests."""

    def __init__(self) -> None:
        self._given: dict[tuple[str, Address], dict[Hashable, tuple[int, float]]] = {}
        """(fixture label, address) -> each connection given and still held: (the object's ``id()``, when)."""
        self._peaks: dict[tuple[str, Address], list[tuple[float, int]]] = {}
        """(fixture label, address) -> (when, how many it held there at once) each time that rose: what the fixture
        held before a window opened, though those connections have ended since."""

    def place(self, label: str, owner: int, addresses: Collection[Address], wanted: Mapping[int, Hashable],
              placed: Collection[Hashable], peers: Mapping[int, Endpoint | None], held: Collection[Hashable],
              since: float = float("-inf"), now: float = 0.0) -> list[Hashable]:
        """The wanted connections the object ``owner`` (an ``id()``) of the fixture ``label`` holds, among those
        to its ``addresses``; ``since``: when the window being judged opened, ``now``: the time of this look."""
        out: list[Hashable] = []
        for address in addresses:
            where = (label, address)
            given = self._given.get(where)
            if given:
                given = self._given[where] = {k: v for k, v in given.items() if k in held}
                if any(who == owner for who, _ in given.values()):
                    continue  # this object has its own
            # (a connection still held from before the window was held then: the peaks count it already)
            earlier = self._held_before(where, since)
            if earlier and len(given or ()) >= earlier:
                continue  # the fixture holds as many as it ever did before this window: nothing ended to reopen
            fds = sorted(fd for fd, key in wanted.items()
                         if key not in placed and key not in out and names((address,), peers.get(fd)))
            if fds:
                key = wanted[fds[0]]  # the lowest number: opened first, if numbers were free in order
                self._give(where, key, owner, now)
                out.append(key)
        return out

    def _give(self, where: tuple[str, Address], key: Hashable, owner: int, now: float) -> None:
        given = self._given.setdefault(where, {})
        given[key] = (owner, now)
        peaks = self._peaks.setdefault(where, [])
        if not peaks or len(given) > peaks[-1][1]:
            peaks.append((now, len(given)))

    def _held_before(self, where: tuple[str, Address], since: float) -> int:
        """The most connections the fixture held to that address at once before ``since`` (0: none yet)."""
        most = 0
        for at, count in self._peaks.get(where, ()):
            if at >= since:
                break
            most = count
        return most

    def forget_gone(self, held: Collection[Hashable]) -> None:
        """Drop what is no longer held (``take_all`` and ``note`` add without looking; ``place`` prunes only the
        entries it reads)."""
        for where, given in list(self._given.items()):
            kept = {k: v for k, v in given.items() if k in held}
            if kept:
                self._given[where] = kept
            else:
                del self._given[where]

    def note(self, label: str, owner: int, address: Address, key: Hashable, now: float = 0.0) -> None:
        """Count ``key`` as given to that fixture's object too (a pool's connection that one of several fixture
        sessions sent to the same origin opened: each of them then holds something from this test on)."""
        self._give((label, address), key, owner, now)

    def take_all(self, label: str, owner: int, addresses: Collection[Address], wanted: Mapping[int, Hashable],
                 placed: Collection[Hashable], peers: Mapping[int, Endpoint | None],
                 now: float = 0.0) -> list[Hashable]:
        """Every wanted connection to ``addresses``: for a pool that keeps any number per address (a curl_cffi
        session's), where nothing else alive was sent there (``FarEnds.placer``)."""
        out: list[Hashable] = []
        for fd, key in sorted(wanted.items()):
            if key in placed:
                continue
            for address in addresses:
                if names((address,), peers.get(fd)):
                    self._give((label, address), key, owner, now)
                    out.append(key)
                    break
        return out


class FarEnds:
    """What the walk needs to place connections by their far end, for the session: the claims made so far, the
    zmq endpoints, ``grpc.aio`` targets and curl_cffi sessions' origins noted (its ``patches`` are installed with
    the socket hooks). A pylibmc client needs no patch: it keeps its servers' specs itself."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self.claims = Claims()
        self.zmq = ZmqConnects(on_error)
        self.grpc_aio = grpc_channels.AioTargets(on_error)
        self.curl_cffi = CurlCffiRequests(on_error)
        self.patches = (self.zmq, self.grpc_aio, *self.curl_cffi.patches)
        """What the recorder installs with its socket hooks."""

    def types(self) -> frozenset[type]:
        """The classes whose instances are asked (subclasses too), where their modules are imported already (the
        walk imports nothing): grpcio's C channels, pyzmq's socket, pylibmc's client, curl_cffi's session."""
        out: set[type] = set()
        cygrpc = sys.modules.get("grpc._cython.cygrpc")
        if cygrpc is not None:
            out.update(cls for cls in vars(cygrpc).values()
                       if isinstance(cls, type) and grpc_channels.is_channel_type(cls))
        zmq_socket = getattr(sys.modules.get("zmq.sugar.socket"), "Socket", None)
        if isinstance(zmq_socket, type):
            out.add(zmq_socket)
        memcached = memcached_clients.client_type()
        if memcached is not None:
            out.add(memcached)
        curl_cffi = self.curl_cffi.session_type()
        if curl_cffi is not None:
            out.add(curl_cffi)
        return frozenset(out)

    def addresses(self, obj: Any, cls: type) -> list[Address]:
        if grpc_channels.is_channel_type(cls):
            target = grpc_channels.channel_target(obj) or self.grpc_aio.target_of(obj)
            return grpc_channels.target_addresses(target) if target is not None else []
        if memcached_clients.is_client_type(cls):
            return memcached_clients.server_addresses(obj)
        curl_cffi = self.curl_cffi.session_type()
        if curl_cffi is not None and issubclass(cls, curl_cffi):
            return self.curl_cffi.addresses(obj)
        return self.zmq.addresses(obj)

    def origin_for(self, remote: Endpoint | None) -> tuple[Any, ...] | None:
        """For a held connection no Python socket call made, to ``remote``: the line that most likely opened it,
        with how (a curl_cffi session still open that was sent there, a zmq socket still open that was connected
        there: libcurl and libzmq keep their connections), or None."""
        if remote is None:
            return None
        for noted_by, is_closed, how in ((self.curl_cffi.origins, self.curl_cffi.is_closed, CURL_CFFI_HOW),
                                         (self.zmq.endpoints, self.zmq.is_closed, ZMQ_HOW)):
            first = _latest_line(noted_by, is_closed, remote) if noted_by else None
            if first is not None:
                return (*first[:3], how)
        return None

    def noted_any(self) -> bool:
        """Whether any client of C code was seen sent somewhere (``origin_for`` has anything to say)."""
        return bool(self.curl_cffi.origins) or bool(self.zmq.endpoints)

    def placer(self, peers: Mapping[int, Endpoint | None], held: Collection[Hashable], since: float) -> Placer:
        """What the walk calls with the objects of ``types`` it met, in one look: ``peers`` the remote endpoints of
        the wanted fds, ``held`` every socket held now, ``since`` when the window opened (``time.monotonic``)."""
        now = time.monotonic()

        def place(met: list[tuple[str, Any]], wanted: Mapping[int, Hashable],
                  placed: Collection[Hashable]) -> dict[Hashable, str]:
            out: dict[Hashable, str] = {}
            taken = set(placed)
            self.claims.forget_gone(held)
            curl_cffi = self.curl_cffi.session_type()
            pools: list[tuple[str, Any, list[Address]]] = []
            for label, obj in met:
                addresses = self.addresses(obj, type(obj))
                if not addresses:
                    continue
                if curl_cffi is not None and isinstance(obj, curl_cffi):
                    pools.append((label, obj, addresses))
                    continue
                for key in self.claims.place(label, id(obj), addresses, wanted, taken, peers, held, since, now):
                    out[key] = label
                    taken.add(key)
            if pools:
                for key, label in self._place_pools(pools, wanted, taken, peers, held, since, now).items():
                    out[key] = label
            return out

        return place

    def _place_pools(self, pools: list[tuple[str, Any, list[Address]]], wanted: Mapping[int, Hashable],
                     taken: set[Hashable], peers: Mapping[int, Endpoint | None], held: Collection[Hashable],
                     since: float, now: float) -> dict[Hashable, str]:
        """curl_cffi sessions are pools: libcurl keeps as many connections to an origin as requests ran there at
        once. Where no session outside the broader fixtures' values (the test's own, left open), alive, was sent
        to an origin, every connection to it is the fixtures' - the first such session's met, and noted as given
        to every fixture session sent there, since which of them opened it cannot be told; where one was, one
        each, as for a channel."""
        out: dict[Hashable, str] = {}
        ours = {id(obj) for _, obj, _ in pools}
        for label, obj, addresses in pools:
            alone = [a for a in addresses if not self.curl_cffi.others_sent_to(a, ours)]
            for address in alone:
                keys = self.claims.take_all(label, id(obj), [address], wanted, taken, peers, now)
                sharers = [(other_label, other, other_address) for other_label, other, other_addresses in pools
                           if other is not obj for other_address in other_addresses if other_address[1] == address[1]]
                for key in keys:
                    out[key] = label
                    taken.add(key)
                    for other_label, other, other_address in sharers:  # (under its own spelling of the origin)
                        self.claims.note(other_label, id(other), other_address, key, now)
            shared = [a for a in addresses if a not in alone]
            if shared:
                for key in self.claims.place(label, id(obj), shared, wanted, taken, peers, held, since, now):
                    out[key] = label
                    taken.add(key)
        return out


__all__ = ["Claims", "FarEnds", "Placer", "names"]
