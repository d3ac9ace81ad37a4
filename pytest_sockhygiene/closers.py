"""Whether a client the test left open and unclosed may still be closed by other code, so that the check should
wait for it (issue 12: settle only what can still change).

The test's own code has finished when it is judged, and its event loop, if it had one, is not running. Only code
running on another thread can still close the client: a thread the test started and left running, an event loop
running in another thread (an anyio portal, a server's loop a task was handed to), a job a thread pool's worker is
running. A suite whose function-scoped fixture returns a client and never closes it (azure-core's ``client``
fixture) has none of those: pytest's fixture bookkeeping holds the client until the teardown ends, nothing can
close it, and every such test waited the whole settle for nothing - warn mode at 2x the suite's time.

A thread idle in a server's accept loop, a queue's ``get``, a ``Condition`` is not running code that could
close anything until something wakes it, and what wakes it is the test's code, which has ended. The look is
a few frames per thread, taken only for a violation whose one part that may go away is a live client.

A socket is another matter: a server thread blocked in ``recv`` is woken by the kernel when the client's end
closes, and closes its side then. Only a process whose other threads are all waiting for a connection nobody
makes (``nothing_else_runs``; none a C library started) has nobody left to close a socket its test kept (in a
module-level list, in a reference cycle the check may not collect): httplib2's suite under
``-W error::ResourceWarning`` waited the whole settle for seven such sockets. Waiting for a connection is a thread
blocked in ``accept``, or in a selector that watches only listeners - ``socketserver``'s ``handle_request`` with no
timeout, its ``serve_forever`` (prometheus_client's suite left an ``HTTPServer`` with a thread in
``handle_request`` in each of 22 tests, and each waited the whole settle).
"""

from __future__ import annotations

import os
import select
import selectors
import socket
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any, Callable

_LOOP_RUNS = frozenset({"run_forever", "run_until_complete"})
"""asyncio's (and so tornado's, uvloop's under ``asyncio.run``) functions that run a loop: a frame of one of them
in ``asyncio/`` on a thread's stack is a loop running there."""


def _runs_a_loop_or_a_job(frame: FrameType | None) -> bool:
    """Whether the stack ending at ``frame`` runs an event loop (asyncio's, trio's) or a ``ThreadPoolExecutor``'s
    job: code that may still close a client."""
    while frame is not None:
        code = frame.f_code
        name, filename = code.co_name, code.co_filename.replace("\\", "/")
        if name in _LOOP_RUNS and "/asyncio/" in filename:
            return True
        if name == "run" and (filename.endswith("/trio/_core/_run.py")
                              or filename.endswith("/concurrent/futures/thread.py")):  # (_WorkItem.run: a job)
            return True
        frame = frame.f_back
    return False


def may_close_elsewhere(started: Iterable[Callable[[], Any]] | None) -> bool:
    """Whether code on another thread may still close a live client: a thread started in the window (``started``:
    references to them, None when the window could not log thread starts) still running, or another thread
    running an event loop or a pool's job."""
    if started is None:
        return True
    for ref in started:
        thread = ref()
        if thread is not None and thread.is_alive():
            return True
    me = threading.get_ident()
    return any(ident != me and _runs_a_loop_or_a_job(frame) for ident, frame in sys._current_frames().items())



def _blocked_in_accept(frame: FrameType | None, native_id: int | None = None) -> bool:
    """Whether a thread's innermost frame is ``socket.accept`` on a listener without a timeout and with no
    connection waiting: blocked in the kernel until a connection comes, which no code of the test's is left to
    make (a server's accept loop, pytest-rerunfailures' status server, which every session it is installed in
    starts). With a timeout it wakes by itself and runs its loop; with a connection waiting it is about to return
    (the race CI found: a test's connect completed, its server thread not yet back from ``accept``). On Linux the
    kernel says too (``/proc/self/task/<id>/wchan``): a thread back from the system call but waiting for the GIL
    still shows the ``accept`` frame, with the connection already taken."""
    if frame is None or frame.f_code.co_name != "accept" or \
            not frame.f_code.co_filename.replace("\\", "/").endswith("/socket.py"):
        return False
    listener = frame.f_locals.get("self")
    try:
        if listener is None or listener.gettimeout() is not None or _pending(listener.fileno()):
            return False
    except Exception:  # noqa: BLE001 - closed under it, or not a socket after all: may run
        return False
    return _kernel_waits(native_id, ("accept",))


