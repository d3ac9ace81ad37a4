"""The portable backend: psutil, wherever psutil can list this process's connections.

It reads the whole namespace's table on every call (psutil has no per-process shortcut), so it is slower and
grows with the machine's socket count: the price of working on macOS, Windows and the BSDs. With no inode,
a socket's identity is ``(fd, local, remote)``: a new connection on a reused fd still looks new.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys
from typing import Any, Collection, Dict, Hashable, List, Optional, Set

from ..endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from . import LINGERING_STATES, SocketEntry, SocketTable, TableUnavailable, TcpState, dedupe

if sys.platform.startswith("linux"):  # imported now: a process that ran out of fds cannot import a module
    from .linux import describe_fd, probe_fds

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


def _out_of_fds(exc: BaseException) -> bool:
    """psutil's error for a read it could not open for lack of an fd (EMFILE, ENFILE), however it wraps it."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
            return True
    return "Too many open files" in str(exc)


class PsutilTable(SocketTable):
    name = "psutil"

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError as e:  # pragma: no cover - psutil is a dependency
            raise TableUnavailable(f"psutil is not importable: {e}") from e
        self._psutil = psutil
        self._process = psutil.Process()
        # psutil gives no fds on these systems (always -1): identities use -1 there too
        self._fds = not sys.platform.startswith(("win", "freebsd", "openbsd", "netbsd", "sunos", "aix"))
        self._degraded: Optional[str] = None
        self._unlooked: Optional[str] = None
        self._fd_count: Optional[int] = None
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
        try:
            conns = self._connections()
        except (self._psutil.Error, OSError) as e:
            if not (_out_of_fds(e) and sys.platform.startswith("linux")):
                raise
            return self._entries_without_fd()
        self._fd_count = None
        return dedupe(e for e in map(_entry, conns) if e is not None)

    def _entries_without_fd(self) -> List[SocketEntry]:
        """What psutil would list, for a process with no fd left for psutil's reads of /proc (Linux): every fd
        number ``fstat``-ed and each TCP socket described from its own fd, as the linux backend does."""
        ids, fds = probe_fds()
        self._fd_count = len(fds)
        out = []
        for inode, fd in ids.items():
            e = describe_fd(fd, inode)
            if e is not None:
                out.append(dataclasses.replace(e, key=(fd if self._fds else -1, e.local, e.remote)))
        return out

    def fd_count(self) -> Optional[int]:
        return self._fd_count if self._fd_count is not None else super().fd_count()

    def ids(self) -> Dict[Hashable, int]:
        return {e.key: e.fd for e in self._entries()}

    def describe(self, ids: Dict[Hashable, int]) -> List[SocketEntry]:
        return [e for e in self._entries() if e.key in ids]

    def identity_of(self, fd: int, local: Optional[Endpoint], remote: Optional[Endpoint]) -> Optional[Hashable]:
        return (fd if self._fds else -1, local, remote)

    def degradation(self) -> Optional[str]:
        return self._degraded or self._unlooked

    def lingering(self, tuples: Collection[FourTuple]) -> Set[FourTuple]:
        if not tuples:
            return set()
        wanted = set(tuples)
        found: Set[FourTuple] = set()
        try:
            rows = self._psutil.net_connections(kind="tcp")
        except (self._psutil.Error, OSError) as e:
            if _out_of_fds(e):
                self._unlooked = ("TIME_WAIT was not looked up for a test that ran the process out of file "
                                  "descriptors (psutil needs one to read the TCP table)")
                return found
            self._degraded = f"psutil cannot read the machine-wide TCP table ({e!r}): TIME_WAIT is not checked"
            return found
        for conn in rows:
            entry = _entry(conn)
            if entry is not None and entry.state in LINGERING_STATES and entry.four_tuple in wanted:
                found.add(entry.four_tuple)  # type: ignore[arg-type]
        return found
