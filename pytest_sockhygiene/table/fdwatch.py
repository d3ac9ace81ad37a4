"""Whether this process still has exactly the fds it had at the last scan, in two system calls.

The clean path's one question is "same fd numbers as before?". A listing of ``/proc/self/fd`` answers it, but a
listing is five system calls, a path walk through procfs and a string per fd (~26 µs in the middle of a test on
a 2-core VM). Two facts answer it exactly with less:

* ``fstat`` of a directory fd kept open on ``/proc/self/fd`` gives the number of open fds as ``st_size``
  (Linux 6.2+, checked at start: older kernels report 0 and the listing stays);
* one ``poll`` with no events over the fds seen last marks every one that is no longer open with ``POLLNVAL``.

Same count and none closed means the same set of numbers: what a listing would have said, no more and no less.
Files the kernel will not poll (``O_PATH`` fds report ``POLLNVAL`` while open) are checked one by one with
``fcntl(F_GETFD)`` instead.
"""

from __future__ import annotations

import fcntl
import os
import select
import weakref
from typing import Callable, FrozenSet, List, Optional

_FD_DIR = "/proc/self/fd"
_NVAL = select.POLLNVAL if hasattr(select, "POLLNVAL") else 0x20

_live: "weakref.WeakSet[FdWatch]" = weakref.WeakSet()
_fork_hook_installed = False


def _reopen_after_fork() -> None:
    """A forked child (pytest-forked, multiprocessing) inherits a directory fd of the *parent's* fd table."""
    for watch in list(_live):
        watch._reopen_in_child()


class FdWatch:
    """A directory fd on ``/proc/self/fd`` and a poll set over the fds of the last scan."""

    def __init__(self, dirfd: int) -> None:
        self._dirfd: Optional[int] = dirfd
        st = os.fstat(dirfd)
        self._identity = (st.st_dev, st.st_ino)
        """What the directory fd is: a test that closes every fd (``os.closerange``) may hand its number to
        another file, which this watch must then neither read as a count nor touch."""
        self._fds: Optional[FrozenSet[int]] = None
        self._poll = select.poll()
        self._unpollable: List[int] = []

    @classmethod
    def open(cls, open_fds: Callable[[], FrozenSet[int]]) -> Optional["FdWatch"]:
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
                if os.fstat(dirfd).st_size == len(open_fds()):
                    break
            else:
                os.close(dirfd)
                return None
        except OSError:
            os.close(dirfd)
            return None
        watch = cls(dirfd)
        _live.add(watch)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reopen_after_fork)
            _fork_hook_installed = True
        return watch

    def same(self, fds: FrozenSet[int]) -> Optional[bool]:
        """Exactly the fds ``fds`` are open now (True), or not (False); None if this watch cannot tell."""
        dirfd = self._dirfd
        if dirfd is None:
            return None
        if fds is not self._fds:
            self._watch(fds)
        try:
            st = os.fstat(dirfd)
        except OSError:
            self._dirfd = None  # closed under us: the listing answers from now on
            return None
        if (st.st_dev, st.st_ino) != self._identity:
            self._dirfd = None  # the number is another file's now: never touch it again
            return None
        if st.st_size != len(fds):
            return False
        for _, revents in self._poll.poll(0):
            if revents & _NVAL:
                return False
        for fd in self._unpollable:
            try:
                fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                return False
        return True

    def _watch(self, fds: FrozenSet[int]) -> None:
        poll = select.poll()
        for fd in fds:
            poll.register(fd, 0)
        unpollable = []
        for fd, revents in poll.poll(0):
            if revents & _NVAL:  # open (the scan saw it) yet not pollable, or closed since: checked one by one
                poll.unregister(fd)
                unpollable.append(fd)
        self._poll, self._unpollable, self._fds = poll, unpollable, fds

    def _reopen_in_child(self) -> None:
        old = self._dirfd
        if old is None:
            return
        try:
            st = os.fstat(old)
        except OSError:
            self._dirfd = None
            return
        if (st.st_dev, st.st_ino) != self._identity:
            self._dirfd = None  # not ours any more: never dup2 over someone else's file
            return
        try:
            new = os.open(_FD_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self._dirfd = None  # the listing takes over in this child
            return
        try:
            os.dup2(new, old, inheritable=False)  # the same number: the child's fd set stays the parent's
            self._identity = (os.fstat(old).st_dev, os.fstat(old).st_ino)
        except OSError:
            self._dirfd = None
        finally:
            os.close(new)

    def close(self) -> None:
        dirfd, self._dirfd = self._dirfd, None
        _live.discard(self)
        if dirfd is not None:
            try:
                st = os.fstat(dirfd)
                if (st.st_dev, st.st_ino) == self._identity:  # else: not ours any more, leave it alone
                    os.close(dirfd)
            except OSError:
                pass
