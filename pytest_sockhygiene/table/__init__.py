"""The socket table: which TCP sockets this process holds, and in what state.

Two backends share one interface (:class:`SocketTable`):

* ``linux`` reads only this process: ``/proc/self/fd`` + ``fstat`` gives the socket inodes (microseconds, and it
  does not grow with the machine's socket count); only sockets that are *new* in a window are described,
  one ``getsockopt(TCP_INFO)`` each. TIME_WAIT rows, which belong to no process, are found by exact 4-tuple.
* ``psutil`` works everywhere psutil does, at the price of reading the whole namespace's table.

Identity is what tells "new in this window" from "was already there": the socket inode on Linux, and
``(fd, local, remote)`` where no inode is available.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
from collections.abc import Collection, Hashable, Iterable

from ..endpoints import Endpoint, FourTuple, format_endpoint


class TcpState(enum.IntEnum):
    """Linux's TCP states (``include/net/tcp_states.h``); psutil's names map onto them."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11

    @property
    def label(self) -> str:
        return self.name


LINGERING_STATES = frozenset({TcpState.TIME_WAIT, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2, TcpState.CLOSING})
"""States a connection sits in after *this* side closed first: TIME_WAIT, or on its way there."""

OPEN_STATES = frozenset(
    {
        TcpState.ESTABLISHED,
        TcpState.SYN_SENT,
        TcpState.SYN_RECV,
        TcpState.FIN_WAIT1,
        TcpState.FIN_WAIT2,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
    }
)
"""A held connection other than CLOSE_WAIT: counted as ``established`` (the item shows the exact state)."""


@dataclasses.dataclass(frozen=True)
class SocketEntry:
    """One TCP socket held by this process (it has a file descriptor)."""

    key: Hashable
    fd: int
    state: TcpState
    local: Endpoint | None
    remote: Endpoint | None
    unread: int | None = None
    """Bytes received and not yet read, for a CLOSE_WAIT socket where the platform tells (``unread_bytes``): a
    response never read to the end, rather than an idle pooled connection the server closed."""

    @property
    def four_tuple(self) -> FourTuple | None:
        if self.local is None or self.remote is None:
            return None
        return (self.local, self.remote)

    def describe(self) -> str:
        if self.state == TcpState.LISTEN:
            return f"LISTEN {format_endpoint(self.local)} fd={self.fd}"
        return f"{self.state.label} {format_endpoint(self.local)} -> {format_endpoint(self.remote)} fd={self.fd}"


def unread_bytes(fd: int) -> int | None:
    """How many received bytes wait unread in the socket at ``fd`` (``FIONREAD``), None where that cannot be
    asked (no ``fcntl``: Windows) or the fd is gone. Asked only of CLOSE_WAIT sockets a look describes."""
    try:
        import fcntl
        import termios

        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    except (ImportError, OSError, ValueError, AttributeError):
        return None


class TableUnavailable(Exception):
    """The backend cannot read the socket table here (no /proc, no permission): the plugin degrades."""


class Scan:
    """One look at the process's sockets: identity -> fd, plus (where the backend can) the numbers of every fd
    open at the time, so that the next look can tell "nothing changed" without describing anything."""

    __slots__ = ("fds", "ids")

    def __init__(self, ids: dict[Hashable, int], fds: frozenset[int] | None = None) -> None:
        self.ids = ids
        self.fds = fds


