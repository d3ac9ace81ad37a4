"""The memcached servers a pylibmc client connects to, read from the client as pylibmc itself reads them.

libmemcached (under pylibmc) opens a server's connection on the client's first operation, in C, and keeps it for
the next: a ``pylibmc.Client`` a session fixture made connected during the first test that used it, which then
failed with an ``established`` leak of ``origin unknown``. The client gives no fd to find the connection by, but it
keeps the server specs it was given (``Client.addresses``, copied to its clones), so the walk over broader
fixtures' values (``holders.py``) places a held connection to one of them as the client's (``far_ends.py``).
"""

from __future__ import annotations

import sys
from typing import Any

from .endpoints import Address, normalize_host


def client_type() -> type | None:
    """pylibmc's C client class (``pylibmc.Client`` and its clones subclass it), if pylibmc is imported already:
    the walk imports nothing."""
    cls = getattr(sys.modules.get("_pylibmc"), "client", None)
    return cls if isinstance(cls, type) else None


def is_client_type(cls: type) -> bool:
    base = client_type()
    return base is not None and issubclass(cls, base)


def server_addresses(client: Any) -> list[Address]:
    """The TCP servers of ``client``, by pylibmc's own reading of each spec (``translate_server_spec``: ``host``,
    ``host:port``, ``host:port:weight``, ``[v6]:port``, and its ``(type, host, port)`` tuples); UNIX-socket and
    UDP servers are left out (no TCP connection). Empty if the client keeps no specs (a subclass that never ran
    ``pylibmc.Client.__init__``) or pylibmc reads them differently than this expects."""
    specs = getattr(client, "addresses", None)
    translate = getattr(sys.modules.get("pylibmc.client"), "translate_server_spec", None)
    tcp = getattr(sys.modules.get("_pylibmc"), "server_type_tcp", None)
    if not isinstance(specs, (list, tuple)) or translate is None or tcp is None:
        return []
    out: list[Address] = []
    for spec in specs:
        try:
            kind, host, port = spec[:3] if isinstance(spec, tuple) else translate(spec)[:3]
        except Exception:  # noqa: BLE001, S112 - a spec pylibmc would not have accepted either
            continue
        if kind == tcp and isinstance(host, str) and isinstance(port, int) and 0 < port < 65536:
            out.append((normalize_host(host.lower()), port))
    return out


__all__ = ["client_type", "is_client_type", "server_addresses"]
