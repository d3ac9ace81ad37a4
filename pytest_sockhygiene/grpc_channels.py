"""Which held connections a gRPC channel may own: the addresses its target names.

gRPC's C core opens a channel's connections itself, outside Python's socket module, and lazily: a channel (or a
stub over it) made in a session fixture connects in the first test that calls it and keeps the connection for
the next. No hook sees that connect and the channel gives no file descriptor, so the walk over broader fixtures'
values (``holders.py``) places such a connection by its far end instead: a connection held at the end of a test
whose remote endpoint is an address the channel's target names is the channel's, and so the fixture's - one
connection per address (``far_ends.Claims``: what gRPC's default ``pick_first`` keeps). Found
running grpcio 1.85 beside a session-scoped channel fixture: the first test to use it failed with an
``established`` leak of ``origin unknown``.

Both of grpcio's channel kinds (``grpc.insecure_channel``/``secure_channel`` and ``grpc.aio``'s) keep a Cython
channel object that knows its target (``Channel.target()``, ``AioChannel.target``); every stub method and
interceptor reaches it in a reference or two. Only that accessor of grpcio's own type is called: no other code of
the objects runs.
"""

from __future__ import annotations

from typing import Any

from .endpoints import Address, normalize_host

_CYGRPC = "grpc._cython.cygrpc"
_CHANNEL_TYPES = frozenset({"Channel", "AioChannel"})

_DEFAULT_PORT = 443
"""The port of a target that names none (gRPC's default, for ``dns:`` and bare names alike)."""

_LOCALHOST = frozenset({"localhost", "localhost.", "ip6-localhost"})
"""Names a gRPC target may start with that are hosts, not schemes (``localhost:50051``)."""

_NOT_TCP = frozenset({"unix", "unix-abstract", "vsock"})
"""Target schemes whose connections are not TCP: nothing of theirs to place."""


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


__all__ = ["channel_target", "is_channel_type", "target_addresses"]