class SocketTable:
    """Interface of a backend. ``ids`` is cheap and called twice per test; the rest only when something changed."""

    name = "abstract"
    identity_from_fd = False
    """``identity_of`` needs the fd alone, not the addresses: the connect hook may then ask before the real
    connect(), while no other thread of the process is woken by it yet (see ``events.Recorder``)."""
    instead_of: str | None = None
    """Why ``auto`` took this backend rather than the one it tried first (its notice says so), else None."""

    def scan(self) -> Scan:
        return Scan(self.ids())

    def unchanged(self, previous: Scan) -> Scan | None:
        """``previous`` if the process provably holds the same sockets (only asked when no socket call was seen
        since), else None. Backends that cannot tell cheaply return None."""
        return None

    def rescan(self, previous: Scan, touched: Collection[int]) -> Scan | None:
        """The sockets now, worked out from ``previous`` and the fd numbers the socket hooks saw used since
        (``touched``), if the backend can prove that is enough; else None (the caller scans). Backends that cannot
        tell cheaply return None."""
        return None

    def ids(self) -> dict[Hashable, int]:
        """Identity -> fd of every socket this process holds now (any family: cheap filtering comes later)."""
        raise NotImplementedError

    def describe(self, ids: dict[Hashable, int]) -> list[SocketEntry]:
        """Full entries for the given identities that are TCP over IPv4/IPv6 and still open."""
        raise NotImplementedError

    def identity_of(self, fd: int, local: Endpoint | None, remote: Endpoint | None) -> Hashable | None:
        """The identity ``ids`` gives the socket at ``fd`` with these addresses (called from socket hooks)."""
        raise NotImplementedError

    def lingering(self, tuples: Collection[FourTuple]) -> set[FourTuple]:
        """Which of these 4-tuples (local, remote) have a row in TIME_WAIT or on its way to it (no fd)."""
        raise NotImplementedError

    def snapshot(self) -> list[SocketEntry]:
        return self.describe(self.ids())

    def degradation(self) -> str | None:
        """A notice for the session when this backend had to check less than it should (None if all is well)."""
        return None

    def fd_count(self) -> int | None:
        """Open file descriptors of this process (any kind), as cheaply as the backend can say."""
        from ..health import open_fd_count

        return open_fd_count()

    def fds_in_use(self) -> int | None:
        """The fd numbers taken, as ``open()`` and ``socket()`` see them when they refuse one (EMFILE): ``fd_count``,
        or the kernel's count where it is larger. A number reserved by a call still in progress in another thread
        is taken - ``accept()`` takes its fd number before it blocks, so a server thread waiting for a connection
        holds one - yet no listing shows it. The kernel's count is the size of ``/proc/self/fd`` (Linux 6.2+; 0
        before, and no such directory elsewhere), read by path: no fd needed."""
        count = self.fd_count()
        try:
            kernel = os.stat("/proc/self/fd").st_size if sys.platform.startswith("linux") else 0
        except OSError:
            kernel = 0
        return max(count, kernel) if count is not None else (kernel or None)

    def fds_exhausted(self) -> tuple[int, int] | None:
        """``(fds in use, soft RLIMIT_NOFILE)`` if at the last look every fd the limit allows was in use, else
        None. Asked only for a test that left sockets open: the likely cause of the errors it saw."""
        from ..health import fd_limit

        limit = fd_limit()
        count = self.fds_in_use()
        if limit is None or count is None or count < limit:
            return None
        return count, limit

    def close(self) -> None:
        """Release what the backend holds open (called when the session, or the off-mode fixture, ends)."""


def select_table(name: str) -> SocketTable:
    """``auto`` picks ``linux`` where /proc/self/fd works, else ``psutil``. Raises TableUnavailable."""
    if name not in ("auto", "linux", "psutil"):
        raise ValueError(name)
    linux_failed: TableUnavailable | None = None
    if name in ("auto", "linux"):
        if sys.platform.startswith("linux"):
            from .linux import LinuxTable

            try:
                return LinuxTable()
            except TableUnavailable as e:
                if name == "linux":
                    raise
                linux_failed = e
        elif name == "linux":
            raise TableUnavailable(f"the linux backend needs Linux; this is {sys.platform}")
    from .portable import PsutilTable

    try:
        table = PsutilTable()
    except TableUnavailable as e:
        if linux_failed is None:
            raise
        # auto tried both: the notice gives both reasons (on Linux, usually one cause: no /proc)
        raise TableUnavailable(f"{linux_failed}; and {e}") from e
    if linux_failed is not None:
        table.instead_of = str(linux_failed)
    return table


def dedupe(entries: Iterable[SocketEntry]) -> list[SocketEntry]:
    """Kernel dumps are not atomic under churn: one socket can be listed twice. Keep one entry per key."""
    seen: dict[Hashable, SocketEntry] = {}
    for e in entries:
        seen.setdefault(e.key, e)
    return list(seen.values())
