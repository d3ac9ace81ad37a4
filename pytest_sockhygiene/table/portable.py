"""The portable backend: psutil, wherever psutil can list this process's connections.

It reads the whole namespace's table on every call (psutil has no per-process shortcut), so it is slower and
grows with the machine's socket count: the price of working on macOS, Windows and the BSDs. With no inode,
a socket's identity is ``(fd, local, remote)``: a new connection on a reused fd still looks new.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Collection, Dict, Hashable, List, Optional, Set

from ..endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from . import LINGERING_STATES, SocketEntry, SocketTable, TableUnavailable, TcpState, dedupe

_STATE_BY_NAME = {
    "ESTABLISHED": TcpState.ESTABLISHED,
    "SYN_SENT": TcpState.SYN_SENT,
    "SYN_RECV": TcpState.SYN_RECV,
    "FIN_WAIT1": TcpState.FIN_WAIT1,
    "FIN_WAIT2": TcpState.FIN_WAIT2,
    "TIME_WAIT": TcpState.TIME_WAIT,
    "CLOSE": TcpState.CLOSE,
    "CLOSE_WAIT": TcpState.CLOSE_WAIT,
    "LAST_ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
}


def _entry(conn: Any) -> Optional[SocketEntry]:
    state = _STATE_BY_NAME.get(conn.status)
    if state is None or conn.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    local = endpoint_from_sockaddr(tuple(conn.laddr)) if conn.laddr else None
    remote = endpoint_from_sockaddr(tuple(conn.raddr)) if conn.raddr else None
    return SocketEntry(key=(conn.fd, local, remote), fd=conn.fd, state=state, local=local, remote=remote)


class PsutilTable(SocketTable):
    name = "psutil"

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError as e:  # pragma: no cover - psutil is a dependency
            raise TableUnavailable(f"psutil is not importable: {e}") from e
        self._psutil = psutil
        try:
            self._process = psutil.Process()
        except (psutil.Error, OSError) as e:  # on Linux psutil reads /proc: without it, not even this process
            where = f" (psutil reads {psutil.PROCFS_PATH} here)" if sys.platform.startswith("linux") else ""
            raise TableUnavailable(f"psutil cannot read this process{where}: {e}") from e
        # psutil gives no fds on these systems (always -1): identities use -1 there too
        self._fds = not sys.platform.startswith(("win", "freebsd", "openbsd", "netbsd", "sunos", "aix"))
        self._degraded: Optional[str] = None
        if sys.platform == "darwin":
            self._degraded = ("psutil on macOS lists only sockets that belong to a process, so TIME_WAIT entries "
                              "(which belong to none) are not checked")
        try:
            self._connections()
        except (psutil.Error, OSError, NotImplementedError) as e:
            raise TableUnavailable(f"psutil cannot list this process's connections: {e!r}") from e

    def _connections(self) -> List[Any]:
        get = getattr(self._process, "net_connections", None) or self._process.connections
        return list(get(kind="tcp"))

    def _entries(self) -> List[SocketEntry]:
        return dedupe(e for e in map(_entry, self._connections()) if e is not None)

    def ids(self) -> Dict[Hashable, int]:
        return {e.key: e.fd for e in self._entries()}

    def describe(self, ids: Dict[Hashable, int]) -> List[SocketEntry]:
        return [e for e in self._entries() if e.key in ids]

    def identity_of(self, fd: int, local: Optional[Endpoint], remote: Optional[Endpoint]) -> Optional[Hashable]:
        return (fd if self._fds else -1, local, remote)

    def degradation(self) -> Optional[str]:
        return self._degraded

    def lingering(self, tuples: Collection[FourTuple]) -> Set[FourTuple]:
        if not tuples:
            return set()
        wanted = set(tuples)
        found: Set[FourTuple] = set()
        try:
            rows = self._psutil.net_connections(kind="tcp")
        except (self._psutil.Error, OSError) as e:
            self._degraded = f"psutil cannot read the machine-wide TCP table ({e!r}): TIME_WAIT is not checked"
            return found
        for conn in rows:
            entry = _entry(conn)
            if entry is not None and entry.state in LINGERING_STATES and entry.four_tuple in wanted:
                found.add(entry.four_tuple)  # type: ignore[arg-type]
        return found
