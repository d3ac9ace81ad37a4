"""Whether this process still has exactly the fds it had at the last scan, in two system calls.

The clean path's one question is "same fd numbers as before?". A listing of ``/proc/self/fd`` answers it, but a
listing is five system calls, a path walk through procfs and a string per fd (~26 µs in the middle of a test on
a 2-core VM). Two facts answer it exactly with less:

* ``fstat`` of a directory fd kept open on ``/proc/self/fd`` gives the number of open fds as ``st_size``
  (Linux 6.2+, checked at start: older kernels report 0 and the listing stays);
* one ``poll`` with no events over the fds seen last marks every one that is no longer open with ``POLLNVAL``.

Same count and none closed means the same set of numbers: what a listing would have said, no more and no less.

``poll`` calls each file's own poll method, even with no events asked for, and a few of those change state:
``/proc/self/mountinfo`` and sysctl files forget the change they were about to report, perf and PSI files
reset a flag, a FUSE file asks its daemon. So only files whose poll is known to be a pure read are polled:
sockets, pipes, directories, ``/dev/null`` and its kin, terminals, and regular files on disk and memory
filesystems. Any other fd (``O_PATH`` ones too, which ``poll`` reports as ``POLLNVAL`` while open) is checked
on its own with ``fcntl(F_GETFD)``, which touches nothing.

Whenever the watch cannot answer for sure (another thread is polling the same set, the count is off, ``poll``
refuses more fds than ``RLIMIT_NOFILE``) it says so, and the caller lists the directory instead.

The kernel's count also holds the numbers *reserved* by calls still in progress: ``accept()`` takes the number of
the fd it will return before it blocks, so a thread waiting in it (a server's accept loop; pytest-rerunfailures'
status server, in every run where pytest-xdist is installed) holds one for as long as it waits, which no listing
shows. A count that stays above the listing's by the same few numbers is such a reservation: the watch keeps it
(``_reserved``) and compares counts net of it. Where it changes, the counts disagree, the caller lists, and the
watch measures it again (``recalibrate``; a few times per session at most). What a reservation could hide is an fd
installed in the number it held while another reservation ends in the same instant: only a thread in ``accept()``
or ``open()`` does either, and a socket ``accept()`` makes goes through the socket hooks, which send the next look
past this watch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import stat
import weakref
from typing import Callable

_FD_DIR = "/proc/self/fd"
_NVAL = select.POLLNVAL if hasattr(select, "POLLNVAL") else 0x20

_PURE_POLL_FILESYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "bcachefs", "tmpfs", "ramfs", "overlay",
    "squashfs", "erofs", "iso9660", "vfat", "exfat", "ntfs3", "nfs", "nfs4",
})
"""Filesystems whose regular files have no poll method of their own (the kernel's default answer, no state)."""

_PURE_POLL_CHAR_MAJORS = frozenset({1, 4, 5, *range(136, 144)})
"""Character devices whose poll only reads: 1 = /dev/null, zero, full, random, urandom; 4, 5 and 136-143 =
terminals and pseudo-terminals (what every shell polls)."""

_live: weakref.WeakSet[FdWatch] = weakref.WeakSet()
_fork_hook_installed = False


def _reopen_after_fork() -> None:
    """A forked child (pytest-forked, multiprocessing) inherits a directory fd of the *parent's* fd table."""
    for watch in list(_live):
        watch._reopen_in_child()


def _still_ours(dirfd: int, identity: tuple[int, int]) -> bool:
    """The fd number still holds the watch's directory (a test that closes every fd may have handed the number
    to another file, which must then be left alone)."""
    try:
        st = os.fstat(dirfd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


def _close_if_ours(dirfd: int, identity: tuple[int, int]) -> None:
    """Close the watch's directory fd, unless its number is another file's by now."""
    if _still_ours(dirfd, identity):
        with contextlib.suppress(OSError):
            os.close(dirfd)


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_types(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount this process sees, longest mount point first."""
    mounts = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields, fstype = left.split(), right.split()[:1]
                if sep and len(fields) >= 5 and fstype:
                    mounts.append((_unescape(fields[4]), fstype[0]))
    except OSError:
        return []
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts


def filesystem_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem ``path`` lies on (``mounts`` as ``mount_types`` gives them)."""
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    for point, fstype in mounts:
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return fstype
    return None


_KEPT_SETS = 8
"""Poll sets kept by ``FdWatch`` at most (see ``FdWatch._sets``)."""

_MAX_RESERVED = 8
"""Reserved numbers a watch accepts as lasting (threads blocked in ``accept()``); more, and it is not used."""

_RECALIBRATIONS = 20
"""Times a watch measures the reservation again after the counts disagreed; then the listing takes over."""


def _reserved(dirfd: int, open_fds: Callable[[], frozenset[int]]) -> int | None:
    """The numbers the kernel counts and a listing does not show (see the module's docstring), read twice around
    one listing and the same both times; None if the count is not the fd count here (0: Linux before 6.2), moved
    meanwhile, or is more than a few numbers above the listing."""
    before = os.fstat(dirfd).st_size
    listed = len(open_fds())
    after = os.fstat(dirfd).st_size
    if before != after or before <= 0:
        return None
    extra = before - listed
    return extra if 0 <= extra <= _MAX_RESERVED else None


class FdWatch:
    """A directory fd on ``/proc/self/fd`` and a poll set over the fds of the last scan."""

    def __init__(self, dirfd: int) -> None:
        self._dirfd: int | None = dirfd
        st = os.fstat(dirfd)
        self._identity = (st.st_dev, st.st_ino)
        """What the directory fd is: a test that closes every fd (``os.closerange``) may hand its number to
        another file, which this watch must then neither read as a count nor touch."""
        self._finalizer = weakref.finalize(self, _close_if_ours, dirfd, self._identity)
        self._watched: tuple[frozenset[int], select.poll, list[int]] | None = None
        """The fds of the last scan, a poll set over those whose poll only reads, and the others."""
        self._sets: dict[frozenset[int], tuple[frozenset[int], select.poll, list[int]]] = {}
        """Poll sets of the last few fd sets, by their numbers: a test that opens and closes sockets moves between
        a few sets (a server thread still closing its side, or not), and building one costs an ``fstat`` per fd.
        A set's classification is reused for as long as its numbers are open, as ``same`` does for the last scan."""
        self._pure: dict[tuple[int, int, int], bool] = {}
        """Per file (dev, inode, mode): whether its poll is a pure read; kept across scans."""
        self._mounts: list[tuple[str, str]] | None = None
        self._reserved = 0
        """Numbers the kernel's count holds and no listing shows (the module's docstring)."""
        self.mismatched = False
        """The last count disagreed with the fds asked about: the caller lists, then may ``recalibrate``."""
        self._recalibrations = _RECALIBRATIONS

    @classmethod
    def open(cls, open_fds: Callable[[], frozenset[int]]) -> FdWatch | None:
        """A watch, or None where ``st_size`` is not the fd count (Linux before 6.2, or not procfs at all).

        ``open_fds`` lists the open fds the slow way, to check the count against (a few tries: another thread
        may open or close a file in between)."""
        global _fork_hook_installed
        if not hasattr(select, "poll"):
            return None
        try:
            dirfd = os.open(_FD_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            for _ in range(3):
                reserved = _reserved(dirfd, open_fds)
                if reserved is not None:
                    break
            else:
                os.close(dirfd)
                return None
        except OSError:
            os.close(dirfd)
            return None
        watch = cls(dirfd)
        watch._reserved = reserved
        _live.add(watch)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reopen_after_fork)
            _fork_hook_installed = True
        return watch

    def same(self, fds: frozenset[int]) -> bool | None:
        """Exactly the fds ``fds`` are open now (True), or some of them are closed (False); None if this watch
        cannot tell (the caller then lists the directory).

        Safe from several threads without a lock: the poll set is read once, as one value, so it always belongs
        to the ``fds`` it is checked against; two threads polling the same set at once make CPython's poll
        object refuse one of them (RuntimeError), which answers None."""
        dirfd = self._dirfd
        if dirfd is None:
            return None
        watched = self._watched
        try:
            if watched is None or watched[0] is not fds:
                watched = self._watch(fds)
            st = os.fstat(dirfd)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._identity:
            self._dirfd = None  # the number is another file's now: never touch it again
            return None
        if st.st_size != len(fds) + self._reserved:
            # more fds, or fewer; or a reservation began or ended (a thread entered or left accept() or open(),
            # see the module's docstring): let the listing decide
            self.mismatched = True
            return None
        try:
            ready = watched[1].poll(0)
        except (OSError, RuntimeError):  # EINVAL: more fds than RLIMIT_NOFILE; RuntimeError: see above
            return None
        for _, revents in ready:
            if revents & _NVAL:
                return False
        for fd in watched[2]:
            try:
                fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                return False
        return True

    def closed_of(self, fds: frozenset[int]) -> frozenset[int] | None:
        """Which of ``fds`` are closed now: one poll for those whose poll only reads, an ``fcntl`` each for the
        others; None if this watch cannot tell. With ``count``, a change made of closes and of fds the socket
        hooks saw opened is known without listing the directory (``LinuxTable.rescan``)."""
        dirfd = self._dirfd
        if dirfd is None:
            return None
        try:
            watched = self._watched_for(fds)
            ready = watched[1].poll(0)
        except (OSError, RuntimeError):  # see same()
            return None
        closed = {fd for fd, revents in ready if revents & _NVAL}
        for fd in watched[2]:
            try:
                fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                closed.add(fd)
        return frozenset(closed)

    def count(self) -> int | None:
        """The number of fds open now, from the kept directory fd (no new fd needed), net of the numbers
        reserved (the module's docstring), or None."""
        dirfd = self._dirfd
        if dirfd is None:
            return None
        try:
            st = os.fstat(dirfd)
        except OSError:
            return None
        return st.st_size - self._reserved if (st.st_dev, st.st_ino) == self._identity else None

    def recalibrate(self, open_fds: Callable[[], frozenset[int]]) -> None:
        """After counts disagreed and the caller listed: measure the reservation again, a few times per session
        at most (a thread that keeps entering and leaving ``accept()`` would make every look pay for it)."""
        self.mismatched = False
        dirfd = self._dirfd
        if dirfd is None or self._recalibrations <= 0:
            return
        self._recalibrations -= 1
        try:
            reserved = _reserved(dirfd, open_fds)
        except OSError:
            return
        if reserved is not None:
            self._reserved = reserved

    def _watch(self, fds: frozenset[int]) -> tuple[frozenset[int], select.poll, list[int]]:
        """Split the fds into those polled at once and those checked one by one."""
        poll = select.poll()
        unpollable = []
        for fd in fds:
            if self._pure_poll(fd):
                poll.register(fd, 0)
            else:
                unpollable.append(fd)
        for fd, revents in poll.poll(0):
            if revents & _NVAL:  # open (the scan saw it) yet not pollable (O_PATH), or closed since
                poll.unregister(fd)
                unpollable.append(fd)
        watched = self._watched = (fds, poll, unpollable)
        if len(self._sets) >= _KEPT_SETS:
            self._sets.clear()
        self._sets[fds] = watched
        return watched

    def _watched_for(self, fds: frozenset[int]) -> tuple[frozenset[int], select.poll, list[int]]:
        watched = self._watched
        if watched is not None and watched[0] is fds:
            return watched
        known = self._sets.get(fds)
        if known is not None:
            self._watched = known
            return known
        return self._watch(fds)

    def _pure_poll(self, fd: int) -> bool:
        """Whether polling ``fd`` only reads (see the module's docstring); False when in doubt."""
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        mode = st.st_mode
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISDIR(mode):
            return True
        if stat.S_ISCHR(mode):
            return os.major(st.st_rdev) in _PURE_POLL_CHAR_MAJORS
        if not stat.S_ISREG(mode):
            return False  # anonymous inodes (epoll, eventfd, perf, inotify...), block devices
        key = (st.st_dev, st.st_ino, mode)
        known = self._pure.get(key)
        if known is None:
            try:
                path = os.readlink(f"{_FD_DIR}/{fd}")
            except OSError:
                return False
            if self._mounts is None or filesystem_of(path, self._mounts) is None:
                # read once, and again only for a file under none of the mounts read (or if none could be read)
                self._mounts = mount_types()
            known = self._pure[key] = filesystem_of(path, self._mounts) in _PURE_POLL_FILESYSTEMS
        return known

    def _reopen_in_child(self) -> None:
        old = self._dirfd
        if old is None:
            return
        if not _still_ours(old, self._identity):
            self._dirfd = None  # closed, or not ours any more: never dup2 over someone else's file
            return
        try:
            new = os.open(_FD_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self._dirfd = None  # the listing takes over in this child
            return
        try:
            os.dup2(new, old, inheritable=False)  # the same number: the child's fd set stays the parent's
            st = os.fstat(old)
            self._identity = (st.st_dev, st.st_ino)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_if_ours, old, self._identity)
        except OSError:
            self._dirfd = None
        finally:
            os.close(new)

    def close(self) -> None:
        self._dirfd = None
        _live.discard(self)
        self._finalizer()  # closes the directory fd if it is still ours; runs once
