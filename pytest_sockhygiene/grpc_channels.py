"""Which held connections a gRPC channel may own: the addresses its target names.

gRPC's C core opens a channel's connections itself, outside Python's socket module, and lazily: a channel (or a
stub over it) made in a session fixture connects in the first test that calls it and keeps the connection for
the next. No hook sees that connect and the channel gives no file descriptor, so the walk over broader fixtures'
values (``holders.py``) places such a connection by its far end instead: a connection held at the end of a test
whose remote endpoint is an address the channel's target names is the channel's, and so the fixture's - one
connection per address (``Claims``: what gRPC's default ``pick_first`` keeps; a second one to the same address
in the same test, or one while the channel's earlier connection is still open, is the test's own). Found
running grpcio 1.85 beside a session-scoped channel fixture: the first test to use it failed with an
``established`` leak of ``origin unknown``.

Both of grpcio's channel kinds (``grpc.insecure_channel``/``secure_channel`` and ``grpc.aio``'s) keep a Cython
channel object that knows its target (``Channel.target()``, ``AioChannel.target``); every stub method and
interceptor reaches it in a reference or two. Only that accessor of grpcio's own type is called: no other code of
the objects runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any

from .endpoints import Endpoint, normalize_host

_CYGRPC = "grpc._cython.cygrpc"
_CHANNEL_TYPES = frozenset({"Channel", "AioChannel"})

_DEFAULT_PORT = 443
"""The port of a target that names none (gRPC's default, for ``dns:`` and bare names alike)."""

_LOCALHOST = frozenset({"localhost", "localhost.", "ip6-localhost"})

_NOT_TCP = frozenset({"unix", "unix-abstract", "vsock"})

Address = tuple[str, int]
"""A target's host (an IP literal, normalised, or a name) and port."""


def is_channel_type(cls: type) -> bool:
    """Whether ``cls`` is grpcio's C-level channel (what every Python channel object holds)."""
    return cls.__module__ == _CYGRPC and cls.__name__ in _CHANNEL_TYPES


def channel_target(obj: Any) -> str | None:
    """The target a grpcio C-level channel was made for, or None (not readable: a fork, a broken channel)."""
    try:
        target = obj.target  # the sync channel's is a method, the asyncio channel's the value itself
        if callable(target):
            target = target()
    except Exception:  # noqa: BLE001 - a channel that cannot say is not matched
        return None
    if isinstance(target, bytes):
        return target.decode("utf-8", "replace")
    return target if isinstance(target, str) else None


def _host_port(text: str) -> Address | None:
    """``host:port``, ``[v6]:port``, a bare host or a bare IPv6 literal: the host and the port (443 if none)."""
    if not text:
        return None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") > 1:  # a bare IPv6 literal
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        return None
    try:
        port = int(port_text) if port_text else _DEFAULT_PORT
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return normalize_host(host.lower()), port


def target_addresses(target: str) -> list[Address]:
    """What a gRPC target names, per gRPC's naming doc: ``host[:port]``, ``dns:[//authority/]host[:port]``,
    ``ipv4:a:p[,a:p...]``, ``ipv6:[a]:p[,...]``. Empty for a Unix socket, vsock or a resolver scheme this does not
    know (xds, a custom one): their connections are not matched."""
    scheme, sep, rest = target.partition(":")
    if sep and scheme in _NOT_TCP:
        return []
    if sep and scheme == "dns":
        if rest.startswith("//"):
            rest = rest[2:].partition("/")[2]  # drop the DNS authority
        parts = [rest]
    elif sep and scheme in ("ipv4", "ipv6"):
        parts = rest.split(",")
    elif sep and scheme.isalpha() and scheme not in _LOCALHOST and not rest[:1].isdigit():
        return []  # unix:, unix-abstract:, vsock:, xds:, or another resolver's scheme
    else:
        parts = [target]
    return [a for a in map(_host_port, parts) if a is not None]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def names(addresses: list[Address], remote: Endpoint | None) -> bool:
    """Whether a connection to ``remote`` is one the target's ``addresses`` name. An IP literal must be that
    address; ``localhost`` any loopback address; any other name is not resolved here (the look must not wait on
    DNS), so its port alone decides."""
    if remote is None:
        return False
    host, port = remote
    for name, wanted_port in addresses:
        if wanted_port != port:
            continue
        if name == host:
            return True
        ip = _ip(name)
        if ip is not None:
            continue  # another address
        if name in _LOCALHOST:
            remote_ip = _ip(host)
            if remote_ip is not None and remote_ip.is_loopback:
                return True
            continue
        return True
    return False


Placer = Callable[[str, Any, Mapping[int, Hashable], Collection[Hashable]], list[Hashable]]
"""``(fixture label, channel, wanted fd -> key, keys placed already)`` -> the keys that channel holds."""


class Claims:
    """The connection each broader fixture's channel was given, per address, for the whole session.

    A channel keeps one connection to an address (gRPC's default policy, ``pick_first``) and opens another when
    that one ends: a new connection to the address is the channel's only while the one it was given is no longer
    held. So a test that leaks a channel of its own to the server a session stub talks to is still told, unless
    the session's channel had not connected yet and the two connections cannot be told apart (then one of them is
    the test's, and the count stays right)."""

    def __init__(self) -> None:
        self._given: dict[tuple[str, Address], Hashable] = {}

    def placer(self, peers: Mapping[int, Endpoint | None], held: Collection[Hashable]) -> Placer:
        """What the walk calls for each channel it meets, for one look: ``peers`` the remote endpoints of the
        wanted fds, ``held`` every socket held now."""

        def place(label: str, channel: Any, wanted: Mapping[int, Hashable],
                  placed: Collection[Hashable]) -> list[Hashable]:
            target = channel_target(channel)
            if target is None:
                return []
            out: list[Hashable] = []
            for address in target_addresses(target):
                given = self._given.get((label, address))
                if given is not None and given in held:
                    continue  # it keeps the connection it had: a new one is not its own
                fds = sorted(fd for fd, key in wanted.items()
                             if key not in placed and key not in out and names([address], peers.get(fd)))
                if fds:
                    key = wanted[fds[0]]  # the lowest number: opened first, if numbers were free in order
                    self._given[(label, address)] = key
                    out.append(key)
            return out

        return place


__all__ = ["Claims", "Placer", "channel_target", "is_channel_type", "names", "target_addresses"]
