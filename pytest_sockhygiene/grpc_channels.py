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
channel object that every stub method and interceptor reaches in a reference or two. The sync one knows its
target (``Channel.target()``), and so does the asyncio one in recent releases (``AioChannel.target``, 1.85; not
1.80): where it does not, the target is noted as ``grpc.aio``'s channel is made (``AioTargets``). Only that
accessor of grpcio's own type is called: no other code of the objects runs.
"""

from __future__ import annotations

import weakref
from typing import Any

from .endpoints import LOCALHOST_NAMES, Address, parse_address
from .trackers.patching import PatchOnImport

_CYGRPC = "grpc._cython.cygrpc"
_CHANNEL_TYPES = frozenset({"Channel", "AioChannel"})

_DEFAULT_PORT = 443
"""The port of a target that names none (gRPC's default, for ``dns:`` and bare names alike)."""

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
    elif sep and scheme.isalpha() and scheme not in LOCALHOST_NAMES and not rest[:1].isdigit():
        return []  # unix:, unix-abstract:, vsock:, xds:, or another resolver's scheme
    else:
        parts = [target]
    return [a for a in (parse_address(p, _DEFAULT_PORT) for p in parts if p) if a is not None]


class AioTargets(PatchOnImport):
    """``grpc.aio``'s channel, for grpcio releases whose C channel does not keep its target: the target each one
    was made for, noted once its ``__init__`` returned. Kept by the id of its C channel, which takes no weak
    reference, beside a weak reference to the Python channel: an entry is believed only while that channel is
    alive and still holds that C channel (an id is reused once its object is gone)."""

    MODULE, CLASS, METHOD = "grpc.aio._channel", "Channel", "__init__"

    _KEPT = 256
    """Entries kept before the dead ones are dropped (a suite makes a channel per test at most)."""

    def __init__(self, on_error: Any) -> None:
        super().__init__(on_error)
        self._by_c_channel: dict[int, tuple[str, weakref.ref[Any]]] = {}

    def wrapper(self, original: Any) -> Any:
        targets = self._by_c_channel
        on_error = self._on_error
        kept = self._KEPT

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - it stands in for __init__
            __tracebackhide__ = True
            original(self, *args, **kwargs)
            try:
                target = args[0] if args else kwargs.get("target")
                c_channel = vars(self).get("_channel")
                if isinstance(target, str) and c_channel is not None:
                    if len(targets) >= kept:
                        for key in [k for k, (_, ref) in targets.items() if ref() is None]:
                            del targets[key]
                    targets[id(c_channel)] = (target, weakref.ref(self))
            except Exception as e:  # noqa: BLE001 - never let a plugin fault reach the user's channel
                on_error(e)

        return __init__

    def target_of(self, c_channel: Any) -> str | None:
        entry = self._by_c_channel.get(id(c_channel))
        if entry is None:
            return None
        owner = entry[1]()
        if owner is None or vars(owner).get("_channel") is not c_channel:
            return None
        return entry[0]


__all__ = ["AioTargets", "channel_target", "is_channel_type", "target_addresses"]
