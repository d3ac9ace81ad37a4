"""The portable backend: psutil, wherever psutil can list this process's connections.

It reads the whole namespace's table on every call (psutil has no per-process shortcut), so it is slower and
grows with the machine's socket count: the price of working on macOS, Windows and the BSDs. With no inode,
a socket's identity is ``(fd, local, remote)``: a new connection on a reused fd still looks new.

A connection reset by its peer while this process still holds the socket is no longer in the kernel's table
(Linux unhashes it, so ``/proc/net/tcp`` and psutil stop listing it) and ``getpeername()`` fails on it. Read
naively, the socket would have *vanished* without a close (a window then looks its 4-tuple up for TIME_WAIT,
and a neighbour that reused the same ports could have left a row there: a row the test never made, blamed on
it), and its Python close would carry another identity. So the table keeps such a socket, checked at its fd,
under the identity it had (state CLOSE, no remote: what the linux backend says of it), until its fd is closed.
The same check keeps a connected socket that one dump skipped (the table is read in pieces while it changes).
A socket that connected and was reset between two looks was never in a dump: the socket hooks' connects since the
last look (``identity_of``, asked at each) are checked the same way, so it is kept too.
"""

from __future__ import annotations

import _socket
import dataclasses
import errno
import os
import socket
import sys
from collections.abc import Collection, Hashable
from typing import Any

from ..endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from . import LINGERING_STATES, SocketEntry, SocketTable, TableUnavailable, TcpState, dedupe, unread_bytes

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


def _entry(conn: Any) -> SocketEntry | None:
    state = _STATE_BY_NAME.get(conn.status)
    if state is None or conn.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    local = endpoint_from_sockaddr(tuple(conn.laddr)) if conn.laddr else None
    remote = endpoint_from_sockaddr(tuple(conn.raddr)) if conn.raddr else None
    unread = unread_bytes(conn.fd) if state == TcpState.CLOSE_WAIT and conn.fd >= 0 else None
    return SocketEntry(key=(conn.fd, local, remote), fd=conn.fd, state=state, local=local, remote=remote,
                       unread=unread)


def _out_of_fds(exc: BaseException) -> bool:
    """psutil's error for a read it could not open for lack of an fd (EMFILE, ENFILE), however it wraps it."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
            return True
    return "Too many open files" in str(exc)


def _still_there(fd: int, local: Endpoint, remote: Endpoint | None) -> str | None:
    """Whether this process still holds, at ``fd``, the socket last seen there as ``local -> remote``: "reset"
    (a TCP socket bound to ``local`` with no peer: reset, or never connected), "same" (still connected to
    ``remote``: a 4-tuple names one live connection, so a row the dump skipped), or None (closed, or another
    socket). The fd is wrapped in a C-level socket object and detached, so the user's socket is never closed,
    and the plugin's hooks never see it."""
    try:
        s = _socket.socket(fileno=fd)
    except OSError:  # closed: it really is gone
        return None
    try:
        if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
            return None
        if endpoint_from_sockaddr(s.getsockname()) != local:
            return None
        try:
            peer = endpoint_from_sockaddr(s.getpeername())
        except OSError as e:
            return "reset" if e.errno == errno.ENOTCONN else None
        return "same" if remote is not None and peer == remote else None
    except OSError:
        return None
    finally:
        s.detach()


