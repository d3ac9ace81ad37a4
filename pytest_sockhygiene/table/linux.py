"""The Linux backend: this process's sockets from its own fd table, never the namespace's TCP table.

Reading ``/proc/net/tcp`` or dumping sock_diag walks every socket on the machine (the kernel walks its whole
hash table even when few exist), so its cost grows with what *other* processes do. Listing ``/proc/self/fd`` and
``fstat``-ing each fd costs microseconds and depends only on this process. A socket's own state, addresses and
family are read from its fd (``getsockopt(TCP_INFO)``, ``getsockname``, ``getpeername``) and only for sockets
that are new in a window.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Collection, Hashable

from ..endpoints import Endpoint, FourTuple, endpoint_from_sockaddr
from . import LINGERING_STATES, Scan, SocketEntry, SocketTable, TableUnavailable, TcpState, unread_bytes
from .fdwatch import FdWatch
from .kernel import degradation as _lookup_degradation
from .kernel import lookup_states, prepare

_FD_DIR = "/proc/self/fd"
_THREAD_FD_DIR = "/proc/thread-self/fd"
"""The same fd table (Python's threads share it), listed ~25 % faster: the kernel resolves ``thread-self``
more cheaply than ``self``. Used when it lists the same names as ``/proc/self/fd`` (Linux 3.17+)."""
_INET = (socket.AF_INET, socket.AF_INET6)
_TCP_INFO = getattr(socket, "TCP_INFO", 11)


def socket_inodes(names: list[str] | None = None) -> dict[int, int]:
    """Socket inode -> fd for every socket fd of this process (any family)."""
    return open_fds(names)[0]


_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)


def out_of_fds(exc: BaseException) -> bool:
    """The error a call that needs a new fd raises when the process (EMFILE) or the system (ENFILE) has none."""
    return isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS


def probe_fds(expected: int | None = None) -> tuple[dict[int, int], frozenset[int]]:
    """``open_fds`` without a listing: ``fstat`` of every fd number in turn, which needs no new fd.

    For a process that has run out of fds, where a listing cannot open its directory. Stops once ``expected``
    fds (the kernel's count, from ``FdWatch.count``) are found; else goes up to the soft limit (fds opened
    before a limit was lowered can lie above it: the count finds those, up to 65,536)."""
    soft = _soft_limit()
    bound = max(soft, 1 << 16) if expected is not None else max(soft, 1024)
    out: dict[int, int] = {}
    fds: list[int] = []
    fstat = os.fstat
    is_sock = stat.S_ISSOCK
    for fd in range(bound):
        try:
            st = fstat(fd)
        except OSError:
            continue
        fds.append(fd)
        if is_sock(st.st_mode):
            out[st.st_ino] = fd
        if expected is not None and len(fds) >= expected:
            break
    return out, frozenset(fds)


def _soft_limit() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    return soft if 0 <= soft < (1 << 20) else 1 << 20


def open_fds(names: list[str] | None = None) -> tuple[dict[int, int], frozenset[int]]:
    """Socket inode -> fd for every socket fd of this process, and the numbers of all its open fds (a listing's
    own directory fd, closed by the time each is ``fstat``-ed, is not among them)."""
    out: dict[int, int] = {}
    fds: list[int] = []
    fstat = os.fstat
    is_sock = stat.S_ISSOCK
    for name in os.listdir(_FD_DIR) if names is None else names:
        try:
            fd = int(name)
            st = fstat(fd)
        except (OSError, ValueError):
            continue  # the listing's own directory fd, or an fd closed meanwhile
        fds.append(fd)
        if is_sock(st.st_mode):
            out[st.st_ino] = fd
    return out, frozenset(fds)


def describe_fd(fd: int, inode: int | None = None) -> SocketEntry | None:
    """A SocketEntry for a TCP/IP socket at ``fd``, or None (other family, closed, or reused by another file).

    The fd is wrapped in a C-level socket object and *detached* afterwards, so the user's socket is never closed
    or touched; ``_socket.socket`` is used so that the plugin's own hooks on ``socket.socket`` never see it.
    """
    try:
        if inode is not None and os.fstat(fd).st_ino != inode:
            return None
        s = _socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if s.family not in _INET or s.type != socket.SOCK_STREAM:
            return None
        try:
            state = TcpState(s.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0])
        except (OSError, ValueError):
            return None
        local = endpoint_from_sockaddr(s.getsockname())
        try:
            remote = endpoint_from_sockaddr(s.getpeername())
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
            remote = None
        return SocketEntry(key=inode if inode is not None else os.fstat(fd).st_ino, fd=fd, state=state,
                           local=local, remote=remote,
                           unread=unread_bytes(fd) if state == TcpState.CLOSE_WAIT else None)
    except OSError:
        return None
    finally:
        s.detach()


def _listed_same(names: list[str], fds: frozenset[int]) -> bool:
    """A listing shows exactly ``fds`` open: every one of them plus one more name, the listing's own directory
    fd, which must be closed by now (if the one extra is still open, the user's file took a number and the
    listing's fd took the number of one the user closed)."""
    if len(names) != len(fds) + 1:
        return False
    extra = [n for n in names if int(n) not in fds]
    if len(extra) != 1:
        return False
    try:
        fcntl.fcntl(int(extra[0]), fcntl.F_GETFD)
    except OSError:
        return True
    return False


_RESCAN_TRIES = 3
"""Reads of the poll, the count and the touched fds a look makes before it lists the directory: a thread closing
a socket during a read makes it disagree once, rarely twice (``LinuxTable.rescan``)."""


class LinuxTable(SocketTable):
    name = "linux"
    identity_from_fd = True  # the socket's inode: fixed when the socket is created

    def __init__(self) -> None:
        self._fd_count: int | None = None
        self._unlooked: str | None = None
        try:
            names = os.listdir(_FD_DIR)
        except OSError as e:
            raise TableUnavailable(f"cannot list {_FD_DIR}: {e}") from e
        if not names:
            # a real listing always shows the fd it lists through: an empty directory mounted over /proc/self/fd
            # (a sandbox's mask) would pass every held socket unseen, on every test
            raise TableUnavailable(f"{_FD_DIR} lists no file descriptors, not even the one its listing opens: it is "
                                   "not this process's fd table")
        socket_inodes(names)
        self._dir = _FD_DIR
        self._watch: FdWatch | None = None
        if _FD_DIR == "/proc/self/fd":  # (a test points _FD_DIR elsewhere to fake a missing /proc)
            try:
                if set(os.listdir(_THREAD_FD_DIR)) == set(os.listdir(_FD_DIR)):
                    self._dir = _THREAD_FD_DIR
            except OSError:
                pass
            self._watch = FdWatch.open(lambda: open_fds(os.listdir(self._dir))[1])
        prepare()  # the netlink socket TIME_WAIT lookups use, opened now: a test may run the process out of fds

    def ids(self) -> dict[Hashable, int]:
        return self.scan().ids

    def scan(self) -> Scan:
        try:
            ids, fds = open_fds(os.listdir(self._dir))
        except OSError as e:
            if not out_of_fds(e):
                raise
            # no fd left for the listing's directory: fstat every number instead (needs none)
            watch = self._watch
            ids, fds = probe_fds(watch.count() if watch is not None else None)
        self._fd_count = len(fds)
        watch = self._watch
        if watch is not None and watch.mismatched:
            watch.recalibrate(lambda: open_fds(os.listdir(self._dir))[1])
        return Scan(ids, fds)  # type: ignore[arg-type]

    def unchanged(self, previous: Scan) -> Scan | None:
        """Same fd numbers and no socket call seen by the hooks: the same sockets. No ``fstat`` of each fd: the
        clean path's second look costs microseconds even with a thousand sockets held. Two system calls where
        the kernel reports the fd count (``FdWatch``), else one listing."""
        fds = previous.fds
        if fds is None:
            return None
        watch = self._watch
        same = watch.same(fds) if watch is not None else None
        if same is None:
            try:
                same = _listed_same(os.listdir(self._dir), fds)
            except OSError as e:
                if not out_of_fds(e):
                    raise
                return None  # the caller scans, and the scan copes
        if watch is not None and watch.mismatched:
            watch.recalibrate(lambda: open_fds(os.listdir(self._dir))[1])
        return previous if same else None

    def rescan(self, previous: Scan, touched: Collection[int]) -> Scan | None:
        """The sockets now, without listing the directory, when every change since ``previous`` is explained:
        which of its fds are closed comes from one poll (``FdWatch.closed_of``), how many fds are open from the
        directory's size (``FdWatch.count``), and the new ones must all be numbers the socket hooks touched
        (``touched``): then only the touched numbers and the sockets ``previous`` saw are ``fstat``-ed. Any other
        fd still open holds what ``previous`` saw there - the quick look's rule (``unchanged``). A test that opened
        and closed its connections (a client per request, a burst, a dropped client, a server thread still closing
        its side) then costs two system calls and one per socket it used or held, not a listing and an ``fstat``
        per fd.
        A thread that closes or opens a socket while these are read makes them disagree: they are read again, a
        few times (``_RESCAN_TRIES``). Anything else (an fd opened where no hook saw it): None, and the caller
        scans."""
        fds = previous.fds
        watch = self._watch
        if fds is None or watch is None:
            return None
        # and the sockets held before: C code (a libmemcached or libpq client) may have closed one and opened
        # another under the same number where no hook saw either, and only its inode tells (a test's own memcached
        # connection took the number of a fixture's client that reconnected elsewhere, and passed as that one)
        touched = set(touched)
        held = {fd: key for key, fd in previous.ids.items() if fd not in touched}  # (only these to verify)
        touched.update(held)
        for _ in range(_RESCAN_TRIES):
            closed = watch.closed_of(fds)
            count = watch.count()
            if closed is None or count is None:
                return None
            kept = fds - closed if closed else fds
            found: dict[int, os.stat_result] = {}
            for fd in touched:
                if fd in closed:
                    continue  # closed since: nothing to look at
                try:
                    found[fd] = os.fstat(fd)
                except OSError:
                    continue  # not open (a socket the test opened and closed)
            if len(kept) + len(found.keys() - kept) == count:
                break
            # another thread closed or opened a socket between the poll, the count and the fstats (a server
            # thread closing its side of a connection the test just dropped): those moments again, which costs
            # a few system calls where a listing costs one per fd
        else:
            # still off: an fd opened where no hook saw it, or a reservation began or ended (fdwatch.py): list
            # them all, and measure the reservation again there
            watch.mismatched = True
            return None
        for fd, key in held.items():  # a held socket no hook touched, still the same one: nothing new there
            st = found.get(fd)
            if st is not None and st.st_ino == key and stat.S_ISSOCK(st.st_mode):
                del found[fd]
        if not closed and not found:
            return previous
        ids = {key: fd for key, fd in previous.ids.items() if fd in kept and fd not in found}
        for fd, st in found.items():
            if stat.S_ISSOCK(st.st_mode):
                ids[st.st_ino] = fd
        now = kept | found.keys()
        self._fd_count = count
        # the same fds object when the numbers are the same: FdWatch keeps its poll set for it
        return Scan(ids, fds if now == fds else frozenset(now))

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def fd_count(self) -> int | None:
        return self._fd_count if self._fd_count is not None else super().fd_count()

    def describe(self, ids: dict[Hashable, int]) -> list[SocketEntry]:
        out = []
        for inode, fd in ids.items():
            entry = describe_fd(fd, inode)  # type: ignore[arg-type]
            if entry is not None:
                out.append(entry)
        return out

    def identity_of(self, fd: int, local: Endpoint | None, remote: Endpoint | None) -> Hashable | None:
        try:
            return os.fstat(fd).st_ino
        except OSError:
            return None

    def degradation(self) -> str | None:
        return _lookup_degradation() or self._unlooked

    def lingering(self, tuples: Collection[FourTuple]) -> set[FourTuple]:
        if not tuples:
            return set()
        try:  # (imported at the top: an import statement here costs ~3 us at every test that closed a connection)
            states = lookup_states(tuples)
        except OSError as e:
            if not out_of_fds(e):
                raise
            # netlink could not be opened at start, and /proc/net/tcp needs an fd too: not looked up this time
            self._unlooked = ("TIME_WAIT was not looked up for a test that ran the process out of file "
                              "descriptors (the netlink socket could not be opened beforehand)")
            return set()
        return {t for t, state in states.items() if state in LINGERING_STATES}