_SERVE_FOREVER = "serve_forever"
"""``socketserver.BaseServer.serve_forever``: wakes every ``poll_interval`` to look at its shutdown flag and
handles a request only when its listener is readable; it closes no socket itself (``server_close`` is its
caller's)."""


def _blocked_in_selector(frame: FrameType | None, native_id: int | None = None) -> bool:
    """Whether a thread's innermost frame is a ``selectors`` selector's ``select`` that waits only for connections:
    every object it watches is a listening socket (or ``socketserver``'s server, whose ``socket`` is one), watched
    for reading, none with a connection waiting; with no timeout (``handle_request``), or called from
    ``serve_forever``, which on waking with nothing ready only looks at its shutdown flag. Such a thread runs no code
    that closes a socket until a connection comes (``_blocked_in_accept``'s rule); on Linux the kernel must show it
    waiting in the system call too."""
    if frame is None or frame.f_code.co_name != "select" or \
            not frame.f_code.co_filename.replace("\\", "/").endswith("/selectors.py"):
        return False
    timeout = frame.f_locals.get("timeout")
    if timeout is not None and timeout >= 0:
        caller = frame.f_back
        if caller is None or caller.f_code.co_name != _SERVE_FOREVER or \
                not caller.f_code.co_filename.replace("\\", "/").endswith("/socketserver.py"):
            return False  # wakes by itself, and may then run any code
    try:
        keys = list(frame.f_locals["self"].get_map().values())
        if not keys:
            return False
        for key in keys:
            sock = getattr(key.fileobj, "socket", key.fileobj)  # socketserver registers the server itself
            if key.events != selectors.EVENT_READ or not isinstance(sock, socket.socket) or sock.fileno() != key.fd \
                    or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) or _pending(key.fd):
                return False
    except Exception:  # noqa: BLE001 - a selector, key or socket of an unusual kind (or closed under it): may run
        return False
    return _kernel_waits(native_id, ("poll", "select"))


def _kernel_waits(native_id: int | None, calls: tuple[str, ...]) -> bool:
    """Whether the kernel shows the thread waiting in one of these system calls (``/proc/self/task/<id>/wchan``):
    a thread back from the call but waiting for the GIL still shows the Python frame of the call. True where the
    kernel cannot be asked (not Linux, no fd left): the frame is all there is to go by."""
    if native_id is None:
        return True
    try:
        with open(f"/proc/self/task/{native_id}/wchan") as f:
            wchan = f.read()
    except OSError:
        return True
    return any(call in wchan for call in calls)


def _waits_for_a_connection(frame: FrameType | None, native_id: int | None = None) -> bool:
    """A thread blocked until a connection nobody makes comes: in ``accept``, or in a selector of listeners."""
    return _blocked_in_accept(frame, native_id) or _blocked_in_selector(frame, native_id)


def _pending(fd: int) -> bool:
    """Whether a listener has a connection waiting to be accepted: the thread in its ``accept`` is about to return
    with it (the kernel completed the handshake before the thread was scheduled), and may run any code then. A
    poll with no wait, which needs no fd of its own; a listener that cannot be polled counts as pending."""
    if fd < 0:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _thread_count() -> int | None:
    """The process's threads, counting those no Python code started (a C library's); None when unknown."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.Process().num_threads())
    except Exception:  # noqa: BLE001 - unknown
        return None


def nothing_else_runs() -> bool:
    """Whether no thread but the caller can run code that closes a socket: every other thread of the process is
    a Python thread waiting for a connection (``_waits_for_a_connection``), and none was started by C code (gRPC's core,
    a driver's I/O thread), which may close a socket too. False when the threads cannot be counted: then another
    may exist, and the check waits as it always did."""
    me = threading.get_ident()
    frames = sys._current_frames()
    natives = {t.ident: getattr(t, "native_id", None) for t in threading.enumerate()}
    if any(ident != me and not _waits_for_a_connection(frame, natives.get(ident)) for ident, frame in frames.items()):
        return False
    return _thread_count() == len(frames)