_LINGER_READS = 3
"""Reads of the machine-wide table at most, while a wanted connection is not found (``lingering``)."""


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
        self._degraded: str | None = None
        self._unlooked: str | None = None
        self._fd_count: int | None = None
        self._last: dict[Hashable, SocketEntry] = {}
        """The last look's entries by identity (to notice a connected socket that stopped being listed)."""
        self._unlisted: dict[tuple[int, Endpoint], Hashable] = {}
        """``(fd, local)`` -> identity of held sockets the table no longer lists (see the module's docstring)."""
        self._connected: dict[Hashable, SocketEntry] = {}
        """Sockets the hooks saw connect since the last look, by identity: one reset before that look is in no
        dump, and is found here (``_still_held``)."""
        if sys.platform == "darwin":
            self._degraded = ("psutil on macOS lists only sockets that belong to a process, so TIME_WAIT entries "
                              "(which belong to none) are not checked")
        try:
            self._connections()
        except (psutil.Error, OSError, NotImplementedError) as e:
            raise TableUnavailable(f"psutil cannot list this process's connections: {e!r}") from e

    def _connections(self) -> list[Any]:
        if self._process.pid != os.getpid():
            # a forked child (pytest-forked, multiprocessing): psutil.Process() kept the parent's pid. (One
            # system call per look, beside the whole table this backend reads at each.)
            self._process = self._psutil.Process()
        get = getattr(self._process, "net_connections", None) or self._process.connections
        return list(get(kind="tcp"))

    def _entries(self) -> list[SocketEntry]:
        try:
            conns = self._connections()
        except (self._psutil.Error, OSError) as e:
            if not (_out_of_fds(e) and sys.platform.startswith("linux")):
                raise
            return self._entries_without_fd()
        self._fd_count = None
        entries = dedupe(e for e in map(_entry, conns) if e is not None)
        if self._fds:
            entries.extend(self._still_held(entries))
            self._last = {e.key: e for e in entries}
        return entries

    def _entries_without_fd(self) -> list[SocketEntry]:
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

    def fd_count(self) -> int | None:
        return self._fd_count if self._fd_count is not None else super().fd_count()

    def _still_held(self, listed: list[SocketEntry]) -> list[SocketEntry]:
        """Connected sockets of the last look that this look does not list but this process still holds: reset
        ones as CLOSE entries under their old identity, ones the dump skipped as they were. Only sockets that
        disappeared are checked (one look at each fd), so a quiet process pays nothing."""
        keys = {e.key for e in listed}
        fds = {e.fd for e in listed}
        kept: list[SocketEntry] = []
        unlisted: dict[tuple[int, Endpoint], Hashable] = {}
        connected, self._connected = self._connected, {}  # (swapped whole: hooks in other threads add to it)
        last = self._last
        if connected:  # connected since the last look, and never listed in it: reset in between, or skipped
            last = {**connected, **last}
        for key, e in last.items():
            if key in keys or e.fd in fds or e.fd < 0 or e.local is None:
                continue  # listed, or its fd holds another listed socket now
            if e.remote is None and self._unlisted.get((e.fd, e.local)) != key:
                continue  # never connected (a listener, a bound socket): nothing to keep
            there = _still_there(e.fd, e.local, e.remote)
            if there == "reset":
                kept.append(SocketEntry(key=key, fd=e.fd, state=TcpState.CLOSE, local=e.local, remote=None))
                unlisted[(e.fd, e.local)] = key
            elif there == "same" and key not in connected:  # psutil's dump is not atomic: it can skip a row
                kept.append(e)  # (one never listed has no state to keep: the next dump lists it)
        self._unlisted = unlisted  # replaced whole: socket hooks in other threads read it (identity_of)
        return kept

    def ids(self) -> dict[Hashable, int]:
        return {e.key: e.fd for e in self._entries()}

    def describe(self, ids: dict[Hashable, int]) -> list[SocketEntry]:
        return [e for e in self._entries() if e.key in ids]

    def identity_of(self, fd: int, local: Endpoint | None, remote: Endpoint | None) -> Hashable | None:
        if remote is None and local is not None:  # a reset socket's close: the identity it was listed under
            key = self._unlisted.get((fd, local))
            if key is not None:
                return key
        identity = (fd if self._fds else -1, local, remote)
        if remote is not None and local is not None and fd >= 0 and self._fds:  # a connect, or an accept
            self._connected[identity] = SocketEntry(key=identity, fd=fd, state=TcpState.ESTABLISHED, local=local,
                                                    remote=remote)
        return identity

    def degradation(self) -> str | None:
        return self._degraded or self._unlooked

    def lingering(self, tuples: Collection[FourTuple]) -> set[FourTuple]:
        if not tuples:
            return set()
        wanted = set(tuples)
        found: set[FourTuple] = set()
        for _ in range(_LINGER_READS):
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
                    found.add(entry.four_tuple)
            # the dump is read in pieces while the machine's connections come and go, and can skip a row: read
            # again while a connection has neither of its sides found (seen under a neighbour's churn: a burst of
            # 10 counted as 9; each read misses a row rarely, so a few reads make a miss very unlikely)
            if all((a, b) in found or (b, a) in found for (a, b) in wanted):
                break
            if not found:
                # none of them: connections a reset ended (a websocket's, an unread response's) have no entry, and
                # a read that skips rows under churn skips one or two, not all - reading the machine's table again
                # (tens of milliseconds with a busy neighbour) would find nothing more (websockets' and uvicorn's
                # suites: the psutil backend at 1.7-2.9x the linux one, most of it these reads)
                break
        return found
